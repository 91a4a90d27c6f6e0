//! The LoRA training pass written out by hand: the forward pass that keeps what the backward
//! pass needs, and the backward pass that computes only what reaches the adapters.
//!
//! candle's autograd made a LoRA step mostly overhead: every elementwise node of RMSNorm,
//! rotary embeddings, softmax and the loss allocated its own tensor, ran on one thread, and
//! had its own backward node, and the `(tokens, vocab)` logits went through about a dozen
//! full passes. Here the base weights are frozen, so the backward pass is known in advance:
//! `∂x` through every layer and `∂A`, `∂B` of each adapted projection. Each step is one
//! fused, multi-threaded kernel (see [`kernels`]) writing into buffers of a [`Workspace`]
//! that is reused from step to step, and the output head and loss run a chunk of rows at a
//! time, forward and backward together, so the logits never exist whole.
//!
//! `Llama::forward_train` with candle's autograd stays as the reference this pass is tested
//! against (`tests/backprop.rs`).

pub(crate) mod kernels;
mod layer;

use crate::{llama::Llama, lora::LoraAdapter, ModelError};
use candle_core::{CpuStorage, Storage, Tensor};
use kernels::{buffer, Heads, Mat};
use std::{collections::HashMap, sync::RwLockReadGuard};

type Result<T> = std::result::Result<T, ModelError>;

/// A batch for one pass: `b` sequences of `s` positions, row-major. Position `i` of a
/// sequence reads `tokens[i]` and predicts `targets[i]`, its loss weighted by `weights[i]`
/// (zero for prompt and padding positions; the weights set how losses are averaged).
pub(crate) struct Batch {
    pub b: usize,
    pub s: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub weights: Vec<f32>,
    /// LoRA dropout for this pass (training only).
    pub dropout: Option<Dropout>,
}

/// LoRA dropout, as PEFT applies it: each adapter reads `x ⊙ m / (1 − p)` instead of `x`
/// (the frozen weight still reads `x`), every element of `m` kept with probability `1 − p`.
/// The mask is a hash of the seed, layer, projection and element, so it is drawn again in
/// the backward pass instead of stored, and a resumed run draws exactly the same masks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dropout {
    pub p: f32,
    pub seed: u64,
}

/// SplitMix64's finaliser: a good 64-bit mix of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dropout {
    /// The mask of projection `k` in layer `l`.
    fn at(self, l: usize, k: usize) -> Self {
        Self {
            p: self.p,
            seed: mix(self.seed ^ mix(((l as u64) << 8) | k as u64)),
        }
    }

    /// Whether element `i` is kept.
    fn keeps(self, i: usize) -> bool {
        let draw = (mix(self
            .seed
            .wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            >> 40) as f32
            / (1u64 << 24) as f32;
        draw >= self.p
    }

    /// `x ⊙ m / (1 − p)` in place.
    pub(crate) fn apply(self, x: &mut [f32]) {
        use rayon::prelude::*;
        let scale = 1.0 / (1.0 - self.p);
        x.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = if self.keeps(c * 4096 + j) {
                    *v * scale
                } else {
                    0.0
                };
            }
        });
    }
}

/// What a pass gives back.
pub(crate) struct Pass {
    /// `Σ weights[i] · cross-entropy[i]`.
    pub loss: f64,
    /// Per adapted module: `∂A` `(groups, r, in)` and `∂B` `(groups, out, r)`, each group
    /// one sequence when asked for per sequence, else one group for the whole batch.
    pub grads: HashMap<String, (Vec<f32>, Vec<f32>)>,
}

/// Buffers kept from one pass to the next, so that a training run does not allocate (and
/// fault in) hundreds of megabytes every step.
#[derive(Default)]
pub(crate) struct Workspace {
    layers: Vec<Saved>,
    top: Vec<f32>,
    normed: Vec<f32>,
    rstd: Vec<f32>,
    logits: Vec<f32>,
    dnormed: Vec<f32>,
    back: Back,
}

/// What the forward pass keeps of one layer.
#[derive(Default)]
struct Saved {
    x: Vec<f32>,
    h1: Vec<f32>,
    rstd1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    p: Vec<f32>,
    y: Vec<f32>,
    mid: Vec<f32>,
    h2: Vec<f32>,
    rstd2: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    /// `x·Aᵀ` of each adapted projection, in [`PROJECTIONS`] order.
    lora: [Vec<f32>; 7],
}

