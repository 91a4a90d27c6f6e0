//! AI Studio's embedded store (redb): API keys (only their hashes), the sign-in nonces it
//! issued, and the metered receipts with each consumer's last sequence number. Every change is
//! one durable transaction, so what a response acknowledged survives `kill -9`.

use alloy_primitives::Address;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

mod attributions;
pub use attributions::Attribution;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// SHA-256 of a key → its row.
const KEYS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("keys");
/// (account, key id) → SHA-256 of the key.
const ACCOUNT_KEYS: TableDefinition<(&[u8; 20], u64), &[u8; 32]> =
    TableDefinition::new("account_keys");
/// A used sign-in nonce → when it expires (unix seconds).
const NONCES: TableDefinition<&str, u64> = TableDefinition::new("nonces");
/// Receipt id → its row.
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
/// (consumer, receipt id) → its sequence number: a consumer's receipts in order.
const CONSUMER_RECEIPTS: TableDefinition<(&[u8; 20], u64), u64> =
    TableDefinition::new("consumer_receipts");
/// Consumer → the last sequence number given to its receipts.
const SEQS: TableDefinition<&[u8; 20], u64> = TableDefinition::new("seqs");
/// Receipt id → the batch that settled it (0: settled, found on chain after a crash).
const SETTLED: TableDefinition<u64, u64> = TableDefinition::new("settled");
/// Batch id → its row.
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");

/// Keys one account's records may hold, revoked ones included, so that the store stays bounded;
/// at the bound a new key takes the place of the oldest revoked one (its receipts stay).
pub const MAX_KEYS_PER_ACCOUNT: usize = 64;
/// Used sign-in nonces kept at once (ten minutes' worth of sign-ins); past it, sign-ins are
/// refused until old ones expire.
pub const MAX_NONCES: usize = 10_000;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("studio store: {0}")]
    Db(String),
    #[error("studio store: a {table} row does not decode: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error(
        "{0} already holds {MAX_KEYS_PER_ACCOUNT} keys that are not revoked; revoke one first"
    )]
    TooManyKeys(Address),
    #[error("too many sign-ins are pending; try again in a few minutes")]
    TooManyNonces,
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T> = std::result::Result<T, StoreError>;

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain rows serialise")
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// An API key as stored: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub id: u64,
    pub account: Address,
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The most this key may spend, in wei (none: no limit but the account's authorisation).
    pub spend_limit: Option<u128>,
    /// What it has spent, in wei.
    pub spent: u128,
    /// Requests a minute it may make (none: no limit).
    pub rate_per_minute: Option<u32>,
    /// When it was revoked (unix seconds); a revoked key authenticates nothing.
    pub revoked_at: Option<u64>,
}

/// A metered inference: what it cost and what it was (the prompt and the answer's tokens, for
/// attribution), recorded before its answer completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRow {
    pub id: u64,
    pub consumer: Address,
    pub key_id: u64,
    pub agent_id: u64,
    /// The weights hash of the agent's adapter, which attribution reads.
    #[serde(default)]
    pub adapter: String,
    /// Rises with each of the consumer's receipts here: settlement refuses it twice.
    pub seq: u64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Wei.
    pub fee: u128,
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
    /// Unix seconds.
    pub created_at: u64,
    /// False when the client left before the answer ended (it pays for what was generated).
    pub complete: bool,
    /// What a knowledge agent retrieved for the answer (in its prompt).
    #[serde(default)]
    pub retrieval: Option<crate::knowledge::Retrieval>,
}

/// A receipt before the store gives it its id and sequence number.
pub struct NewReceipt {
    pub consumer: Address,
    pub key_id: u64,
    pub agent_id: u64,
    pub adapter: String,
    /// The consumer's last sequence number settled on chain: the receipt numbers past it
    /// even if this store has forgotten (lost, restored from an old copy) how far it got.
    pub settled_seq: u64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub fee: u128,
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
    pub created_at: u64,
    pub complete: bool,
    pub retrieval: Option<crate::knowledge::Retrieval>,
}

