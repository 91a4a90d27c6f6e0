//! OpenLoRA: many LoRA adapters served on one base model.
//!
//! Requests on different adapters (and ensembles of adapters) share every decode step: the
//! base model's weights are read once per step for the whole batch, and each sequence adds
//! its own adapters' low-rank terms to its own rows. Sequences join and leave the batch at
//! every step, long prompts are prefilled in chunks between decode steps, and prompts of
//! any length batch together, each sequence with its own key/value cache. A sequence gets
//! bit for bit the same numbers whatever else shares its steps.
//!
//! - [`engine`]: the serving pass (8-bit base weights, gathered adapter terms, ragged
//!   attention).
//! - `scheduler`: the step loop (admission round-robin across adapter mixes, chunked
//!   prefill, cancellation, deadlines), on a thread of its own.
//! - [`cache`]: adapters by name from an [`AdapterSource`], loaded off the step loop and kept
//!   under an LRU bounded in bytes, with pinning; `prefix`: reused prompt prefixes.
//! - `sample` and `json`: token choice (penalties, top-k/p, seeds, log-probabilities) and JSON
//!   mode's constraint.
//! - [`metrics`]: vLLM's metric names in Prometheus's format.

pub mod cache;
pub mod engine;
mod json;
pub mod metrics;
mod prefix;
pub mod request;
mod sample;
mod scheduler;

pub use cache::{looks_published, AdapterSource, DirSource};
pub use request::{Event, Finish, Logprob, Params, Request};
pub use sample::Vocab;

use engine::Base;
use metrics::Metrics;
use scheduler::{Command, Pending, Scheduler};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::Instant,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("model: {0}")]
    Model(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("adapter: {0}")]
    BadAdapter(String),
    #[error("no adapter named {0:?}")]
    UnknownAdapter(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the prompt and answer exceed the model's context of {limit} positions")]
    ContextFull { limit: usize },
    #[error("the queue is full ({0} requests waiting)")]
    QueueFull(usize),
}

impl ServeError {
    pub(crate) fn model(e: openledger_model::ModelError) -> Self {
        ServeError::Model(e.to_string())
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sequences in the running batch at most.
    pub max_batch: usize,
    /// Requests waiting at most; beyond, submissions are refused (HTTP 429).
    pub queue_len: usize,
    /// Tokens one step runs at most (decode tokens first, then prompt chunks).
    pub step_tokens: usize,
    /// Bytes of resident adapters at most.
    pub cache_bytes: usize,
    /// Bytes of cached prompt prefixes at most.
    pub prefix_cache_bytes: usize,
    /// Bytes of key/value cache the running batch may reserve (prompt + max_tokens each).
    pub kv_bytes: usize,
    /// Adapters per request at most (an ensemble's size).
    pub max_mix: usize,
    /// A request without a deadline of its own ends this long after it arrives.
    pub request_timeout: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_batch: 32,
            queue_len: 256,
            step_tokens: 256,
            cache_bytes: 512 << 20,
            prefix_cache_bytes: 256 << 20,
            kv_bytes: 2 << 30,
            max_mix: 8,
            request_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// The serving engine: submit requests from any thread; each streams its events back.
pub struct OpenLora {
    commands: parking_lot::Mutex<mpsc::Sender<Command>>,
    queued: Arc<AtomicUsize>,
    settings: Settings,
    source: Arc<dyn AdapterSource>,
    metrics: Arc<Metrics>,
    base: Arc<Base>,
}

impl OpenLora {
    /// Starts the step loop and the adapter loader on their own threads.
    pub fn start(
        base: Base,
        mut vocab: Vocab,
        source: Arc<dyn AdapterSource>,
        model_name: &str,
        settings: Settings,
    ) -> Self {
        // Models pad their vocabulary past the tokenizer's: those ids have no bytes.
        if vocab.pieces.len() < base.vocab() {
            vocab.pieces.resize(base.vocab(), Vec::new());
        }
        vocab.eos.retain(|&e| (e as usize) < base.vocab());
        let base = Arc::new(base);
        let metrics = Arc::new(Metrics::new(model_name, settings.max_batch));
        let queued = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        Scheduler::start(
            base.clone(),
            Arc::new(vocab),
            source.clone(),
            settings.clone(),
            metrics.clone(),
            queued.clone(),
            rx,
            tx.clone(),
        );
        Self {
            commands: parking_lot::Mutex::new(tx),
            queued,
            settings,
            source,
            metrics,
            base,
        }
    }

    /// Queues `request`; its tokens stream on the returned receiver, which ends with
    /// [`Event::Done`] or [`Event::Failed`]. Dropping the receiver cancels the request (its
    /// place in the batch is freed at the next step).
    pub fn submit(&self, mut request: Request) -> Result<UnboundedReceiver<Event>, ServeError> {
        let limit = self.base.max_positions();
        if request.prompt.is_empty() {
            return Err(ServeError::Invalid("the prompt is empty".into()));
        }
        if request.prompt.len() >= limit {
            return Err(ServeError::ContextFull { limit });
        }
        if let Some(&bad) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= self.base.vocab())
        {
            return Err(ServeError::Invalid(format!(
                "token {bad} is outside the vocabulary of {}",
                self.base.vocab()
            )));
        }
        if request.adapters.len() > self.settings.max_mix {
            return Err(ServeError::Invalid(format!(
                "a request may combine at most {} adapters",
                self.settings.max_mix
            )));
        }
        for (name, weight) in &request.adapters {
            if !weight.is_finite() || weight.abs() > 16.0 {
                return Err(ServeError::Invalid(format!(
                    "adapter {name:?} has weight {weight}; weights are finite, within ±16"
                )));
            }
            if !self.source.contains(name) {
                return Err(ServeError::UnknownAdapter(name.clone()));
            }
        }
        request.max_tokens = request.max_tokens.min(limit - request.prompt.len());
        let need = (request.prompt.len() + request.max_tokens) * self.base.kv_bytes_per_position();
        if need > self.settings.kv_bytes {
            return Err(ServeError::Invalid(format!(
                "the prompt and max_tokens need {need} bytes of cache, more than the {} the server allows",
                self.settings.kv_bytes
            )));
        }
        let arrived = Instant::now();
        request.deadline = Some(
            request
                .deadline
                .unwrap_or(arrived + self.settings.request_timeout),
        );
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.settings.queue_len {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::QueueFull(queued));
        }
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let pending = Pending {
            request,
            events,
            arrived,
        };
        if !self.send(Command::Submit(Box::new(pending))) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::Model("the serving engine has stopped".into()));
        }
        Ok(rx)
    }

    /// Loads `name` ahead of use (and keeps it resident when `pin`).
    pub fn prefetch(&self, name: &str, pin: bool) {
        let _ = self.send(Command::Prefetch {
            name: name.to_string(),
            pin,
        });
    }

    /// Lets a pinned adapter be evicted again.
    pub fn unpin(&self, name: &str) {
        let _ = self.send(Command::Unpin(name.to_string()));
    }

    /// Drops `name` from memory (requests already running on it finish on their copy).
    pub fn evict(&self, name: &str) {
        let _ = self.send(Command::Evict(name.to_string()));
    }

    /// False if the step loop is gone (it never stops on its own; a failure would).
    fn send(&self, command: Command) -> bool {
        self.commands.lock().send(command).is_ok()
    }

    /// Where adapters come from.
    pub fn source(&self) -> &Arc<dyn AdapterSource> {
        &self.source
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The model's context length.
    pub fn max_positions(&self) -> usize {
        self.base.max_positions()
    }
}
