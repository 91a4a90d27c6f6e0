use super::*;
use crate::{
    devkeys::{dev_accounts, DevKey},
    exec::CallRequest,
    submit,
};
use alloy_primitives::Bytes;

const GWEI: u128 = 1_000_000_000;
const RICH: U256 = U256::MAX;

/// A signed transaction from `key` with `calldata` bytes of input.
fn tx(key: &DevKey, nonce: u64, gas: u64, tip_gwei: u128, calldata: usize) -> PoolTx {
    let req = CallRequest {
        to: Some(Address::repeat_byte(0x42)),
        input: Bytes::from(vec![1u8; calldata]),
        ..Default::default()
    };
    let max_fee = 100 * GWEI;
    let raw = submit::sign_dev(key, &req, 1612, nonce, gas, max_fee, tip_gwei * GWEI);
    let tx = submit::decode(&raw, 1612).unwrap();
    PoolTx {
        hash: tx.hash(),
        tx,
        raw,
        arrived: Instant::now(),
    }
}

fn pool(limits: PoolLimits) -> Mempool {
    Mempool::new(limits)
}

#[test]
fn a_failed_transaction_is_skipped_and_the_block_goes_on_filling() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits::default());
    pool.insert(tx(&keys[0], 0, 300_000_000, 50, 0), 0, RICH)
        .unwrap();
    pool.insert(tx(&keys[0], 1, 21_000, 50, 0), 0, RICH)
        .unwrap();
    pool.insert(tx(&keys[1], 0, 21_000, 1, 0), 0, RICH).unwrap();
    let mut best = pool.best(GWEI as u64, |_| 0);
    let first = best.next(300_000_000).unwrap();
    assert_eq!(first.tx.sender, keys[0].address, "the best tip comes first");
    // It failed (not reported as included): the other sender's transaction still comes, and
    // the failed sender's next nonce does not.
    let second = best.next(300_000_000).unwrap();
    assert_eq!(second.tx.sender, keys[1].address);
    best.included(&second);
    assert!(best.next(300_000_000).is_none());
}

#[test]
fn a_transaction_too_big_for_the_gas_left_gives_way_to_smaller_ones() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits::default());
    pool.insert(tx(&keys[0], 0, 200_000, 50, 0), 0, RICH)
        .unwrap();
    pool.insert(tx(&keys[1], 0, 21_000, 1, 0), 0, RICH).unwrap();
    let mut best = pool.best(GWEI as u64, |_| 0);
    assert_eq!(best.next(100_000).unwrap().tx.sender, keys[1].address);
}

#[test]
fn admission_counts_the_senders_other_pooled_transactions() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits::default());
    let one = tx(&keys[0], 0, 21_000, 1, 0);
    let balance = one.max_cost() + one.max_cost() / U256::from(2);
    pool.insert(one, 0, balance).unwrap();
    let err = pool
        .insert(tx(&keys[0], 1, 21_000, 1, 0), 0, balance)
        .unwrap_err();
    assert!(matches!(err, PoolError::InsufficientFunds { .. }), "{err}");
    assert_eq!(pool.len(), 1);
}

#[test]
fn after_a_block_a_sender_that_can_no_longer_pay_loses_the_unaffordable_tail() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits::default());
    for nonce in 0..4 {
        pool.insert(tx(&keys[0], nonce, 21_000, 1, 0), 0, RICH)
            .unwrap();
    }
    let each = pool
        .get(&pool.by_sender[&keys[0].address].txs[&1].hash)
        .unwrap()
        .max_cost();
    // Nonce 0 was mined and the balance now covers only one more transaction.
    let mined = [pool.by_sender[&keys[0].address].txs[&0].hash];
    let dropped = pool.prune(&mined, [keys[0].address], |_| (1, each));
    assert_eq!(dropped.len(), 2, "nonces 2 and 3 dropped");
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.by_sender[&keys[0].address].cost, each);
    assert_eq!(pool.pending_nonce(&keys[0].address, 1), 2);
}

#[test]
fn the_pool_is_bounded_in_bytes_and_evicts_the_cheapest() {
    let keys = dev_accounts();
    let big = 30_000;
    let mut pool = pool(PoolLimits {
        max_bytes: 100_000,
        ..PoolLimits::default()
    });
    // Three 30 kB transactions fit; the cheapest is sender 0's, tip 1.
    pool.insert(tx(&keys[0], 0, 1_000_000, 1, big), 0, RICH)
        .unwrap();
    pool.insert(tx(&keys[0], 1, 1_000_000, 9, big), 0, RICH)
        .unwrap();
    pool.insert(tx(&keys[1], 0, 1_000_000, 5, big), 0, RICH)
        .unwrap();
    let before = pool.bytes();
    // A fourth that pays no more than the cheapest is refused and changes nothing.
    let err = pool
        .insert(tx(&keys[2], 0, 1_000_000, 1, big), 0, RICH)
        .unwrap_err();
    assert_eq!(err, PoolError::PoolFull);
    assert_eq!((pool.len(), pool.bytes()), (3, before));
    // One that pays more evicts the cheapest, and sender 0's later nonce with it.
    let admitted = pool
        .insert(tx(&keys[2], 0, 1_000_000, 2, big), 0, RICH)
        .unwrap();
    assert_eq!(admitted.evicted.len(), 2);
    assert_eq!(pool.len(), 2);
    assert!(pool.bytes() <= 100_000);
    assert!(!pool.by_sender.contains_key(&keys[0].address));
}

