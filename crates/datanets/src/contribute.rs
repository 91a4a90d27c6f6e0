//! Contributing: upload (validate and store, marked pending), attach the contributor's
//! signed metadata (which yields the `contribute` call to send), and settle what never
//! landed. [`Datanets::contribute`] runs all of it for a contributor whose key is at hand;
//! the REST API runs the steps apart so that the contributor's wallet signs and sends.

use crate::{
    format::Format,
    index::Status,
    metadata::{ContributionMetadata, SignedMetadata},
    minhash::{LshIndex, Signature, PERMUTATIONS},
    service::{event_in, now, Datanets, Progress},
    store::keys,
    validate::{self, Report},
    DatanetsError,
};
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::{Eip712Domain, SolCall};
use openledger_protocol::{client::ClientError, datanet_registry::DatanetRegistry, ProtocolClient};
use serde::{Deserialize, Serialize};
use std::{path::Path, sync::Arc, time::Duration};

/// A stored upload that waits for its transaction.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    datanet: u64,
    content_hash: B256,
    contributor: Address,
    created: u64,
    /// Its canonical size, counted against the contributor's quota.
    #[serde(default)]
    size: u64,
}

/// A validated, stored upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Uploaded {
    pub datanet: u64,
    pub contributor: Address,
    pub content_hash: B256,
    pub size: u64,
    pub report: Report,
    /// Set when this exact file already is this contributor's contribution to the datanet.
    pub existing: Option<u64>,
}

impl Uploaded {
    /// The metadata the contributor signs for this upload.
    pub fn metadata(&self, licence: &str, tags: &[String]) -> ContributionMetadata {
        ContributionMetadata {
            datanetId: U256::from(self.datanet),
            contentHash: self.content_hash,
            size: self.size,
            records: self.report.records,
            licence: licence.to_string(),
            tags: tags.to_vec(),
            time: now(),
        }
    }
}

/// The transaction that registers an upload: `to`, calldata and the fee as value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub to: Address,
    pub data: Bytes,
    pub value: U256,
}

impl Call {
    /// The call `call` to `to` with `value`.
    pub fn new(to: Address, call: impl SolCall, value: U256) -> Self {
        Self {
            to,
            data: call.abi_encode().into(),
            value,
        }
    }

    /// Sends it from `from`'s account and waits for it (`what` names it in errors).
    pub async fn send(
        &self,
        from: &ProtocolClient,
        what: &str,
    ) -> Result<openledger_protocol::client::Receipt, ClientError> {
        from.send_raw(what, self.to, self.data.clone(), self.value)
            .await
    }
}

/// A contribution made (or found already made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contributed {
    pub id: u64,
    pub report: Report,
    /// True when this exact file was already this contributor's contribution.
    pub existing: bool,
}

