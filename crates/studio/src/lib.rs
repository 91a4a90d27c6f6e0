//! AI Studio: inference for people and programs. This crate serves the OpenAI-compatible
//! API over OpenLoRA — `model` names the base model or an adapter, the official OpenAI
//! clients work unchanged — and holds what paid inference needs: accounts' API keys, metering
//! and receipts (agents and settlement batches are being built on them).
//!
//! - `openai`: the endpoints (chat completions, completions, models, vLLM's adapter
//!   management, tokenize/detokenize, health), errors in OpenAI's shape, streaming by
//!   server-sent events.
//! - [`keys`]: API keys bound to accounts that sign in with Ethereum ([`siwe`]), with spend
//!   and rate limits, stored hashed in the studio [`store`].
//! - [`agents`] and `meter`: a request naming an agent is paid: it needs an account's key, and
//!   its receipt is recorded in the [`store`] before its answer completes.
//! - [`knowledge`]: retrieval for agents with a knowledge datanet: passages in the prompt,
//!   citations in the response, the retrieval in the receipt.
//! - [`attribute`]: each receipt attributed after its answer, in order: the attribution
//!   receipt a validator recomputes, and the credits settlement pays by contribution.
//! - [`receipts`]: a receipt with its attribution for its consumer, attribution receipts for
//!   validators.
//! - [`settle`]: the host's settlement rounds: receipts on chain in batches, batches released
//!   after their challenge window.

pub mod agents;
pub mod attribute;
pub mod keys;
pub mod knowledge;
mod meter;
mod openai;
pub mod receipts;
pub mod settle;
pub mod siwe;
pub mod store;

pub use openai::ApiError;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use openledger_model::{
    chat::{ChatTemplate, Message},
    tokenizer::Tokenizer,
    Model, ModelError,
};
use openledger_openlora::{
    engine::Base, AdapterSource, DirSource, OpenLora, ServeError, Settings, Vocab,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

/// Where the service will be once its model has loaded: routes are served from the start
/// and answer 503 until then.
pub type Slot = Arc<OnceLock<Arc<Studio>>>;

/// The loaded service, for a handler (503 in OpenAI's error shape while loading).
pub struct Ready(pub Arc<Studio>);

impl FromRequestParts<Slot> for Ready {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, slot: &Slot) -> Result<Self, ApiError> {
        slot.get().cloned().map(Ready).ok_or_else(ApiError::loading)
    }
}

/// The inference service.
pub struct Studio {
    engine: OpenLora,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// Where the template puts the last user message: knowledge agents' queries are read there.
    markers: Option<knowledge::Markers>,
    base_name: String,
    created: u64,
    dirs: Arc<DirSource>,
    paid: OnceLock<Paid>,
    /// What paid requests in flight may still cost, per account and per key.
    holds: parking_lot::Mutex<meter::Holds>,
}

/// What paid requests need: the agents served, what consumers can pay, and the store receipts
/// go to.
pub struct Paid {
    pub agents: Arc<dyn agents::AgentBook>,
    pub funds: Arc<dyn agents::Funds>,
    pub store: Arc<store::Store>,
    /// Search over agents' knowledge datanets (without it, agents answer without retrieval).
    pub knowledge: Option<Arc<dyn knowledge::Knowledge>>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Serve(#[from] openledger_openlora::ServeError),
}

impl Studio {
    /// Loads the base model at `model_path` (served as `base_name`) and serves the PEFT
    /// adapters found under `adapter_dirs` by their directory names, then any `more` (such as
    /// published adapters) by the names that source knows.
    pub fn load(
        model_path: &Path,
        base_name: &str,
        adapter_dirs: Vec<PathBuf>,
        more: Option<Arc<dyn AdapterSource>>,
        settings: Settings,
    ) -> Result<Arc<Self>, StudioError> {
        let (base, tokenizer, template) = load_model(model_path)?;
        let vocab = Vocab::new(&tokenizer);
        let template = template.as_deref().map(ChatTemplate::new).transpose()?;
        let markers = template.as_ref().and_then(|t| {
            let (bos, eos) = (
                piece(&tokenizer, tokenizer.bos_id()),
                piece(&tokenizer, tokenizer.eos_id()),
            );
            knowledge::Markers::new(t, &bos, &eos)
                .inspect_err(|e| tracing::warn!(error = %e, "knowledge agents will not retrieve"))
                .ok()
        });
        let dirs = Arc::new(DirSource::new(adapter_dirs));
        let source: Arc<dyn AdapterSource> = Arc::new(Sources {
            dirs: dirs.clone(),
            more,
        });
        let engine = OpenLora::start(base, vocab, source, base_name, settings);
        Ok(Arc::new(Self {
            engine,
            tokenizer,
            template,
            markers,
            base_name: base_name.to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            dirs,
            paid: OnceLock::new(),
            holds: Default::default(),
        }))
    }

