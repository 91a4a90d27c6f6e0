//! Per-example gradients of the LoRA weights, for Proof of Attribution, and their fixed-seed
//! random projection to `k` dimensions.
//!
//! All examples' gradients come from one forward and one backward pass: every example gets
//! its own copy of the adapter, stacked along the batch the way [`LoraBatch`] stacks adapters
//! for serving, and the loss is the sum of the examples' own mean losses; the gradient of each
//! copy is then exactly that example's gradient.
//!
//! The projection is a CountSketch: coordinate `i` of a gradient is added, with a sign, to one
//! of the `k` outputs, both chosen by hashing `(seed, i)`. It needs no stored matrix (a dense
//! one for a million LoRA weights and k = 1,024 would take 4 GB), costs one pass over the
//! gradient, is the same on every machine for a seed, and preserves inner products in
//! expectation, which is what influence scores compare.

use crate::{
    llama::{Llama, LoraBatch},
    lora::LoraAdapter,
    loss::masked_cross_entropy,
    train::{pad_batch, Example},
    ModelError,
};
use candle_core::{Tensor, Var};
use std::collections::HashMap;

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
    let len = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
    if len < 2 {
        return Err(ModelError::Train(
            "every example needs at least two tokens".into(),
        ));
    }
    let scale = adapter.config.scale();
    let mut modules: Vec<&String> = adapter.pairs.keys().collect();
    modules.sort();
    // One copy of each module's Aᵀ and scale·Bᵀ per example.
    let mut vars: Vec<(Var, Var)> = Vec::new();
    let mut stacks = HashMap::new();
    for module in &modules {
        let pair = &adapter.pairs[*module];
        let at = Tensor::stack(&vec![pair.a.t()?; b], 0)?.contiguous()?; // (b, in, r)
        let bt = Tensor::stack(&vec![(pair.b.t()? * scale)?; b], 0)?.contiguous()?; // (b, r, out)
        let (at, bt) = (Var::from_tensor(&at)?, Var::from_tensor(&bt)?);
        stacks.insert(
            (*module).clone(),
            (at.as_tensor().clone(), bt.as_tensor().clone()),
        );
        vars.push((at, bt));
    }
    let lora = LoraBatch::from_stacks(stacks);

    let (input, target, mask) = pad_batch(examples.iter(), len)?;
    let logits = model.forward_train(&input, Some(&lora))?; // (b, s, vocab)
                                                            // The sum of per-example means: each example's loss depends only on its own copy.
    let mut total: Option<Tensor> = None;
    for i in 0..b {
        let li = masked_cross_entropy(
            &logits.narrow(0, i, 1)?,
            &target.narrow(0, i, 1)?,
            &mask.narrow(0, i, 1)?,
        )?;
        total = Some(match total {
            Some(t) => (t + li)?,
            None => li,
        });
    }
    let grads = total.expect("at least one example").backward()?;

    let mut out = vec![Vec::new(); b];
    for (at, bt) in &vars {
        let ga = grads.get(at).cloned().unwrap_or(at.zeros_like()?); // (b, in, r)
        let gb = grads.get(bt).cloned().unwrap_or(bt.zeros_like()?); // (b, r, out)
        for (i, row) in out.iter_mut().enumerate() {
            // dL/dA = (dL/dAᵀ)ᵀ; dL/dB = scale·(dL/d(scale·Bᵀ))ᵀ
            let a: Vec<f32> = ga.get(i)?.t()?.flatten_all()?.to_vec1()?;
            let bgrad: Vec<f32> = (gb.get(i)?.t()? * scale)?.flatten_all()?.to_vec1()?;
            row.extend(a);
            row.extend(bgrad);
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
