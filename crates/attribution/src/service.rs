//! The node's attribution service: published adapters fetched from the blob store into
//! `<data-dir>/attribution/<weights hash>/`, both engines' indexes built there on first use,
//! answers generated and attributed one at a time, with a short bounded queue.

use crate::{
    attribute::{self, Query, Settings},
    explain::{self, Explanation},
    gradient::SketchConfig,
    published::Published,
    receipt::AttributionReceipt,
    AttributionError,
};
use alloy_primitives::{keccak256, B256};
use openledger_datanets::Datanets;
use openledger_model::{chat::Message, generate::Sampling, lora::LoraAdapter, Model};
use parking_lot::Mutex;
use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

/// Attributions waiting for the one running, at most; more are refused as busy.
const QUEUE: usize = 4;
/// Adapters kept open at once.
const OPEN_ADAPTERS: usize = 4;
/// The longest answer generated for an explanation.
pub const MAX_ANSWER_TOKENS: usize = 256;
/// The most tokens (prompt and answer) attributed at once: the gradient pass holds
/// activations for every position, so its memory grows with this.
pub const MAX_ATTRIBUTED_TOKENS: usize = 2048;

/// Refuses a prompt and answer too long to attribute.
fn check_length(prompt: usize, answer: usize) -> Result<()> {
    if prompt + answer > MAX_ATTRIBUTED_TOKENS {
        return Err(ServiceError::InvalidRequest(format!(
            "the prompt ({prompt} tokens) and answer ({answer} tokens) exceed the \
             {MAX_ATTRIBUTED_TOKENS} tokens attribution takes at once"
        )));
    }
    Ok(())
}

/// Why the service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("attribution is busy ({QUEUE} requests already wait); retry shortly")]
    Busy,
    #[error(transparent)]
    Attribution(#[from] AttributionError),
    #[error("{0}")]
    Internal(String),
}

type Result<T> = std::result::Result<T, ServiceError>;

/// What to explain: an adapter, a prompt, and the answer (generated when absent).
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub adapter: B256,
    pub prompt: String,
    pub answer: Option<String>,
    pub max_tokens: usize,
    pub amount: u128,
}

struct Work {
    /// The loaded base model: its name, weights hash and the model.
    model: Option<(String, B256, Arc<Model>)>,
    adapters: VecDeque<(B256, Arc<Published>)>,
}

