//! The gradient engine (the TracIn / TRAK idea): how much each training example's gradient
//! points the same way as the answer's, at each checkpoint the training kept.
//!
//! - At build time ([`build`]), every training example's gradient of its own loss with
//!   respect to the LoRA weights, at each stored checkpoint, is projected to `k` dimensions
//!   by a seeded CountSketch and stored as int8 with a scale (`4 + k` bytes per example per
//!   checkpoint). Per checkpoint, the store also keeps the Cholesky factor of the damped
//!   Gauss-Newton matrix in sketch space, `F = (1/n) Σ gᵢ gᵢᵀ + λ I`, computed from the stored
//!   sketches themselves.
//! - At query time ([`answer_sketch`]), the answer's gradient (its tokens' loss given the
//!   prompt) is sketched the same way at each checkpoint, preconditioned (`F⁻¹ q`, as TRAK)
//!   and quantized to int8. [`influence`] scores every example as
//!   `Σ_c η_c ⟨F_c⁻¹ q_c, g_{i,c}⟩` (TracIn's sum over checkpoints weighted by their learning
//!   rates), with exact integer dot products. The damping (10 × the mean eigenvalue) was
//!   chosen on `attribution-eval`'s planted corpus; BENCHMARKS.md has the comparison.
//!
//! Determinism: the floating-point work on the store side is single-threaded f64 in a fixed
//! order; the answer's sketch is quantized to int8 before it meets the store, so tiny
//! differences in the model's multi-threaded arithmetic do not reach the scores.

mod cholesky;
mod store;

pub use store::{build, write, SketchStore, StoredCheckpoint, FORMAT_VERSION};

use alloy_primitives::B256;
use openledger_model::{
    gradients::Sketch, llama::Llama, lora::LoraAdapter, train::Example, ModelError,
};
use rayon::prelude::*;

type Result<T> = std::result::Result<T, GradientError>;

/// Why the gradient engine could not build or answer.
#[derive(Debug, thiserror::Error)]
pub enum GradientError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("sketch store: {0}")]
    Format(String),
    #[error("the model could not compute a gradient: {0}")]
    Model(#[from] ModelError),
    #[error("the adapter kept no checkpoint, so there is nothing to take gradients at")]
    NoCheckpoints,
    #[error("sketch settings: {0}")]
    Config(String),
    #[error("checkpoint {index} does not match the store: {why}")]
    Checkpoint { index: usize, why: String },
}

/// How gradients are sketched and preconditioned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchConfig {
    /// Sketch dimensions.
    pub k: usize,
    /// The CountSketch's seed.
    pub seed: u64,
    /// λ relative to the mean eigenvalue of `F`.
    pub damping: f64,
}

/// The most dimensions a sketch may have: with its scale, one example at one checkpoint
/// takes at most 4 KiB.
pub const MAX_K: usize = 4092;

impl Default for SketchConfig {
    fn default() -> Self {
        Self {
            k: 1024,
            seed: 0x0be7_a77e_1b57_0001,
            damping: 10.0,
        }
    }
}

impl SketchConfig {
    fn validate(&self) -> Result<()> {
        if !(16..=MAX_K).contains(&self.k) {
            return Err(GradientError::Config(format!(
                "k = {} must be between 16 and {MAX_K}",
                self.k
            )));
        }
        if !(self.damping.is_finite() && self.damping > 0.0) {
            return Err(GradientError::Config(format!(
                "damping {} must be positive",
                self.damping
            )));
        }
        Ok(())
    }

    fn sketch(&self) -> Sketch {
        Sketch {
            k: self.k,
            seed: self.seed,
        }
    }
}

/// A checkpoint the training kept: the adapter there and the learning rate it trained at.
pub struct Checkpoint {
    pub learning_rate: f64,
    pub weights_hash: B256,
    pub adapter: LoraAdapter,
}

/// An answer's gradient, sketched and quantized at each checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSketch {
    pub preconditioned: bool,
    /// Per checkpoint: the scale and the int8 values.
    pub checkpoints: Vec<(f32, Vec<i8>)>,
}

