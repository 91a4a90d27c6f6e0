//! The serving pass: the base model's weights in 8-bit blocks, adapters as gathered
//! low-rank terms, and one forward step over a ragged batch of sequences.

mod adapter;
mod base;
mod dims;
mod forward;
mod kernels;
mod quant;
mod team;

pub use adapter::{Mix, ServedAdapter};
pub use base::Base;
pub use forward::{Chunk, SeqCache};
#[allow(unused_imports)]
pub(crate) use kernels::log_softmax;
