//! Per-example gradients of the LoRA weights, for Proof of Attribution, and their fixed-seed
//! random projection to `k` dimensions.
//!
//! All examples' gradients come from one forward and one backward pass of the hand-written
//! training pass: the loss is the sum of the examples' own mean losses, and the adapters'
//! gradients are summed over each sequence's rows separately, which is exactly each
//! example's own gradient.
//!
//! The projection is a CountSketch: coordinate `i` of a gradient is added, with a sign, to one
//! of the `k` outputs, both chosen by hashing `(seed, i)`. It needs no stored matrix (a dense
//! one for a million LoRA weights and k = 1,024 would take 4 GB), costs one pass over the
//! gradient, is the same on every machine for a seed, and preserves inner products in
//! expectation, which is what influence scores compare.

use crate::{
    backprop::{self, Batch, Workspace},
    llama::Llama,
    lora::LoraAdapter,
    train::{longest, pad_rows, Example},
    ModelError,
};

type Result<T> = std::result::Result<T, ModelError>;

/// Each example's gradient of its own mean loss with respect to `adapter`'s weights,
/// flattened in a fixed order: modules sorted by name, then `A` `(r, in)` row-major, then `B`
/// `(out, r)` row-major.
pub fn per_example_gradients(
    model: &Llama,
    adapter: &LoraAdapter,
    examples: &[Example],
) -> Result<Vec<Vec<f32>>> {
    let b = examples.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    let len = longest(examples)?;
    let s = len - 1;
    let (tokens, targets, mask) = pad_rows(examples.iter(), len);
    // Each example's positions weighted by 1 / (its learned positions): the sum of the
    // examples' mean losses.
    let mut weights = mask;
    for (i, row) in weights.chunks_mut(s).enumerate() {
        let learned: f32 = row.iter().sum();
        if learned == 0.0 {
            return Err(ModelError::Train(format!(
                "example {i} learns no position: every target is prompt or padding"
            )));
        }
        row.iter_mut().for_each(|w| *w /= learned);
    }
    let batch = Batch {
        b,
        s,
        tokens,
        targets,
        weights,
        dropout: None,
    };
    let pass = backprop::run(
        model,
        adapter,
        &batch,
        true,
        true,
        &mut Workspace::default(),
    )?;

    let mut modules: Vec<&String> = adapter.pairs.keys().collect();
    modules.sort();
    let mut out = vec![Vec::new(); b];
    for module in modules {
        let (ga, gb) = pass
            .grads
            .get(module)
            .ok_or_else(|| ModelError::Adapter(format!("no gradient for {module}")))?;
        let (na, nb) = (ga.len() / b, gb.len() / b);
        for (i, row) in out.iter_mut().enumerate() {
            row.extend_from_slice(&ga[i * na..][..na]);
            row.extend_from_slice(&gb[i * nb..][..nb]);
        }
    }
    Ok(out)
}

/// A fixed-seed projection of gradients to `k` dimensions (a CountSketch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sketch {
    pub k: usize,
    pub seed: u64,
}

impl Sketch {
    /// The `k`-dimensional projection of `gradient`.
    pub fn project(&self, gradient: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.k];
        for (i, &g) in gradient.iter().enumerate() {
            let h = mix(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let bucket = (h % self.k as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            out[bucket] += sign * g;
        }
        out
    }
}

/// splitmix64's finalizer: a fast, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
