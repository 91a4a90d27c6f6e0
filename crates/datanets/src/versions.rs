//! Versions: publishing a datanet's accepted contributions as a Merkle root, proving that a
//! contribution is in a version, checking such proofs (here and by the contract), and
//! exporting a version as a training corpus whose every record names its contribution.

use crate::{
    contribute::Call,
    format::{self, Raw},
    index::Status,
    merkle::{self, VersionTree},
    service::{event_in, Datanets},
    store::keys,
    validate::{Report, ValidationError},
    DatanetsError,
};
use alloy_primitives::{Keccak256, B256, U256};
use futures_util::StreamExt;
use openledger_protocol::{datanet_registry::DatanetRegistry, ProtocolClient};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::{io::Write, sync::Arc};

/// A version's member list as stored beside it (named by its root).
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    datanet: u64,
    root: B256,
    /// (contribution id, content hash), ascending by id.
    members: Vec<(u64, B256)>,
}

/// A published version (`version` is 0 until the transaction lands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub version: u64,
    pub datanet: u64,
    pub root: B256,
    pub count: u64,
}

/// The proof that a contribution is in a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub version: u64,
    pub datanet: u64,
    pub contribution: u64,
    pub content_hash: B256,
    pub root: B256,
    pub leaf: B256,
    pub proof: Vec<B256>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub version: u64,
    pub contributions: u64,
    pub records: u64,
}

impl Datanets {
    /// Builds the next version of `datanet` over all its accepted contributions, stores
    /// its member list, and returns it with the `publishVersion` call (the owner's account
    /// sends it).
    pub async fn prepare_publish(&self, datanet: u64) -> Result<(Published, Call), DatanetsError> {
        self.sync().await?;
        self.datanet(datanet)?;
        let members: Vec<(u64, B256)> = self
            .index
            .contributions(datanet)?
            .into_iter()
            .filter(|c| c.status == Status::Accepted)
            .map(|c| (c.id, c.content_hash))
            .collect();
        if members.is_empty() {
            return Err(DatanetsError::NothingToPublish { datanet });
        }
        // Contributions come out of the index in id order, as the tree orders its leaves.
        let tree = VersionTree::build(members.clone()).expect("ids are unique and present");
        let root = tree.root();
        let key = keys::version(datanet, root);
        let manifest = Manifest {
            datanet,
            root,
            members,
        };
        self.store.put_json(&key, &manifest).await?;
        let count = tree.len() as u64;
        let call = Call::new(
            self.registry,
            DatanetRegistry::publishVersionCall {
                datanetId: U256::from(datanet),
                root,
                count,
                uri: format!("openledger:{key}"),
            },
            U256::ZERO,
        );
        let published = Published {
            version: 0,
            datanet,
            root,
            count,
        };
        Ok((published, call))
    }

    /// Publishes a version of `datanet` over all its accepted contributions, from its
    /// owner's account.
    pub async fn publish(
        &self,
        owner: &ProtocolClient,
        datanet: u64,
    ) -> Result<Published, DatanetsError> {
        let (mut published, call) = self.prepare_publish(datanet).await?;
        let receipt = call.send(owner, "publishVersion").await?;
        published.version = event_in::<DatanetRegistry::VersionPublished>(&receipt.logs)
            .map(|e| e.versionId.saturating_to())
            .ok_or_else(|| {
                DatanetsError::Io("publishVersion emitted no VersionPublished".into())
            })?;
        self.sync().await?;
        Ok(published)
    }

    /// A version's tree, rebuilt from its stored member list and checked against its root on
    /// chain.
    /// Trees are kept once built: a version's members never change after its root is on
    /// chain.
    async fn tree(
        &self,
        version: u64,
    ) -> Result<(crate::VersionRow, Arc<VersionTree>), DatanetsError> {
        self.sync().await?;
        let row = self
            .index
            .version(version)?
            .ok_or(DatanetsError::UnknownVersion(version))?;
        if let Some(tree) = self.trees.lock().expect("not poisoned").get(&version) {
            return Ok((row, tree.clone()));
        }
        let key = keys::version(row.datanet, row.root);
        let bad = || DatanetsError::BadManifest {
            version,
            key: key.clone(),
        };
        let manifest: Manifest = self.store.get_json(&key).await?.ok_or_else(bad)?;
        let tree = VersionTree::build(manifest.members).map_err(|_| bad())?;
        if tree.root() != row.root || tree.len() as u64 != row.count {
            return Err(bad());
        }
        let tree = Arc::new(tree);
        self.trees
            .lock()
            .expect("not poisoned")
            .insert(version, tree.clone());
        Ok((row, tree))
    }

