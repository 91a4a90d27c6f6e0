//! The embedded index: the registry's state as its events tell it, in redb.
//!
//! Everything here comes from the chain's logs, applied in order, with the next block to read
//! saved in the same write transaction as the events it covers; so a crash never leaves the
//! index between two states, and deleting the file and syncing again rebuilds the same view.
//! A row that does not decode (a damaged or foreign file) is reported as
//! [`IndexError::Corrupt`], never a panic, and marks the index for that rebuild: the service's
//! next sync clears it and reads the registry's logs again from block 0.

use alloy_primitives::{Address, B256};
use openledger_protocol::datanet_registry::DatanetRegistry::DatanetRegistryEvents as Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const DATANETS: TableDefinition<u64, &[u8]> = TableDefinition::new("datanets");
const CONTRIBUTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("contributions");
/// (datanet, contribution) → ().
const BY_DATANET: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_datanet");
/// (content hash, datanet) → contribution.
const BY_HASH: TableDefinition<(&[u8; 32], u64), u64> = TableDefinition::new("by_hash");
const VERSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("versions");
const CURSOR: &str = "next_block";

/// A failure of the index database.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("datanet index: {0}")]
    Db(#[from] redb::Error),
    #[error(
        "datanet index: a {table} row does not decode ({reason}); the index is being rebuilt \
         from the chain's logs, try again shortly"
    )]
    Corrupt { table: &'static str, reason: String },
}

macro_rules! index_err {
    ($($t:ty),*) => {$(impl From<$t> for IndexError {
        fn from(e: $t) -> Self { IndexError::Db(e.into()) }
    })*};
}
index_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A datanet as the registry's events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatanetRow {
    pub id: u64,
    pub owner: Address,
    pub schema_hash: B256,
    pub quorum: u16,
    pub fee: u128,
    pub metadata_uri: String,
    pub created_block: u64,
}

/// Where a contribution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Accepted,
    Rejected,
    Poisoned,
    /// Withdrawn by its contributor after the review period, undecided.
    Withdrawn,
}

/// A contribution as the registry's events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionRow {
    pub id: u64,
    pub datanet: u64,
    pub contributor: Address,
    pub content_hash: B256,
    pub size: u64,
    pub metadata_hash: B256,
    pub fee: u128,
    pub status: Status,
    pub approvals: Vec<Address>,
    pub rejections: Vec<Address>,
    /// Whether a challenge is open.
    pub challenged: bool,
    pub block: u64,
}

/// A published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRow {
    pub id: u64,
    pub datanet: u64,
    pub root: B256,
    pub count: u64,
    pub uri: String,
    pub block: u64,
    /// Whether the root (and count) equal those of the datanet's accepted contributions when
    /// it was published, as the index recomputed them: `false` flags a version whose owner
    /// published something else. `None` for rows indexed before the check existed.
    #[serde(default)]
    pub matches_accepted: Option<bool>,
}

/// The index.
pub struct Index {
    db: Database,
    /// Set when a row failed to decode: the next sync rebuilds.
    corrupt: std::sync::atomic::AtomicBool,
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain rows serialise")
}

/// The tables of rows, cleared together by a rebuild.
const ROW_TABLES: [TableDefinition<u64, &[u8]>; 3] = [DATANETS, CONTRIBUTIONS, VERSIONS];

