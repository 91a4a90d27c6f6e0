//! Publication with lineage: a succeeded job's adapter (PEFT layout), its training config,
//! its training manifest and the adapters at each epoch's end go to the blob store under
//! `adapters/<weights hash>/`, and the job answers with the `ModelRegistry.registerAdapter`
//! call that records base model, datanet versions, config hash, weights hash and manifest hash
//! on chain (the caller's wallet sends it: whoever registers owns the adapter).
//!
//! The manifest (`manifest.json`) is what Proof of Attribution builds on: every example's
//! contribution and tokens (`examples.bin`, hashed in the manifest), which were held out, each
//! datanet version's members and root, and the checkpoints (adapter hash and learning rate at
//! each epoch's end). Every file is named by hash from the manifest, and the manifest by the
//! hash on chain, so `openledger factory verify` recomputes the whole lineage from the files.

use crate::{
    job::{Job, JobError},
    runner::split,
    service::Factory,
    spec::{Plan, TrainingSpec},
};
use alloy_primitives::{keccak256, Address, B256, U256};
use openledger_protocol::model_registry::ModelRegistry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// A datanet version as the manifest records it: enough to recompute its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    pub datanet: u64,
    pub root: B256,
    /// (contribution id, content hash), ascending by id: the version's Merkle leaves.
    pub members: Vec<(u64, B256)>,
}

/// An adapter kept at the end of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub step: usize,
    pub epoch: usize,
    pub learning_rate: f64,
    /// keccak256 of its `adapter_model.safetensors` (stored under `checkpoints/<step>/`).
    pub weights_hash: B256,
}

/// The training manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    pub base_model: String,
    pub base_weights_hash: B256,
    pub datanet_versions: Vec<VersionRecord>,
    pub training_config_hash: B256,
    /// keccak256 of `examples.bin`: every example's contribution (none for uploaded files),
    /// prompt length and tokens, in the job's order.
    pub examples_hash: B256,
    pub examples: u64,
    /// Indices (into the examples) of those held out for evaluation: never trained on.
    pub held_out: Vec<u64>,
    pub checkpoints: Vec<CheckpointRecord>,
    pub weights_hash: B256,
}

/// What publishing a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    pub base_model_id: u64,
    pub weights_hash: B256,
    pub training_config_hash: B256,
    pub manifest_hash: B256,
    pub uri: String,
    pub datanet_versions: Vec<u64>,
}

impl Publication {
    /// The `registerAdapter` call that records this adapter's lineage.
    pub fn call(&self, registry: Address) -> Value {
        let data = alloy_sol_types::SolCall::abi_encode(&ModelRegistry::registerAdapterCall {
            baseModelId: U256::from(self.base_model_id),
            datanetVersions: self
                .datanet_versions
                .iter()
                .map(|v| U256::from(*v))
                .collect(),
            trainingConfigHash: self.training_config_hash,
            weightsHash: self.weights_hash,
            manifestHash: self.manifest_hash,
            uri: self.uri.clone(),
        });
        json!({"to": registry, "data": alloy_primitives::Bytes::from(data), "value": "0x0"})
    }
}

/// The training config as hashed on chain: the resolved request, its plan and the datanet
/// versions it read.
pub fn training_config(spec: &TrainingSpec, plan: &Plan, versions: &[u64]) -> Vec<u8> {
    serde_json::to_vec(&json!({"spec": spec, "plan": plan, "datanet_versions": versions}))
        .expect("a plain value serialises")
}

/// keccak256 of a file, read in blocks.
pub fn hash_file(path: &Path) -> std::io::Result<B256> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = alloy_primitives::Keccak256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Whether two manifests record the same lineage: equal but for the job that made them.
fn same_lineage(a: &[u8], b: &[u8]) -> bool {
    let without_job = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .map(|mut v| {
                if let Some(map) = v.as_object_mut() {
                    map.remove("job");
                }
                v
            })
    };
    matches!((without_job(a), without_job(b)), (Some(x), Some(y)) if x == y)
}

/// Where a published adapter's files live in the blob store.
pub fn adapter_prefix(weights_hash: B256) -> String {
    format!("adapters/{weights_hash:x}")
}

fn server(message: impl Into<String>) -> JobError {
    JobError::new("server_error", message, None)
}

