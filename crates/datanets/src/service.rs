//! [`Datanets`]: the service that ties format, validation, metadata, blob store, index and
//! chain together. Reads go through its own client; each write takes the client of whoever
//! acts (owner, contributor, curator), whose key signs.

use crate::{
    format::{self, Format},
    index::{ContributionRow, DatanetRow, Index, Status},
    metadata::{self, ContributionMetadata, SignedMetadata},
    minhash::{LshIndex, Signature, PERMUTATIONS},
    store::{keys, Store},
    validate::{self, Policy, Report},
    DatanetsError,
};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{Eip712Domain, SolEvent, SolEventInterface};
use openledger_protocol::{
    client::{ClientError, Log},
    datanet_registry::DatanetRegistry::{self, DatanetRegistryEvents},
    ProtocolClient,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Logs asked for per `eth_getLogs` request while syncing.
const SYNC_BLOCKS: u64 = 10_000;

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

/// A contribution made (or found already made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contributed {
    pub id: u64,
    pub report: Report,
    /// True when this exact file was already this contributor's contribution.
    pub existing: bool,
}

/// A pending contribution as curators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueEntry {
    pub contribution: ContributionRow,
    pub report: Option<Report>,
    pub metadata: Option<SignedMetadata>,
}

/// What a pending marker records.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    datanet: u64,
    content_hash: B256,
    contributor: Address,
    created: u64,
}

/// The datanet service.
pub struct Datanets {
    pub(crate) client: ProtocolClient,
    pub(crate) store: Store,
    pub(crate) index: Index,
    pub(crate) registry: Address,
    pub(crate) domain: Eip712Domain,
    policy: Policy,
    staging: PathBuf,
    sync_lock: tokio::sync::Mutex<()>,
}