fn id(value: alloy_primitives::U256) -> u64 {
    value.saturating_to()
}

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(META)?;
            txn.open_table(DATANETS)?;
            txn.open_table(CONTRIBUTIONS)?;
            txn.open_table(BY_DATANET)?;
            txn.open_table(BY_HASH)?;
            txn.open_table(VERSIONS)?;
        }
        txn.commit()?;
        Ok(Self {
            db,
            corrupt: Default::default(),
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: &'static str,
        bytes: &[u8],
    ) -> Result<T, IndexError> {
        serde_json::from_slice(bytes).map_err(|e| {
            self.corrupt
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(table, error = %e, "datanet index row does not decode; rebuilding");
            IndexError::Corrupt {
                table,
                reason: e.to_string(),
            }
        })
    }

    /// Whether a row failed to decode since the last rebuild.
    pub fn needs_rebuild(&self) -> bool {
        self.corrupt.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Empties the index and its cursor, so that syncing reads every log again.
    pub fn clear(&self) -> Result<(), IndexError> {
        let txn = self.db.begin_write()?;
        for table in ROW_TABLES {
            txn.delete_table(table)?;
            txn.open_table(table)?;
        }
        txn.delete_table(BY_DATANET)?;
        txn.open_table(BY_DATANET)?;
        txn.delete_table(BY_HASH)?;
        txn.open_table(BY_HASH)?;
        txn.open_table(META)?.remove(CURSOR)?;
        txn.commit()?;
        self.corrupt
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The next block whose logs have not been applied.
    pub fn next_block(&self) -> Result<u64, IndexError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(CURSOR)?.map_or(0, |v| v.value()))
    }

    /// Applies `events` (in chain order, each with its block) and moves the cursor to
    /// `next_block`, atomically.
    pub fn apply(&self, events: &[(u64, Event)], next_block: u64) -> Result<(), IndexError> {
        let txn = self.db.begin_write()?;
        {
            let mut datanets = txn.open_table(DATANETS)?;
            let mut contributions = txn.open_table(CONTRIBUTIONS)?;
            let mut by_datanet = txn.open_table(BY_DATANET)?;
            let mut by_hash = txn.open_table(BY_HASH)?;
            let mut versions = txn.open_table(VERSIONS)?;
            for (block, event) in events {
                let block = *block;
                // Reads and rewrites one contribution row.
                let mut update = |cid: u64,
                                  f: &dyn Fn(&mut ContributionRow)|
                 -> Result<(), IndexError> {
                    let row = match contributions.get(cid)? {
                        Some(v) => Some(self.decode::<ContributionRow>("contribution", v.value())?),
                        None => None,
                    };
                    if let Some(mut row) = row {
                        f(&mut row);
                        contributions.insert(cid, encode(&row).as_slice())?;
                    }
                    Ok(())
                };
                match event {
                    Event::DatanetCreated(e) => {
                        let row = DatanetRow {
                            id: id(e.datanetId),
                            owner: e.owner,
                            schema_hash: e.schemaHash,
                            quorum: e.quorum,
                            fee: e.fee,
                            metadata_uri: e.metadataURI.clone(),
                            created_block: block,
                        };
                        datanets.insert(row.id, encode(&row).as_slice())?;
                    }
                    Event::ContributionSubmitted(e) => {
                        let row = ContributionRow {
                            id: id(e.contributionId),
                            datanet: id(e.datanetId),
                            contributor: e.contributor,
                            content_hash: e.contentHash,
                            size: e.size,
                            metadata_hash: e.metadataHash,
                            fee: e.fee,
                            status: Status::Pending,
                            approvals: Vec::new(),
                            rejections: Vec::new(),
                            challenged: false,
                            block,
                        };
                        contributions.insert(row.id, encode(&row).as_slice())?;
                        by_datanet.insert((row.datanet, row.id), ())?;
                        by_hash.insert((&row.content_hash.0, row.datanet), row.id)?;
                    }
                    Event::Reviewed(e) => {
                        let (curator, approve) = (e.curator, e.approve);
                        update(id(e.contributionId), &|row| {
                            if approve {
                                row.approvals.push(curator);
                            } else {
                                row.rejections.push(curator);
                            }
                        })?;
                    }
                    Event::ContributionAccepted(e) => {
                        update(id(e.contributionId), &|row| row.status = Status::Accepted)?
                    }
                    Event::ContributionRejected(e) => {
                        update(id(e.contributionId), &|row| row.status = Status::Rejected)?
                    }
                    Event::ContributionPoisoned(e) => {
                        update(id(e.contributionId), &|row| row.status = Status::Poisoned)?
                    }
                    Event::ContributionWithdrawn(e) => {
                        update(id(e.contributionId), &|row| row.status = Status::Withdrawn)?
                    }
                    Event::ContributionChallenged(e) => {
                        update(id(e.contributionId), &|row| row.challenged = true)?
                    }
                    Event::ChallengeResolved(e) => {
                        update(id(e.contributionId), &|row| row.challenged = false)?
                    }
                    Event::VersionPublished(e) => {
                        let datanet = id(e.datanetId);
                        // The accepted set as of this event: every earlier event is applied.
                        let mut members = Vec::new();
                        for entry in by_datanet.range((datanet, 0)..=(datanet, u64::MAX))? {
                            let (_, cid) = entry?.0.value();
                            if let Some(v) = contributions.get(cid)? {
                                let row: ContributionRow =
                                    self.decode("contribution", v.value())?;
                                if row.status == Status::Accepted {
                                    members.push((cid, row.content_hash));
                                }
                            }
                        }
                        let expected = crate::merkle::VersionTree::build(members)
                            .ok()
                            .map(|tree| (tree.root(), tree.len() as u64));
                        let matches = expected == Some((e.root, e.count));
                        if !matches {
                            tracing::warn!(
                                version = id(e.versionId),
                                datanet,
                                "published root does not match the accepted contributions"
                            );
                        }
                        let row = VersionRow {
                            id: id(e.versionId),
                            datanet,
                            root: e.root,
                            count: e.count,
                            uri: e.uri.clone(),
                            block,
                            matches_accepted: Some(matches),
                        };
                        versions.insert(row.id, encode(&row).as_slice())?;
                    }
                    _ => {}
                }
            }
            txn.open_table(META)?.insert(CURSOR, next_block)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A datanet, if indexed.
    pub fn datanet(&self, id: u64) -> Result<Option<DatanetRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATANETS)?;
        table
            .get(id)?
            .map(|v| self.decode("datanet", v.value()))
            .transpose()
    }

    /// Every datanet, by id.
    pub fn datanets(&self) -> Result<Vec<DatanetRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATANETS)?;
        table
            .iter()?
            .map(|r| self.decode("datanet", r?.1.value()))
            .collect()
    }

    /// A contribution, if indexed.
    pub fn contribution(&self, id: u64) -> Result<Option<ContributionRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CONTRIBUTIONS)?;
        table
            .get(id)?
            .map(|v| self.decode("contribution", v.value()))
            .transpose()
    }

    /// A datanet's contributions, by id.
    pub fn contributions(&self, datanet: u64) -> Result<Vec<ContributionRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let ids = txn.open_table(BY_DATANET)?;
        let rows = txn.open_table(CONTRIBUTIONS)?;
        let mut out = Vec::new();
        for entry in ids.range((datanet, 0)..=(datanet, u64::MAX))? {
            let (_, cid) = entry?.0.value();
            if let Some(v) = rows.get(cid)? {
                out.push(self.decode("contribution", v.value())?);
            }
        }
        Ok(out)
    }

    /// The contribution of `content_hash` to `datanet`, if there is one.
    pub fn by_hash(&self, content_hash: B256, datanet: u64) -> Result<Option<u64>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BY_HASH)?;
        Ok(table.get((&content_hash.0, datanet))?.map(|v| v.value()))
    }

    /// Whether any datanet holds a contribution of `content_hash`.
    pub fn holds_content(&self, content_hash: B256) -> Result<bool, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BY_HASH)?;
        let mut range = table.range((&content_hash.0, 0)..=(&content_hash.0, u64::MAX))?;
        Ok(range.next().is_some())
    }

    /// A version, if indexed.
    pub fn version(&self, id: u64) -> Result<Option<VersionRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VERSIONS)?;
        table
            .get(id)?
            .map(|v| self.decode("version", v.value()))
            .transpose()
    }

    /// A datanet's versions (every datanet's with `None`), by id.
    pub fn versions(&self, datanet: Option<u64>) -> Result<Vec<VersionRow>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VERSIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let row: VersionRow = self.decode("version", entry?.1.value())?;
            if datanet.is_none_or(|d| d == row.datanet) {
                out.push(row);
            }
        }
        Ok(out)
    }
}
