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
//! - [`payout`]: per-contribution credit from spans, and the integer split of an amount by
//!   largest remainder, so that payouts always sum exactly to the amount.

pub mod corpus;
pub mod payout;
pub mod span;