/// A request's place in the attribution queue.
struct Slot(Arc<Attributor>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The attribution service.
pub struct Attributor {
    datanets: Arc<Datanets>,
    dir: PathBuf,
    models: BTreeMap<String, PathBuf>,
    sketch: SketchConfig,
    settings: Settings,
    work: Mutex<Work>,
    waiting: AtomicUsize,
    /// Names temporary files apart, so that two fetches of one file never share one.
    downloads: std::sync::atomic::AtomicU64,
}

impl Attributor {
    /// A service keeping its files in `dir`, reading published adapters from `datanets`'
    /// blob store and base models by name from `models`.
    pub fn new(datanets: Arc<Datanets>, dir: &Path, models: BTreeMap<String, PathBuf>) -> Self {
        Self {
            datanets,
            dir: dir.to_path_buf(),
            models,
            sketch: SketchConfig::default(),
            settings: Settings::default(),
            work: Mutex::new(Work {
                model: None,
                adapters: VecDeque::new(),
            }),
            waiting: AtomicUsize::new(0),
            downloads: Default::default(),
        }
    }

    /// Where an adapter's files live here.
    fn adapter_dir(&self, adapter: B256) -> PathBuf {
        self.dir.join(format!("{adapter:x}"))
    }

    /// A file of the span index or the sketch store a validator may download, if built.
    pub fn index_file(&self, adapter: B256, file: &str) -> Option<PathBuf> {
        let relative = match file {
            "sketches.bin" => "cache/sketches.bin",
            "spans/index.json" => "cache/spans/index.json",
            "spans/tokens.bin" => "cache/spans/tokens.bin",
            "spans/suffixes.bin" => "cache/spans/suffixes.bin",
            "spans/documents.bin" => "cache/spans/documents.bin",
            _ => return None,
        };
        let path = self.adapter_dir(adapter).join(relative);
        path.exists().then_some(path)
    }

    /// Copies the adapter's published files out of the blob store (once).
    async fn fetch(&self, adapter: B256) -> Result<PathBuf> {
        let dir = self.adapter_dir(adapter).join("published");
        let prefix = openledger_factory::publish::adapter_prefix(adapter);
        let manifest: openledger_factory::publish::Manifest = {
            self.get(&dir, &prefix, "manifest.json").await?;
            let path = dir.join("manifest.json");
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| ServiceError::Internal(format!("the published manifest: {e}")))?
        };
        let mut files = vec![
            "examples.bin".to_string(),
            "adapter_config.json".into(),
            "adapter_model.safetensors".into(),
        ];
        for c in &manifest.checkpoints {
            for f in ["adapter_config.json", "adapter_model.safetensors"] {
                files.push(format!("checkpoints/{}/{f}", c.step));
            }
        }
        for file in files {
            self.get(&dir, &prefix, &file).await?;
        }
        Ok(dir)
    }

    /// One published file, from the local copy or the blob store (written beside, then
    /// renamed, so a crash leaves no half file).
    async fn get(&self, dir: &Path, prefix: &str, file: &str) -> Result<()> {
        let path = dir.join(file);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let key = format!("{prefix}/{file}");
        let bytes = self
            .datanets
            .store()
            .get(&key)
            .await
            .map_err(|e| ServiceError::Internal(format!("reading {key}: {e}")))?
            .ok_or_else(|| ServiceError::NotFound(format!("no published adapter file {key}")))?;
        let io = |e: std::io::Error| ServiceError::Internal(format!("{}: {e}", path.display()));
        tokio::fs::create_dir_all(path.parent().expect("a file in a directory"))
            .await
            .map_err(io)?;
        let n = self.downloads.fetch_add(1, Ordering::SeqCst);
        let tmp = path.with_extension(format!("part{n}"));
        tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }

    /// A place in the queue, or `Busy` when it is full; given back when dropped, however
    /// the request ends (a panic in the worker included).
    fn admit(self: &Arc<Self>) -> Result<Slot> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) > QUEUE {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Busy);
        }
        Ok(Slot(self.clone()))
    }

    /// Runs `f` on the worker (one attribution at a time) in the place `slot` holds.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        slot: Slot,
        f: impl FnOnce(&Self, &mut Work) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut work = this.work.lock();
            f(&this, &mut work)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the attribution worker failed: {e}")))?;
        out
    }

    /// The base model `name`, loaded (and hashed) once.
    fn model(&self, work: &mut Work, name: &str) -> Result<(B256, Arc<Model>)> {
        if let Some((loaded, hash, model)) = &work.model {
            if loaded == name {
                return Ok((*hash, model.clone()));
            }
        }
        let path = self.models.get(name).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "the adapter's base model {name} is not served here"
            ))
        })?;
        let hash = openledger_factory::publish::hash_file(path)
            .map_err(|e| ServiceError::Internal(format!("hashing {}: {e}", path.display())))?;
        let model = Arc::new(
            Model::load(path)
                .map_err(|e| ServiceError::Internal(format!("loading {name}: {e}")))?,
        );
        work.model = Some((name.to_string(), hash, model.clone()));
        Ok((hash, model))
    }

    /// The adapter's artifacts opened (indexes built on first use), and its base model.
    fn open(&self, work: &mut Work, adapter: B256) -> Result<(B256, Arc<Model>, Arc<Published>)> {
        let published_dir = self.adapter_dir(adapter).join("published");
        let manifest: openledger_factory::publish::Manifest = serde_json::from_slice(
            &std::fs::read(published_dir.join("manifest.json"))
                .map_err(|e| ServiceError::Internal(format!("the manifest: {e}")))?,
        )
        .map_err(|e| ServiceError::Internal(format!("the manifest: {e}")))?;
        if manifest.weights_hash != adapter {
            return Err(ServiceError::Internal(format!(
                "the manifest stored for adapter {adapter} names weights {}",
                manifest.weights_hash
            )));
        }
        let weights = published_dir.join("adapter_model.safetensors");
        let found = openledger_factory::publish::hash_file(&weights)
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", weights.display())))?;
        if found != adapter {
            return Err(ServiceError::Internal(format!(
                "the stored weights of adapter {adapter} hash to {found}"
            )));
        }
        let (base, model) = self.model(work, &manifest.base_model)?;
        if let Some((_, p)) = work.adapters.iter().find(|(h, _)| *h == adapter) {
            return Ok((base, model, p.clone()));
        }
        let started = std::time::Instant::now();
        let mut last = 0;
        let published = Arc::new(Published::open(
            &published_dir,
            &self.adapter_dir(adapter).join("cache"),
            &model,
            base,
            &self.sketch,
            |done, total| {
                if done == total || started.elapsed().as_secs() >= last + 10 {
                    last = started.elapsed().as_secs();
                    tracing::info!(%adapter, done, total, "sketching training gradients");
                }
            },
        )?);
        if work.adapters.len() >= OPEN_ADAPTERS {
            work.adapters.pop_front();
        }
        work.adapters.push_back((adapter, published.clone()));
        Ok((base, model, published))
    }

    /// Generates (unless given) and attributes an answer, and explains it.
    pub async fn explain(self: &Arc<Self>, request: ExplainRequest) -> Result<Explanation> {
        if request.prompt.trim().is_empty() {
            return Err(ServiceError::InvalidRequest("the prompt is empty".into()));
        }
        if !(1..=MAX_ANSWER_TOKENS).contains(&request.max_tokens) {
            return Err(ServiceError::InvalidRequest(format!(
                "max_tokens {} must be between 1 and {MAX_ANSWER_TOKENS}",
                request.max_tokens
            )));
        }
        let slot = self.admit()?;
        let dir = self.fetch(request.adapter).await?;
        self.run(slot, move |this, work| {
            let (base, model, published) = this.open(work, request.adapter)?;
            let prompt_text = model
                .chat_prompt(&[Message {
                    role: "user".into(),
                    content: request.prompt.clone(),
                }])
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let prompt = model.tokenizer.encode(&prompt_text);
            check_length(prompt.len(), request.max_tokens.min(MAX_ANSWER_TOKENS))?;
            let answer = match &request.answer {
                Some(text) => {
                    let answer = model.tokenizer.encode(text);
                    check_length(prompt.len(), answer.len())?;
                    answer
                }
                None => {
                    let lora = LoraAdapter::load(&dir)
                        .map_err(|e| ServiceError::Internal(format!("the adapter: {e}")))?;
                    model
                        .complete_with(
                            Some(&lora),
                            &prompt_text,
                            request.max_tokens,
                            Sampling::default(),
                            &[],
                            |_| {},
                        )
                        .map_err(|e| ServiceError::Internal(e.to_string()))?
                        .tokens
                }
            };
            let query = Query {
                prompt,
                answer,
                amount: request.amount,
            };
            let receipt = attribute::attribute(&model, base, &published, &query, &this.settings)?;
            Ok(this.explained(&model, &published, &receipt))
        })
        .await
    }

    /// What a person reads of `receipt`, contributors looked up in the datanets index.
    fn explained(
        &self,
        model: &Model,
        published: &Published,
        receipt: &AttributionReceipt,
    ) -> Explanation {
        let index = self.datanets.index();
        explain::explain(&model.tokenizer, published, receipt, |c| {
            index
                .contribution(c)
                .ok()
                .flatten()
                .map(|row| row.contributor)
        })
    }

    /// Explains a receipt made before (a paid answer's, say) without recomputing it.
    pub async fn explain_receipt(self: &Arc<Self>, bytes: Vec<u8>) -> Result<Explanation> {
        let receipt = AttributionReceipt::decode(&bytes)
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))?;
        check_length(receipt.prompt.len(), receipt.answer.len())?;
        // A receipt made elsewhere may name spans outside its answer: refused, not explained.
        if let Some(s) = receipt
            .spans
            .iter()
            .find(|s| s.start > s.end || s.end as usize > receipt.answer.len())
        {
            return Err(ServiceError::InvalidRequest(format!(
                "the receipt's span {}..{} lies outside its answer of {} tokens",
                s.start,
                s.end,
                receipt.answer.len()
            )));
        }
        let slot = self.admit()?;
        self.fetch(receipt.adapterWeightsHash).await?;
        self.run(slot, move |this, work| {
            let (_, model, published) = this.open(work, receipt.adapterWeightsHash)?;
            Ok(this.explained(&model, &published, &receipt))
        })
        .await
    }

    /// Attributes an answer already served: the prompt and answer as the token ids the model
    /// saw and produced, `amount` split among the contributions (settlement splits 10,000
    /// basis points). `NotFound` when the adapter has no published training artifacts.
    pub async fn attribute_served(
        self: &Arc<Self>,
        adapter: B256,
        prompt: Vec<u32>,
        answer: Vec<u32>,
        amount: u128,
    ) -> Result<AttributionReceipt> {
        check_length(prompt.len(), answer.len())?;
        let slot = self.admit()?;
        self.fetch(adapter).await?;
        self.run(slot, move |this, work| {
            let (base, model, published) = this.open(work, adapter)?;
            let query = Query {
                prompt,
                answer,
                amount,
            };
            Ok(attribute::attribute(
                &model,
                base,
                &published,
                &query,
                &this.settings,
            )?)
        })
        .await
    }

    /// Recomputes a receipt: the differences, empty when identical.
    pub async fn verify(self: &Arc<Self>, bytes: Vec<u8>) -> Result<(B256, Vec<String>)> {
        let receipt = AttributionReceipt::decode(&bytes)
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))?;
        let hash = keccak256(&bytes);
        check_length(receipt.prompt.len(), receipt.answer.len())?;
        let slot = self.admit()?;
        self.fetch(receipt.adapterWeightsHash).await?;
        self.run(slot, move |this, work| {
            let (base, model, published) = this.open(work, receipt.adapterWeightsHash)?;
            Ok((
                hash,
                attribute::verify(&model, base, &published, &receipt, &this.settings)?,
            ))
        })
        .await
    }
}