/// The backward pass's scratch buffers.
#[derive(Default)]
struct Back {
    gx: Vec<f32>,
    dh: Vec<f32>,
    a: Vec<f32>,
    da: Vec<f32>,
    dg: Vec<f32>,
    du: Vec<f32>,
    tmp: Vec<f32>,
    dy: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    scratch: Vec<f32>,
    t: Vec<f32>,
}

/// An adapter pair as plain values: `a` `(r, in)`, `b` `(out, r)`.
struct Pair {
    a: Vec<f32>,
    b: Vec<f32>,
    r: usize,
}

/// One projection's frozen weight `(in, out)`, bias, and adapter if it has one.
struct Proj<'w> {
    wt: &'w [f32],
    inp: usize,
    out: usize,
    bias: Option<&'w [f32]>,
    lora: Option<&'w Pair>,
    /// Dropout on what the adapter reads.
    dropout: Option<Dropout>,
}

/// The frozen tensors, read in place for the length of a pass.
struct Frozen<'t> {
    guards: Vec<(RwLockReadGuard<'t, Storage>, usize, usize)>,
}

impl<'t> Frozen<'t> {
    fn new(tensors: &[&'t Tensor]) -> Result<Self> {
        let guards = tensors
            .iter()
            .map(|t| {
                let (guard, layout) = t.storage_and_layout();
                let ok = matches!(&*guard, Storage::Cpu(CpuStorage::F32(_)));
                if !ok || !layout.is_contiguous() {
                    return Err(ModelError::Tensor(
                        "training needs contiguous f32 weights on the CPU".into(),
                    ));
                }
                let (start, len) = (layout.start_offset(), layout.shape().elem_count());
                Ok((guard, start, len))
            })
            .collect::<Result<_>>()?;
        Ok(Self { guards })
    }

    fn get(&self, i: usize) -> &[f32] {
        let (guard, start, len) = &self.guards[i];
        match &**guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[*start..start + len],
            _ => unreachable!("checked in new"),
        }
    }
}

