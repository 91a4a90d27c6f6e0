//! Attacks on the node written as tests: each failed before the node defended against it.

mod common;

use alloy_consensus::Transaction;
use alloy_primitives::{Address, Bytes, U256};
use common::*;
use openledger_chain::{mempool::PoolLimits, Genesis};

/// A sender queues a transfer of nearly all its balance and, behind it, a block-sized
/// transaction paying the top tip. Once the transfer runs, the big one can never pay; before,
/// every later block came out empty and nobody else's transaction was mined.
#[tokio::test]
async fn a_sender_that_moves_its_balance_away_cannot_stall_block_production() {
    let t = TestChain::new();
    let keys = keys();
    let (attacker, other) = (&keys[0], &keys[2]);
    let balance = t.balance(address(attacker)).await;
    let mut drain = eip1559(1612, 0, Some(address(&keys[1])), U256::ZERO, Bytes::new());
    drain.gas_limit = 21_000;
    drain.max_fee_per_gas = 100 * GWEI;
    drain.max_priority_fee_per_gas = 50 * GWEI;
    let one_open = U256::from(10u64).pow(U256::from(18));
    drain.value = balance - U256::from(21_000u128 * 100 * GWEI) - one_open;
    assert!(t
        .send_raw(&signed_1559(drain, attacker))
        .await
        .get("result")
        .is_some());
    let mut jam = eip1559(
        1612,
        1,
        Some(Address::repeat_byte(7)),
        U256::ZERO,
        Bytes::new(),
    );
    jam.gas_limit = Genesis::dev().gas_limit;
    jam.max_fee_per_gas = 100 * GWEI;
    jam.max_priority_fee_per_gas = 50 * GWEI;
    // Refused at admission (the two together cost more than the balance) or admitted: either
    // way it must not keep others out of later blocks.
    let _ = t.send_raw(&signed_1559(jam, attacker)).await;
    assert_eq!(t.mine().txs.len(), 1, "the drain is mined");

    let victim = transfer(other, 0, address(&keys[3]), 1);
    assert!(t.send_raw(&victim).await.get("result").is_some());
    let mined: usize = (0..2).map(|_| t.mine().txs.len()).sum();
    assert_eq!(
        mined, 1,
        "an ordinary transfer from another account is mined"
    );
    assert_eq!(t.nonce(address(other)).await, 1);
}

/// Admission adds up a sender's pooled transactions: queueing more than the balance can pay,
/// together, is refused with a clear error.
#[tokio::test]
async fn a_sender_cannot_pool_more_than_its_balance_pays_for_in_total() {
    let t = TestChain::new();
    let keys = keys();
    let balance = t.balance(address(&keys[0])).await;
    let half = balance / U256::from(2);
    let big = |nonce| {
        let mut tx = eip1559(1612, nonce, Some(address(&keys[1])), half, Bytes::new());
        tx.gas_limit = 21_000;
        signed_1559(tx, &keys[0])
    };
    assert!(t.send_raw(&big(0)).await.get("result").is_some());
    let response = t.send_raw(&big(1)).await;
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("insufficient funds"), "{response}");
    assert_eq!(
        t.nonce(address(&keys[0])).await,
        1,
        "only the first is pending"
    );
}

/// Many large transactions fill the pool up to its byte bound and no further.
#[tokio::test]
async fn a_flood_of_large_transactions_is_bounded_in_bytes() {
    let limits = PoolLimits {
        max_bytes: 1024 * 1024,
        ..PoolLimits::default()
    };
    let t = TestChain::with_limits(limits, Default::default());
    let keys = keys();
    let mut accepted = 0;
    let mut full = 0;
    for i in 0..60u64 {
        let key = &keys[(i % 10) as usize];
        let mut tx = eip1559(
            1612,
            i / 10,
            Some(Address::repeat_byte(9)),
            U256::ZERO,
            Bytes::from(vec![0xab; 100 * 1024]),
        );
        tx.gas_limit = 5_000_000;
        let response = t.send_raw(&signed_1559(tx, key)).await;
        match response.get("error") {
            None => accepted += 1,
            Some(e) => {
                assert!(
                    e["message"].as_str().unwrap().starts_with("txpool is full"),
                    "{e}"
                );
                full += 1;
            }
        }
        let (_, bytes) = t.chain.pool_size();
        assert!(bytes <= 1024 * 1024, "pool holds {bytes} bytes");
    }
    assert!(
        accepted >= 9 && full > 0,
        "accepted {accepted}, refused {full}"
    );
    // A transaction over the size limit is refused outright.
    let mut huge = eip1559(
        1612,
        0,
        Some(Address::repeat_byte(9)),
        U256::ZERO,
        Bytes::from(vec![0xab; 129 * 1024]),
    );
    huge.gas_limit = 10_000_000;
    let response = t.send_raw(&signed_1559(huge, &keys[5])).await;
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("oversized data"), "{response}");
}

