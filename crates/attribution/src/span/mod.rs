//! The span engine's index: a suffix array over an adapter's tokenized training corpus, in the
//! manner of infini-gram.
//!
//! **The text.** Every training example is a *document* that carries the contribution id it
//! came from. The text is each document's tokens preceded by the separator token
//! [`SEPARATOR`] (`0xFFFF`), with nothing after the last one — the layout of infini-gram's
//! `tokenized.0` for 16-bit tokens, so that a query's rank range is the same number in both.
//!
//! **The order.** Suffixes are ordered as infini-gram orders them: by the little-endian bytes
//! of their tokens, a suffix that is a prefix of another first. Ordering 16-bit tokens by
//! their byte-swapped values gives exactly that order, so the suffix array is built over the
//! byte-swapped text with a linear-time SA-IS construction (libsais).
//!
//! **On disk** (a directory, memory-mapped when opened):
//! - `tokens.bin`: the text, 2 bytes per token, little-endian;
//! - `suffixes.bin`: the suffix array, each entry a token position in `⌈log₂ n⌉` bits,
//!   packed little-endian (24 bits for up to 16M tokens: 5 bytes per token in all);
//! - `documents.bin`: per document, its separator's position and its contribution id
//!   (two little-endian u64);
//! - `index.json`: the format version and the counts.
//!
//! [`trace`] attributes an answer: its maximal verbatim spans, cut to whole words and at
//! delimiters, the rarest kept, each with the documents (contributions) that hold it.

mod build;
mod index;
mod packed;
#[cfg(test)]
mod tests;
mod trace;

pub use build::build;
pub use index::{Occurrence, SpanIndex};
pub use trace::{token_kinds, trace, Span, TokenKind, TraceConfig};

/// The token between documents (and before the first one).
pub const SEPARATOR: u32 = 0xFFFF;

/// The on-disk format's version, in `index.json`.
pub const FORMAT_VERSION: u32 = 1;

/// A training example as the index sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The contribution the example came from.
    pub contribution: u64,
    pub tokens: Vec<u32>,
}

/// What can go wrong building, opening or querying an index.
#[derive(Debug, thiserror::Error)]
pub enum SpanError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("document {document} holds token {token}: the span index stores 16-bit tokens below {SEPARATOR} (the separator)")]
    TokenOutOfRange { document: usize, token: u32 },
    #[error("query token {0} is beyond 16 bits")]
    QueryToken(u32),
    #[error("the corpus has {0} tokens; the index holds at most 2^40")]
    TooLarge(u64),
    #[error("suffix sorting failed (libsais returned {0})")]
    Sort(i64),
    #[error("the answer has {tokens} tokens but {kinds} token kinds")]
    Kinds { tokens: usize, kinds: usize },
    #[error("{path} is not a span index: {reason}")]
    Corrupt { path: String, reason: String },
}

pub type Result<T, E = SpanError> = std::result::Result<T, E>;

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SpanError + '_ {
    move |source| SpanError::Io {
        path: path.display().to_string(),
        source,
    }
}
