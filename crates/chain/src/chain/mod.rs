//! The chain: head state, mempool, block production and the queries RPC serves.
//!
//! Locks, in the order they may be taken: `producing` (one block at a time), `state`, `pool`,
//! `head`. A block is executed and committed to the store while the state's write lock is
//! held, so readers never see state that no durable block holds.

mod query;

pub use query::{AddressPage, QueryError};

use crate::{
    block::{Block, BlockTx},
    devkeys::{dev_accounts, DevKey},
    exec::{self, BlockParams, CallBounds, CallRequest, Executed, Rejected},
    genesis::Genesis,
    mempool::{Admitted, Mempool, PoolError, PoolLimits, PoolTx},
    metrics::Metrics,
    state::{Account, WorldState},
    store::{Store, StoreError},
    submit::{PoolWriter, TxError},
};
use alloy_consensus::{
    constants::EMPTY_OMMER_ROOT_HASH, proofs, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom,
    Transaction, TxEnvelope, TxType,
};
use alloy_eips::{eip1559::BaseFeeParams, eip7685::EMPTY_REQUESTS_HASH};
use alloy_primitives::{keccak256, Address, Bloom, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use parking_lot::{Mutex, RwLock};
use revm::context_interface::result::{ExecutionResult, InvalidTransaction};
use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::sync::{broadcast, Notify};

/// How many recent blocks are kept decoded in memory.
const RECENT_BLOCKS: usize = 256;
/// The least gas any transaction needs: a block with less left is full.
const MIN_TX_GAS: u64 = 21_000;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "data directory holds chain {stored}, but the genesis is for chain {given}; \
         use another --data-dir"
    )]
    ChainMismatch { stored: u64, given: u64 },
    #[error(
        "data directory holds a chain whose genesis state root is {stored}, but the given \
         genesis has {given}; use another --data-dir or the genesis it was created with"
    )]
    GenesisMismatch { stored: B256, given: B256 },
}

/// Why a block could not be produced; the node stops rather than report a block it could not
/// make durable.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("block execution failed: {0}")]
    Execution(String),
}

/// Which block a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    Latest,
    Pending,
    Earliest,
    Number(u64),
    Hash(B256),
}

