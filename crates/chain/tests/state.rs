//! State invariants: OPEN's supply never changes, proofs verify against block state roots,
//! and queries at older blocks see the state as it was.

mod common;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_trie::{proof::verify_proof, Nibbles, TrieAccount};
use common::*;
use openledger_chain::{genesis::TOTAL_SUPPLY, Chain, Genesis};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

fn hex_u64(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn deploy(t: &TestChain, key: &k256::ecdsa::SigningKey, nonce: u64) -> Address {
    let tx = eip1559(1612, nonce, None, U256::ZERO, store_and_log_initcode());
    let response = t.send_raw(&signed_1559(tx, key)).await;
    assert!(response.get("result").is_some(), "{response}");
    t.mine();
    let contract = address(key).create(nonce);
    let code = t.ok("eth_getCode", json!([contract, "latest"])).await;
    assert_ne!(code, "0x", "contract deployed");
    contract
}

fn call_data(value: U256, slot: U256) -> Bytes {
    let mut data = value.to_be_bytes::<32>().to_vec();
    data.extend(slot.to_be_bytes::<32>());
    data.into()
}

#[tokio::test]
async fn supply_is_exactly_ten_to_the_27_after_every_block() {
    let t = TestChain::new();
    let keys = keys();
    assert_eq!(t.chain.total_balance(), TOTAL_SUPPLY);
    let contract = deploy(&t, &keys[0], 0).await;
    assert_eq!(t.chain.total_balance(), TOTAL_SUPPLY);

    let mut rng = StdRng::seed_from_u64(7);
    let mut nonces = vec![0u64; keys.len()];
    nonces[0] = 1;
    let strangers: Vec<Address> = (0..50)
        .map(|i| Address::with_last_byte(i as u8 + 1))
        .collect();
    let mut sent = 0;
    for _block in 0..40 {
        for _ in 0..80 {
            let k = rng.random_range(0..keys.len());
            let nonce = nonces[k];
            let raw = match rng.random_range(0..4) {
                // transfers, including zero-value ones that touch empty accounts
                0 | 1 => {
                    let to = if rng.random_bool(0.5) {
                        address(&keys[rng.random_range(0..keys.len())])
                    } else {
                        strangers[rng.random_range(0..strangers.len())]
                    };
                    transfer(&keys[k], nonce, to, rng.random_range(0..1_000_000))
                }
                // contract calls that write a slot, log, and sometimes carry value
                2 => {
                    let data = call_data(
                        U256::from(rng.random::<u64>()),
                        U256::from(rng.random_range(0..32u64)),
                    );
                    let value = U256::from(rng.random_range(0..3u64));
                    signed_1559(eip1559(1612, nonce, Some(contract), value, data), &keys[k])
                }
                // calls that run out of gas: the fee is still charged
                _ => {
                    let mut tx = eip1559(
                        1612,
                        nonce,
                        Some(contract),
                        U256::ZERO,
                        call_data(U256::from(9), U256::from(1)),
                    );
                    tx.gas_limit = 22_000 + 64 * 16;
                    signed_1559(tx, &keys[k])
                }
            };
            let response = t.send_raw(&raw).await;
            assert!(response.get("result").is_some(), "{response}");
            nonces[k] += 1;
            sent += 1;
        }
        let block = t.mine();
        assert_eq!(block.txs.len(), 80);
        assert_eq!(
            t.chain.total_balance(),
            TOTAL_SUPPLY,
            "supply changed in block {}",
            block.header.number
        );
        assert!(block.header.gas_used > 0);
    }
    assert_eq!(sent, 3200);
    // Fees went to the vault, never burned.
    let vault = t.balance(t.chain.genesis.fee_vault).await;
    assert!(vault > U256::ZERO);

    // The persisted state reproduces the head's state root on reopening.
    let head = t.chain.head();
    let TestChain { chain, rpc, dir } = t;
    drop((rpc, chain));
    let reopened = Chain::open(dir.path(), Genesis::dev(), true).unwrap();
    assert_eq!(reopened.head().hash, head.hash);
    assert_eq!(reopened.total_balance(), TOTAL_SUPPLY);
}

#[tokio::test]
async fn account_and_storage_proofs_verify_against_the_state_root() {
    let t = TestChain::new();
    let keys = keys();
    let contract = deploy(&t, &keys[0], 0).await;
    for (i, slot) in [0u64, 1, 2, 1000].iter().enumerate() {
        let data = call_data(U256::from(0xabcdefu64 + *slot), U256::from(*slot));
        let tx = eip1559(1612, 1 + i as u64, Some(contract), U256::ZERO, data);
        t.send_raw(&signed_1559(tx, &keys[0])).await;
    }
    t.mine();
    let block = t.ok("eth_getBlockByNumber", json!(["latest", false])).await;
    let root: B256 = block["stateRoot"].as_str().unwrap().parse().unwrap();

    let missing = Address::repeat_byte(0x42);
    for who in [address(&keys[0]), contract, missing] {
        let proof = t
            .ok(
                "eth_getProof",
                json!([who, ["0x0", "0x1", "0x3e8", "0x7"], "latest"]),
            )
            .await;
        let nodes: Vec<Bytes> = serde_json::from_value(proof["accountProof"].clone()).unwrap();
        let storage_hash: B256 = proof["storageHash"].as_str().unwrap().parse().unwrap();
        let account = TrieAccount {
            nonce: hex_u64(&proof["nonce"]),
            balance: proof["balance"].as_str().unwrap().parse().unwrap(),
            storage_root: storage_hash,
            code_hash: proof["codeHash"].as_str().unwrap().parse().unwrap(),
        };
        let expected = (who != missing).then(|| alloy_rlp::encode(account));
        verify_proof(
            root,
            Nibbles::unpack(keccak256(who)),
            expected.clone(),
            &nodes,
        )
        .unwrap_or_else(|e| panic!("account proof for {who}: {e}"));
        // A proof must not verify a different balance.
        if who != missing {
            let mut forged = account;
            forged.balance += U256::from(1);
            assert!(verify_proof(
                root,
                Nibbles::unpack(keccak256(who)),
                Some(alloy_rlp::encode(forged)),
                &nodes
            )
            .is_err());
        }
        for entry in proof["storageProof"].as_array().unwrap() {
            let key: U256 = entry["key"].as_str().unwrap().parse().unwrap();
            let value: U256 = entry["value"].as_str().unwrap().parse().unwrap();
            let nodes: Vec<Bytes> = serde_json::from_value(entry["proof"].clone()).unwrap();
            if who == contract && key != U256::from(7) {
                assert!(!value.is_zero(), "slot {key} was written");
            }
            let expected = (!value.is_zero()).then(|| alloy_rlp::encode(value));
            verify_proof(
                storage_hash,
                Nibbles::unpack(keccak256(key.to_be_bytes::<32>())),
                expected,
                &nodes,
            )
            .unwrap_or_else(|e| panic!("storage proof {who} slot {key}: {e}"));
        }
    }
}

#[tokio::test]
async fn queries_at_older_blocks_see_the_old_state() {
    let t = TestChain::new();
    let keys = keys();
    let contract = deploy(&t, &keys[0], 0).await;
    let to = Address::repeat_byte(0x11);
    let mut history = Vec::new();
    for i in 1..=5u64 {
        t.send_raw(&transfer(&keys[1], i - 1, to, 1000 * i)).await;
        let data = call_data(U256::from(i * 7), U256::ZERO);
        t.send_raw(&signed_1559(
            eip1559(1612, i, Some(contract), U256::ZERO, data),
            &keys[0],
        ))
        .await;
        let block = t.mine();
        history.push(block.header.number);
    }
    let mut expected_balance = 0u64;
    for (i, number) in history.iter().enumerate() {
        let i = i as u64 + 1;
        expected_balance += 1000 * i;
        let tag = format!("{number:#x}");
        let balance = t.ok("eth_getBalance", json!([to, tag])).await;
        assert_eq!(balance, format!("{expected_balance:#x}"));
        let slot = t
            .ok("eth_getStorageAt", json!([contract, "0x0", tag]))
            .await;
        assert_eq!(
            slot.as_str().unwrap().parse::<U256>().unwrap(),
            U256::from(i * 7)
        );
        // eth_call at that block reads slot 0 as it was (the runtime returns slot 0 after
        // writing calldata word 0 into calldata word 1's slot; write slot 5 to leave 0 alone).
        let out = t
            .ok(
                "eth_call",
                json!([{"to": contract, "data": call_data(U256::from(1), U256::from(5))}, tag]),
            )
            .await;
        assert_eq!(
            out.as_str().unwrap().parse::<U256>().unwrap(),
            U256::from(i * 7),
            "eth_call at block {number}"
        );
        let nonce = t
            .ok("eth_getTransactionCount", json!([address(&keys[1]), tag]))
            .await;
        assert_eq!(hex_u64(&nonce), i);
    }
    // A block beyond the head is an error, not a silent answer.
    let (code, message) = t.err("eth_getBalance", json!([to, "0xffff"])).await;
    assert_eq!((code, message.as_str()), (-32000, "header not found"));
}

#[tokio::test]
async fn block_hash_is_keccak_of_the_rlp_header_served_over_rpc() {
    let t = TestChain::new();
    let keys = keys();
    t.send_raw(&transfer(&keys[0], 0, Address::repeat_byte(1), 5))
        .await;
    t.mine();
    for tag in ["0x0", "latest"] {
        let block = t.ok("eth_getBlockByNumber", json!([tag, false])).await;
        let header: alloy_consensus::Header = serde_json::from_value(block.clone()).unwrap();
        let hash: B256 = block["hash"].as_str().unwrap().parse().unwrap();
        assert_eq!(keccak256(alloy_rlp::encode(&header)), hash);
        let by_hash = t.ok("eth_getBlockByHash", json!([hash, false])).await;
        assert_eq!(by_hash, block);
    }
}

#[tokio::test]
async fn base_fee_rises_with_full_blocks_and_falls_with_empty_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut genesis = Genesis::dev();
    genesis.gas_limit = 1_050_000; // 50 transfers; the target is a sixth of it
    let chain = Chain::open(dir.path(), genesis, true).unwrap();
    let t = TestChain::from_parts(chain, dir);
    let keys = keys();
    for nonce in 0..60 {
        let response = t
            .send_raw(&transfer(
                &keys[(nonce % 10) as usize],
                nonce / 10,
                Address::repeat_byte(2),
                1,
            ))
            .await;
        assert!(response.get("result").is_some(), "{response}");
    }
    let full = t.mine();
    assert_eq!(full.txs.len(), 50, "the block gas limit caps the block");
    // Block 1 follows the empty genesis, so its fee is already a step below the genesis fee.
    let start = full.header.base_fee_per_gas.unwrap();
    assert!(start < t.chain.genesis.base_fee_per_gas);
    let after_full = t.mine();
    assert!(
        after_full.header.base_fee_per_gas.unwrap() > start,
        "full block raises the fee"
    );
    assert_eq!(
        after_full.txs.len(),
        10,
        "the rest follow in the next block"
    );
    let after_partial = t.mine().header.base_fee_per_gas.unwrap();
    let after_empty = t.mine().header.base_fee_per_gas.unwrap();
    assert!(after_empty < after_partial, "an empty block lowers the fee");
    let history = t
        .ok("eth_feeHistory", json!(["0x4", "latest", [50.0]]))
        .await;
    assert_eq!(history["baseFeePerGas"].as_array().unwrap().len(), 5);
    assert_eq!(history["gasUsedRatio"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn block_receipts_match_single_receipts() {
    let t = TestChain::new();
    let keys = keys();
    for key in &keys[..3] {
        t.send_raw(&transfer(key, 0, Address::repeat_byte(9), 1))
            .await;
    }
    let block = t.mine();
    let all = t
        .ok(
            "eth_getBlockReceipts",
            json!([format!("{:#x}", block.header.number)]),
        )
        .await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    for (i, tx) in block.txs.iter().enumerate() {
        let one = t.ok("eth_getTransactionReceipt", json!([tx.hash()])).await;
        assert_eq!(all[i], one);
    }
    assert!(t
        .ok("eth_getBlockReceipts", json!(["0x999"]))
        .await
        .is_null());
}