fn now() -> u64 {
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
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The EIP-712 domain contributors sign metadata under.
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
        let head = self.client.block_number().await?;
        let mut from = self.index.next_block()?;
        while from <= head {
            let to = (from + SYNC_BLOCKS - 1).min(head);
            let filter = json!({
                "address": self.registry,
                "fromBlock": format!("{from:#x}"),
                "toBlock": format!("{to:#x}"),
            });
            let logs: Vec<Log> = self
                .client
                .rpc()
                .request("eth_getLogs", json!([filter]))
                .await
                .map_err(ClientError::from)?;
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

    /// Creates a datanet owned by `owner`'s account: stores its schema and description, then
    /// registers it. Returns its id.
    pub async fn create(
        &self,
        owner: &ProtocolClient,
        spec: &NewDatanet,
    ) -> Result<u64, DatanetsError> {
        jsonschema::validator_for(&spec.schema)
            .map_err(|e| DatanetsError::BadSchema(e.to_string()))?;
        let schema_bytes = canonical_json(&spec.schema);
        let schema_hash = keccak256(&schema_bytes);
        let description =
            json!({"name": spec.name, "description": spec.description, "schema": schema_hash});
        let description_bytes = canonical_json(&description);
        let description_hash = keccak256(&description_bytes);
        self.store
            .put(&keys::schema(schema_hash), schema_bytes)
            .await?;
        let description_key = keys::description(description_hash);
        self.store.put(&description_key, description_bytes).await?;
        let receipt = owner
            .send(
                self.registry,
                DatanetRegistry::createDatanetCall {
                    metadataURI: format!("openledger:{description_key}"),
                    schemaHash: schema_hash,
                    quorum: spec.quorum,
                    fee: spec.fee,
                },
                U256::ZERO,
            )
            .await?;
        let id = event_in::<DatanetRegistry::DatanetCreated>(&receipt.logs)
            .map(|e| e.datanetId.saturating_to())
            .ok_or_else(|| DatanetsError::Io("createDatanet emitted no DatanetCreated".into()))?;
        self.sync().await?;
        Ok(id)
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

    /// Contributes `file` to `datanet` from `contributor`'s account: validates it, signs its
    /// metadata with the contributor's key, stores it, and submits it with the fee.
    ///
    /// Nothing is half-done: a refused file stores nothing and sends nothing; the blob is
    /// stored before the transaction and removed again if the contract refuses it (or by
    /// [`Self::sweep`] if the transaction never lands); the same file from the same
    /// contributor again returns the existing contribution.
    pub async fn contribute(
        &self,
        contributor: &ProtocolClient,
        datanet: u64,
        file: &Path,
        licence: &str,
        tags: &[String],
    ) -> Result<Contributed, DatanetsError> {
        let key = contributor
            .signer()
            .ok_or(DatanetsError::NoSigner)?
            .key()
            .clone();
        self.contribute_with(contributor, datanet, file, licence, tags, move |m, d| {
            SignedMetadata::sign(m, d, &key)
        })
        .await
    }

    /// [`Self::contribute`] with the metadata signed by `sign` (a wallet, a remote signer);
    /// the signature must recover to the contributor's account.
    pub async fn contribute_with(
        &self,
        contributor: &ProtocolClient,
        datanet: u64,
        file: &Path,
        licence: &str,
        tags: &[String],
        sign: impl FnOnce(ContributionMetadata, &Eip712Domain) -> SignedMetadata,
    ) -> Result<Contributed, DatanetsError> {
        let account = contributor.sender().ok_or(DatanetsError::NoSigner)?;
        let format = Format::from_path(file)?;
        self.sync().await?;
        let row = self.datanet(datanet)?;
        let schema = jsonschema::validator_for(&self.schema(&row).await?)
            .map_err(|e| DatanetsError::BadSchema(e.to_string()))?;
        let near = Arc::new(self.accepted_index(datanet).await?);

        let source = file.to_path_buf();
        let staged = tempfile::Builder::new()
            .suffix(".part")
            .tempfile_in(&self.staging)
            .map_err(|e| DatanetsError::Io(format!("staging: {e}")))?;
        let policy = self.policy.clone();
        let (staged, (hash, size)) = {
            let mut staged = staged;
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || {
                let mut input = std::fs::File::open(&source)
                    .map_err(|e| DatanetsError::Io(format!("opening {}: {e}", source.display())))?;
                let out = staged.as_file_mut();
                let mut writer = std::io::BufWriter::new(out);
                let hashed = format::stage(&mut input, format, &mut writer, policy.max_bytes)?;
                std::io::Write::flush(&mut writer).map_err(|e| DatanetsError::Io(e.to_string()))?;
                drop(writer);
                Ok::<_, DatanetsError>((staged, hashed))
            })
            .await
            .expect("staging does not panic")?
        };

        if let Some(existing) = self.index.by_hash(hash, datanet)? {
            let found = self
                .index
                .contribution(existing)?
                .ok_or(DatanetsError::UnknownContribution(existing))?;
            if found.contributor == account && found.status != Status::Rejected {
                let report = self
                    .store
                    .get_json(&keys::contribution(datanet, hash, "report.json"))
                    .await?
                    .ok_or_else(|| {
                        DatanetsError::Io(format!("contribution {existing} has no stored report"))
                    })?;
                return Ok(Contributed {
                    id: existing,
                    report,
                    existing: true,
                });
            }
            return Err(DatanetsError::ExactDuplicate {
                datanet,
                contribution: existing,
                status: found.status,
            });
        }

        let checked = {
            let path = staged.path().to_path_buf();
            let near = near.clone();
            tokio::task::spawn_blocking(move || {
                let near = (!near.is_empty()).then_some(&*near);
                validate::check(&path, format, (hash, size), &schema, &policy, near)
            })
            .await
            .expect("validation does not panic")?
        };

        let signed = sign(
            ContributionMetadata {
                datanetId: U256::from(datanet),
                contentHash: hash,
                size,
                records: checked.report.records,
                licence: licence.to_string(),
                tags: tags.to_vec(),
                time: now(),
            },
            &self.domain,
        );
        signed.verify(
            &self.domain,
            account,
            datanet,
            hash,
            size,
            checked.report.records,
        )?;
        let metadata_hash = signed.hash(&self.domain);

        // Stored before the transaction, marked pending until it lands.
        let pending_key = keys::pending(datanet, hash);
        self.store
            .put_json(
                &pending_key,
                &Pending {
                    datanet,
                    content_hash: hash,
                    contributor: account,
                    created: now(),
                },
            )
            .await?;
        self.store
            .put_file(&keys::blob(hash), staged.path())
            .await?;
        drop(staged);
        self.store
            .put_json(
                &keys::contribution(datanet, hash, "report.json"),
                &checked.report,
            )
            .await?;
        self.store
            .put_json(&keys::contribution(datanet, hash, "metadata.json"), &signed)
            .await?;
        self.store
            .put(
                &keys::contribution(datanet, hash, "minhash.bin"),
                signatures_bytes(&checked.signatures),
            )
            .await?;

        let sent = contributor
            .send(
                self.registry,
                DatanetRegistry::contributeCall {
                    datanetId: U256::from(datanet),
                    contentHash: hash,
                    size,
                    metadataHash: metadata_hash,
                },
                U256::from(row.fee),
            )
            .await;
        let receipt = match sent {
            Ok(receipt) => receipt,
            Err(e @ ClientError::Reverted { .. }) | Err(e @ ClientError::NoSigner) => {
                // Refused before anything was sent: nothing will land.
                self.remove_contribution_files(datanet, hash).await?;
                return Err(e.into());
            }
            // Sent but unconfirmed: the marker stays for `sweep` to settle.
            Err(e) => return Err(e.into()),
        };
        let id = event_in::<DatanetRegistry::ContributionSubmitted>(&receipt.logs)
            .map(|e| e.contributionId.saturating_to())
            .ok_or_else(|| {
                DatanetsError::Io("contribute emitted no ContributionSubmitted".into())
            })?;
        self.store.delete(&pending_key).await?;
        self.sync().await?;
        Ok(Contributed {
            id,
            report: checked.report,
            existing: false,
        })
    }

    /// Removes a contribution's files, and its blob unless another contribution holds it.
    async fn remove_contribution_files(
        &self,
        datanet: u64,
        hash: B256,
    ) -> Result<(), DatanetsError> {
        for file in ["report.json", "metadata.json", "minhash.bin"] {
            self.store
                .delete(&keys::contribution(datanet, hash, file))
                .await?;
        }
        if !self.index.holds_content(hash)? {
            self.store.delete(&keys::blob(hash)).await?;
        }
        self.store.delete(&keys::pending(datanet, hash)).await?;
        Ok(())
    }

    /// Settles contributions stored but not yet seen on chain: those that landed lose their
    /// pending mark; those older than `max_age` that never landed are removed. Returns how
    /// many were removed.
    pub async fn sweep(&self, max_age: Duration) -> Result<usize, DatanetsError> {
        self.sync().await?;
        let mut removed = 0;
        for key in self.store.list("pending").await? {
            let Some(pending) = self.store.get_json::<Pending>(&key).await? else {
                continue;
            };
            let landed = self
                .index
                .by_hash(pending.content_hash, pending.datanet)?
                .and_then(|id| self.index.contribution(id).ok().flatten())
                .is_some_and(|c| c.contributor == pending.contributor);
            if landed {
                self.store.delete(&key).await?;
            } else if now().saturating_sub(pending.created) >= max_age.as_secs() {
                self.remove_contribution_files(pending.datanet, pending.content_hash)
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The near-duplicate index of a datanet's accepted records.
    async fn accepted_index(&self, datanet: u64) -> Result<LshIndex, DatanetsError> {
        let mut index = LshIndex::new(self.policy.near_duplicate_threshold);
        for c in self.index.contributions(datanet)? {
            if c.status != Status::Accepted {
                continue;
            }
            let key = keys::contribution(datanet, c.content_hash, "minhash.bin");
            if let Some(bytes) = self.store.get(&key).await? {
                for sig in signatures_from(&bytes) {
                    index.insert(c.id, sig);
                }
            }
        }
        Ok(index)
    }

    /// Pending contributions of a datanet with their reports and signed metadata.
    pub async fn queue(&self, datanet: u64) -> Result<Vec<QueueEntry>, DatanetsError> {
        self.sync().await?;
        self.datanet(datanet)?;
        let mut out = Vec::new();
        for c in self.index.contributions(datanet)? {
            if c.status != Status::Pending {
                continue;
            }
            let report = self
                .store
                .get_json(&keys::contribution(datanet, c.content_hash, "report.json"))
                .await?;
            let metadata = self
                .store
                .get_json(&keys::contribution(
                    datanet,
                    c.content_hash,
                    "metadata.json",
                ))
                .await?;
            out.push(QueueEntry {
                contribution: c,
                report,
                metadata,
            });
        }
        Ok(out)
    }

    /// `curator`'s vote on a pending contribution; the reason's hash goes on chain and its
    /// text into the blob store.
    pub async fn review(
        &self,
        curator: &ProtocolClient,
        contribution: u64,
        approve: bool,
        reason: &str,
    ) -> Result<ContributionRow, DatanetsError> {
        let account = curator.sender().ok_or(DatanetsError::NoSigner)?;
        self.sync().await?;
        let row = self
            .index
            .contribution(contribution)?
            .ok_or(DatanetsError::UnknownContribution(contribution))?;
        let reason_hash = keccak256(reason.as_bytes());
        curator
            .send(
                self.registry,
                DatanetRegistry::reviewCall {
                    contributionId: U256::from(contribution),
                    approve,
                    reasonHash: reason_hash,
                },
                U256::ZERO,
            )
            .await?;
        self.store
            .put_json(
                &keys::contribution(
                    row.datanet,
                    row.content_hash,
                    &format!("reviews/{account:x}.json"),
                ),
                &json!({"approve": approve, "reason": reason, "reason_hash": reason_hash}),
            )
            .await?;
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

fn signatures_bytes(signatures: &[Signature]) -> Bytes {
    let mut out = Vec::with_capacity(signatures.len() * PERMUTATIONS * 4);
    for sig in signatures {
        for v in sig {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.into()
}

fn signatures_from(bytes: &[u8]) -> impl Iterator<Item = Signature> + '_ {
    bytes.chunks_exact(PERMUTATIONS * 4).map(|chunk| {
        std::array::from_fn(|i| {
            u32::from_le_bytes(chunk[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
        })
    })
}