/// The node's chain.
pub struct Chain {
    pub genesis: Genesis,
    store: Arc<Store>,
    state: RwLock<WorldState>,
    pool: Mutex<Mempool>,
    head: RwLock<Arc<Block>>,
    recent: RwLock<BTreeMap<u64, Arc<Block>>>,
    producing: Mutex<()>,
    writer: PoolWriter,
    /// Woken when a transaction enters the pool (block time 0 produces on it).
    pub tx_arrived: Notify,
    /// Every new block, after it is durable.
    pub blocks: broadcast::Sender<Arc<Block>>,
    pub metrics: Metrics,
    dev_keys: Vec<DevKey>,
    /// Seconds added to the clock for new blocks (dev mode's `evm_increaseTime`); lost on
    /// restart, but block times never go backwards since each is at least its parent's.
    time_offset: std::sync::atomic::AtomicU64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Chain {
    /// Opens the chain in `dir`, creating it from `genesis` on first start; `dev` enables the
    /// dev accounts for `eth_accounts` and `eth_sendTransaction`. The pool has default bounds.
    pub fn open(dir: &Path, genesis: Genesis, dev: bool) -> Result<Arc<Self>, OpenError> {
        Self::open_with(dir, genesis, dev, PoolLimits::default())
    }

    /// [`Chain::open`] with the mempool's bounds given.
    pub fn open_with(
        dir: &Path,
        genesis: Genesis,
        dev: bool,
        pool: PoolLimits,
    ) -> Result<Arc<Self>, OpenError> {
        let store = Arc::new(Store::open(dir)?);
        if let Some(stored) = store.chain_id()? {
            if stored != genesis.chain_id {
                return Err(OpenError::ChainMismatch {
                    stored,
                    given: genesis.chain_id,
                });
            }
        }
        let (state, head) = match store.head()? {
            Some(number) => {
                let given = WorldState::from_genesis(&genesis).state_root();
                if let Some(first) = store.block(0)? {
                    if first.header.state_root != given {
                        return Err(OpenError::GenesisMismatch {
                            stored: first.header.state_root,
                            given,
                        });
                    }
                }
                let head = store.block(number)?.ok_or_else(|| {
                    StoreError::Corrupt(crate::block::CorruptBlock(format!(
                        "head block {number} is missing"
                    )))
                })?;
                let mut state = store.load_state()?;
                let root = state.state_root();
                if root != head.header.state_root {
                    return Err(StoreError::Corrupt(crate::block::CorruptBlock(format!(
                        "state root {root} does not match head block {number}'s {}",
                        head.header.state_root
                    )))
                    .into());
                }
                tracing::info!(number, hash = %head.hash, "resuming chain");
                (state, head)
            }
            None => {
                let mut state = WorldState::from_genesis(&genesis);
                let header = Header {
                    beneficiary: genesis.fee_vault,
                    state_root: state.state_root(),
                    gas_limit: genesis.gas_limit,
                    timestamp: genesis.timestamp,
                    base_fee_per_gas: Some(genesis.base_fee_per_gas),
                    ..empty_header()
                };
                let block = Block {
                    hash: header.hash_slow(),
                    header,
                    txs: vec![],
                    receipts: vec![],
                };
                store.commit_block(&block, &state.take_changes(), genesis.chain_id)?;
                tracing::info!(hash = %block.hash, chain_id = genesis.chain_id, "created genesis");
                (state, block)
            }
        };
        let head = Arc::new(head);
        let mut recent = BTreeMap::new();
        let mut state = state;
        let first = head.header.number.saturating_sub(255);
        for number in first..=head.header.number {
            if let Some(block) = store.block(number)? {
                state.record_block_hash(number, block.hash);
                if head.header.number - number < RECENT_BLOCKS as u64 {
                    recent.insert(number, Arc::new(block));
                }
            }
        }
        let (blocks, _) = broadcast::channel(1024);
        let chain = Arc::new(Self {
            writer: PoolWriter::start(store.clone()),
            store,
            state: RwLock::new(state),
            pool: Mutex::new(Mempool::new(pool)),
            head: RwLock::new(head),
            recent: RwLock::new(recent),
            producing: Mutex::new(()),
            tx_arrived: Notify::new(),
            blocks,
            metrics: Metrics::default(),
            dev_keys: if dev { dev_accounts() } else { Vec::new() },
            time_offset: Default::default(),
            genesis,
        });
        chain.restore_pool()?;
        Ok(chain)
    }

    /// Re-admits the transactions persisted in the mempool; drops those mined or stale.
    fn restore_pool(&self) -> Result<(), StoreError> {
        let mut stale = Vec::new();
        let mut restored = 0usize;
        // The store keeps them by hash; re-admitted in that order, a sender's later nonces
        // would look gapped and could overflow its gapped quota. Sender and nonce order admits
        // each run as it was.
        let mut decoded = Vec::new();
        for (hash, raw) in self.store.pool()? {
            match crate::submit::decode(&raw, self.genesis.chain_id) {
                Ok(tx) => decoded.push((hash, tx, raw)),
                Err(e) => {
                    tracing::debug!(%hash, error = %e, "dropping persisted pool transaction");
                    stale.push(hash);
                }
            }
        }
        decoded.sort_by_key(|(_, tx, _)| (tx.sender, tx.tx.nonce()));
        for (hash, tx, raw) in decoded {
            match self.admit(tx, raw) {
                Ok(admitted) => {
                    restored += 1;
                    stale.extend(admitted.evicted);
                    stale.extend(admitted.replaced);
                }
                Err(e) => {
                    tracing::debug!(%hash, error = %e, "dropping persisted pool transaction");
                    stale.push(hash);
                }
            }
        }
        if !stale.is_empty() {
            self.store.forget_pool(&stale)?;
        }
        if restored > 0 {
            tracing::info!(restored, "restored pending transactions");
        }
        self.metrics.set_pool_size(self.pool.lock().len());
        Ok(())
    }

    /// Checks a decoded transaction against the head state and puts it in the pool.
    fn admit(&self, tx: BlockTx, raw: Vec<u8>) -> Result<Admitted, TxError> {
        crate::submit::check_static(&tx, &self.genesis)?;
        let state = self.state.read();
        let account = state.account(&tx.sender).unwrap_or_else(Account::empty);
        if tx.tx.kind().is_call() || account.code_hash == alloy_trie::KECCAK_EMPTY {
            // EIP-3607: accounts with code cannot send transactions.
        } else {
            return Err(TxError::SenderHasCode);
        }
        let hash = tx.hash();
        let arrived = std::time::Instant::now();
        let mut pool = self.pool.lock();
        let pooled = PoolTx {
            tx,
            hash,
            raw,
            arrived,
        };
        let admitted = pool.insert(pooled, account.nonce, account.balance)?;
        self.metrics.set_pool_size(pool.len());
        Ok(admitted)
    }

    /// Validates and pools a signed transaction and returns once it is durable.
    pub async fn submit_raw(&self, raw: Vec<u8>) -> Result<B256, TxError> {
        let limit = self.pool.lock().limits().max_tx_bytes;
        if raw.len() > limit {
            return Err(PoolError::Oversized {
                size: raw.len(),
                limit,
            }
            .into());
        }
        let tx = crate::submit::decode(&raw, self.genesis.chain_id)?;
        let hash = tx.hash();
        let admitted = self.admit(tx, raw.clone())?;
        let mut forget = admitted.evicted;
        forget.extend(admitted.replaced);
        if let Err(e) = self.writer.persist(hash, raw, forget).await {
            // Not acknowledged, so not kept: the caller was told it failed.
            let mut pool = self.pool.lock();
            pool.withdraw(&hash);
            self.metrics.set_pool_size(pool.len());
            return Err(e);
        }
        self.metrics.txs_accepted.inc();
        self.tx_arrived.notify_one();
        Ok(hash)
    }

    /// Signs with a dev key and submits (`eth_sendTransaction` in `--dev`); a missing gas
    /// limit is estimated within `bounds`.
    pub async fn submit_dev(&self, req: CallRequest, bounds: &CallBounds) -> Result<B256, TxError> {
        let from = req.from.ok_or(TxError::UnknownAccount(Address::ZERO))?;
        let key = self
            .dev_keys
            .iter()
            .find(|k| k.address == from)
            .ok_or(TxError::UnknownAccount(from))?;
        let nonce = match req.nonce {
            Some(n) => n,
            None => self
                .nonce(&from, BlockId::Pending)
                .map_err(|e| TxError::Estimate(e.to_string()))?,
        };
        let gas = match req.gas {
            Some(g) => g,
            None => self
                .estimate_gas(&req, BlockId::Pending, bounds)
                .map_err(|e| TxError::Estimate(e.to_string()))?,
        };
        let base = self.head.read().header.base_fee_per_gas.unwrap_or_default() as u128;
        let tip = req.max_priority_fee_per_gas.unwrap_or(1_000_000_000);
        let max_fee = req
            .max_fee_per_gas
            .or(req.gas_price)
            .unwrap_or(base * 2 + tip);
        let raw =
            crate::submit::sign_dev(key, &req, self.genesis.chain_id, nonce, gas, max_fee, tip);
        self.submit_raw(raw).await
    }

    /// The dev accounts (empty unless `--dev`).
    pub fn dev_addresses(&self) -> Vec<Address> {
        self.dev_keys.iter().map(|k| k.address).collect()
    }

    /// The newest block.
    pub fn head(&self) -> Arc<Block> {
        self.head.read().clone()
    }

    /// The base fee the next block will charge.
    pub fn next_base_fee(&self) -> u64 {
        let head = self.head();
        next_base_fee(&self.genesis, &head.header)
    }

    /// Moves the chain's clock `seconds` ahead (dev mode): the next block is at least that much
    /// after the later of the head's time and the clock as it ran so far (blocks made faster
    /// than one a second run ahead of real time). Returns the total offset from real time.
    pub fn increase_time(&self, seconds: u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = now_secs();
        let clock = (now + self.time_offset.load(Relaxed)).max(self.head().header.timestamp);
        let offset = clock + seconds - now;
        self.time_offset.store(offset, Relaxed);
        offset
    }

    fn params_after(&self, parent: &Block) -> BlockParams {
        let (hash, parent) = (parent.hash, &parent.header);
        BlockParams {
            number: parent.number + 1,
            // Strictly after the parent (Ethereum's and the OP Stack's rule), even for several
            // blocks in one second: the clock then runs ahead until real time catches up.
            timestamp: (now_secs() + self.time_offset.load(std::sync::atomic::Ordering::Relaxed))
                .max(parent.timestamp + 1),
            gas_limit: self.genesis.gas_limit,
            base_fee: next_base_fee(&self.genesis, parent),
            beneficiary: self.genesis.fee_vault,
            prevrandao: keccak256(hash),
        }
    }

    /// Produces the next block from the pool and makes it durable; returns it.
    pub fn produce_block(&self) -> Result<Arc<Block>, ProduceError> {
        let _one_at_a_time = self.producing.lock();
        let started = std::time::Instant::now();
        let parent = self.head();
        let params = self.params_after(&parent);
        let mut state = self.state.write();
        let mut txs = Vec::new();
        let mut receipts = Vec::new();
        let mut cumulative = 0u64;
        // Holding the pool while the block fills costs submitters nothing extra: admission
        // needs the state's read lock, which block production holds anyway.
        let pool = self.pool.lock();
        let mut best = pool.best(params.base_fee, |a| {
            state.account(a).map_or(0, |acc| acc.nonce)
        });
        while let Some(pooled) = best.next(params.gas_limit - cumulative) {
            let tx = &pooled.tx;
            match exec::execute(&*state, self.genesis.chain_id, &params, exec::tx_env(tx)) {
                Ok(Executed {
                    result,
                    state: changes,
                }) => {
                    let gas_used = result.gas().tx_gas_used();
                    state.apply(changes);
                    // The base fee revm would burn goes to the fee vault: OPEN is never
                    // destroyed, so the supply stays exactly what genesis created.
                    state.add_balance(
                        self.genesis.fee_vault,
                        U256::from(params.base_fee) * U256::from(gas_used),
                    );
                    cumulative += gas_used;
                    receipts.push(receipt(&tx.tx, &result, cumulative));
                    txs.push(tx.clone());
                    best.included(&pooled);
                }
                Err(Rejected::Invalid(e)) => {
                    // Skipped, with its sender's later nonces, and the block goes on filling;
                    // the re-check after the block drops what its sender can no longer pay.
                    if !matches!(e, InvalidTransaction::NonceTooLow { .. }) {
                        tracing::debug!(hash = %pooled.hash, error = %e, "transaction skipped");
                    }
                }
                Err(Rejected::Other(e)) => return Err(ProduceError::Execution(e)),
            }
            if params.gas_limit - cumulative < MIN_TX_GAS {
                break;
            }
        }
        drop(best);
        drop(pool);
        let state_root = state.state_root();
        let changes = state.take_changes();
        let logs_bloom = receipts
            .iter()
            .fold(Bloom::ZERO, |acc, r: &ReceiptEnvelope| {
                acc | *r.logs_bloom()
            });
        let envelopes: Vec<&TxEnvelope> = txs.iter().map(|t: &BlockTx| &t.tx).collect();
        let header = Header {
            parent_hash: parent.hash,
            beneficiary: params.beneficiary,
            state_root,
            transactions_root: proofs::calculate_transaction_root(&envelopes),
            receipts_root: proofs::calculate_receipt_root(&receipts),
            logs_bloom,
            number: params.number,
            gas_limit: params.gas_limit,
            gas_used: cumulative,
            timestamp: params.timestamp,
            mix_hash: params.prevrandao,
            base_fee_per_gas: Some(params.base_fee),
            ..empty_header()
        };
        let block = Arc::new(Block {
            hash: header.hash_slow(),
            header,
            txs,
            receipts,
        });
        self.store
            .commit_block(&block, &changes, self.genesis.chain_id)?;
        state.record_block_hash(block.header.number, block.hash);
        let mined: Vec<B256> = block.txs.iter().map(|t| t.hash()).collect();
        let stale = {
            let mut pool = self.pool.lock();
            let account = |a: &Address| {
                state
                    .account(a)
                    .map_or((0, U256::ZERO), |acc| (acc.nonce, acc.balance))
            };
            let mut stale = pool.prune(&mined, changes.accounts.keys().copied(), account);
            stale.extend(pool.sweep_queued(std::time::Instant::now(), |a| account(a).0));
            self.metrics.set_pool_size(pool.len());
            stale
        };
        {
            let mut recent = self.recent.write();
            recent.insert(block.header.number, block.clone());
            while recent.len() > RECENT_BLOCKS {
                recent.pop_first();
            }
        }
        *self.head.write() = block.clone();
        drop(state);
        if !stale.is_empty() {
            self.writer.forget(stale);
        }
        self.metrics
            .record_block(block.txs.len(), started.elapsed().as_secs_f64());
        tracing::debug!(
            number = block.header.number,
            txs = block.txs.len(),
            gas = block.header.gas_used,
            ms = started.elapsed().as_millis() as u64,
            "produced block"
        );
        let _ = self.blocks.send(block.clone());
        Ok(block)
    }

    /// How many transactions the pool holds, and their bytes.
    pub fn pool_size(&self) -> (usize, usize) {
        let pool = self.pool.lock();
        (pool.len(), pool.bytes())
    }

    /// Whether the pool holds anything (block time 0 produces only then).
    pub fn has_pending(&self) -> bool {
        !self.pool.lock().is_empty()
    }

    /// The sum of all balances at the head (the supply invariant).
    pub fn total_balance(&self) -> U256 {
        self.state.read().total_balance()
    }
}

/// A header with the fields the chain's forks fix, as an empty block has them: no ommers, no
/// withdrawals, no blobs, no beacon root, no EIP-7685 requests.
fn empty_header() -> Header {
    Header {
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}

/// EIP-1559's base fee for the block after `parent`, never below the genesis floor.
pub fn next_base_fee(genesis: &Genesis, parent: &Header) -> u64 {
    let params = BaseFeeParams::new(
        genesis.base_fee_max_change_denominator as u128,
        genesis.elasticity_multiplier as u128,
    );
    let fee = alloy_eips::eip1559::calc_next_block_base_fee(
        parent.gas_used,
        parent.gas_limit,
        parent.base_fee_per_gas.unwrap_or(genesis.base_fee_per_gas),
        params,
    );
    fee.max(genesis.min_base_fee_per_gas)
}

fn receipt(tx: &TxEnvelope, result: &ExecutionResult, cumulative: u64) -> ReceiptEnvelope {
    let receipt = Receipt {
        status: result.is_success().into(),
        cumulative_gas_used: cumulative,
        logs: result.logs().to_vec(),
    };
    let with_bloom = ReceiptWithBloom::from(receipt);
    match tx.tx_type() {
        TxType::Legacy => ReceiptEnvelope::Legacy(with_bloom),
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(with_bloom),
        TxType::Eip4844 => ReceiptEnvelope::Eip4844(with_bloom),
        TxType::Eip7702 => ReceiptEnvelope::Eip7702(with_bloom),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(with_bloom),
    }
}

impl From<PoolError> for TxError {
    fn from(e: PoolError) -> Self {
        TxError::Pool(e)
    }
}
