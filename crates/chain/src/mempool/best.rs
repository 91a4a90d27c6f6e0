//! Choosing a block's transactions: each sender's consecutive nonces from its account nonce,
//! interleaved across senders by the tip they pay, handed out one at a time so that the block
//! builder can skip a transaction that fails and go on filling the block.

use super::{Mempool, PoolTx};
use alloy_primitives::{Address, B256};
use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

/// A candidate: tip, then the smaller hash first so that selection is deterministic.
type Candidate = (u128, Reverse<B256>, Address, u64);

/// The pool's transactions in the order a block should try them.
pub struct BestTxs<'a> {
    pool: &'a Mempool,
    base_fee: u64,
    heap: BinaryHeap<Candidate>,
}

impl<'a> BestTxs<'a> {
    pub(super) fn new(
        pool: &'a Mempool,
        base_fee: u64,
        account_nonce: impl Fn(&Address) -> u64,
    ) -> Self {
        let mut best = Self {
            pool,
            base_fee,
            heap: BinaryHeap::with_capacity(pool.by_sender.len()),
        };
        for sender in pool.by_sender.keys() {
            best.push(sender, account_nonce(sender));
        }
        best
    }

    fn push(&mut self, sender: &Address, nonce: u64) {
        let Some(tx) = self
            .pool
            .by_sender
            .get(sender)
            .and_then(|q| q.txs.get(&nonce))
        else {
            return;
        };
        if let Some(tip) = tx.tip_at(self.base_fee) {
            self.heap.push((tip, Reverse(tx.hash), *sender, nonce));
        }
    }

    /// The best remaining transaction whose gas limit fits in `gas_left`. A transaction that
    /// does not fit takes its sender out of this block (its later nonces cannot run before it).
    pub fn next(&mut self, gas_left: u64) -> Option<Arc<PoolTx>> {
        while let Some((_, _, sender, nonce)) = self.heap.pop() {
            let tx = &self.pool.by_sender[&sender].txs[&nonce];
            if tx.gas_limit() <= gas_left {
                return Some(tx.clone());
            }
        }
        None
    }

    /// Records that `tx` went into the block, so its sender's next nonce becomes a candidate.
    /// A transaction that failed is simply not reported: its sender is done for this block.
    pub fn included(&mut self, tx: &PoolTx) {
        self.push(&tx.tx.sender, tx.nonce() + 1);
    }
}