    /// The contributions of a version, ascending by id.
    pub async fn members(&self, version: u64) -> Result<Vec<u64>, DatanetsError> {
        Ok(self.tree(version).await?.1.ids().to_vec())
    }

    /// The proof that `contribution` is in `version`.
    pub async fn prove(&self, version: u64, contribution: u64) -> Result<Proof, DatanetsError> {
        let (row, tree) = self.tree(version).await?;
        let not_in = DatanetsError::NotInVersion {
            version,
            contribution,
        };
        let proof = tree.proof(contribution).ok_or(not_in)?;
        let content_hash = self
            .index
            .contribution(contribution)?
            .ok_or(DatanetsError::UnknownContribution(contribution))?
            .content_hash;
        Ok(Proof {
            version,
            datanet: row.datanet,
            contribution,
            content_hash,
            root: row.root,
            leaf: tree.leaf_of(contribution).expect("a member has a leaf"),
            proof,
        })
    }

    /// Checks `proof` against the version's root on chain, twice: here, and by the
    /// registry's own `contains` view. Returns (here, on chain).
    pub async fn verify(&self, proof: &Proof) -> Result<(bool, bool), DatanetsError> {
        let version: DatanetRegistry::Version = self
            .client
            .call(
                self.registry,
                DatanetRegistry::versionCall {
                    versionId: U256::from(proof.version),
                },
            )
            .await?;
        if version.datanetId == 0 {
            return Err(DatanetsError::UnknownVersion(proof.version));
        }
        let leaf = merkle::leaf(proof.contribution, proof.content_hash);
        let here = merkle::verify(version.root, leaf, &proof.proof);
        let on_chain = self
            .client
            .call(
                self.registry,
                DatanetRegistry::containsCall {
                    versionId: U256::from(proof.version),
                    contributionId: U256::from(proof.contribution),
                    proof: proof.proof.clone(),
                },
            )
            .await?;
        Ok((here, on_chain))
    }

    /// Writes `version` as JSONL, one `{"contribution": id, "record": {…}}` per record, in
    /// contribution order and then file order. Each blob is checked against its content hash
    /// on the way out.
    pub async fn export(
        &self,
        version: u64,
        out: &mut impl Write,
    ) -> Result<ExportSummary, DatanetsError> {
        let (row, tree) = self.tree(version).await?;
        let mut summary = ExportSummary {
            version,
            contributions: 0,
            records: 0,
        };
        let io = |e: std::io::Error| DatanetsError::Io(format!("writing the export: {e}"));
        for &id in tree.ids() {
            let c = self
                .index
                .contribution(id)?
                .ok_or(DatanetsError::UnknownContribution(id))?;
            let report: Report = self
                .store
                .get_json(&keys::contribution(
                    row.datanet,
                    c.content_hash,
                    "report.json",
                ))
                .await?
                .ok_or_else(|| {
                    DatanetsError::Io(format!("contribution {id} has no stored report"))
                })?;
            let mut blob = tempfile::NamedTempFile::new()
                .map_err(|e| DatanetsError::Io(format!("export scratch file: {e}")))?;
            let mut hasher = Keccak256::new();
            let mut chunks = self.store.stream(&keys::blob(c.content_hash)).await?;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                blob.write_all(&chunk).map_err(io)?;
            }
            if hasher.finalize() != c.content_hash {
                return Err(DatanetsError::Io(format!(
                    "the stored blob of contribution {id} does not match its content hash"
                )));
            }
            blob.flush().map_err(io)?;
            for batch in format::batches(blob.path(), report.format, self.policy.max_record_bytes)?
            {
                for (place, raw) in batch?.records {
                    let record: Value = match raw {
                        Raw::Json(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                            ValidationError::BadJson {
                                place,
                                message: e.to_string(),
                            }
                        })?,
                        Raw::Value(v) => v,
                    };
                    serde_json::to_writer(
                        &mut *out,
                        &json!({"contribution": id, "record": record}),
                    )
                    .map_err(|e| DatanetsError::Io(e.to_string()))?;
                    out.write_all(b"\n").map_err(io)?;
                    summary.records += 1;
                }
            }
            summary.contributions += 1;
        }
        out.flush().map_err(io)?;
        Ok(summary)
    }
}