impl Factory {
    /// Publishes a succeeded job's adapter and lineage to the blob store (again, harmlessly,
    /// if it was published before) and returns the publication.
    pub async fn publish(&self, seq: u64) -> Result<Publication, JobError> {
        let _one_at_a_time = self.publishing.lock().await;
        let job = self.stored_job(seq)?;
        if job.status != crate::Status::Succeeded {
            return Err(JobError::new(
                "invalid_request",
                format!(
                    "{} is {}: only a succeeded job is published",
                    job.id(),
                    job.status.as_str()
                ),
                None,
            ));
        }
        let dir = self.job_dir(seq);
        let plan = job.plan.ok_or_else(|| server("the job has no plan"))?;
        let weights_hash = hash_file(&dir.join("adapter/adapter_model.safetensors"))
            .map_err(|e| server(format!("reading the adapter: {e}")))?;
        let prefix = adapter_prefix(weights_hash);
        let config = training_config(&job.spec, &plan, &job.versions);
        let training_config_hash = keccak256(&config);
        let (base_model_id, base_weights_hash) = self.base_model(&job.spec.model).await?;
        let manifest = self
            .manifest(
                &job,
                &plan,
                base_weights_hash,
                training_config_hash,
                weights_hash,
            )
            .await?;
        let mut manifest_bytes =
            serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
        let store = self.datanets.store();
        // Everything downstream (serving, attribution, receipts, validators) knows an adapter
        // by its weights: the same weights published again from other training data would
        // replace the first publication's lineage, and its answers would pay the wrong people.
        let manifest_key = format!("{prefix}/manifest.json");
        let published = store
            .get(&manifest_key)
            .await
            .map_err(|e| server(format!("reading {manifest_key}: {e}")))?;
        if let Some(earlier) = published.filter(|b| b[..] != manifest_bytes[..]) {
            // Another job on the same data with the same settings trains the same weights:
            // its lineage is the first one's, which stays as published.
            if same_lineage(&earlier, &manifest_bytes) {
                manifest_bytes = earlier.to_vec();
            } else {
                return Err(JobError::new(
                    "invalid_request",
                    format!(
                        "identical weights ({weights_hash}) were already published from other \
                         training data (manifest {}); an adapter is known by its weights, so \
                         publishing these would make its lineage ambiguous. Train again with \
                         another seed",
                        keccak256(&earlier)
                    ),
                    None,
                ));
            }
        }
        let manifest_hash = keccak256(&manifest_bytes);
        let put = |key: String, path: std::path::PathBuf| async move {
            store
                .put_file(&key, &path)
                .await
                .map_err(|e| server(format!("storing {key}: {e}")))
        };
        for file in ["adapter_config.json", "adapter_model.safetensors"] {
            put(format!("{prefix}/{file}"), dir.join("adapter").join(file)).await?;
        }
        put(format!("{prefix}/examples.bin"), dir.join("data.bin")).await?;
        for c in &manifest.checkpoints {
            let from = dir.join("epochs").join(c.step.to_string());
            for file in ["adapter_config.json", "adapter_model.safetensors"] {
                put(
                    format!("{prefix}/checkpoints/{}/{file}", c.step),
                    from.join(file),
                )
                .await?;
            }
        }
        let put_bytes = |key: String, bytes: Vec<u8>| async move {
            store
                .put(&key, bytes)
                .await
                .map_err(|e| server(format!("storing {key}: {e}")))
        };
        put_bytes(format!("{prefix}/training_config.json"), config).await?;
        put_bytes(manifest_key, manifest_bytes).await?;
        Ok(Publication {
            base_model_id,
            weights_hash,
            training_config_hash,
            manifest_hash,
            uri: format!("openledger:{prefix}"),
            datanet_versions: job.versions.clone(),
        })
    }

    async fn manifest(
        &self,
        job: &Job,
        plan: &Plan,
        base_weights_hash: B256,
        training_config_hash: B256,
        weights_hash: B256,
    ) -> Result<Manifest, JobError> {
        let dir = self.job_dir(job.seq);
        let samples = crate::data::read_samples(&dir.join("data.bin"))
            .map_err(|e| server(format!("reading the prepared data: {e}")))?;
        let held = held_out_indices(samples.len(), plan, job.spec.hyperparameters.seed);
        let mut versions = Vec::new();
        for &version in &job.versions {
            let row = self
                .datanets
                .index()
                .version(version)
                .map_err(|e| server(e.to_string()))?
                .ok_or_else(|| server(format!("version {version} is not indexed")))?;
            let mut members = Vec::new();
            for id in self
                .datanets
                .members(version)
                .await
                .map_err(|e| server(e.to_string()))?
            {
                let c = self
                    .datanets
                    .index()
                    .contribution(id)
                    .map_err(|e| server(e.to_string()))?
                    .ok_or_else(|| server(format!("contribution {id} is not indexed")))?;
                members.push((id, c.content_hash));
            }
            versions.push(VersionRecord {
                version,
                datanet: row.datanet,
                root: row.root,
                members,
            });
        }
        let per_step = job.spec.hyperparameters.batch_size
            * job.spec.hyperparameters.gradient_accumulation_steps;
        let train = plan.train_examples.max(1);
        let mut checkpoints = Vec::new();
        for c in self
            .store
            .checkpoints(job.seq)
            .map_err(|e| server(e.to_string()))?
        {
            if !c.epoch_end {
                continue;
            }
            let path = dir
                .join("epochs")
                .join(c.step.to_string())
                .join("adapter_model.safetensors");
            checkpoints.push(CheckpointRecord {
                step: c.step,
                epoch: c.step * per_step / train,
                learning_rate: c.learning_rate,
                weights_hash: hash_file(&path)
                    .map_err(|e| server(format!("{}: {e}", path.display())))?,
            });
        }
        Ok(Manifest {
            format: 1,
            job: job.id(),
            base_model: job.spec.model.clone(),
            base_weights_hash,
            datanet_versions: versions,
            training_config_hash,
            examples_hash: hash_file(&dir.join("data.bin"))
                .map_err(|e| server(format!("reading the prepared data: {e}")))?,
            examples: samples.len() as u64,
            held_out: held,
            checkpoints,
            weights_hash,
        })
    }