/// The store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(META)?;
            txn.open_table(KEYS)?;
            txn.open_table(ACCOUNT_KEYS)?;
            txn.open_table(NONCES)?;
            txn.open_table(RECEIPTS)?;
            txn.open_table(CONSUMER_RECEIPTS)?;
            txn.open_table(SEQS)?;
            txn.open_table(SETTLED)?;
            txn.open_table(BATCHES)?;
            Self::create_attribution_tables(&txn)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// Uses a sign-in nonce valid until `expires_at`: false if it was used before. Used ones
    /// are kept until they expire (expired ones are dropped first), at most [`MAX_NONCES`].
    pub fn use_nonce(&self, nonce: &str, expires_at: u64, now: u64) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut nonces = txn.open_table(NONCES)?;
            nonces.retain(|_, expiry| expiry > now)?;
            if nonces.get(nonce)?.is_some() {
                return Ok(false);
            }
            if nonces.len()? as usize >= MAX_NONCES {
                return Err(StoreError::TooManyNonces);
            }
            nonces.insert(nonce, expires_at)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Stores a new key for `row.account` under the next id (which it sets), by the hash of
    /// its secret.
    pub fn insert_key(&self, hash: &[u8; 32], mut row: KeyRow) -> Result<KeyRow> {
        let txn = self.db.begin_write()?;
        {
            let account = row.account.0 .0;
            let mut by_account = txn.open_table(ACCOUNT_KEYS)?;
            let held: Vec<(u64, [u8; 32])> = by_account
                .range((&account, 0)..=(&account, u64::MAX))?
                .map(|entry| entry.map(|(k, v)| (k.value().1, *v.value())))
                .collect::<std::result::Result<_, _>>()?;
            let mut keys = txn.open_table(KEYS)?;
            if held.len() >= MAX_KEYS_PER_ACCOUNT {
                // Oldest first: the first revoked key makes room, or there is none to spare.
                let mut revoked = None;
                for (id, hash) in &held {
                    let Some(old) = keys.get(hash)? else { continue };
                    if decode::<KeyRow>("key", old.value())?.revoked_at.is_some() {
                        revoked = Some((*id, *hash));
                        break;
                    }
                }
                let (id, hash) = revoked.ok_or(StoreError::TooManyKeys(row.account))?;
                by_account.remove((&account, id))?;
                keys.remove(&hash)?;
            }
            let mut meta = txn.open_table(META)?;
            let id = meta.get("next_key")?.map_or(1, |v| v.value());
            meta.insert("next_key", id + 1)?;
            row.id = id;
            by_account.insert((&account, id), hash)?;
            keys.insert(hash, encode(&row).as_slice())?;
        }
        txn.commit()?;
        Ok(row)
    }

    /// The key whose secret hashes to `hash`.
    pub fn key(&self, hash: &[u8; 32]) -> Result<Option<KeyRow>> {
        let txn = self.db.begin_read()?;
        let keys = txn.open_table(KEYS)?;
        keys.get(hash)?
            .map(|v| decode("key", v.value()))
            .transpose()
    }

    /// `account`'s key `id`.
    pub fn key_of(&self, account: Address, id: u64) -> Result<Option<KeyRow>> {
        let txn = self.db.begin_read()?;
        let by_account = txn.open_table(ACCOUNT_KEYS)?;
        let Some(hash) = by_account.get((&account.0 .0, id))?.map(|v| *v.value()) else {
            return Ok(None);
        };
        let keys = txn.open_table(KEYS)?;
        keys.get(&hash)?
            .map(|v| decode("key", v.value()))
            .transpose()
    }

    /// Every key of `account`, oldest first.
    pub fn keys_of(&self, account: Address) -> Result<Vec<KeyRow>> {
        let txn = self.db.begin_read()?;
        let (by_account, keys) = (txn.open_table(ACCOUNT_KEYS)?, txn.open_table(KEYS)?);
        let account = account.0 .0;
        let mut out = Vec::new();
        for entry in by_account.range((&account, 0)..=(&account, u64::MAX))? {
            let hash = *entry?.1.value();
            if let Some(row) = keys.get(&hash)? {
                out.push(decode("key", row.value())?);
            }
        }
        Ok(out)
    }

    /// Changes `account`'s key `id` in one transaction; `None` if the account has no such key.
    pub fn update_key(
        &self,
        account: Address,
        id: u64,
        change: impl FnOnce(&mut KeyRow),
    ) -> Result<Option<KeyRow>> {
        let txn = self.db.begin_write()?;
        let row = {
            let by_account = txn.open_table(ACCOUNT_KEYS)?;
            let Some(hash) = by_account.get((&account.0 .0, id))?.map(|v| *v.value()) else {
                return Ok(None);
            };
            let mut keys = txn.open_table(KEYS)?;
            let Some(mut row) = keys
                .get(&hash)?
                .map(|v| decode::<KeyRow>("key", v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            change(&mut row);
            keys.insert(&hash, encode(&row).as_slice())?;
            row
        };
        txn.commit()?;
        Ok(Some(row))
    }
}

impl Store {
    /// Records a receipt under the next id and the consumer's next sequence number, and adds
    /// its fee to what its key spent, in one durable transaction.
    pub fn record(&self, new: NewReceipt) -> Result<ReceiptRow> {
        let txn = self.db.begin_write()?;
        let row = {
            let consumer = new.consumer.0 .0;
            let mut seqs = txn.open_table(SEQS)?;
            let last = seqs.get(&consumer)?.map_or(0, |v| v.value());
            let seq = last.max(new.settled_seq) + 1;
            seqs.insert(&consumer, seq)?;
            let mut meta = txn.open_table(META)?;
            let id = meta.get("next_receipt")?.map_or(1, |v| v.value());
            meta.insert("next_receipt", id + 1)?;
            let row = ReceiptRow {
                id,
                consumer: new.consumer,
                key_id: new.key_id,
                agent_id: new.agent_id,
                adapter: new.adapter,
                seq,
                input_tokens: new.input_tokens,
                output_tokens: new.output_tokens,
                fee: new.fee,
                prompt: new.prompt,
                answer: new.answer,
                created_at: new.created_at,
                complete: new.complete,
                retrieval: new.retrieval,
            };
            txn.open_table(RECEIPTS)?
                .insert(id, encode(&row).as_slice())?;
            txn.open_table(CONSUMER_RECEIPTS)?
                .insert((&consumer, id), seq)?;
            let hash = txn
                .open_table(ACCOUNT_KEYS)?
                .get((&consumer, new.key_id))?
                .map(|v| *v.value());
            if let Some(hash) = hash {
                let mut keys = txn.open_table(KEYS)?;
                let key = keys.get(&hash)?.map(|v| decode::<KeyRow>("key", v.value()));
                if let Some(mut key) = key.transpose()? {
                    key.spent = key.spent.saturating_add(new.fee);
                    keys.insert(&hash, encode(&key).as_slice())?;
                }
            }
            row
        };
        txn.commit()?;
        Ok(row)
    }

    pub fn receipt(&self, id: u64) -> Result<Option<ReceiptRow>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECEIPTS)?;
        table
            .get(id)?
            .map(|v| decode("receipt", v.value()))
            .transpose()
    }

    /// What `consumer`'s receipts not yet settled add up to (newest first, up to the most
    /// recent settled one: settlement takes a consumer's receipts in order).
    pub fn unsettled_fees(&self, consumer: Address) -> Result<u128> {
        let txn = self.db.begin_read()?;
        let (index, receipts) = (
            txn.open_table(CONSUMER_RECEIPTS)?,
            txn.open_table(RECEIPTS)?,
        );
        let settled = txn.open_table(SETTLED)?;
        let c = consumer.0 .0;
        let mut total = 0u128;
        for entry in index.range((&c, 0)..=(&c, u64::MAX))?.rev() {
            let id = entry?.0.value().1;
            if settled.get(id)?.is_some() {
                break;
            }
            if let Some(row) = receipts.get(id)? {
                total = total.saturating_add(decode::<ReceiptRow>("receipt", row.value())?.fee);
            }
        }
        Ok(total)
    }

    /// `consumer`'s receipts, newest first, at most `limit`, older than receipt id `before`.
    pub fn receipts_of(
        &self,
        consumer: Address,
        before: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRow>> {
        let txn = self.db.begin_read()?;
        let (index, receipts) = (
            txn.open_table(CONSUMER_RECEIPTS)?,
            txn.open_table(RECEIPTS)?,
        );
        let c = consumer.0 .0;
        let mut out = Vec::new();
        for entry in index.range((&c, 0)..(&c, before))?.rev().take(limit) {
            let id = entry?.0.value().1;
            if let Some(row) = receipts.get(id)? {
                out.push(decode("receipt", row.value())?);
            }
        }
        Ok(out)
    }

    /// Receipts from id `from` on, oldest first, at most `limit` (what settlement takes next).
    pub fn receipts_from(&self, from: u64, limit: usize) -> Result<Vec<ReceiptRow>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECEIPTS)?;
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(limit) {
            out.push(decode("receipt", entry?.1.value())?);
        }
        Ok(out)
    }
}