/// Block timestamps strictly increase even when blocks come faster than one a second.
#[tokio::test]
async fn block_timestamps_strictly_increase() {
    let t = TestChain::new();
    let mut last = t.chain.head().header.timestamp;
    for _ in 0..5 {
        let block = t.mine();
        assert!(
            block.header.timestamp > last,
            "{} after {last}",
            block.header.timestamp
        );
        last = block.header.timestamp;
    }
}

/// EIP-7623 (Prague): a transaction whose execution is cheap but whose calldata is large pays
/// the calldata floor, in its receipt and from its balance.
#[tokio::test]
async fn a_cheap_revert_with_calldata_pays_the_prague_floor() {
    let t = TestChain::new();
    let keys = keys();
    // Runtime: PUSH1 0 DUP1 REVERT; init code copies it out.
    let runtime = [0x60u8, 0x00, 0x80, 0xfd];
    let mut init = vec![
        0x60,
        runtime.len() as u8,
        0x80,
        0x60,
        0x0c,
        0x60,
        0x00,
        0x39,
        0x60,
        0x00,
        0xf3,
        0x00,
    ];
    init.extend(runtime);
    let deploy = signed_1559(eip1559(1612, 0, None, U256::ZERO, init.into()), &keys[0]);
    assert!(t.send_raw(&deploy).await.get("result").is_some());
    let block = t.mine();
    let contract = block.txs[0].created_address().unwrap();

    // write(uint256,uint256) with 1 and 10^31.
    let mut input = alloy_primitives::keccak256("write(uint256,uint256)")[..4].to_vec();
    input.extend(U256::from(1).to_be_bytes::<32>());
    input.extend((U256::from(10).pow(U256::from(31))).to_be_bytes::<32>());
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    let tokens = zeros + 4 * (input.len() as u64 - zeros);
    let floor = 21_000 + 10 * tokens;
    let standard = 21_000 + 4 * zeros + 16 * (input.len() as u64 - zeros) + 6;
    assert!(
        floor > standard,
        "the case must be one where the floor binds"
    );

    let before = t.balance(address(&keys[1])).await;
    let tx = signed_1559(
        eip1559(1612, 0, Some(contract), U256::ZERO, input.into()),
        &keys[1],
    );
    assert!(t.send_raw(&tx).await.get("result").is_some());
    let block = t.mine();
    assert!(!block.receipts[0].status(), "the call reverts");
    assert_eq!(block.gas_used_by(0), floor, "gasUsed is the calldata floor");
    let price = block.txs[0]
        .tx
        .effective_gas_price(block.header.base_fee_per_gas);
    let after = t.balance(address(&keys[1])).await;
    assert_eq!(before - after, U256::from(floor) * U256::from(price));
    assert_eq!(
        t.chain.total_balance(),
        U256::from(10u64).pow(U256::from(27))
    );
}

/// A sender's acknowledged run of transactions must come back whole after a restart. The store
/// keeps pooled transactions by hash; re-admitted in that order most of a long run looked
/// gapped, and past the gapped quota (64) acknowledged transactions were dropped.
#[tokio::test]
async fn a_long_run_of_pooled_transactions_survives_a_restart() {
    let t = TestChain::new();
    let keys = keys();
    let sender = address(&keys[0]);
    for nonce in 0..100 {
        let raw = transfer(&keys[0], nonce, address(&keys[1]), 1);
        assert!(
            t.send_raw(&raw).await.get("result").is_some(),
            "nonce {nonce}"
        );
    }
    let count = t
        .ok(
            "eth_getTransactionCount",
            serde_json::json!([sender, "pending"]),
        )
        .await;
    assert_eq!(count, serde_json::json!("0x64"));
    let TestChain { chain, rpc, dir } = t;
    drop(rpc);
    drop(chain);
    let chain =
        openledger_chain::Chain::open_with(dir.path(), Genesis::dev(), true, PoolLimits::default())
            .unwrap();
    let t = TestChain::from_parts(chain, dir);
    let count = t
        .ok(
            "eth_getTransactionCount",
            serde_json::json!([sender, "pending"]),
        )
        .await;
    assert_eq!(
        count,
        serde_json::json!("0x64"),
        "every pooled transaction is back"
    );
}
