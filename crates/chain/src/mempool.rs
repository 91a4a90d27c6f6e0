//! The mempool: per-sender nonce queues, ordered across senders by the tip they pay.
//!
//! A transaction whose nonce is ahead of its sender's next nonce waits in the queue until the
//! gap closes. Replacing a transaction at the same nonce needs both fee caps raised by at least
//! [`REPLACEMENT_BUMP_PERCENT`], as in geth, so a replacement cannot be used to spam the pool.

use crate::block::BlockTx;
use alloy_consensus::Transaction;
use alloy_primitives::{map::HashMap, Address, B256, U256};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    sync::Arc,
};

/// How much a replacement must raise both fee caps, in percent.
pub const REPLACEMENT_BUMP_PERCENT: u128 = 10;
/// How far ahead of the account nonce a transaction may be: enough for a sender to queue
/// several full blocks of its own transactions; `MAX_POOL_SIZE` bounds the pool as a whole.
pub const MAX_NONCE_GAP: u64 = 8192;
/// The most transactions the pool holds.
pub const MAX_POOL_SIZE: usize = 200_000;

/// A transaction in the pool.
#[derive(Debug)]
pub struct PoolTx {
    pub tx: BlockTx,
    pub hash: B256,
    /// The EIP-2718 bytes as submitted (what the store persists).
    pub raw: Vec<u8>,
}

impl PoolTx {
    fn nonce(&self) -> u64 {
        self.tx.tx.nonce()
    }
    fn max_fee(&self) -> u128 {
        self.tx.tx.max_fee_per_gas()
    }
    fn max_priority(&self) -> u128 {
        self.tx
            .tx
            .max_priority_fee_per_gas()
            .unwrap_or(self.max_fee())
    }
    /// What the block producer earns per gas at this base fee (None: not includable).
    pub fn tip_at(&self, base_fee: u64) -> Option<u128> {
        self.tx.tx.effective_tip_per_gas(base_fee)
    }
    /// The most this transaction can cost its sender.
    pub fn max_cost(&self) -> U256 {
        U256::from(self.tx.tx.gas_limit()) * U256::from(self.max_fee()) + self.tx.tx.value()
    }
}

/// Why the pool refused a transaction; the texts are those Ethereum clients expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("already known")]
    AlreadyKnown,
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow { expected: u64, got: u64 },
    #[error(
        "nonce too high: next nonce {expected}, tx nonce {got} (at most {MAX_NONCE_GAP} ahead)"
    )]
    NonceTooHigh { expected: u64, got: u64 },
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    #[error("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}")]
    InsufficientFunds { balance: U256, cost: U256 },
    #[error("txpool is full")]
    PoolFull,
}

/// Pending transactions by sender and nonce.
#[derive(Debug, Default)]
pub struct Mempool {
    by_hash: HashMap<B256, Arc<PoolTx>>,
    by_sender: HashMap<Address, BTreeMap<u64, Arc<PoolTx>>>,
}

impl Mempool {
    /// Number of transactions held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// A pooled transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<Arc<PoolTx>> {
        self.by_hash.get(hash).cloned()
    }

    /// The next nonce of `sender` counting its queued transactions (the `pending` nonce).
    pub fn pending_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        let mut next = account_nonce;
        if let Some(queue) = self.by_sender.get(sender) {
            for nonce in queue.range(account_nonce..).map(|(n, _)| *n) {
                if nonce != next {
                    break;
                }
                next += 1;
            }
        }
        next
    }

    /// Admits a transaction checked against its sender's account; returns the transaction it
    /// replaced, if any.
    pub fn insert(
        &mut self,
        tx: PoolTx,
        account_nonce: u64,
        balance: U256,
    ) -> Result<Option<Arc<PoolTx>>, PoolError> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(PoolError::AlreadyKnown);
        }
        let nonce = tx.nonce();
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow {
                expected: account_nonce,
                got: nonce,
            });
        }
        if nonce - account_nonce >= MAX_NONCE_GAP {
            return Err(PoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
            });
        }
        let cost = tx.max_cost();
        if cost > balance {
            return Err(PoolError::InsufficientFunds { balance, cost });
        }
        let existing = self
            .by_sender
            .get(&tx.tx.sender)
            .and_then(|q| q.get(&nonce))
            .cloned();
        if let Some(old) = &existing {
            let bumped = |old: u128| old + old * REPLACEMENT_BUMP_PERCENT / 100;
            if tx.max_fee() < bumped(old.max_fee())
                || tx.max_priority() < bumped(old.max_priority())
            {
                return Err(PoolError::ReplacementUnderpriced);
            }
        } else if self.by_hash.len() >= MAX_POOL_SIZE {
            return Err(PoolError::PoolFull);
        }
        if let Some(old) = &existing {
            self.by_hash.remove(&old.hash);
        }
        let tx = Arc::new(tx);
        self.by_hash.insert(tx.hash, tx.clone());
        self.by_sender
            .entry(tx.tx.sender)
            .or_default()
            .insert(nonce, tx);
        Ok(existing)
    }

    /// Picks transactions for a block: for each sender the run of consecutive nonces from its
    /// account nonce, interleaved across senders by highest tip first, within `gas_limit`.
    pub fn select(
        &self,
        base_fee: u64,
        gas_limit: u64,
        account_nonce: impl Fn(&Address) -> u64,
    ) -> Vec<Arc<PoolTx>> {
        // Heap of each sender's next executable transaction, best tip first; ties go to the
        // transaction that arrived under the smaller hash so selection is deterministic.
        let mut heap = BinaryHeap::new();
        for (sender, queue) in &self.by_sender {
            let nonce = account_nonce(sender);
            if let Some(tx) = queue.get(&nonce) {
                if let Some(tip) = tx.tip_at(base_fee) {
                    heap.push((tip, Reverse(tx.hash), *sender, nonce));
                }
            }
        }
        let mut picked = Vec::new();
        let mut gas_left = gas_limit;
        while let Some((_, _, sender, nonce)) = heap.pop() {
            let queue = &self.by_sender[&sender];
            let tx = queue[&nonce].clone();
            let gas = tx.tx.tx.gas_limit();
            if gas > gas_left {
                continue;
            }
            gas_left -= gas;
            if let Some(next) = queue.get(&(nonce + 1)) {
                if let Some(tip) = next.tip_at(base_fee) {
                    heap.push((tip, Reverse(next.hash), sender, nonce + 1));
                }
            }
            picked.push(tx);
            if gas_left < 21_000 {
                break;
            }
        }
        picked
    }

    /// Removes transactions that are mined or can never be (nonce below the account's);
    /// returns the hashes dropped without being mined.
    pub fn prune(&mut self, mined: &[B256], account_nonce: impl Fn(&Address) -> u64) -> Vec<B256> {
        let mut touched = Vec::new();
        for hash in mined {
            if let Some(tx) = self.by_hash.remove(hash) {
                touched.push(tx.tx.sender);
                if let Some(queue) = self.by_sender.get_mut(&tx.tx.sender) {
                    queue.remove(&tx.nonce());
                }
            }
        }
        let mut stale = Vec::new();
        touched.sort_unstable();
        touched.dedup();
        for sender in touched {
            let nonce = account_nonce(&sender);
            if let Some(queue) = self.by_sender.get_mut(&sender) {
                let keep = queue.split_off(&nonce);
                for tx in std::mem::replace(queue, keep).into_values() {
                    self.by_hash.remove(&tx.hash);
                    stale.push(tx.hash);
                }
                if queue.is_empty() {
                    self.by_sender.remove(&sender);
                }
            }
        }
        stale
    }
}
