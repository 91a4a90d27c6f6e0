//! [`Datanets`]: the service that ties format, validation, metadata, blob store, index and
//! chain together. Reads go through its own client; each write takes the client of whoever
//! acts (owner, contributor, curator), whose key signs.

use crate::{
    contribute::Call,
    drafts::Anchor,
    index::{ContributionRow, DatanetRow, Index, Status},
    merkle::VersionTree,
    metadata::{self, SignedMetadata},
    store::{keys, Store},
    validate::{Policy, Report},
    DatanetsError,
};
use alloy_primitives::{keccak256, Address, U256};
use alloy_sol_types::{Eip712Domain, SolEvent, SolEventInterface};
use openledger_protocol::{
    client::Log,
    datanet_registry::DatanetRegistry::{self, DatanetRegistryEvents},
    ProtocolClient,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// A datanet to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewDatanet {
    pub name: String,
    pub description: String,
    /// The JSON Schema every record must follow.
    pub schema: Value,
    /// Curator votes on one side that decide a contribution.
    pub quorum: u16,
    /// OPEN (wei) each contribution deposits.
    pub fee: u128,
}

/// A pending contribution as curators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueEntry {
    pub contribution: ContributionRow,
    pub report: Option<Report>,
    pub metadata: Option<SignedMetadata>,
}

/// The datanet service.
pub struct Datanets {
    pub(crate) client: ProtocolClient,
    pub(crate) store: Store,
    pub(crate) index: Index,
    pub(crate) registry: Address,
    pub(crate) domain: Eip712Domain,
    pub(crate) policy: Policy,
    pub(crate) staging: PathBuf,
    pub(crate) progress: Option<Progress>,
    /// Near-duplicate indexes of accepted records, by datanet, with the accepted ids they hold.
    pub(crate) near_cache: std::sync::Mutex<NearCache>,
    /// Version trees already built, by version id.
    pub(crate) trees: std::sync::Mutex<std::collections::HashMap<u64, Arc<VersionTree>>>,
    sync_lock: tokio::sync::Mutex<()>,
    /// Orders drafting and sweeping drafts, and counts the drafts waiting.
    pub(crate) drafting: crate::drafts::DraftLock,
    /// Uploads being received and checked at once; more are refused (429), so that strangers
    /// cannot fill the staging disk with concurrent streams.
    uploads: Arc<tokio::sync::Semaphore>,
}

/// The largest schema a new datanet may have, canonical JSON bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// The largest name and description a new datanet may have together, JSON bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 16 << 10;
/// The longest reason a curator may give, bytes.
pub const MAX_REASON_BYTES: usize = 4 << 10;

/// How many uploads the service receives and checks at once.
pub const CONCURRENT_UPLOADS: usize = 4;

type NearCache = std::collections::HashMap<u64, (Vec<u64>, Arc<crate::minhash::LshIndex>)>;