/// An answer's gradient sketched at each checkpoint, before preconditioning and
/// quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSketch(pub Vec<Vec<f64>>);

/// Sketches the gradient of `example`'s loss (its tokens after the prompt) at each of the
/// store's checkpoints, preconditioned or not (plain gradient dot products, a baseline).
pub fn answer_sketch(
    model: &Llama,
    checkpoints: &[Checkpoint],
    store: &SketchStore,
    example: &Example,
    precondition: bool,
) -> Result<AnswerSketch> {
    Ok(raw_sketch(model, checkpoints, store, example)?.prepare(store, precondition))
}

/// The answer's raw sketches at the store's checkpoints (the costly part: one forward and
/// backward pass per checkpoint).
pub fn raw_sketch(
    model: &Llama,
    checkpoints: &[Checkpoint],
    store: &SketchStore,
    example: &Example,
) -> Result<RawSketch> {
    if checkpoints.len() != store.checkpoints.len() {
        return Err(GradientError::Checkpoint {
            index: checkpoints.len().min(store.checkpoints.len()),
            why: format!(
                "{} checkpoints given, the store has {}",
                checkpoints.len(),
                store.checkpoints.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(checkpoints.len());
    for (c, (given, stored)) in checkpoints.iter().zip(&store.checkpoints).enumerate() {
        if given.weights_hash != stored.weights_hash {
            return Err(GradientError::Checkpoint {
                index: c,
                why: format!(
                    "weights {} given, the store was built at {}",
                    given.weights_hash, stored.weights_hash
                ),
            });
        }
        out.push(store::sketch(model, given, example, &store.config)?);
    }
    Ok(RawSketch(out))
}

impl RawSketch {
    /// Preconditioned (`F⁻¹ q` per checkpoint) or not, then quantized to int8.
    pub fn prepare(&self, store: &SketchStore, precondition: bool) -> AnswerSketch {
        AnswerSketch {
            preconditioned: precondition,
            checkpoints: self
                .0
                .iter()
                .enumerate()
                .map(|(c, q)| {
                    if precondition {
                        store::quantize(&store.factor(c).solve(q))
                    } else {
                        store::quantize(q)
                    }
                })
                .collect(),
        }
    }
}

/// Every stored example's influence on the answer, in store order:
/// `Σ_c η_c · s_q · s_i · ⟨q, g_i⟩` with the dot products exact in integers.
pub fn influence(store: &SketchStore, answer: &AnswerSketch) -> Vec<f64> {
    influence_with(store, answer, false)
}

/// [`influence`], or with `normalize` each training sketch taken at unit length (as LESS
/// does, so that an example whose gradient is merely large does not outrank every other; a
/// variant `attribution-eval` compares).
pub fn influence_with(store: &SketchStore, answer: &AnswerSketch, normalize: bool) -> Vec<f64> {
    let (k, n) = (store.config.k, store.len());
    let mut scores = vec![0f64; n];
    for (c, (q_scale, q)) in answer.checkpoints.iter().enumerate() {
        let weight = store.checkpoints[c].learning_rate * *q_scale as f64;
        let records = store.records(c);
        scores
            .par_iter_mut()
            .zip(records.par_chunks_exact(4 + k))
            .for_each(|(score, record)| {
                let values = &record[4..];
                let scale = if normalize {
                    let norm: i64 = values.iter().map(|&v| (v as i8 as i64).pow(2)).sum();
                    if norm == 0 {
                        return;
                    }
                    1.0 / (norm as f64).sqrt()
                } else {
                    f32::from_le_bytes(record[..4].try_into().expect("four bytes")) as f64
                };
                *score += weight * scale * dot(q, values) as f64;
            });
    }
    scores
}

/// `⟨a, b⟩` with `b`'s bytes read as int8.
fn dot(a: &[i8], b: &[u8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as i32 * y as i8 as i32)
        .sum()
}
