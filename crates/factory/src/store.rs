//! The factory's embedded store (redb): jobs, their events and checkpoints, and uploaded
//! files' records. Every write is one durable transaction, so what the API acknowledged
//! survives `kill -9`.

use crate::job::{Checkpoint, Event, EventKind, FileObject, Job};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::path::Path;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");
const CHECKPOINTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("checkpoints");
const FILES: TableDefinition<u64, &[u8]> = TableDefinition::new("files");

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("factory store: {0}")]
    Db(String),
    #[error("factory store: a {table} row does not decode: {reason}")]
    Corrupt { table: &'static str, reason: String },
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

type Result<T> = std::result::Result<T, StoreError>;

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain rows serialise")
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
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
            txn.open_table(JOBS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(CHECKPOINTS)?;
            txn.open_table(FILES)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// Stores a new job, `make(seq)`, under the next sequence number (which it sets).
    pub fn insert_job(&self, make: impl FnOnce(u64) -> Job) -> Result<Job> {
        let txn = self.db.begin_write()?;
        let job = {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get("next_job")?.map_or(1, |v| v.value());
            meta.insert("next_job", seq + 1)?;
            let mut job = make(seq);
            job.seq = seq;
            txn.open_table(JOBS)?.insert(seq, encode(&job).as_slice())?;
            job
        };
        txn.commit()?;
        Ok(job)
    }

    pub fn job(&self, seq: u64) -> Result<Option<Job>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        table
            .get(seq)?
            .map(|v| decode("job", v.value()))
            .transpose()
    }

    /// Changes a job in one transaction; `None` if it does not exist.
    pub fn update_job(&self, seq: u64, change: impl FnOnce(&mut Job)) -> Result<Option<Job>> {
        let txn = self.db.begin_write()?;
        let job = {
            let mut table = txn.open_table(JOBS)?;
            let Some(mut job) = table
                .get(seq)?
                .map(|v| decode::<Job>("job", v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            change(&mut job);
            table.insert(seq, encode(&job).as_slice())?;
            job
        };
        txn.commit()?;
        Ok(Some(job))
    }

    /// Jobs newest first, after (older than) `after`, at most `limit`; and whether more remain.
    pub fn jobs(&self, after: Option<u64>, limit: usize) -> Result<(Vec<Job>, bool)> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let end = after.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut more = false;
        for row in table.range(..end)?.rev() {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(decode("job", row?.1.value())?);
        }
        Ok((out, more))
    }

    /// Every job that is not final, oldest first.
    pub fn unfinished(&self) -> Result<Vec<Job>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let job: Job = decode("job", row?.1.value())?;
            if !job.status.is_final() {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Appends an event to a job's log and returns it.
    pub fn add_event(
        &self,
        seq: u64,
        level: &str,
        message: String,
        kind: EventKind,
        data: Value,
    ) -> Result<Event> {
        let txn = self.db.begin_write()?;
        let event = {
            let mut table = txn.open_table(EVENTS)?;
            let n = table
                .range((seq, 0)..=(seq, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(1, |(k, _)| k.value().1 + 1);
            let event = Event {
                n,
                created_at: crate::job::now(),
                level: level.into(),
                message,
                kind,
                data,
            };
            table.insert((seq, n), encode(&event).as_slice())?;
            event
        };
        txn.commit()?;
        Ok(event)
    }

    /// A job's events numbered above `after`, oldest first, at most `limit`.
    pub fn events_since(&self, seq: u64, after: u64, limit: usize) -> Result<Vec<Event>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        table
            .range((seq, after.saturating_add(1))..=(seq, u64::MAX))?
            .take(limit)
            .map(|row| decode("event", row?.1.value()))
            .collect()
    }

    /// A job's events numbered below `before` (all with `None`), newest first, at most
    /// `limit`; and whether more remain.
    pub fn events_before(
        &self,
        seq: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Event>, bool)> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut more = false;
        for row in table.range((seq, 0)..(seq, end))?.rev() {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(decode("event", row?.1.value())?);
        }
        Ok((out, more))
    }

    /// Records a checkpoint (replacing one at the same step).
    pub fn put_checkpoint(&self, seq: u64, checkpoint: &Checkpoint) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(CHECKPOINTS)?
            .insert((seq, checkpoint.step as u64), encode(checkpoint).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// A job's checkpoints, by step.
    pub fn checkpoints(&self, seq: u64) -> Result<Vec<Checkpoint>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHECKPOINTS)?;
        table
            .range((seq, 0)..=(seq, u64::MAX))?
            .map(|row| decode("checkpoint", row?.1.value()))
            .collect()
    }

    /// Takes the next file number (its bytes are written under it before its record).
    pub fn reserve_file(&self) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let seq = {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get("next_file")?.map_or(1, |v| v.value());
            meta.insert("next_file", seq + 1)?;
            seq
        };
        txn.commit()?;
        Ok(seq)
    }

    /// Records a file whose bytes are in place.
    pub fn put_file(&self, file: &FileObject) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?
            .insert(file.seq, encode(file).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn delete_file(&self, seq: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?.remove(seq)?;
        txn.commit()?;
        Ok(())
    }

    pub fn file(&self, seq: u64) -> Result<Option<FileObject>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FILES)?;
        table
            .get(seq)?
            .map(|v| decode("file", v.value()))
            .transpose()
    }

    /// Every file, newest first.
    pub fn files(&self) -> Result<Vec<FileObject>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FILES)?;
        let mut out = Vec::new();
        for row in table.iter()?.rev() {
            out.push(decode("file", row?.1.value())?);
        }
        Ok(out)
    }
}
