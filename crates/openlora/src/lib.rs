//! OpenLoRA: many LoRA adapters served on one base model.
//!
//! Requests on different adapters (and ensembles of adapters) share every decode step: the
//! base model's weights are read once per step for the whole batch, and each sequence adds
//! its own adapters' low-rank terms to its own rows. Sequences join and leave the batch at
//! every step, long prompts are prefilled in chunks between decode steps, and prompts of
//! any length batch together, each sequence with its own key/value cache.
//!
//! - [`engine`]: the serving pass (8-bit base weights, gathered adapter terms, ragged
//!   attention), exact per sequence whatever else shares the step.

pub mod engine;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("model: {0}")]
    Model(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("adapter: {0}")]
    BadAdapter(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the prompt and answer exceed the model's context of {limit} positions")]
    ContextFull { limit: usize },
}

impl ServeError {
    pub(crate) fn model(e: openledger_model::ModelError) -> Self {
        ServeError::Model(e.to_string())
    }
}