#[test]
fn the_pool_is_bounded_in_count_and_per_sender() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits {
        max_txs: 3,
        account_slots: 2,
        ..PoolLimits::default()
    });
    pool.insert(tx(&keys[0], 0, 21_000, 3, 0), 0, RICH).unwrap();
    pool.insert(tx(&keys[0], 1, 21_000, 3, 0), 0, RICH).unwrap();
    let err = pool
        .insert(tx(&keys[0], 2, 21_000, 3, 0), 0, RICH)
        .unwrap_err();
    assert!(matches!(err, PoolError::NonceTooHigh { .. }), "{err}");
    pool.insert(tx(&keys[1], 0, 21_000, 2, 0), 0, RICH).unwrap();
    let err = pool
        .insert(tx(&keys[2], 0, 21_000, 2, 0), 0, RICH)
        .unwrap_err();
    assert_eq!(err, PoolError::PoolFull);
    pool.insert(tx(&keys[2], 0, 21_000, 4, 0), 0, RICH).unwrap();
    assert_eq!(pool.len(), 3);
    assert!(pool.by_sender.contains_key(&keys[2].address));
    assert!(!pool.by_sender.contains_key(&keys[1].address));
}

#[test]
fn an_oversized_transaction_is_refused() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits::default());
    let err = pool
        .insert(tx(&keys[0], 0, 5_000_000, 1, 130 * 1024), 0, RICH)
        .unwrap_err();
    assert!(
        matches!(err, PoolError::Oversized { limit: 131072, .. }),
        "{err}"
    );
    assert!(pool.is_empty());
}

#[test]
fn queued_transactions_expire_but_executable_ones_stay() {
    let keys = dev_accounts();
    let mut pool = pool(PoolLimits {
        queued_lifetime: Duration::from_secs(60),
        ..PoolLimits::default()
    });
    pool.insert(tx(&keys[0], 0, 21_000, 1, 0), 0, RICH).unwrap();
    pool.insert(tx(&keys[0], 2, 21_000, 1, 0), 0, RICH).unwrap();
    pool.insert(tx(&keys[1], 5, 21_000, 1, 0), 0, RICH).unwrap();
    assert!(pool.sweep_queued(Instant::now(), |_| 0).is_empty());
    let later = Instant::now() + Duration::from_secs(61);
    assert_eq!(pool.sweep_queued(later, |_| 0).len(), 2);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.pending_nonce(&keys[0].address, 0), 1);
}

/// Transactions behind a nonce gap never run, so they cannot hold the pool: a newcomer that can
/// run evicts them whatever they bid, and one sender may park only a few.
#[test]
fn transactions_behind_a_gap_give_way_to_ones_that_can_run() {
    let keys = dev_accounts();
    let big = 30_000;
    let mut pool = pool(PoolLimits {
        max_bytes: 100_000,
        queued_per_sender: 3,
        ..PoolLimits::default()
    });
    // An attacker parks three large, well-paid transactions behind a gap (nonce 0 missing).
    for nonce in 1..=3 {
        pool.insert(tx(&keys[0], nonce, 1_000_000, 90, big), 0, RICH)
            .unwrap();
    }
    let err = pool
        .insert(tx(&keys[0], 4, 21_000, 90, 0), 0, RICH)
        .unwrap_err();
    assert_eq!(err, PoolError::QueuedFull { limit: 3 });
    // An honest transfer paying the least tip still gets in, evicting one of them.
    let admitted = pool
        .insert(tx(&keys[1], 0, 1_000_000, 1, big), 0, RICH)
        .unwrap();
    assert_eq!(admitted.evicted.len(), 1);
    assert!(pool.bytes() <= 100_000);
    // A parked newcomer may push out a cheaper parked one, never one that can run.
    pool.insert(tx(&keys[2], 7, 1_000_000, 99, big), 0, RICH)
        .unwrap();
    let err = pool
        .insert(tx(&keys[3], 7, 1_000_000, 50, big), 0, RICH)
        .unwrap_err();
    assert_eq!(err, PoolError::PoolFull);
    assert!(pool.by_sender.contains_key(&keys[1].address));
}

/// The cached run end follows every change: admissions in and out of order, removals, and a
/// new account nonce after a block.
#[test]
fn the_runnable_run_is_tracked_through_every_change() {
    let keys = dev_accounts();
    let a = keys[0].address;
    let mut pool = pool(PoolLimits::default());
    let end = |pool: &Mempool| pool.by_sender[&a].end;
    pool.insert(tx(&keys[0], 0, 21_000, 1, 0), 0, RICH).unwrap();
    pool.insert(tx(&keys[0], 2, 21_000, 1, 0), 0, RICH).unwrap();
    assert_eq!(end(&pool), 1);
    pool.insert(tx(&keys[0], 1, 21_000, 1, 0), 0, RICH).unwrap();
    assert_eq!(end(&pool), 3, "the gap closed");
    let hash = pool.by_sender[&a].txs[&1].hash;
    pool.remove_one(&a, 1);
    assert_eq!(end(&pool), 1);
    assert!(pool.get(&hash).is_none());
    // Nonce 0 mined: the account is at 1, and nonce 2 still waits behind the gap at 1.
    let mined = [pool.by_sender[&a].txs[&0].hash];
    pool.prune(&mined, [a], |_| (1, RICH));
    assert_eq!(end(&pool), 1);
    for nonce in 1..4 {
        if nonce != 2 {
            pool.insert(tx(&keys[0], nonce, 21_000, 1, 0), 1, RICH)
                .unwrap();
        }
    }
    assert_eq!(end(&pool), 4);
    assert_eq!(pool.pending_nonce(&a, 1), 4);
}