/// The projections of a layer, in the order adapters and [`Saved::lora`] use.
const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Runs `batch` through `model` with `adapter` and returns the loss and, if `backward`, the
/// gradients of the adapter's weights (summed over the batch, or per sequence).
pub(crate) fn run(
    model: &Llama,
    adapter: &LoraAdapter,
    batch: &Batch,
    backward: bool,
    per_sequence: bool,
    ws: &mut Workspace,
) -> Result<Pass> {
    let config = model.config();
    let (b, s) = (batch.b, batch.s);
    let n = b * s;
    if batch.tokens.len() != n || batch.targets.len() != n || batch.weights.len() != n {
        return Err(ModelError::Train("batch arrays differ in length".into()));
    }
    if s > config.max_position_embeddings {
        return Err(ModelError::ContextFull {
            limit: config.max_position_embeddings,
        });
    }
    let vocab = config.vocab_size;
    if let Some(bad) = batch
        .tokens
        .iter()
        .chain(&batch.targets)
        .find(|&&t| t as usize >= vocab)
    {
        return Err(ModelError::Train(format!(
            "token {bad} is outside the vocabulary ({vocab})"
        )));
    }
    model.check_adapter(adapter)?;
    let scale = adapter.config.scale() as f32;
    let layers = model.layers();
    // Adapter pairs as plain values, per layer and projection.
    let mut pairs: Vec<[Option<Pair>; 7]> = Vec::with_capacity(layers.len());
    for l in 0..layers.len() {
        let mut row: [Option<Pair>; 7] = Default::default();
        for (k, name) in PROJECTIONS.iter().enumerate() {
            if let Some(p) = adapter.pair(&format!("model.layers.{l}.{name}")) {
                let a: Vec<f32> = p.a.flatten_all()?.to_vec1()?;
                let r = p.a.dim(0)?;
                row[k] = Some(Pair {
                    a,
                    b: p.b.flatten_all()?.to_vec1()?,
                    r,
                });
            }
        }
        pairs.push(row);
    }

    // The frozen tensors: per layer the two norms, the seven weights, then their biases;
    // then the embedding, the final norm and the head.
    let mut tensors: Vec<&Tensor> = Vec::new();
    let mut biases: Vec<[Option<usize>; 7]> = Vec::new();
    for layer in layers {
        tensors.extend([layer.input_norm(), layer.post_norm()]);
        tensors.extend(layer.weights().map(|(wt, _)| wt));
    }
    for layer in layers {
        let mut row = [None; 7];
        for (k, (_, bias)) in layer.weights().into_iter().enumerate() {
            if let Some(bias) = bias {
                row[k] = Some(tensors.len());
                tensors.push(bias);
            }
        }
        biases.push(row);
    }
    let (embed_i, norm_i, head_i) = (tensors.len(), tensors.len() + 1, tensors.len() + 2);
    let (cos_i, sin_i) = (tensors.len() + 3, tensors.len() + 4);
    let (cos, sin) = model.rope_tables();
    tensors.extend([model.embed(), model.final_norm(), model.head(), cos, sin]);
    let frozen = Frozen::new(&tensors)?;
    let proj = |l: usize, k: usize| -> Proj {
        let wt_tensor = tensors[l * 9 + 2 + k];
        let (inp, out) = wt_tensor.dims2().expect("weights are matrices");
        Proj {
            wt: frozen.get(l * 9 + 2 + k),
            inp,
            out,
            bias: biases[l][k].map(|i| frozen.get(i)),
            lora: pairs[l][k].as_ref(),
            dropout: batch.dropout.filter(|d| d.p > 0.0).map(|d| d.at(l, k)),
        }
    };

    let e = config.hidden_size;
    let shape = Heads {
        b,
        s,
        h: config.num_attention_heads,
        kv: config.kv_heads(),
        d: config.head_dim(),
    };
    // The model's own rotary tables, `(positions, d/2)`: the first `s` rows.
    let half = shape.d / 2;
    let (cos, sin) = (
        &frozen.get(cos_i)[..s * half],
        &frozen.get(sin_i)[..s * half],
    );
    let eps = config.rms_norm_eps as f32;
    ws.layers.resize_with(layers.len(), Saved::default);

    // Forward.
    let embed = frozen.get(embed_i);
    {
        let x = buffer(&mut ws.layers[0].x, n * e);
        for (row, &t) in x.chunks_mut(e).zip(&batch.tokens) {
            row.copy_from_slice(&embed[t as usize * e..][..e]);
        }
    }
    for l in 0..layers.len() {
        let (done, rest) = ws.layers.split_at_mut(l + 1);
        let sv = &mut done[l];
        let next = match rest.first_mut() {
            Some(next) => &mut next.x,
            None => &mut ws.top,
        };
        let (w1, w2) = (frozen.get(l * 9), frozen.get(l * 9 + 1));
        layer::layer_forward(
            sv,
            next,
            n,
            e,
            shape,
            eps,
            (w1, w2),
            &|k| proj(l, k),
            scale,
            (cos, sin),
            &mut ws.back.tmp,
            &mut ws.back.a,
        );
    }
    let normed = buffer(&mut ws.normed, n * e);
    let rstd = buffer(&mut ws.rstd, n);
    kernels::rms_norm(&ws.top[..n * e], frozen.get(norm_i), eps, normed, rstd);
    let head = Mat::new(frozen.get(head_i), e, vocab);
    let dnormed = buffer(&mut ws.dnormed, n * e);
    let loss = kernels::head_cross_entropy(
        normed,
        head,
        &batch.targets,
        &batch.weights,
        &mut ws.logits,
        backward.then_some(&mut *dnormed),
    );
    let mut grads = HashMap::new();
    if !backward {
        return Ok(Pass { loss, grads });
    }

    // Backward, down to the lowest layer with an adapter.
    let groups = if per_sequence { b } else { 1 };
    let Some(lowest) = pairs.iter().position(|row| row.iter().any(Option::is_some)) else {
        return Err(ModelError::Adapter("the adapter has no weights".into()));
    };
    let gx = buffer(&mut ws.back.gx, n * e);
    gx.fill(0.0);
    kernels::rms_norm_back(dnormed, &ws.top[..n * e], frozen.get(norm_i), rstd, gx);
    for l in (lowest..layers.len()).rev() {
        let (w1, w2) = (frozen.get(l * 9), frozen.get(l * 9 + 1));
        let mut out: [Option<(Vec<f32>, Vec<f32>)>; 7] = Default::default();
        layer::layer_backward(
            &ws.layers[l],
            &mut ws.back,
            n,
            e,
            shape,
            (w1, w2),
            &|k| proj(l, k),
            scale,
            (cos, sin),
            groups,
            l > lowest,
            &mut out,
        );
        for (k, grad) in out.into_iter().enumerate() {
            if let Some(grad) = grad {
                grads.insert(format!("model.layers.{l}.{}", PROJECTIONS[k]), grad);
            }
        }
    }
    Ok(Pass { loss, grads })
}

#[cfg(test)]
mod tests;