/// Hears how long work is going: (what, done, total), in bytes.
pub type Progress = Arc<dyn Fn(&'static str, u64, u64) + Send + Sync>;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Canonical JSON (keys sorted at every level, no spaces), for hashing schemas.
fn canonical_json(value: &Value) -> Vec<u8> {
    // serde_json's map is ordered by key, so serialising sorts every object.
    serde_json::to_vec(value).expect("a JSON value serialises")
}

impl Datanets {
    /// Opens the service over `client` (which must know the protocol's addresses), the blob
    /// `store`, and `dir` for the index and staging files.
    pub fn open(
        client: ProtocolClient,
        store: Store,
        dir: &Path,
        policy: Policy,
    ) -> Result<Self, DatanetsError> {
        let registry = client
            .addresses()
            .ok_or(DatanetsError::NoAddresses)?
            .datanet_registry;
        let staging = dir.join("staging");
        std::fs::create_dir_all(&staging)
            .map_err(|e| DatanetsError::Io(format!("creating {}: {e}", staging.display())))?;
        // Staged files of a process that died are worthless.
        for entry in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let index = Index::open(&dir.join("index.redb"))?;
        let domain = metadata::domain(client.chain_id(), registry);
        Ok(Self {
            client,
            store,
            index,
            registry,
            domain,
            policy,
            staging,
            progress: None,
            near_cache: Default::default(),
            trees: Default::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            drafting: Default::default(),
            uploads: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_UPLOADS)),
        })
    }

    /// Reports progress of long work (hashing and checking uploads) to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Where uploads are staged (on the same disk as the index).
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// What validation enforces.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The EIP-712 domain contributors sign metadata under.
    /// A slot to receive and check one upload in, or `Busy` when all are taken.
    pub fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, DatanetsError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| DatanetsError::Busy {
                limit: CONCURRENT_UPLOADS,
            })
    }

    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    /// The index (read it after [`Self::sync`]).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The blob store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies the registry's new events to the index; returns the next block to read.
    pub async fn sync(&self) -> Result<u64, DatanetsError> {
        let _guard = self.sync_lock.lock().await;
        if self.index.needs_rebuild() {
            tracing::warn!("rebuilding the datanet index from the chain's logs");
            self.index.clear()?;
            if let Ok(mut cache) = self.near_cache.lock() {
                cache.clear();
            }
        }
        let head = self.client.block_number().await?;
        let mut from = self.index.next_block()?;
        let filter = json!({"address": self.registry});
        while from <= head {
            let (logs, to) = self.client.logs_page(&filter, from, head).await?;
            let mut events = Vec::with_capacity(logs.len());
            for log in logs {
                // Events of other contract versions are not ours to read.
                if let Ok(event) = DatanetRegistryEvents::decode_raw_log(&log.topics, &log.data) {
                    events.push((log.block_number.map_or(0, |n| n.to()), event));
                }
            }
            self.index.apply(&events, to + 1)?;
            from = to + 1;
        }
        Ok(from)
    }

    /// Stores a new datanet's schema and description and returns the `createDatanet` call
    /// that registers it (the owner's account sends it).
    pub async fn prepare_create(&self, spec: &NewDatanet) -> Result<Call, DatanetsError> {
        jsonschema::validator_for(&spec.schema)
            .map_err(|e| DatanetsError::BadSchema(e.to_string()))?;
        let schema_bytes = canonical_json(&spec.schema);
        let schema_hash = keccak256(&schema_bytes);
        let description =
            json!({"name": spec.name, "description": spec.description, "schema": schema_hash});
        let description_bytes = canonical_json(&description);
        let description_hash = keccak256(&description_bytes);
        let description_key = keys::description(description_hash);
        for (what, bytes, max) in [
            ("schema", &schema_bytes, MAX_SCHEMA_BYTES),
            (
                "name and description",
                &description_bytes,
                MAX_DESCRIPTION_BYTES,
            ),
        ] {
            if bytes.len() > max {
                return Err(DatanetsError::TooLarge { what, max });
            }
        }
        let anchor = Anchor::Datanet {
            description: description_key.clone(),
            schema: schema_hash,
        };
        let blobs = vec![
            (keys::schema(schema_hash), schema_bytes),
            (description_key.clone(), description_bytes),
        ];
        self.draft(description_hash, anchor, blobs).await?;
        Ok(Call::new(
            self.registry,
            DatanetRegistry::createDatanetCall {
                metadataURI: format!("openledger:{description_key}"),
                schemaHash: schema_hash,
                quorum: spec.quorum,
                fee: spec.fee,
            },
            U256::ZERO,
        ))
    }

    /// Creates a datanet owned by `owner`'s account: stores its schema and description, then
    /// registers it. Returns its id.
    pub async fn create(
        &self,
        owner: &ProtocolClient,
        spec: &NewDatanet,
    ) -> Result<u64, DatanetsError> {
        let call = self.prepare_create(spec).await?;
        let receipt = call.send(owner, "createDatanet").await?;
        let id = event_in::<DatanetRegistry::DatanetCreated>(&receipt.logs)
            .map(|e| e.datanetId.saturating_to())
            .ok_or_else(|| DatanetsError::Io("createDatanet emitted no DatanetCreated".into()))?;
        self.sync().await?;
        Ok(id)
    }

    /// A datanet's description (name, description), from the blob store.
    pub async fn description(&self, datanet: &DatanetRow) -> Result<Option<Value>, DatanetsError> {
        // Only the service's own key form: a datanet's owner chose this string, and any other
        // key would let it read (and serve) whatever else the store holds.
        match keys::from_metadata_uri(&datanet.metadata_uri) {
            Some(key) => Ok(self.store.get_json(&key).await?),
            None => Ok(None),
        }
    }

    /// A datanet's row, or `UnknownDatanet`.
    pub fn datanet(&self, id: u64) -> Result<DatanetRow, DatanetsError> {
        self.index
            .datanet(id)?
            .ok_or(DatanetsError::UnknownDatanet(id))
    }

    /// A datanet's schema, from the blob store.
    pub async fn schema(&self, datanet: &DatanetRow) -> Result<Value, DatanetsError> {
        self.store
            .get_json(&keys::schema(datanet.schema_hash))
            .await?
            .ok_or(DatanetsError::MissingSchema {
                datanet: datanet.id,
                hash: datanet.schema_hash,
            })
    }

    /// Pending contributions of a datanet with their reports and signed metadata.
    pub async fn queue(&self, datanet: u64) -> Result<Vec<QueueEntry>, DatanetsError> {
        self.queue_first(datanet, usize::MAX).await
    }

    /// The oldest `limit` pending contributions of a datanet, with their reports and signed
    /// metadata (only those are read from the store).
    pub async fn queue_first(
        &self,
        datanet: u64,
        limit: usize,
    ) -> Result<Vec<QueueEntry>, DatanetsError> {
        self.sync().await?;
        self.datanet(datanet)?;
        let mut out = Vec::new();
        let pending = self.index.contributions(datanet)?.into_iter();
        for c in pending.filter(|c| c.status == Status::Pending).take(limit) {
            let report = self
                .store
                .get_json(&keys::contribution(datanet, c.content_hash, "report.json"))
                .await?;
            let metadata = self
                .store
                .get_json(&keys::metadata(datanet, c.content_hash, c.contributor))
                .await?;
            out.push(QueueEntry {
                contribution: c,
                report,
                metadata,
            });
        }
        Ok(out)
    }

    /// Stores a curator's written reason and returns the `review` call that casts the vote
    /// (the curator's account sends it).
    pub async fn prepare_review(
        &self,
        contribution: u64,
        approve: bool,
        reason: &str,
    ) -> Result<Call, DatanetsError> {
        self.sync().await?;
        let row = self
            .index
            .contribution(contribution)?
            .ok_or(DatanetsError::UnknownContribution(contribution))?;
        let reason_hash = keccak256(reason.as_bytes());
        let key = keys::contribution(
            row.datanet,
            row.content_hash,
            &format!("reasons/{reason_hash:x}.json"),
        );
        if reason.len() > MAX_REASON_BYTES {
            return Err(DatanetsError::TooLarge {
                what: "reason",
                max: MAX_REASON_BYTES,
            });
        }
        let anchor = Anchor::Review {
            contribution,
            reason: reason_hash,
        };
        // One draft per contribution and reason: the same words for another contribution of
        // the same bytes share the blob, and the sweep checks both before deleting it.
        let id = keccak256([key.as_bytes(), &contribution.to_be_bytes()].concat());
        let bytes = serde_json::to_vec(&json!({"approve": approve, "reason": reason}))
            .expect("JSON serialises");
        self.draft(id, anchor, vec![(key, bytes)]).await?;
        Ok(Call::new(
            self.registry,
            DatanetRegistry::reviewCall {
                contributionId: U256::from(contribution),
                approve,
                reasonHash: reason_hash,
            },
            U256::ZERO,
        ))
    }

    /// `curator`'s vote on a pending contribution; the reason's hash goes on chain and its
    /// text into the blob store. Returns the contribution as it then stands.
    pub async fn review(
        &self,
        curator: &ProtocolClient,
        contribution: u64,
        approve: bool,
        reason: &str,
    ) -> Result<ContributionRow, DatanetsError> {
        curator.sender().ok_or(DatanetsError::NoSigner)?;
        let call = self.prepare_review(contribution, approve, reason).await?;
        call.send(curator, "review").await?;
        self.sync().await?;
        self.index
            .contribution(contribution)?
            .ok_or(DatanetsError::UnknownContribution(contribution))
    }
}

/// The first `E` among a receipt's logs.
pub(crate) fn event_in<E: SolEvent>(logs: &[Log]) -> Option<E> {
    logs.iter()
        .find_map(|log| E::decode_raw_log(log.topics.iter().copied(), &log.data).ok())
}
