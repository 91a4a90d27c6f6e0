//! The model engine: a Llama-family transformer on candle, with LoRA.
//!
//! It knows nothing of the chain. ModelFactory (fine-tuning), OpenLoRA (serving many adapters
//! on one base model) and Proof of Attribution (per-example gradients) all stand on it.
//!
//! - [`chat`]: the model's Jinja chat template applied to role/content messages.
//! - [`config`]: a model's shape, from GGUF metadata or a Hugging Face `config.json`.
//! - [`weights`]: GGUF (dequantized to f32) and safetensors, under Hugging Face's names.
//! - [`gradients`]: per-example LoRA gradients in one pass, and their seeded projection.
//! - [`llama`]: the transformer and its KV cache.
//! - [`data`]: training examples from JSONL (chat records, prompt/completion, text).
//! - [`generate`]: sampling and the generation loop.
//! - [`loss`]: the causal language-modelling loss with masked (prompt) positions.
//! - [`lora`]: LoRA adapters in PEFT's file layout; batches where each sequence has its own.
//! - [`model`]: [`Model`], a loaded model with its tokenizer, and streaming completion.
//! - [`train`]: LoRA fine-tuning (AdamW, warmup + cosine, clipping, accumulation, checkpoints),
//!   on the hand-written forward and backward pass of `backprop`.
//! - [`tokenizer`]: byte-level BPE built from a GGUF file's own metadata, or a model
//!   directory's `tokenizer.json`.

mod backprop;
pub mod chat;
pub mod config;
pub mod data;
mod frozen;
pub mod generate;
pub mod gradients;
pub mod llama;
pub mod lora;
mod lora_add;
pub mod loss;
pub mod model;
mod q8;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use model::{Completion, Model};
use std::path::PathBuf;

/// The default base model's file name (SmolLM2-135M-Instruct, as `scripts/fetch-model` gets it).
pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where models live: `$OPENLEDGER_HOME/models`, else `~/.cache/openledger/models`.
pub fn models_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("OPENLEDGER_HOME") {
        return PathBuf::from(home).join("models");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("openledger").join("models")
}

/// The default model's path (which may not exist yet).
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL)
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("unreadable model: {0}")]
    Format(String),
    #[error("unsupported model configuration: {0}")]
    Config(String),
    #[error("tensor operation failed: {0}")]
    Tensor(String),
    #[error("the context is full ({limit} positions)")]
    ContextFull { limit: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("training data: {0}")]
    Data(String),
    #[error("training: {0}")]
    Train(String),
    #[error("adapter: {0}")]
    Adapter(String),
    #[error("chat template: {0}")]
    Template(String),
}
