//! The mempool: per-sender nonce queues, ordered across senders by the tip they pay, and
//! bounded so that no sender, and no crowd of senders, can exhaust the node's memory or stall
//! block production.
//!
//! - A transaction whose nonce is ahead of its sender's next nonce waits (is *queued*) until the
//!   gap closes, for at most [`PoolLimits::queued_lifetime`].
//! - Replacing a transaction at the same nonce needs both fee caps raised by at least
//!   [`REPLACEMENT_BUMP_PERCENT`], as in geth, so a replacement cannot be used to spam the pool.
//! - A sender's pooled transactions must be affordable *together*: admission checks their
//!   summed worst-case cost against the balance, and every block re-checks the senders it
//!   touched, so a sender cannot park transactions it can no longer pay for.
//! - The pool is bounded in count and in bytes; when full, a newcomer that pays a higher tip
//!   evicts the cheapest transactions (with their sender's later nonces).
//!
//! [`best`] hands a block's transactions out one at a time, so a transaction that fails at
//! block building is skipped and the block goes on filling.

mod best;

pub use best::BestTxs;

use crate::block::BlockTx;
use alloy_consensus::Transaction;
use alloy_primitives::{
    map::{HashMap, HashSet},
    Address, B256, U256,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

/// How much a replacement must raise both fee caps, in percent.
pub const REPLACEMENT_BUMP_PERCENT: u128 = 10;

/// The pool's bounds. Every one is a node flag; see the README's "Limits" table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLimits {
    /// The largest signed transaction accepted, in bytes (geth: 128 KiB).
    pub max_tx_bytes: usize,
    /// The most transactions one sender may have pooled; also how far ahead of its account
    /// nonce a transaction may be.
    pub account_slots: usize,
    /// The most transactions one sender may have waiting behind a nonce gap: they can never
    /// run (nor pay) until the gap closes, so they are few, and evicted first.
    pub queued_per_sender: usize,
    /// The most transactions the pool holds.
    pub max_txs: usize,
    /// The most bytes of signed transactions the pool holds.
    pub max_bytes: usize,
    /// How long a transaction may wait behind a nonce gap before it is dropped.
    pub queued_lifetime: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_tx_bytes: 128 * 1024,
            account_slots: 4096,
            queued_per_sender: 64,
            max_txs: 65_536,
            max_bytes: 64 * 1024 * 1024,
            queued_lifetime: Duration::from_secs(3 * 3600),
        }
    }
}

/// A transaction in the pool.
#[derive(Debug)]
pub struct PoolTx {
    pub tx: BlockTx,
    pub hash: B256,
    /// The EIP-2718 bytes as submitted (what the store persists).
    pub raw: Vec<u8>,
    /// When it entered the pool (or the node restarted with it).
    pub arrived: Instant,
}

impl PoolTx {
    fn nonce(&self) -> u64 {
        self.tx.tx.nonce()
    }
    fn gas_limit(&self) -> u64 {
        self.tx.tx.gas_limit()
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
    /// The tip it offers at best: what eviction compares.
    fn price(&self) -> u128 {
        self.max_priority().min(self.max_fee())
    }
    fn size(&self) -> usize {
        self.raw.len()
    }
    /// What the block producer earns per gas at this base fee (None: not includable).
    pub fn tip_at(&self, base_fee: u64) -> Option<u128> {
        self.tx.tx.effective_tip_per_gas(base_fee)
    }
    /// The most this transaction can cost its sender.
    pub fn max_cost(&self) -> U256 {
        U256::from(self.gas_limit()) * U256::from(self.max_fee()) + self.tx.tx.value()
    }
}

/// Why the pool refused a transaction; the texts are those Ethereum clients expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("already known")]
    AlreadyKnown,
    #[error("oversized data: transaction size {size}, limit {limit}")]
    Oversized { size: usize, limit: usize },
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow { expected: u64, got: u64 },
    #[error("nonce too high: next nonce {expected}, tx nonce {got} (at most {limit} ahead)")]
    NonceTooHigh {
        expected: u64,
        got: u64,
        limit: usize,
    },
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    #[error(
        "insufficient funds for gas * price + value: balance {balance}, cost of this and the \
         sender's other pooled transactions {cost}"
    )]
    InsufficientFunds { balance: U256, cost: U256 },
    #[error("txpool is full for this account: at most {limit} pooled transactions per sender")]
    AccountFull { limit: usize },
    #[error(
        "too many transactions waiting behind a nonce gap: at most {limit} per sender; send the \
         missing nonces first"
    )]
    QueuedFull { limit: usize },
    #[error(
        "txpool is full: a transaction gets in only by paying a higher priority fee than the \
         cheapest pooled one"
    )]
    PoolFull,
}

