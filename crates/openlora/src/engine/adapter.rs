//! Adapters as the serving pass applies them: for every adapted projection, `A` `(r, in)`
//! and `scale·Bᵀ` `(r, out)` in IEEE halves, so a row's term is `r` dot products and `r`
//! scaled additions (the gathered product of Punica's BGMV, on the CPU), whatever the rank
//! and whatever adapters the other rows use. Halves, because a batch of sequences on
//! different adapters reads every one of their weights at each step: at f32 those reads
//! cost a sixth of a 16-sequence step.

use super::dims::{Dims, Kind};
use super::kernels::{axpy_half, dot_half, to_halves};
use crate::ServeError;
use openledger_model::lora::LoraAdapter;
use std::sync::Arc;

struct Pair {
    r: usize,
    /// `(r, in)`, halves' bits.
    a: Vec<u16>,
    /// `(r, out)`, times the adapter's scale, halves' bits.
    bt: Vec<u16>,
}

/// Rounds `values` to halves, refusing any a half cannot hold.
fn halves(values: &[f32]) -> Result<Vec<u16>, String> {
    let h = to_halves(values);
    // Exponent all ones: infinite or not a number.
    match h.iter().position(|&h| h & 0x7c00 == 0x7c00) {
        None => Ok(h),
        Some(i) => Err(format!(
            "a weight of {} is beyond what the server holds (±{})",
            values[i],
            half::f16::MAX
        )),
    }
}

/// The largest rank served.
const MAX_RANK: usize = 1024;

/// An adapter ready to serve.
pub struct ServedAdapter {
    /// Indexed by `layer · 7 + kind`.
    pairs: Vec<Option<Pair>>,
    rank: usize,
    bytes: usize,
}

impl ServedAdapter {
    /// Converts `adapter`, refusing modules the base model lacks and shapes that do not fit.
    pub fn new(adapter: &LoraAdapter, base: &super::Base) -> Result<Self, ServeError> {
        let dims: &Dims = &base.dims;
        let mut pairs: Vec<Option<Pair>> = (0..dims.layers * 7).map(|_| None).collect();
        let scale = adapter.config.scale() as f32;
        let mut bytes = 0;
        for (module, pair) in &adapter.pairs {
            let bad = |why: String| ServeError::BadAdapter(format!("{module}: {why}"));
            let (layer, kind) = Kind::parse(module)
                .filter(|(l, _)| *l < dims.layers)
                .ok_or_else(|| bad("the base model has no such projection".into()))?;
            let (inp, out) = dims.shape(kind);
            let r = adapter.config.r;
            if r > MAX_RANK {
                return Err(bad(format!("rank {r} is above {MAX_RANK}")));
            }
            // Shapes first, from the tensors themselves: no arithmetic a file can overflow.
            let (a_dims, b_dims) = (pair.a.dims().to_vec(), pair.b.dims().to_vec());
            if a_dims != [r, inp] || b_dims != [out, r] {
                return Err(bad(format!(
                    "shapes {a_dims:?} and {b_dims:?} do not fit a {out}×{inp} projection at rank {r}"
                )));
            }
            let to_vec = |t: &candle_core::Tensor| t.flatten_all().and_then(|t| t.to_vec1());
            let a: Vec<f32> = to_vec(&pair.a).map_err(|e| bad(e.to_string()))?;
            let b: Vec<f32> = to_vec(&pair.b).map_err(|e| bad(e.to_string()))?;
            let mut bt = vec![0f32; r * out];
            for (o, row) in b.chunks_exact(r.max(1)).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    bt[j * out + o] = v * scale;
                }
            }
            let (a, bt) = (halves(&a).map_err(bad)?, halves(&bt).map_err(bad)?);
            bytes += 2 * (a.len() + bt.len());
            pairs[layer * 7 + kind.index()] = Some(Pair { r, a, bt });
        }
        Ok(Self {
            pairs,
            rank: adapter.config.r,
            bytes,
        })
    }

    /// Bytes the adapter takes in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The adapter's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
}

/// The adapters one sequence runs on, each with its weight (one adapter at weight 1.0
/// usually; several for an ensemble; none for the base model).
pub type Mix = Vec<(Arc<ServedAdapter>, f32)>;

/// Adds each row's adapter terms for projection `kind` of `layer`: row `i` of `x`
/// `(rows, in)` into columns `offset..offset + out` of row `i` of `y` `(rows, stride)`.
#[allow(clippy::too_many_arguments)] // one gathered product, each argument a shape or operand
pub(crate) fn apply(
    mixes: &[&Mix],
    layer: usize,
    kind: Kind,
    x: &[f32],
    inp: usize,
    y: &mut [f32],
    stride: usize,
    offset: usize,
) {
    let slot = layer * 7 + kind.index();
    let adapted = |mix: &&Mix| mix.iter().any(|(a, _)| a.pairs[slot].is_some());
    if !mixes.iter().any(adapted) {
        return;
    }
    super::team::Team::global().for_shares(y, stride, 1, |part, first| {
        for (k, y) in part.chunks_exact_mut(stride).enumerate() {
            let (x, mix) = (&x[(first + k) * inp..][..inp], mixes[first + k]);
            let mut t = Vec::new();
            for (adapter, weight) in mix.iter() {
                let Some(pair) = &adapter.pairs[slot] else {
                    continue;
                };
                let out = pair.bt.len() / pair.r;
                let y = &mut y[offset..offset + out];
                t.clear();
                t.extend(pair.a.chunks_exact(inp).map(|a| dot_half(a, x) * weight));
                for (c, bt) in t.iter().zip(pair.bt.chunks_exact(out)) {
                    axpy_half(*c, bt, y);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(r: usize, inp: usize, out: usize, seed: u32) -> Arc<ServedAdapter> {
        let v = |n: usize, k: u32| -> Vec<u16> {
            let values: Vec<f32> = (0..n)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761) ^ (seed * 7 + k)) as f32
                        / u32::MAX as f32
                        - 0.5
                })
                .collect();
            halves(&values).unwrap()
        };
        let mut pairs: Vec<Option<Pair>> = (0..7).map(|_| None).collect();
        pairs[0] = Some(Pair {
            r,
            a: v(r * inp, 1),
            bt: v(r * out, 2),
        });
        Arc::new(ServedAdapter {
            pairs,
            rank: r,
            bytes: 0,
        })
    }

    #[test]
    fn an_ensembles_terms_are_the_weighted_sum_of_its_adapters_terms() {
        let (inp, out, rows) = (16, 10, 3);
        let (a1, a2) = (adapter(2, inp, out, 1), adapter(5, inp, out, 2));
        let x: Vec<f32> = (0..rows * inp)
            .map(|i| (i % 7) as f32 * 0.3 - 1.0)
            .collect();
        let run = |mix: &Mix| {
            let mut y = vec![0.5f32; rows * out];
            let mixes: Vec<&Mix> = vec![mix; rows];
            apply(&mixes, 0, Kind::Q, &x, inp, &mut y, out, 0);
            y
        };
        let w = 0.3f32;
        let ensemble = run(&vec![(a1.clone(), w), (a2.clone(), 1.0 - w)]);
        let (y1, y2) = (run(&vec![(a1, 1.0)]), run(&vec![(a2, 1.0)]));
        for i in 0..rows * out {
            let merged = 0.5 + w * (y1[i] - 0.5) + (1.0 - w) * (y2[i] - 0.5);
            assert!(
                (ensemble[i] - merged).abs() < 1e-5,
                "{i}: {} vs {merged}",
                ensemble[i]
            );
        }
        assert_eq!(run(&Vec::new()), vec![0.5; rows * out]);
    }
}