fn settle_ids(txn: &redb::WriteTransaction, ids: &[u64], batch: u64) -> Result<()> {
    let mut settled = txn.open_table(SETTLED)?;
    for &id in ids {
        settled.insert(id, batch)?;
    }
    let mut meta = txn.open_table(META)?;
    let mut from = meta.get("settle_from")?.map_or(1, |v| v.value());
    while settled.get(from)?.is_some() {
        from += 1;
    }
    meta.insert("settle_from", from)?;
    Ok(())
}

/// A batch this host settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRow {
    pub id: u64,
    pub receipts: Vec<u64>,
    /// The `release` call with the batch's payout lists.
    pub release: Vec<u8>,
    pub released: bool,
}

impl Store {
    /// Receipts not yet settled, oldest first, at most `limit`.
    pub fn unsettled(&self, limit: usize) -> Result<Vec<ReceiptRow>> {
        let txn = self.db.begin_read()?;
        let from = txn
            .open_table(META)?
            .get("settle_from")?
            .map_or(1, |v| v.value());
        let (receipts, settled) = (txn.open_table(RECEIPTS)?, txn.open_table(SETTLED)?);
        let mut out = Vec::new();
        for entry in receipts.range(from..)? {
            let (id, row) = entry?;
            if settled.get(id.value())?.is_none() {
                out.push(decode("receipt", row.value())?);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Marks receipts settled by `batch` (0: already on chain, batch unknown), and moves the
    /// start of the unsettled ones past any settled prefix.
    pub fn mark_settled(&self, ids: &[u64], batch: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        settle_ids(&txn, ids, batch)?;
        txn.commit()?;
        Ok(())
    }

    /// Records a settled batch and its receipts in one transaction.
    pub fn record_batch(&self, id: u64, receipts: &[u64], release: &[u8]) -> Result<()> {
        let row = BatchRow {
            id,
            receipts: receipts.to_vec(),
            release: release.to_vec(),
            released: false,
        };
        let txn = self.db.begin_write()?;
        txn.open_table(BATCHES)?
            .insert(id, encode(&row).as_slice())?;
        txn.commit()?;
        self.mark_settled(receipts, id)
    }

    /// Batches not yet released: (id, the release call).
    pub fn unreleased(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let batches = txn.open_table(BATCHES)?;
        let mut out = Vec::new();
        for entry in batches.iter()? {
            let row: BatchRow = decode("batch", entry?.1.value())?;
            if !row.released {
                out.push((row.id, row.release));
            }
        }
        Ok(out)
    }

    pub fn mark_released(&self, id: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut batches = txn.open_table(BATCHES)?;
            let row = batches
                .get(id)?
                .map(|v| decode::<BatchRow>("batch", v.value()));
            if let Some(mut row) = row.transpose()? {
                row.released = true;
                batches.insert(id, encode(&row).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A batch this host recorded.
    pub fn batch(&self, id: u64) -> Result<Option<BatchRow>> {
        let txn = self.db.begin_read()?;
        let batches = txn.open_table(BATCHES)?;
        batches
            .get(id)?
            .map(|v| decode("batch", v.value()))
            .transpose()
    }

    /// The first block whose settlement events were not yet read for recovery.
    pub fn scan_from(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(META)?
            .get("scan_from")?
            .map_or(0, |v| v.value()))
    }

    pub fn set_scan_from(&self, block: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("scan_from", block)?;
        txn.commit()?;
        Ok(())
    }

    /// The batch that settled receipt `id` (`Some(0)`: settled, batch unknown), and whether it
    /// was released.
    pub fn settlement_of(&self, id: u64) -> Result<Option<(u64, bool)>> {
        let txn = self.db.begin_read()?;
        let Some(batch) = txn.open_table(SETTLED)?.get(id)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let released = txn
            .open_table(BATCHES)?
            .get(batch)?
            .map(|v| decode::<BatchRow>("batch", v.value()))
            .transpose()?
            .is_some_and(|b| b.released);
        Ok(Some((batch, released)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: Address) -> KeyRow {
        KeyRow {
            id: 0,
            account,
            label: "test".into(),
            created_at: 1,
            spend_limit: Some(10),
            spent: 0,
            rate_per_minute: None,
            revoked_at: None,
        }
    }

    #[test]
    fn keys_and_nonces_survive_reopening_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("studio.redb");
        let (alice, bob) = (Address::repeat_byte(1), Address::repeat_byte(2));
        {
            let store = Store::open(&path).unwrap();
            let a = store.insert_key(&[1; 32], row(alice)).unwrap();
            let b = store.insert_key(&[2; 32], row(bob)).unwrap();
            assert_eq!((a.id, b.id), (1, 2));
            assert!(store.use_nonce("nonce0001", 100, 50).unwrap());
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.key(&[1; 32]).unwrap().unwrap().account, alice);
        assert_eq!(store.keys_of(bob).unwrap().len(), 1);
        // Only the owner's id reaches a key.
        assert!(store.update_key(bob, 1, |r| r.spent = 5).unwrap().is_none());
        let spent = store
            .update_key(alice, 1, |r| r.spent = 5)
            .unwrap()
            .unwrap();
        assert_eq!(spent.spent, 5);
        // A nonce is used once, across reopening; once expired its record goes.
        assert!(!store.use_nonce("nonce0001", 100, 70).unwrap());
        assert!(store.use_nonce("nonce0002", 60, 55).unwrap());
        assert!(!store.use_nonce("nonce0002", 60, 58).unwrap());
        for i in 1..MAX_KEYS_PER_ACCOUNT {
            store.insert_key(&[i as u8 + 10; 32], row(bob)).unwrap();
        }
        assert!(matches!(
            store.insert_key(&[9; 32], row(bob)),
            Err(StoreError::TooManyKeys(a)) if a == bob
        ));
        // A revoked key makes room: the oldest revoked one's record goes, the rest stay.
        let ids: Vec<u64> = store.keys_of(bob).unwrap().iter().map(|k| k.id).collect();
        for id in [ids[5], ids[9]] {
            store
                .update_key(bob, id, |r| r.revoked_at = Some(100))
                .unwrap();
        }
        let fresh = store.insert_key(&[9; 32], row(bob)).unwrap();
        let now: Vec<u64> = store.keys_of(bob).unwrap().iter().map(|k| k.id).collect();
        assert_eq!(now.len(), MAX_KEYS_PER_ACCOUNT);
        assert!(!now.contains(&ids[5]) && now.contains(&ids[9]) && now.contains(&fresh.id));
        assert!(store.key_of(bob, ids[5]).unwrap().is_none());
    }

    fn new_receipt(consumer: Address, key_id: u64, fee: u128) -> NewReceipt {
        NewReceipt {
            consumer,
            key_id,
            agent_id: 1,
            adapter: String::new(),
            settled_seq: 0,
            input_tokens: 10,
            output_tokens: 5,
            fee,
            prompt: vec![1, 2, 3],
            answer: vec![4, 5],
            created_at: 7,
            complete: true,
            retrieval: None,
        }
    }

    #[test]
    fn receipts_number_each_consumer_in_order_charge_the_key_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("studio.redb");
        let (alice, bob) = (Address::repeat_byte(1), Address::repeat_byte(2));
        {
            let store = Store::open(&path).unwrap();
            let key = store.insert_key(&[1; 32], row(alice)).unwrap();
            for fee in [3, 4] {
                store.record(new_receipt(alice, key.id, fee)).unwrap();
            }
            store.record(new_receipt(bob, 99, 5)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let third = store.record(new_receipt(alice, 1, 6)).unwrap();
        assert_eq!((third.id, third.seq), (4, 3));
        let mine = store.receipts_of(alice, u64::MAX, 10).unwrap();
        assert_eq!(
            mine.iter().map(|r| (r.id, r.seq)).collect::<Vec<_>>(),
            [(4, 3), (2, 2), (1, 1)]
        );
        assert_eq!(store.receipts_of(alice, 4, 1).unwrap()[0].id, 2);
        assert_eq!(store.receipts_of(bob, u64::MAX, 10).unwrap()[0].seq, 1);
        assert_eq!(store.key(&[1; 32]).unwrap().unwrap().spent, 3 + 4 + 6);
        let next = store.receipts_from(2, 2).unwrap();
        assert_eq!(next.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(store.receipt(3).unwrap().unwrap().consumer, bob);
    }

    #[test]
    fn a_lost_store_numbers_receipts_past_what_the_chain_settled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("studio.redb")).unwrap();
        let carol = Address::repeat_byte(3);
        // The chain settled carol's receipts up to 41 from a store that is gone: a receipt
        // numbered 1 again would be taken for one already settled, and never paid.
        let first = store
            .record(NewReceipt {
                settled_seq: 41,
                ..new_receipt(carol, 1, 2)
            })
            .unwrap();
        assert_eq!(first.seq, 42);
        assert_eq!(store.record(new_receipt(carol, 1, 2)).unwrap().seq, 43);
    }

    #[test]
    fn settlement_state_skips_settled_receipts_and_remembers_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("studio.redb");
        let alice = Address::repeat_byte(1);
        {
            let store = Store::open(&path).unwrap();
            for fee in 1..=5 {
                store.record(new_receipt(alice, 1, fee)).unwrap();
            }
            // 2 and 3 go in batch 7; 1 is found on chain after a restart (batch unknown).
            store.record_batch(7, &[2, 3], b"release 7").unwrap();
            store.mark_settled(&[1], 0).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let left: Vec<u64> = store.unsettled(10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(left, [4, 5]);
        assert_eq!(store.unsettled(1).unwrap()[0].id, 4);
        assert_eq!(store.settlement_of(2).unwrap(), Some((7, false)));
        assert_eq!(store.settlement_of(1).unwrap(), Some((0, false)));
        assert_eq!(store.settlement_of(4).unwrap(), None);
        assert_eq!(store.unreleased().unwrap(), [(7, b"release 7".to_vec())]);
        store.mark_released(7).unwrap();
        assert!(store.unreleased().unwrap().is_empty());
        assert_eq!(store.settlement_of(3).unwrap(), Some((7, true)));
        assert_eq!(store.batch(7).unwrap().unwrap().receipts, [2, 3]);
        store.set_scan_from(42).unwrap();
        assert_eq!(store.scan_from().unwrap(), 42);
    }
}
