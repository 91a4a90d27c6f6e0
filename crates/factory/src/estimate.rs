//! The pre-flight estimate validation reports: how long a run should take and how much
//! memory it should need here, from the model's shape and the job's token counts.
//!
//! Time: a LoRA step costs about `4 · P` floating-point operations per token (`2P` forward,
//! `2P` backward through the frozen weights, whose own gradients are never formed), so the
//! rate in tokens per second is this machine's measured LoRA throughput in parameter-tokens
//! per second over `P`. Memory: the f32 weights and their 8-bit decode copies, plus what the
//! training pass keeps per layer for one micro-batch.

use crate::{
    data::{Estimate, Report},
    spec::{Hyperparameters, Plan},
};
use openledger_model::config::Config;

/// Parameter-tokens per second one training core pair reaches with the default settings
/// (BENCHMARKS.md, "LoRA training": about 180 tokens/s on the 135M-parameter default model
/// with 2 threads).
const PARAM_TOKENS_PER_SECOND_2_CORES: f64 = 2.4e10;

/// The model's parameter count.
pub fn parameters(c: &Config) -> u64 {
    let (h, d) = (c.hidden_size as u64, c.head_dim() as u64);
    let attention = h * c.num_attention_heads as u64 * d * 2 + h * c.kv_heads() as u64 * d * 2;
    let mlp = 3 * h * c.intermediate_size as u64;
    let embed = c.vocab_size as u64 * h * if c.tie_word_embeddings { 1 } else { 2 };
    c.num_hidden_layers as u64 * (attention + mlp + 2 * h) + embed + h
}

/// The estimate for a planned run.
pub fn estimate(c: &Config, report: &Report, plan: &Plan, h: &Hyperparameters) -> Estimate {
    let params = parameters(c) as f64;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let tokens_per_second = PARAM_TOKENS_PER_SECOND_2_CORES * (cores / 2.0) / params;
    let mean_tokens = report.tokens as f64 / report.examples.max(1) as f64;
    let train_tokens = plan.total_steps as f64
        * (h.batch_size * h.gradient_accumulation_steps) as f64
        * mean_tokens;
    let eval_passes = plan.total_steps.div_ceil(plan.eval_interval.max(1)) as f64;
    // An evaluation pass is forward only: measured at about half of a training step's work
    // per token (the backward pass computes input gradients only).
    let per_step = h.batch_size * h.gradient_accumulation_steps;
    let interval = crate::runner::interval_eval_size(plan.eval_examples, plan, per_step);
    let full = plan.eval_examples.min(crate::runner::FULL_EVAL_EXAMPLES);
    let eval_tokens = (eval_passes * interval as f64 + 2.0 * full as f64) * mean_tokens / 2.0;
    let seconds = (train_tokens + eval_tokens) / tokens_per_second;
    let s = (report.longest as usize).min(h.cutoff_length) as u64;
    let tokens = h.batch_size as u64 * s;
    let (e, i) = (c.hidden_size as u64, c.intermediate_size as u64);
    let per_layer =
        tokens * (10 * e + 3 * i) + h.batch_size as u64 * c.num_attention_heads as u64 * s * s;
    let weights = parameters(c) * 5;
    let activations = 4 * c.num_hidden_layers as u64 * per_layer;
    Estimate {
        seconds,
        tokens_per_second,
        peak_memory_bytes: weights + activations,
    }
}
