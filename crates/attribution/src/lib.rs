//! Proof of Attribution: for an answer an adapter gave, which datanet contributions shaped it,
//! computed so that any validator can recompute the result from published artifacts.
//!
//! How it is organised:
//! - [`corpus`]: an adapter's training corpus read from its published training manifest and
//!   `examples.bin`, checked against the manifest's hash, held-out examples left out.
//! - [`span`]: the span engine's index, a suffix array over an adapter's tokenized training
//!   corpus (each training example a document carrying its contribution id), memory-mapped,
//!   with `count`, `find` (rank ranges), the longest match at each position and the documents
//!   behind a rank range, in an order any validator reproduces; and tracing an answer to the
//!   spans it shares with the corpus.
//! - [`gradient`]: the gradient engine, seeded sketches of every training example's LoRA
//!   gradient at each checkpoint, and TracIn scores with a Gauss-Newton preconditioner.
//! - [`payout`]: per-contribution credit from spans, and the integer split of an amount by
//!   largest remainder, so that payouts always sum exactly to the amount.
//! - [`published`]: an adapter's published artifacts opened and checked, with both engines'
//!   indexes built once into a cache.
//! - [`attribute`]: the rule combining the engines, producing a [`receipt`], the canonical
//!   ABI-encoded record whose keccak256 settlement commits to; [`explain`] turns one into
//!   what a person reads.
//! - [`service`] and [`api`]: the node's attribution service (published adapters fetched from
//!   the blob store, indexes built on first use, one attribution at a time) and its REST API.

pub mod api;
pub mod attribute;
pub mod corpus;
pub mod explain;
pub mod gradient;
pub mod payout;
pub mod published;
pub mod receipt;
pub mod service;
pub mod span;

/// Why an attribution could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("published artifacts: {0}")]
    Artifact(String),
    #[error("receipt: {0}")]
    Receipt(String),
    #[error(transparent)]
    Corpus(#[from] corpus::CorpusError),
    #[error(transparent)]
    Span(#[from] span::SpanError),
    #[error(transparent)]
    Gradient(#[from] gradient::GradientError),
}