    /// The base model's id on chain and its weights hash; the operator registers it the
    /// first time an adapter on it is published.
    async fn base_model(&self, name: &str) -> Result<(u64, B256), JobError> {
        let path = self
            .model_path(name)
            .ok_or_else(|| server(format!("no model {name}")))?;
        let shown = path.display().to_string();
        let hash = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| server(e.to_string()))?
            .map_err(|e| server(format!("hashing {shown}: {e}")))?;
        let registry = self.registry_address()?;
        let registered = self
            .client
            .events::<ModelRegistry::BaseModelRegistered>(registry, 0, None)
            .await
            .map_err(|e| server(format!("reading base models: {e}")))?;
        if let Some((_, e)) = registered.iter().find(|(_, e)| e.weightsHash == hash) {
            return Ok((e.baseModelId.saturating_to(), hash));
        }
        let call = ModelRegistry::registerBaseModelCall {
            weightsHash: hash,
            uri: format!("openledger:models/{name}"),
            licence: "see the model's own card".into(),
        };
        let receipt = self
            .escrow
            .client()
            .send(registry, call, U256::ZERO)
            .await
            .map_err(|e| server(format!("registering base model {name}: {e}")))?;
        let id = receipt
            .logs
            .iter()
            .find_map(|l| {
                <ModelRegistry::BaseModelRegistered as alloy_sol_types::SolEvent>::decode_raw_log(
                    l.topics.iter().copied(),
                    &l.data,
                )
                .ok()
            })
            .map(|e| e.baseModelId.saturating_to())
            .ok_or_else(|| server("registerBaseModel emitted no event"))?;
        Ok((id, hash))
    }

    /// Job `seq` from the store.
    fn stored_job(&self, seq: u64) -> Result<crate::Job, JobError> {
        self.store
            .job(seq)
            .map_err(|e| server(e.to_string()))?
            .ok_or_else(|| server("no such job"))
    }

    pub(crate) fn registry_address(&self) -> Result<Address, JobError> {
        self.client
            .addresses()
            .map(|a| a.model_registry)
            .ok_or_else(|| server("no protocol addresses"))
    }
}

/// The indices of the held-out examples, as the runner splits them.
pub fn held_out_indices(n: usize, plan: &Plan, seed: u64) -> Vec<u64> {
    split(n, plan, seed)
        .0
        .into_iter()
        .map(|i| i as u64)
        .collect()
}

/// The most prompt bytes and answer tokens a comparison may ask for.
pub const COMPARE_PROMPT_BYTES: usize = 8 << 10;
pub const COMPARE_MAX_TOKENS: usize = 512;

impl Factory {
    /// Answers `prompt` (a user message under the chat template) greedily with the base
    /// model and with the job's adapter: (base, tuned).
    pub async fn compare(
        self: &std::sync::Arc<Self>,
        seq: u64,
        prompt: String,
        max_tokens: usize,
    ) -> Result<(String, String), JobError> {
        let bad = |m: String| JobError::new("invalid_request", m, None);
        if prompt.is_empty() || prompt.len() > COMPARE_PROMPT_BYTES {
            return Err(bad(format!(
                "the prompt must be 1 to {COMPARE_PROMPT_BYTES} bytes"
            )));
        }
        if max_tokens == 0 || max_tokens > COMPARE_MAX_TOKENS {
            return Err(bad(format!("max_tokens must be 1 to {COMPARE_MAX_TOKENS}")));
        }
        let job = self.stored_job(seq)?;
        if job.status != crate::Status::Succeeded {
            return Err(bad(format!(
                "{} has no adapter: it is {}",
                job.id(),
                job.status.as_str()
            )));
        }
        let _turn = self.comparing.try_acquire().map_err(|_| {
            JobError::new("busy", "a comparison is running; try again shortly", None)
        })?;
        let factory = self.clone();
        tokio::task::spawn_blocking(move || {
            let model = factory.model(&job.spec.model)?;
            let adapter =
                openledger_model::lora::LoraAdapter::load(&factory.job_dir(seq).join("adapter"))
                    .map_err(|e| server(format!("loading the adapter: {e}")))?;
            let messages = [openledger_model::chat::Message::new("user", &prompt)];
            let text = model
                .chat_prompt(&messages)
                .map_err(|e| server(e.to_string()))?;
            let answer = |adapter| {
                model
                    .complete_with(adapter, &text, max_tokens, Default::default(), &[], |_| {})
                    .map(|c| c.text)
                    .map_err(|e| server(format!("answering: {e}")))
            };
            Ok((answer(None)?, answer(Some(&adapter))?))
        })
        .await
        .map_err(|e| server(e.to_string()))?
    }
}
