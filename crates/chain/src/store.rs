//! Persistence in one embedded redb database.
//!
//! A block is committed in a single write transaction together with the state it produced,
//! the history needed to answer queries at older blocks, its transaction index, and the removal
//! of its transactions from the persisted mempool; redb's commit is atomic and durable, so a
//! `kill -9` leaves either the whole block or none of it. Accepted transactions are persisted
//! before they are acknowledged (see [`Store::persist_pool`]).

use crate::{
    block::{decode_block, encode_block, Block, CorruptBlock},
    state::{Account, ChangeSet, WorldState},
};
use alloy_consensus::Transaction;
use alloy_primitives::{Address, Bloom, Bytes, TxKind, B256, U256};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_NUMBERS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_numbers");
/// Transaction hash → block number ++ index in block.
const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
/// Address ++ slot → value.
const STORAGE: TableDefinition<&[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
const CODE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("code");
/// Address ++ block number (big-endian) → the account after that block (empty: deleted).
const ACCOUNT_HISTORY: TableDefinition<&[u8; 28], &[u8]> = TableDefinition::new("account_history");
/// Address ++ slot ++ block number → the slot's value after that block.
const STORAGE_HISTORY: TableDefinition<&[u8; 60], &[u8; 32]> =
    TableDefinition::new("storage_history");
/// Address ++ block number ++ index in block (big-endian) → nothing: every transaction an
/// address sent, was sent, or was created by, in chain order.
const ADDRESS_TXS: TableDefinition<&[u8; 32], ()> = TableDefinition::new("address_txs");
/// Block number → the block's logs bloom: log queries read these 256 bytes, not the block,
/// for the blocks that cannot match.
const BLOOMS: TableDefinition<u64, &[u8; 256]> = TableDefinition::new("blooms");
/// Transaction hash → EIP-2718 bytes of an accepted transaction not yet in a block.
const MEMPOOL: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("mempool");

const HEAD_KEY: &str = "head";
const CHAIN_ID_KEY: &str = "chain_id";
const ADDRESS_INDEX_KEY: &str = "address_index";
const BLOOM_INDEX_KEY: &str = "bloom_index";

/// A failure of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptBlock),
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

impl revm::database_interface::DBErrorMarker for StoreError {}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.into()) }
    })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn address_key(address: &Address, block: u64, index: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..20].copy_from_slice(address.as_slice());
    key[20..28].copy_from_slice(&block.to_be_bytes());
    key[28..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Adds a block's transactions to the address index: under the sender, the recipient and the
/// contract a creation makes.
fn index_block(
    table: &mut redb::Table<&[u8; 32], ()>,
    block: &Block,
) -> Result<(), redb::StorageError> {
    let number = block.header.number;
    for (i, tx) in block.txs.iter().enumerate() {
        let other = match tx.tx.kind() {
            TxKind::Call(to) => to,
            TxKind::Create => tx.created_address().expect("a creation"),
        };
        table.insert(&address_key(&tx.sender, number, i as u32), ())?;
        if other != tx.sender {
            table.insert(&address_key(&other, number, i as u32), ())?;
        }
    }
    Ok(())
}

fn storage_key(address: &Address, slot: &U256) -> [u8; 52] {
    let mut key = [0u8; 52];
    key[..20].copy_from_slice(address.as_slice());
    key[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    key
}

/// The embedded database of one node.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `dir/chain.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = Database::create(dir.join("chain.redb"))?;
        let txn = db.begin_write()?;
        {
            // Create every table so that readers never meet a missing one.
            txn.open_table(META)?;
            txn.open_table(BLOCKS)?;
            txn.open_table(BLOCK_NUMBERS)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(ACCOUNTS)?;
            txn.open_table(STORAGE)?;
            txn.open_table(CODE)?;
            txn.open_table(ACCOUNT_HISTORY)?;
            txn.open_table(STORAGE_HISTORY)?;
            txn.open_table(MEMPOOL)?;
            txn.open_table(ADDRESS_TXS)?;
            txn.open_table(BLOOMS)?;
        }
        txn.commit()?;
        let store = Self { db };
        store.build_indexes_once()?;
        Ok(store)
    }

    /// Builds the address index and the blooms of a database written before they existed,
    /// each once (a key in `META` marks each as built).
    fn build_indexes_once(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let addresses = meta.get(ADDRESS_INDEX_KEY)?.is_none();
            let blooms = meta.get(BLOOM_INDEX_KEY)?.is_none();
            if !addresses && !blooms {
                return Ok(());
            }
            let blocks = txn.open_table(BLOCKS)?;
            let mut index = txn.open_table(ADDRESS_TXS)?;
            let mut bloom_table = txn.open_table(BLOOMS)?;
            for row in blocks.iter()? {
                let (_, bytes) = row?;
                let block = decode_block(bytes.value())?;
                if addresses {
                    index_block(&mut index, &block)?;
                }
                if blooms {
                    bloom_table.insert(block.header.number, &block.header.logs_bloom.0 .0)?;
                }
            }
            meta.insert(ADDRESS_INDEX_KEY, [1u8].as_slice())?;
            meta.insert(BLOOM_INDEX_KEY, [1u8].as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` positions (block, index) of `address`'s transactions before `before`
    /// (all, when `None`), newest first.
    pub fn address_transactions(
        &self,
        address: &Address,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<(u64, u32)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ADDRESS_TXS)?;
        let low = address_key(address, 0, 0);
        let high = match before {
            Some((block, i)) => address_key(address, block, i),
            None => address_key(address, u64::MAX, u32::MAX),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in table.range::<&[u8; 32]>(&low..&high)?.rev().take(limit) {
            let (key, _) = row?;
            let key = key.value();
            let block = u64::from_be_bytes(key[20..28].try_into().expect("8 bytes"));
            out.push((
                block,
                u32::from_be_bytes(key[28..].try_into().expect("4 bytes")),
            ));
        }
        Ok(out)
    }

    /// The number of the last committed block, if any.
    pub fn head(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(HEAD_KEY)?
            .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or_default())))
    }

    /// The chain id this database was created for.
    pub fn chain_id(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(CHAIN_ID_KEY)?
            .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or_default())))
    }

    /// Loads the head state into memory.
    pub fn load_state(&self) -> Result<WorldState, StoreError> {
        let txn = self.db.begin_read()?;
        let mut accounts = Vec::new();
        for row in txn.open_table(ACCOUNTS)?.iter()? {
            let (k, v) = row?;
            if let Some(account) = Account::from_bytes(v.value()) {
                accounts.push((Address::from_slice(k.value()), account));
            }
        }
        let mut storage = Vec::new();
        for row in txn.open_table(STORAGE)?.iter()? {
            let (k, v) = row?;
            let k = k.value();
            storage.push((
                Address::from_slice(&k[..20]),
                U256::from_be_slice(&k[20..]),
                U256::from_be_bytes(*v.value()),
            ));
        }
        let mut code = Vec::new();
        for row in txn.open_table(CODE)?.iter()? {
            code.push(Bytes::copy_from_slice(row?.1.value()));
        }
        Ok(WorldState::from_parts(accounts, storage, code))
    }

    /// Commits a block with the state changes it made, atomically and durably.
    pub fn commit_block(
        &self,
        block: &Block,
        changes: &ChangeSet,
        chain_id: u64,
    ) -> Result<(), StoreError> {
        let number = block.header.number;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(BLOCKS)?
                .insert(number, encode_block(block).as_slice())?;
            txn.open_table(BLOCK_NUMBERS)?
                .insert(&block.hash.0, number)?;
            index_block(&mut txn.open_table(ADDRESS_TXS)?, block)?;
            txn.open_table(BLOOMS)?
                .insert(number, &block.header.logs_bloom.0 .0)?;
            let mut index = txn.open_table(TX_INDEX)?;
            let mut pool = txn.open_table(MEMPOOL)?;
            for (i, tx) in block.txs.iter().enumerate() {
                let hash = tx.hash();
                index.insert(&hash.0, (number, i as u32))?;
                pool.remove(&hash.0)?;
            }
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let mut history = txn.open_table(ACCOUNT_HISTORY)?;
            for (address, account) in &changes.accounts {
                let mut hkey = [0u8; 28];
                hkey[..20].copy_from_slice(address.as_slice());
                hkey[20..].copy_from_slice(&number.to_be_bytes());
                match account {
                    Some(account) => {
                        let bytes = account.to_bytes();
                        accounts.insert(&address.0 .0, bytes.as_slice())?;
                        history.insert(&hkey, bytes.as_slice())?;
                    }
                    None => {
                        accounts.remove(&address.0 .0)?;
                        history.insert(&hkey, [].as_slice())?;
                    }
                }
            }
            let mut storage = txn.open_table(STORAGE)?;
            let mut storage_history = txn.open_table(STORAGE_HISTORY)?;
            for ((address, slot), value) in &changes.storage {
                let key = storage_key(address, slot);
                let bytes = value.to_be_bytes::<32>();
                if value.is_zero() {
                    storage.remove(&key)?;
                } else {
                    storage.insert(&key, &bytes)?;
                }
                let mut hkey = [0u8; 60];
                hkey[..52].copy_from_slice(&key);
                hkey[52..].copy_from_slice(&number.to_be_bytes());
                storage_history.insert(&hkey, &bytes)?;
            }
            let mut code = txn.open_table(CODE)?;
            for (hash, bytes) in &changes.code {
                code.insert(&hash.0, bytes.as_ref())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(HEAD_KEY, number.to_be_bytes().as_slice())?;
            meta.insert(CHAIN_ID_KEY, chain_id.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Persists accepted transactions in one durable commit (group commit for many callers).
    pub fn persist_pool(&self, txs: &[(B256, Vec<u8>)], forget: &[B256]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut pool = txn.open_table(MEMPOOL)?;
            // Inserts first: a transaction accepted and then evicted or replaced within one
            // group must end up forgotten.
            for (hash, raw) in txs {
                pool.insert(&hash.0, raw.as_slice())?;
            }
            for hash in forget {
                pool.remove(&hash.0)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Drops transactions from the persisted mempool (stale or replaced ones).
    pub fn forget_pool(&self, hashes: &[B256]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut pool = txn.open_table(MEMPOOL)?;
            for hash in hashes {
                pool.remove(&hash.0)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every persisted pending transaction.
    pub fn pool(&self) -> Result<Vec<(B256, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(MEMPOOL)?.iter()? {
            let (k, v) = row?;
            out.push((B256::from(*k.value()), v.value().to_vec()));
        }
        Ok(out)
    }

    /// A block by number.
    pub fn block(&self, number: u64) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(BLOCKS)?;
        let Some(bytes) = blocks.get(number)? else {
            return Ok(None);
        };
        Ok(Some(decode_block(bytes.value())?))
    }

    /// The blocks of `from..=to` whose logs may pass `may_match`, in order: those whose stored
    /// bloom it accepts, and those without a stored bloom (they must be read to know).
    pub fn blocks_maybe_matching(
        &self,
        from: u64,
        to: u64,
        may_match: impl Fn(&Bloom) -> bool,
    ) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOOMS)?;
        let mut out = Vec::new();
        let mut next = from;
        for row in table.range(from..=to)? {
            let (number, bloom) = row?;
            let number = number.value();
            out.extend(next..number); // no bloom stored for these
            if may_match(&Bloom::from(*bloom.value())) {
                out.push(number);
            }
            next = number + 1;
        }
        if next <= to {
            out.extend(next..=to);
        }
        Ok(out)
    }

    /// A block's number by its hash.
    pub fn block_number(&self, hash: &B256) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCK_NUMBERS)?;
        Ok(table.get(&hash.0)?.map(|v| v.value()))
    }

    /// Where a mined transaction is: block number and index.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<(u64, u32)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TX_INDEX)?;
        Ok(table.get(&hash.0)?.map(|v| v.value()))
    }

    /// A view of the state as it was after block `number`.
    pub fn state_at(&self, number: u64) -> Result<HistoricalState, StoreError> {
        Ok(HistoricalState {
            txn: self.db.begin_read()?,
            number,
        })
    }
}

/// The state after an older block, read from the history tables: for each key, the last
/// value written at or before that block.
pub struct HistoricalState {
    txn: redb::ReadTransaction,
    number: u64,
}

impl HistoricalState {
    /// The account after the block, if it existed.
    pub fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        let table = self.txn.open_table(ACCOUNT_HISTORY)?;
        let mut lo = [0u8; 28];
        lo[..20].copy_from_slice(address.as_slice());
        let mut hi = lo;
        hi[20..].copy_from_slice(&self.number.to_be_bytes());
        let last = table
            .range::<&[u8; 28]>(&lo..=&hi)?
            .next_back()
            .transpose()?;
        Ok(last.and_then(|(_, v)| Account::from_bytes(v.value())))
    }

    /// A storage slot after the block.
    pub fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StoreError> {
        let table = self.txn.open_table(STORAGE_HISTORY)?;
        let mut lo = [0u8; 60];
        lo[..52].copy_from_slice(&storage_key(address, slot));
        let mut hi = lo;
        hi[52..].copy_from_slice(&self.number.to_be_bytes());
        let last = table
            .range::<&[u8; 60]>(&lo..=&hi)?
            .next_back()
            .transpose()?;
        Ok(last
            .map(|(_, v)| U256::from_be_bytes(*v.value()))
            .unwrap_or_default())
    }

    /// Code by hash (code is never deleted, so the current table serves every block).
    pub fn code(&self, hash: &B256) -> Result<Option<Bytes>, StoreError> {
        let table = self.txn.open_table(CODE)?;
        Ok(table
            .get(&hash.0)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    /// A block hash by number, for BLOCKHASH during historical calls.
    pub fn block_hash(&self, number: u64) -> Result<B256, StoreError> {
        let blocks = self.txn.open_table(BLOCKS)?;
        Ok(match blocks.get(number)? {
            Some(bytes) => decode_block(bytes.value())?.hash,
            None => B256::ZERO,
        })
    }
}

impl revm::database_interface::DatabaseRef for HistoricalState {
    type Error = StoreError;

    fn basic_ref(&self, address: Address) -> Result<Option<revm::state::AccountInfo>, Self::Error> {
        let Some(account) = self.account(&address)? else {
            return Ok(None);
        };
        let code = self
            .code(&account.code_hash)?
            .map(revm::bytecode::Bytecode::new_raw);
        Ok(Some(revm::state::AccountInfo {
            balance: account.balance,
            nonce: account.nonce,
            code_hash: account.code_hash,
            code,
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<revm::bytecode::Bytecode, Self::Error> {
        Ok(self
            .code(&code_hash)?
            .map(revm::bytecode::Bytecode::new_raw)
            .unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.storage(&address, &index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.block_hash(number)
    }
}
