//! Every kind of bad transaction gets the JSON-RPC error Ethereum clients expect, and changes
//! nothing: balances, nonces, the pool and the next block are as if it had never been sent.

mod common;

use alloy_consensus::{TxEip2930, TxLegacy};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use common::*;
use serde_json::json;

/// What a bad transaction must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    balances: Vec<U256>,
    nonces: Vec<u64>,
    pool: u64,
}

async fn snapshot(t: &TestChain, who: &[Address]) -> Snapshot {
    let mut balances = Vec::new();
    let mut nonces = Vec::new();
    for a in who {
        balances.push(t.balance(*a).await);
        nonces.push(t.nonce(*a).await);
    }
    let metrics = t.chain.metrics.render(0);
    let pool = metrics
        .lines()
        .find_map(|l| l.strip_prefix("openledger_mempool_size "))
        .unwrap()
        .parse()
        .unwrap();
    Snapshot {
        balances,
        nonces,
        pool,
    }
}

/// Sends `raw`, expects `code` and a message containing `text`, and checks nothing changed,
/// including that the next block does not carry it.
async fn rejected(t: &TestChain, raw: &[u8], code: i64, text: &str, watch: &[Address]) {
    let before = snapshot(t, watch).await;
    let response = t.send_raw(raw).await;
    let error = response
        .get("error")
        .unwrap_or_else(|| panic!("expected {text:?}, got {response}"));
    assert_eq!(error["code"], code, "{response}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(text), "expected {text:?} in {message:?}");
    assert_eq!(
        snapshot(t, watch).await,
        before,
        "state changed after {text:?}"
    );
}

#[tokio::test]
async fn each_bad_transaction_gets_its_error_and_changes_nothing() {
    let t = TestChain::new();
    let keys = keys();
    let (alice, bob) = (&keys[0], &keys[1]);
    let watch = [address(alice), address(bob)];
    let to = address(bob);

    // A good transaction first, so that nonce 0 is used.
    let good = transfer(alice, 0, to, 1);
    assert!(t.send_raw(&good).await.get("result").is_some());
    t.mine();

    // nonce too low
    rejected(
        &t,
        &transfer(alice, 0, to, 2),
        -32000,
        "nonce too low",
        &watch,
    )
    .await;

    // insufficient funds: a key with no OPEN at all, and a dev key sending more than it has
    let pauper = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    rejected(
        &t,
        &transfer(&pauper, 0, to, 1),
        -32000,
        "insufficient funds for gas * price + value",
        &[address(&pauper), to],
    )
    .await;
    let mut too_much = eip1559(1612, 1, Some(to), U256::from(10u128.pow(30)), Bytes::new());
    too_much.gas_limit = 21_000;
    rejected(
        &t,
        &signed_1559(too_much, alice),
        -32000,
        "insufficient funds for gas * price + value",
        &watch,
    )
    .await;

    // intrinsic gas too low: a transfer needs 21000; calldata and creation need more
    let mut low = eip1559(1612, 1, Some(to), U256::from(1), Bytes::new());
    low.gas_limit = 20_999;
    rejected(
        &t,
        &signed_1559(low, alice),
        -32000,
        "intrinsic gas too low",
        &watch,
    )
    .await;
    let mut low_create = eip1559(1612, 1, None, U256::ZERO, store_and_log_initcode());
    low_create.gas_limit = 53_000;
    rejected(
        &t,
        &signed_1559(low_create, alice),
        -32000,
        "intrinsic gas too low",
        &watch,
    )
    .await;

    // already known
    let pending = transfer(alice, 1, to, 3);
    assert!(t.send_raw(&pending).await.get("result").is_some());
    let watch_after = snapshot(&t, &watch).await;
    let response = t.send_raw(&pending).await;
    assert_eq!(response["error"]["message"], "already known", "{response}");
    assert_eq!(snapshot(&t, &watch).await, watch_after);

    // replacement underpriced: same nonce, fees raised by less than 10%
    let mut cheap = eip1559(1612, 1, Some(to), U256::from(4), Bytes::new());
    cheap.gas_limit = 21_000;
    cheap.max_fee_per_gas = 10 * GWEI + GWEI / 2;
    cheap.max_priority_fee_per_gas = GWEI + GWEI / 20;
    rejected(
        &t,
        &signed_1559(cheap, alice),
        -32000,
        "replacement transaction underpriced",
        &watch,
    )
    .await;

    // invalid signature: flip a byte of s so that the signature recovers nobody or is malformed
    let mut bad_sig = transfer(bob, 0, address(alice), 1);
    let n = bad_sig.len();
    bad_sig[n - 32] = 0xff; // s's high byte: above the curve order, and not low-s
    rejected(&t, &bad_sig, -32000, "invalid sender", &watch).await;

    // wrong chain id
    let mut other_chain = eip1559(1, 0, Some(to), U256::from(1), Bytes::new());
    other_chain.gas_limit = 21_000;
    rejected(
        &t,
        &signed_1559(other_chain, bob),
        -32000,
        "invalid chain id for signer: have 1 want 1612",
        &watch,
    )
    .await;

    // legacy without EIP-155 replay protection
    let unprotected = TxLegacy {
        chain_id: None,
        nonce: 0,
        gas_price: 10 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::from(1),
        input: Bytes::new(),
    };
    rejected(
        &t,
        &signed_legacy(unprotected, bob),
        -32000,
        "EIP-155",
        &watch,
    )
    .await;

    // malformed RLP: garbage, a truncated transaction, trailing bytes, and an empty string
    let valid = transfer(bob, 0, address(alice), 1);
    rejected(
        &t,
        &[0xde, 0xad, 0xbe, 0xef],
        -32602,
        "failed to decode",
        &watch,
    )
    .await;
    rejected(
        &t,
        &valid[..valid.len() - 5],
        -32602,
        "failed to decode",
        &watch,
    )
    .await;
    let mut trailing = valid.clone();
    trailing.push(0);
    rejected(&t, &trailing, -32602, "failed to decode", &watch).await;
    rejected(&t, &[], -32602, "failed to decode", &watch).await;

    // fee rules: tip above cap, gas above the block limit
    let mut tip_high = eip1559(1612, 0, Some(to), U256::from(1), Bytes::new());
    tip_high.gas_limit = 21_000;
    tip_high.max_priority_fee_per_gas = tip_high.max_fee_per_gas + 1;
    rejected(
        &t,
        &signed_1559(tip_high, bob),
        -32000,
        "max priority fee per gas higher than max fee per gas",
        &watch,
    )
    .await;
    let mut huge = eip1559(1612, 0, Some(to), U256::from(1), Bytes::new());
    huge.gas_limit = t.chain.genesis.gas_limit + 1;
    rejected(
        &t,
        &signed_1559(huge, bob),
        -32000,
        "exceeds block gas limit",
        &watch,
    )
    .await;

    // Only the two good transactions ever reach a block.
    let block = t.mine();
    assert_eq!(block.txs.len(), 1);
    assert_eq!(
        block.txs[0].tx.tx_hash().as_slice(),
        &alloy_primitives::keccak256(&pending)[..]
    );
    assert_eq!(t.nonce(address(bob)).await, 0);
}

#[tokio::test]
async fn all_three_transaction_types_are_accepted_and_mined() {
    let t = TestChain::new();
    let keys = keys();
    let to = address(&keys[5]);
    let before = t.balance(to).await;
    let legacy = TxLegacy {
        chain_id: Some(1612),
        nonce: 0,
        gas_price: 10 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::from(100),
        input: Bytes::new(),
    };
    let access_list = TxEip2930 {
        chain_id: 1612,
        nonce: 1,
        gas_price: 10 * GWEI,
        gas_limit: 30_000,
        to: TxKind::Call(to),
        value: U256::from(200),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    for raw in [
        signed_legacy(legacy, &keys[0]),
        signed_2930(access_list, &keys[0]),
        transfer(&keys[0], 2, to, 300),
    ] {
        let response = t.send_raw(&raw).await;
        assert!(response.get("result").is_some(), "{response}");
    }
    let block = t.mine();
    assert_eq!(block.txs.len(), 3);
    assert_eq!(t.balance(to).await, before + U256::from(600));
    for (i, tx) in block.txs.iter().enumerate() {
        let receipt = t.ok("eth_getTransactionReceipt", json!([tx.hash()])).await;
        assert_eq!(receipt["status"], "0x1");
        assert_eq!(receipt["type"], format!("{i:#x}"));
    }
}

#[tokio::test]
async fn future_nonces_wait_and_replacement_with_a_higher_fee_wins() {
    let t = TestChain::new();
    let keys = keys();
    let to = address(&keys[3]);
    // Nonce 1 before nonce 0: it waits.
    assert!(t
        .send_raw(&transfer(&keys[0], 1, to, 1))
        .await
        .get("result")
        .is_some());
    assert!(t.mine().txs.is_empty());
    // Nonce 0 arrives, then is replaced with a 20% higher fee.
    assert!(t
        .send_raw(&transfer(&keys[0], 0, to, 1))
        .await
        .get("result")
        .is_some());
    let mut better = eip1559(1612, 0, Some(to), U256::from(2), Bytes::new());
    better.gas_limit = 21_000;
    better.max_fee_per_gas = 12 * GWEI;
    better.max_priority_fee_per_gas = 2 * GWEI;
    let better = signed_1559(better, &keys[0]);
    assert!(t.send_raw(&better).await.get("result").is_some());
    let block = t.mine();
    assert_eq!(block.txs.len(), 2, "both nonces mined in order");
    assert_eq!(
        block.txs[0].tx.tx_hash().as_slice(),
        &alloy_primitives::keccak256(&better)[..]
    );
    assert_eq!(t.nonce(address(&keys[0])).await, 2);
}

#[tokio::test]
async fn a_nonce_too_far_ahead_is_refused_and_changes_nothing() {
    let t = TestChain::new();
    let keys = keys();
    let gap = openledger_chain::mempool::PoolLimits::default().account_slots as u64;
    let watch = [address(&keys[0])];
    rejected(
        &t,
        &transfer(&keys[0], gap, address(&keys[1]), 1),
        -32000,
        "nonce too high",
        &watch,
    )
    .await;
    // Just inside the window, it waits in the pool.
    let response = t
        .send_raw(&transfer(&keys[0], gap - 1, address(&keys[1]), 1))
        .await;
    assert!(response.get("result").is_some(), "{response}");
    assert!(t.mine().txs.is_empty());
}
