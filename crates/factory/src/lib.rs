//! ModelFactory: fine-tuning jobs on datanet versions, the layer between datanets and
//! serving. It uses the model engine (training, evaluation), the datanet service (versions
//! and their exports) and the chain, through `openledger-protocol`.
//!
//! How it is organised:
//! - [`spec`]: OpenAI's create-job request with this system's extensions, resolved to a
//!   training spec (every `"auto"` to its default) and a [`spec::Plan`] of steps.
//! - [`data`]: gathering records from datanet versions (checked against their roots on
//!   chain) and uploaded files, rendering and tokenizing them, the validation report, and
//!   the prepared file a run trains from; [`estimate`] is the pre-flight estimate.
//! - [`job`]: jobs, events, checkpoints and files, and their OpenAI-shaped JSON.
//! - [`store`]: the embedded store they live in (redb).
//! - [`runner`]: the [`Runner`] trait and the local CPU runner (checkpoints, resume,
//!   cancel at a step boundary, evaluation).
//! - [`eval`]: ROUGE-L and perplexity.
//! - [`publish`]: the adapter, its training manifest and config to the blob store, and the
//!   `registerAdapter` call that puts its lineage on chain.
//! - [`escrow`]: the job fee on chain (`ModelFactory`) and the datanet access check.
//! - [`Factory`]: the service; validation (files, then the fee, then access) and the worker
//!   that runs the durable FIFO queue live in modules of their own.
//! - [`api`]: the OpenAI-compatible REST API (`/v1/fine_tuning/jobs`, `/v1/files`).

pub mod api;
pub mod data;
pub mod escrow;
pub mod estimate;
pub mod eval;
pub mod job;
pub mod publish;
pub mod runner;
mod service;
pub mod spec;
pub mod store;
mod validation;
mod worker;

pub use job::{Job, Status};
pub use runner::{LocalRunner, Runner};
pub use service::{Factory, Limits, Operator};

/// Why a factory request failed (what the API answers with a 4xx or 5xx).
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error("{message}")]
    InvalidRequest {
        param: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// Too much is already waiting (answered 429 with Retry-After).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Io(String),
}

impl From<job::JobError> for FactoryError {
    fn from(e: job::JobError) -> Self {
        FactoryError::Io(e.message)
    }
}