/// One sender's pooled transactions and their summed worst-case cost.
#[derive(Debug, Default)]
struct SenderQueue {
    txs: BTreeMap<u64, Arc<PoolTx>>,
    cost: U256,
    /// The account's nonce as last seen (at admission or after a block that touched it).
    next: u64,
    /// `run_end()`, kept up to date so that admission does not walk long queues.
    end: u64,
}

impl SenderQueue {
    /// The end of the runnable run for an account whose nonce is `next`: the cached one when
    /// `next` is the nonce last seen.
    fn end_for(&self, next: u64) -> u64 {
        if next == self.next {
            self.end
        } else {
            self.walk_from(next)
        }
    }

    /// Records the account's nonce and brings the cached run end up to date.
    fn refresh(&mut self, next: u64) {
        if next != self.next || self.end < next {
            self.next = next;
            self.end = next;
        }
        self.end = self.walk_from(self.end);
    }

    /// The first nonce past the run that can execute: what lies beyond waits behind a gap.
    fn run_end(&self) -> u64 {
        self.walk_from(self.next)
    }

    /// The first nonce from `next` on that the queue does not hold.
    fn walk_from(&self, mut next: u64) -> u64 {
        while self.txs.contains_key(&next) {
            next += 1;
        }
        next
    }
}

/// What an eviction takes: one transaction, or a sender's transactions from a nonce on.
#[derive(Debug, Clone, Copy)]
enum Evict {
    One(Address, u64),
    From(Address, u64),
}

/// What an admission changed besides adding the transaction.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The transaction at the same nonce that this one replaced.
    pub replaced: Option<B256>,
    /// Cheaper transactions evicted to make room.
    pub evicted: Vec<B256>,
}

/// Pending transactions by sender and nonce.
#[derive(Debug)]
pub struct Mempool {
    limits: PoolLimits,
    by_hash: HashMap<B256, Arc<PoolTx>>,
    by_sender: HashMap<Address, SenderQueue>,
    /// Every transaction by price, cheapest first: the eviction order.
    by_price: BTreeSet<(u128, B256)>,
    bytes: usize,
}