    /// Serves agents from `paid.agents`, billing into `paid.store` (once; later calls are
    /// ignored).
    pub fn set_paid(&self, paid: Paid) {
        let _ = self.paid.set(paid);
    }

    /// The serving engine.
    pub fn engine(&self) -> &OpenLora {
        &self.engine
    }

    /// The name the base model is served under.
    pub fn base_name(&self) -> &str {
        &self.base_name
    }

    /// The serving metrics in Prometheus's text format.
    pub fn metrics(&self) -> String {
        self.engine.metrics().render()
    }

    /// `messages` under the model's chat template, ending where the answer begins.
    fn chat_prompt(&self, messages: &[Message]) -> Result<String, ModelError> {
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| ModelError::Template("the model declares no chat template".into()))?;
        let t = &self.tokenizer;
        template.render(messages, true, &piece(t, t.bos_id()), &piece(t, t.eos_id()))
    }
}

/// The text of token `id`, as chat templates write it.
pub fn piece(tokenizer: &Tokenizer, id: u32) -> String {
    String::from_utf8_lossy(tokenizer.decode_piece(id).unwrap_or_default()).into_owned()
}

/// Local directories first, then another source.
struct Sources {
    dirs: Arc<DirSource>,
    more: Option<Arc<dyn AdapterSource>>,
}

impl AdapterSource for Sources {
    fn contains(&self, name: &str) -> bool {
        self.dirs.contains(name) || self.more.as_ref().is_some_and(|m| m.contains(name))
    }

    fn names(&self) -> Vec<String> {
        let mut names = self.dirs.names();
        if let Some(more) = &self.more {
            names.extend(more.names());
        }
        names.sort();
        names.dedup();
        names
    }

    fn load(&self, name: &str) -> Result<openledger_model::lora::LoraAdapter, ServeError> {
        // Local directories never take a published adapter's name (`looks_published`).
        match &self.more {
            Some(more) if !self.dirs.contains(name) => more.load(name),
            _ => self.dirs.load(name),
        }
    }
}

/// The served weights, tokenizer and chat template: a GGUF file's own blocks (no f32 copy is
/// made), or a Hugging Face directory's f32 weights rounded to 8 bits.
fn load_model(path: &Path) -> Result<(Base, Tokenizer, Option<String>), StudioError> {
    if path.is_file() {
        let raw = openledger_model::weights::read_gguf_raw(path)?;
        let tokenizer = Tokenizer::from_gguf(&raw.metadata)
            .map_err(|e| ModelError::Format(format!("tokenizer: {e}")))?;
        let template = raw
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        return Ok((Base::from_gguf(&raw)?, tokenizer, template));
    }
    let model = Model::load(path)?;
    let base = Base::new(&model.llama)?;
    Ok((base, model.tokenizer, model.chat_template))
}

/// The inference routes (behind whatever access control the caller layers on).
pub fn router(slot: &Slot) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/tokenize", post(openai::tokenize))
        .route("/detokenize", post(openai::detokenize))
        .with_state(slot.clone())
}

/// Runtime adapter management (vLLM's routes): registering a directory reads the server's
/// disk, so callers guard these as operator routes.
pub fn admin_router(slot: &Slot) -> Router {
    Router::new()
        .route("/v1/load_lora_adapter", post(openai::load_adapter))
        .route("/v1/unload_lora_adapter", post(openai::unload_adapter))
        .with_state(slot.clone())
}

/// `/health` (200 once the model is loaded, 503 before) and `/metrics`, open to probes and
/// scrapers.
pub fn probe_router(slot: &Slot) -> Router {
    async fn health(Ready(_): Ready) -> &'static str {
        ""
    }
    async fn metrics(Ready(studio): Ready) -> axum::response::Response {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            studio.metrics(),
        )
            .into_response()
    }
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(slot.clone())
}