impl Datanets {
    /// Tells the service's observer, and this call's if any, how `what` is going.
    fn report(
        &self,
        what: &'static str,
        call: Option<Progress>,
    ) -> impl Fn(u64, u64) + Send + Sync + 'static {
        let observers: Vec<Progress> = self.progress.iter().cloned().chain(call).collect();
        move |done, total| observers.iter().for_each(|p| p(what, done, total))
    }

    /// Validates `file` (in `format`) as `contributor`'s contribution to `datanet` and stores
    /// it, marked pending until its transaction lands. A refused file stores nothing. If this
    /// contributor already contributed this exact file, says so and stores nothing.
    pub async fn upload(
        &self,
        datanet: u64,
        file: &Path,
        format: Format,
        contributor: Address,
    ) -> Result<Uploaded, DatanetsError> {
        self.upload_reporting(datanet, file, format, contributor, None)
            .await
    }

    /// [`Self::upload`], telling `progress` how checking goes.
    pub async fn upload_reporting(
        &self,
        datanet: u64,
        file: &Path,
        format: Format,
        contributor: Address,
        progress: Option<Progress>,
    ) -> Result<Uploaded, DatanetsError> {
        self.sync().await?;
        let row = self.datanet(datanet)?;
        let total = std::fs::metadata(file)
            .map_err(|e| DatanetsError::Io(format!("opening {}: {e}", file.display())))?
            .len();
        self.check_quotas(contributor, total).await?;
        let schema = jsonschema::validator_for(&self.schema(&row).await?)
            .map_err(|e| DatanetsError::BadSchema(e.to_string()))?;
        let staged = tempfile::Builder::new()
            .suffix(".part")
            .tempfile_in(&self.staging)
            .map_err(|e| DatanetsError::Io(format!("staging: {e}")))?;
        let near = self.accepted_index(datanet).await?;
        let checking = self.report("checking", progress);
        let (source, policy, path) = (
            file.to_path_buf(),
            self.policy.clone(),
            staged.path().to_path_buf(),
        );
        let validated = tokio::task::spawn_blocking(move || {
            let near = (!near.is_empty()).then_some(&*near);
            validate::stage_and_check(&source, format, &path, &schema, &policy, near, &|done| {
                checking(done, total)
            })
        })
        .await
        .expect("validation does not panic")?;
        let (hash, size) = (validated.content_hash, validated.size);

        if let Some(existing) = self.index.by_hash(hash, datanet)? {
            let found = self
                .index
                .contribution(existing)?
                .ok_or(DatanetsError::UnknownContribution(existing))?;
            if found.contributor == contributor && found.status != Status::Rejected {
                let report = self
                    .store
                    .get_json(&keys::contribution(datanet, hash, "report.json"))
                    .await?
                    .ok_or_else(|| {
                        DatanetsError::Io(format!("contribution {existing} has no stored report"))
                    })?;
                return Ok(Uploaded {
                    datanet,
                    contributor,
                    content_hash: hash,
                    size,
                    report,
                    existing: Some(existing),
                });
            }
            return Err(DatanetsError::ExactDuplicate {
                datanet,
                contribution: existing,
                status: found.status,
            });
        }

        let checked = validated.checked?;

        // Marked pending first, so that a crash part-way leaves something `sweep` finds.
        let pending = Pending {
            datanet,
            content_hash: hash,
            contributor,
            created: now(),
            size,
        };
        self.store
            .put_json(&keys::pending(datanet, hash, contributor), &pending)
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
            .put(
                &keys::contribution(datanet, hash, "minhash.bin"),
                signatures_bytes(&checked.signatures),
            )
            .await?;
        Ok(Uploaded {
            datanet,
            contributor,
            content_hash: hash,
            size,
            report: checked.report,
            existing: None,
        })
    }

    /// Attaches the contributor's signed metadata to its pending upload (the signer's) and
    /// returns the transaction that registers it (the contributor's account must send it).
    pub async fn attach(
        &self,
        datanet: u64,
        content_hash: B256,
        signed: &SignedMetadata,
    ) -> Result<Call, DatanetsError> {
        let signer = signed.signer(&self.domain)?;
        let Some(pending) = self
            .store
            .get_json::<Pending>(&keys::pending(datanet, content_hash, signer))
            .await?
        else {
            // Someone else's upload of these bytes: say whose key should have signed.
            if let Some(key) = self
                .store
                .list(&keys::pending_of(datanet, content_hash))
                .await?
                .first()
            {
                if let Some(other) = self.store.get_json::<Pending>(key).await? {
                    return Err(crate::metadata::MetadataError::WrongSigner {
                        signer,
                        contributor: other.contributor,
                    }
                    .into());
                }
            }
            return Err(DatanetsError::NoUpload {
                datanet,
                content_hash,
            });
        };
        let report: Report = self
            .store
            .get_json(&keys::contribution(datanet, content_hash, "report.json"))
            .await?
            .ok_or(DatanetsError::NoUpload {
                datanet,
                content_hash,
            })?;
        signed.verify(
            &self.domain,
            pending.contributor,
            datanet,
            content_hash,
            report.bytes,
            report.records,
        )?;
        self.store
            .put_json(
                &keys::metadata(datanet, content_hash, pending.contributor),
                signed,
            )
            .await?;
        let fee = self.datanet(datanet)?.fee;
        Ok(Call::new(
            self.registry,
            DatanetRegistry::contributeCall {
                datanetId: U256::from(datanet),
                contentHash: content_hash,
                size: report.bytes,
                metadataHash: signed.hash(&self.domain),
            },
            U256::from(fee),
        ))
    }

    /// Contributes `file` to `datanet` from `contributor`'s account: validates and stores
    /// it, signs its metadata with the contributor's key, and submits it with the fee.
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
        let uploaded = self.upload(datanet, file, format, account).await?;
        if let Some(id) = uploaded.existing {
            return Ok(Contributed {
                id,
                report: uploaded.report,
                existing: true,
            });
        }
        let hash = uploaded.content_hash;
        let signed = sign(uploaded.metadata(licence, tags), &self.domain);
        let call = match self.attach(datanet, hash, &signed).await {
            Ok(call) => call,
            Err(e) => {
                self.remove_contribution_files(datanet, hash, account)
                    .await?;
                return Err(e);
            }
        };
        let receipt = match call.send(contributor, "contribute").await {
            Ok(receipt) => receipt,
            Err(e @ (ClientError::Reverted { .. } | ClientError::NoSigner)) => {
                // Refused before anything was sent: nothing will land.
                self.remove_contribution_files(datanet, hash, account)
                    .await?;
                return Err(e.into());
            }
            // Sent but unconfirmed: the mark stays for `sweep` to settle.
            Err(e) => return Err(e.into()),
        };
        let id = event_in::<DatanetRegistry::ContributionSubmitted>(&receipt.logs)
            .map(|e| e.contributionId.saturating_to())
            .ok_or_else(|| {
                DatanetsError::Io("contribute emitted no ContributionSubmitted".into())
            })?;
        self.store
            .delete(&keys::pending(datanet, hash, account))
            .await?;
        self.sync().await?;
        Ok(Contributed {
            id,
            report: uploaded.report,
            existing: false,
        })
    }

    /// Removes a contributor's pending upload and its signed metadata, and the files shared
    /// by everyone who uploaded these bytes (report, signatures, blob) unless another upload
    /// or contribution still needs them.
    async fn remove_contribution_files(
        &self,
        datanet: u64,
        hash: B256,
        contributor: Address,
    ) -> Result<(), DatanetsError> {
        self.store
            .delete(&keys::metadata(datanet, hash, contributor))
            .await?;
        self.store
            .delete(&keys::pending(datanet, hash, contributor))
            .await?;
        let others = !self
            .store
            .list(&keys::pending_of(datanet, hash))
            .await?
            .is_empty();
        if others || self.index.by_hash(hash, datanet)?.is_some() {
            return Ok(());
        }
        for file in ["report.json", "minhash.bin"] {
            self.store
                .delete(&keys::contribution(datanet, hash, file))
                .await?;
        }
        if !self.index.holds_content(hash)? {
            self.store.delete(&keys::blob(hash)).await?;
        }
        Ok(())
    }

    /// Refuses an upload of `size` bytes from `contributor` when it would pass the
    /// contributor's quota of waiting uploads, or the service's.
    pub async fn check_quotas(&self, contributor: Address, size: u64) -> Result<(), DatanetsError> {
        let marks = self.store.list("pending").await?;
        let policy = &self.policy;
        if marks.len() >= policy.pending_total {
            return Err(DatanetsError::PendingFull {
                limit: policy.pending_total,
            });
        }
        let suffix = format!("/{contributor:x}.json");
        let (mut mine, mut bytes, mut all_bytes) = (0usize, size, size);
        for key in &marks {
            let Some(p) = self.store.get_json::<Pending>(key).await? else {
                continue;
            };
            all_bytes += p.size;
            if key.ends_with(&suffix) {
                mine += 1;
                bytes += p.size;
            }
        }
        if all_bytes > policy.pending_bytes_total {
            return Err(DatanetsError::PendingBytesFull {
                limit: policy.pending_bytes_total,
            });
        }
        if mine >= policy.pending_per_contributor {
            return Err(DatanetsError::ContributorQuota {
                contributor,
                what: format!("{mine} uploads"),
            });
        }
        if bytes > policy.pending_bytes_per_contributor {
            return Err(DatanetsError::ContributorQuota {
                contributor,
                what: format!(
                    "uploads of {} bytes with this one (the most is {})",
                    bytes, policy.pending_bytes_per_contributor
                ),
            });
        }
        Ok(())
    }

    /// Settles uploads not yet seen on chain: those that landed lose their pending mark;
    /// those older than `max_age` that never landed are removed. Returns how many were
    /// removed.
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
                let (datanet, hash) = (pending.datanet, pending.content_hash);
                self.remove_contribution_files(datanet, hash, pending.contributor)
                    .await?;
                // A mark in the layout before marks were kept per contributor has another key.
                self.store.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The near-duplicate index of a datanet's accepted records.
    /// Kept per datanet and rebuilt only when its accepted set has changed.
    async fn accepted_index(&self, datanet: u64) -> Result<Arc<LshIndex>, DatanetsError> {
        let accepted: Vec<_> = self
            .index
            .contributions(datanet)?
            .into_iter()
            .filter(|c| c.status == Status::Accepted)
            .collect();
        let ids: Vec<u64> = accepted.iter().map(|c| c.id).collect();
        if let Some((cached, index)) = self.near_cache.lock().expect("not poisoned").get(&datanet) {
            if *cached == ids {
                return Ok(index.clone());
            }
        }
        let mut index = LshIndex::new(self.policy.near_duplicate_threshold);
        for c in &accepted {
            let key = keys::contribution(datanet, c.content_hash, "minhash.bin");
            if let Some(bytes) = self.store.get(&key).await? {
                for sig in signatures_from(&bytes) {
                    index.insert(c.id, sig);
                }
            }
        }
        let index = Arc::new(index);
        self.near_cache
            .lock()
            .expect("not poisoned")
            .insert(datanet, (ids, index.clone()));
        Ok(index)
    }
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