impl Mempool {
    /// An empty pool with these bounds.
    pub fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            by_hash: HashMap::default(),
            by_sender: HashMap::default(),
            by_price: BTreeSet::new(),
            bytes: 0,
        }
    }

    /// The pool's bounds.
    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Number of transactions held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Bytes of signed transactions held.
    pub fn bytes(&self) -> usize {
        self.bytes
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
        self.by_sender
            .get(sender)
            .map_or(account_nonce, |queue| queue.end_for(account_nonce))
    }

    /// Admits a transaction checked against its sender's account.
    pub fn insert(
        &mut self,
        tx: PoolTx,
        account_nonce: u64,
        balance: U256,
    ) -> Result<Admitted, PoolError> {
        let limits = &self.limits;
        if self.by_hash.contains_key(&tx.hash) {
            return Err(PoolError::AlreadyKnown);
        }
        if tx.size() > limits.max_tx_bytes {
            return Err(PoolError::Oversized {
                size: tx.size(),
                limit: limits.max_tx_bytes,
            });
        }
        let nonce = tx.nonce();
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow {
                expected: account_nonce,
                got: nonce,
            });
        }
        if nonce - account_nonce >= limits.account_slots as u64 {
            return Err(PoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
                limit: limits.account_slots,
            });
        }
        let queue = self.by_sender.get(&tx.tx.sender);
        let existing = queue.and_then(|q| q.txs.get(&nonce)).cloned();
        let queued = queue.map_or(0, |q| q.txs.len());
        if let Some(old) = &existing {
            let bumped = |old: u128| old + old * REPLACEMENT_BUMP_PERCENT / 100;
            if tx.max_fee() < bumped(old.max_fee())
                || tx.max_priority() < bumped(old.max_priority())
            {
                return Err(PoolError::ReplacementUnderpriced);
            }
        } else if queued >= limits.account_slots {
            return Err(PoolError::AccountFull {
                limit: limits.account_slots,
            });
        }
        let end = queue.map_or(account_nonce, |q| q.end_for(account_nonce));
        let gapped = nonce > end;
        if gapped && existing.is_none() {
            let waiting = queue.map_or(0, |q| q.txs.range(end..).count());
            if waiting >= limits.queued_per_sender {
                return Err(PoolError::QueuedFull {
                    limit: limits.queued_per_sender,
                });
            }
        }
        let queued_cost = queue.map_or(U256::ZERO, |q| q.cost)
            - existing.as_ref().map_or(U256::ZERO, |old| old.max_cost());
        let cost = queued_cost.saturating_add(tx.max_cost());
        if cost > balance {
            return Err(PoolError::InsufficientFunds { balance, cost });
        }
        let (count, bytes) = match &existing {
            Some(old) => (self.len(), self.bytes - old.size() + tx.size()),
            None => (self.len() + 1, self.bytes + tx.size()),
        };
        let evict = self.plan_eviction(&tx, gapped, count, bytes)?;
        let mut admitted = Admitted::default();
        for action in evict {
            match action {
                Evict::One(sender, nonce) => {
                    admitted.evicted.extend(self.remove_one(&sender, nonce))
                }
                Evict::From(sender, nonce) => {
                    admitted.evicted.extend(self.remove_from(&sender, nonce))
                }
            }
        }
        if let Some(old) = existing {
            self.remove_one(&old.tx.sender, nonce);
            admitted.replaced = Some(old.hash);
        }
        let sender = tx.tx.sender;
        self.add(Arc::new(tx));
        if let Some(queue) = self.by_sender.get_mut(&sender) {
            queue.refresh(account_nonce);
        }
        Ok(admitted)
    }

    /// Which transactions to evict so that the pool, holding `count` transactions of `bytes`
    /// bytes once `new` is in, fits its bounds. First the transactions waiting behind a nonce
    /// gap, cheapest first: they may never run, so a newcomer that can run evicts them whatever
    /// they bid (a waiting newcomer only cheaper ones). Then, for a newcomer that can run, the
    /// cheapest of the rest, each with its sender's later nonces (they could not run without
    /// it). Refuses when that would evict something at least as well paid as `new`, or one of
    /// `new`'s own sender's transactions.
    fn plan_eviction(
        &self,
        new: &PoolTx,
        new_gapped: bool,
        mut count: usize,
        mut bytes: usize,
    ) -> Result<Vec<Evict>, PoolError> {
        let over = |count: usize, bytes: usize| {
            count > self.limits.max_txs || bytes > self.limits.max_bytes
        };
        if !over(count, bytes) {
            return Ok(Vec::new());
        }
        let mut plan = Vec::new();
        let mut gone: HashSet<B256> = HashSet::default();
        let mut waiting: Vec<&Arc<PoolTx>> = Vec::new();
        for queue in self.by_sender.values() {
            waiting.extend(queue.txs.range(queue.end..).map(|(_, tx)| tx));
        }
        waiting.sort_by_key(|tx| (tx.price(), tx.hash));
        for victim in waiting {
            let sender = victim.tx.sender;
            if sender == new.tx.sender || (new_gapped && victim.price() >= new.price()) {
                continue;
            }
            plan.push(Evict::One(sender, victim.nonce()));
            gone.insert(victim.hash);
            count -= 1;
            bytes -= victim.size();
            if !over(count, bytes) {
                return Ok(plan);
            }
        }
        if new_gapped {
            return Err(PoolError::PoolFull);
        }
        let mut from: HashMap<Address, u64> = HashMap::default();
        for (price, hash) in &self.by_price {
            if gone.contains(hash) {
                continue;
            }
            let victim = &self.by_hash[hash];
            let sender = victim.tx.sender;
            if *price >= new.price() || sender == new.tx.sender {
                return Err(PoolError::PoolFull);
            }
            let nonce = victim.nonce();
            let upto = match from.get(&sender) {
                Some(&already) if already <= nonce => continue,
                Some(&already) => already,
                None => u64::MAX,
            };
            from.insert(sender, nonce);
            let queue = &self.by_sender[&sender];
            for tx in queue.txs.range(nonce..upto).map(|(_, t)| t) {
                if gone.insert(tx.hash) {
                    count -= 1;
                    bytes -= tx.size();
                }
            }
            if !over(count, bytes) {
                plan.extend(
                    from.into_iter()
                        .map(|(sender, nonce)| Evict::From(sender, nonce)),
                );
                return Ok(plan);
            }
        }
        Err(PoolError::PoolFull)
    }

    fn add(&mut self, tx: Arc<PoolTx>) {
        self.bytes += tx.size();
        self.by_price.insert((tx.price(), tx.hash));
        self.by_hash.insert(tx.hash, tx.clone());
        let queue = self.by_sender.entry(tx.tx.sender).or_default();
        queue.cost = queue.cost.saturating_add(tx.max_cost());
        queue.txs.insert(tx.nonce(), tx);
    }

    fn unindex(&mut self, tx: &PoolTx) {
        self.bytes -= tx.size();
        self.by_price.remove(&(tx.price(), tx.hash));
        self.by_hash.remove(&tx.hash);
    }

    /// Removes one transaction; returns its hash.
    fn remove_one(&mut self, sender: &Address, nonce: u64) -> Option<B256> {
        let queue = self.by_sender.get_mut(sender)?;
        let tx = queue.txs.remove(&nonce)?;
        queue.cost -= tx.max_cost();
        if nonce >= queue.next && nonce < queue.end {
            queue.end = nonce;
        }
        if queue.txs.is_empty() {
            self.by_sender.remove(sender);
        }
        self.unindex(&tx);
        Some(tx.hash)
    }

    /// Drops a transaction that could not be made durable, with its sender's later nonces
    /// (they could not run without it); returns their hashes.
    pub fn withdraw(&mut self, hash: &B256) -> Vec<B256> {
        match self.by_hash.get(hash).cloned() {
            Some(tx) => self.remove_from(&tx.tx.sender, tx.nonce()),
            None => Vec::new(),
        }
    }

    /// Removes a sender's transactions from `nonce` on; returns their hashes.
    fn remove_from(&mut self, sender: &Address, nonce: u64) -> Vec<B256> {
        self.take(sender, |txs| txs.split_off(&nonce))
    }

    /// Removes a sender's transactions below `nonce` (mined or never minable); returns their
    /// hashes.
    fn remove_below(&mut self, sender: &Address, nonce: u64) -> Vec<B256> {
        self.take(sender, |txs| {
            let keep = txs.split_off(&nonce);
            std::mem::replace(txs, keep)
        })
    }

    /// Removes the transactions `split` takes out of a sender's queue, keeping every index
    /// in step; returns their hashes.
    fn take(
        &mut self,
        sender: &Address,
        split: impl FnOnce(&mut BTreeMap<u64, Arc<PoolTx>>) -> BTreeMap<u64, Arc<PoolTx>>,
    ) -> Vec<B256> {
        let Some(queue) = self.by_sender.get_mut(sender) else {
            return Vec::new();
        };
        let removed = split(&mut queue.txs);
        for tx in removed.values() {
            queue.cost -= tx.max_cost();
        }
        queue.end = queue.run_end();
        if queue.txs.is_empty() {
            self.by_sender.remove(sender);
        }
        removed
            .into_values()
            .map(|tx| {
                self.unindex(&tx);
                tx.hash
            })
            .collect()
    }

    /// The transactions a block should try, best first.
    pub fn best(&self, base_fee: u64, account_nonce: impl Fn(&Address) -> u64) -> BestTxs<'_> {
        BestTxs::new(self, base_fee, account_nonce)
    }

    /// After a block: removes the `mined` transactions, then re-checks every sender in
    /// `touched` (whose nonce or balance the block may have changed) against its account as
    /// `account` gives it (nonce, balance): transactions below the nonce can never run, and
    /// from the first transaction that the balance cannot cover, together with the ones before
    /// it, the sender's queue is dropped. Returns the hashes dropped without being mined.
    pub fn prune(
        &mut self,
        mined: &[B256],
        touched: impl IntoIterator<Item = Address>,
        account: impl Fn(&Address) -> (u64, U256),
    ) -> Vec<B256> {
        let mut senders: HashSet<Address> = touched
            .into_iter()
            .filter(|a| self.by_sender.contains_key(a))
            .collect();
        for hash in mined {
            if let Some(tx) = self.by_hash.get(hash).cloned() {
                self.remove_one(&tx.tx.sender, tx.nonce());
                senders.insert(tx.tx.sender);
            }
        }
        let mut dropped = Vec::new();
        for sender in senders {
            let (nonce, balance) = account(&sender);
            if let Some(queue) = self.by_sender.get_mut(&sender) {
                queue.refresh(nonce);
            }
            dropped.extend(self.remove_below(&sender, nonce));
            let Some(queue) = self.by_sender.get(&sender) else {
                continue;
            };
            let mut cost = U256::ZERO;
            let unaffordable = queue.txs.values().find_map(|tx| {
                cost = cost.saturating_add(tx.max_cost());
                (cost > balance).then_some(tx.nonce())
            });
            if let Some(from) = unaffordable {
                dropped.extend(self.remove_from(&sender, from));
            }
        }
        dropped
    }

    /// Drops transactions that have waited behind a nonce gap for longer than the queued
    /// lifetime; returns their hashes.
    pub fn sweep_queued(
        &mut self,
        now: Instant,
        account_nonce: impl Fn(&Address) -> u64,
    ) -> Vec<B256> {
        let lifetime = self.limits.queued_lifetime;
        let mut expired = Vec::new();
        for (sender, queue) in &self.by_sender {
            let mut next = account_nonce(sender);
            for (nonce, tx) in &queue.txs {
                if *nonce == next {
                    next += 1;
                } else if now.saturating_duration_since(tx.arrived) >= lifetime {
                    expired.push((*sender, *nonce));
                }
            }
        }
        expired
            .into_iter()
            .filter_map(|(sender, nonce)| self.remove_one(&sender, nonce))
            .collect()
    }
}

#[cfg(test)]
mod tests;
