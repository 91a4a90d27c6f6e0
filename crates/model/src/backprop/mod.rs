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

use crate::{config::Config, llama::Llama, lora::LoraAdapter, ModelError};
use candle_core::{CpuStorage, Storage, Tensor};
use kernels::{buffer, Heads, Mat, MatMut, Threads};
use rayon::prelude::*;
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
    model.check_adapter(adapter)?;

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
    tensors.extend([model.embed(), model.final_norm(), model.head()]);
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
    let (cos, sin) = rope_tables(config, s);
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
        layer_forward(
            sv,
            next,
            n,
            e,
            shape,
            eps,
            (w1, w2),
            &|k| proj(l, k),
            scale,
            (&cos, &sin),
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
        layer_backward(
            &ws.layers[l],
            &mut ws.back,
            n,
            e,
            shape,
            (w1, w2),
            &|k| proj(l, k),
            scale,
            (&cos, &sin),
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

/// One layer forward: from `sv.x` fills the rest of `sv` and writes the layer's output to
/// `next`.
#[allow(clippy::too_many_arguments)]
fn layer_forward<'w>(
    sv: &mut Saved,
    next: &mut Vec<f32>,
    n: usize,
    e: usize,
    shape: Heads,
    eps: f32,
    (w1, w2): (&[f32], &[f32]),
    proj: &dyn Fn(usize) -> Proj<'w>,
    scale: f32,
    (cos, sin): (&[f32], &[f32]),
    tmp: &mut Vec<f32>,
    a: &mut Vec<f32>,
) {
    let Heads { b, s, h, kv, d } = shape;
    let x = &sv.x[..n * e];
    let h1 = buffer(&mut sv.h1, n * e);
    kernels::rms_norm(x, w1, eps, h1, buffer(&mut sv.rstd1, n));
    let [lq, lk, lv, lo, lg, lu, ld] = &mut sv.lora;
    let q = buffer(&mut sv.q, n * h * d);
    project(h1, n, &proj(0), scale, q, lq);
    let k = buffer(&mut sv.k, n * kv * d);
    project(h1, n, &proj(1), scale, k, lk);
    let v = buffer(&mut sv.v, n * kv * d);
    project(h1, n, &proj(2), scale, v, lv);
    kernels::rope(q, h, d, s, cos, sin, false);
    kernels::rope(k, kv, d, s, cos, sin, false);
    let p = buffer(&mut sv.p, b * h * s * s);
    let y = buffer(&mut sv.y, n * h * d);
    kernels::attention(shape, q, k, v, p, y);
    let o = buffer(tmp, n * e);
    project(y, n, &proj(3), scale, o, lo);
    let mid = buffer(&mut sv.mid, n * e);
    add(x, o, mid);
    let h2 = buffer(&mut sv.h2, n * e);
    kernels::rms_norm(mid, w2, eps, h2, buffer(&mut sv.rstd2, n));
    let gate = proj(4);
    let f = gate.out;
    let g = buffer(&mut sv.g, n * f);
    project(h2, n, &gate, scale, g, lg);
    let u = buffer(&mut sv.u, n * f);
    project(h2, n, &proj(5), scale, u, lu);
    let a = buffer(a, n * f);
    kernels::swiglu(g, u, a);
    let down = buffer(tmp, n * e);
    project(a, n, &proj(6), scale, down, ld);
    add(mid, down, buffer(next, n * e));
}

/// One layer backward: `back.gx` holds `∂` of the layer's output and leaves with `∂` of its
/// input (unless `need_dx` is false, for the lowest adapted layer). Writes each adapted
/// projection's `(∂A, ∂B)` into `out`.
#[allow(clippy::too_many_arguments)]
fn layer_backward<'w>(
    sv: &Saved,
    back: &mut Back,
    n: usize,
    e: usize,
    shape: Heads,
    (w1, w2): (&[f32], &[f32]),
    proj: &dyn Fn(usize) -> Proj<'w>,
    scale: f32,
    (cos, sin): (&[f32], &[f32]),
    groups: usize,
    need_dx: bool,
    out: &mut [Option<(Vec<f32>, Vec<f32>)>; 7],
) {
    let Heads { b, s, h, kv, d } = shape;
    let Back {
        gx,
        dh,
        a,
        da,
        dg,
        du,
        dy,
        dq,
        dk,
        dv,
        scratch,
        t,
        ..
    } = back;
    let gx = &mut gx[..n * e];
    let (gate, up, down) = (proj(4), proj(5), proj(6));
    let f = gate.out;
    let (g, u) = (&sv.g[..n * f], &sv.u[..n * f]);
    // The MLP: x + down(silu(gate(h2)) ⊙ up(h2)), h2 = norm(mid).
    let a = buffer(a, n * f);
    if down.lora.is_some() {
        kernels::swiglu(g, u, a);
    }
    let da = buffer(da, n * f);
    out[6] = project_back(
        gx,
        a,
        &down,
        scale,
        &sv.lora[6],
        Some((da, false)),
        groups,
        t,
    );
    let (dg, du) = (buffer(dg, n * f), buffer(du, n * f));
    kernels::swiglu_back(da, g, u, dg, du);
    let h2 = &sv.h2[..n * e];
    let dh2 = buffer(dh, n * e);
    out[4] = project_back(
        dg,
        h2,
        &gate,
        scale,
        &sv.lora[4],
        Some((dh2, false)),
        groups,
        t,
    );
    out[5] = project_back(
        du,
        h2,
        &up,
        scale,
        &sv.lora[5],
        Some((dh2, true)),
        groups,
        t,
    );
    kernels::rms_norm_back(dh2, &sv.mid[..n * e], w2, &sv.rstd2[..n], gx);

    // Attention: mid = x + o(attention(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x).
    let (qw, kw) = (h * d, kv * d);
    let dy = buffer(dy, n * qw);
    out[3] = project_back(
        gx,
        &sv.y[..n * qw],
        &proj(3),
        scale,
        &sv.lora[3],
        Some((dy, false)),
        groups,
        t,
    );
    let (dq, dk, dv) = (buffer(dq, n * qw), buffer(dk, n * kw), buffer(dv, n * kw));
    kernels::attention_back(
        shape,
        &sv.q[..n * qw],
        &sv.k[..n * kw],
        &sv.v[..n * kw],
        &sv.p[..b * h * s * s],
        dy,
        buffer(scratch, b * s * s),
        dq,
        dk,
        dv,
    );
    kernels::rope(dq, h, d, s, cos, sin, true);
    kernels::rope(dk, kv, d, s, cos, sin, true);
    let h1 = &sv.h1[..n * e];
    let mut dh = need_dx.then(|| buffer(dh, n * e));
    for (k, dout) in [(0, &*dq), (1, &*dk), (2, &*dv)] {
        let dx = dh.as_deref_mut().map(|dh| (dh, k > 0));
        out[k] = project_back(dout, h1, &proj(k), scale, &sv.lora[k], dx, groups, t);
    }
    if let Some(dh) = dh {
        kernels::rms_norm_back(dh, &sv.x[..n * e], w1, &sv.rstd1[..n], gx);
    }
}

/// `y = x·Wᵀ (+ bias) + scale·(x·Aᵀ)·Bᵀ` for `x` `(n, in)`, keeping `x·Aᵀ` in `u`.
fn project(x: &[f32], n: usize, p: &Proj, scale: f32, y: &mut [f32], u: &mut Vec<f32>) {
    let (inp, out) = (p.inp, p.out);
    let xm = Mat::new(x, n, inp);
    kernels::matmul(
        MatMut::new(y, n, out),
        xm,
        Mat::new(p.wt, inp, out),
        1.0,
        false,
        Threads::All,
    );
    if let Some(bias) = p.bias {
        y.par_chunks_mut(out).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        });
    }
    if let Some(pair) = p.lora {
        let r = pair.r;
        let u = buffer(u, n * r);
        let at = Mat::new(&pair.a, r, inp).t();
        kernels::matmul(MatMut::new(u, n, r), xm, at, 1.0, false, Threads::All);
        let bt = Mat::new(&pair.b, out, r).t();
        kernels::matmul(
            MatMut::new(y, n, out),
            Mat::new(u, n, r),
            bt,
            scale,
            true,
            Threads::All,
        );
    }
}

/// The backward pass of [`project`] from `dy` `(n, out)`: writes (or with its flag, adds)
/// `∂x` into `dx` if given, and returns `(∂A, ∂B)` per group of rows if adapted.
#[allow(clippy::too_many_arguments)]
fn project_back(
    dy: &[f32],
    x: &[f32],
    p: &Proj,
    scale: f32,
    u: &[f32],
    dx: Option<(&mut [f32], bool)>,
    groups: usize,
    t: &mut Vec<f32>,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let (inp, out) = (p.inp, p.out);
    let n = dy.len() / out;
    let dym = Mat::new(dy, n, out);
    let mut dx = dx;
    if let Some((dx, accumulate)) = dx.as_mut() {
        let w = Mat::new(p.wt, inp, out).t();
        kernels::matmul(
            MatMut::new(dx, n, inp),
            dym,
            w,
            1.0,
            *accumulate,
            Threads::All,
        );
    }
    let pair = p.lora?;
    let r = pair.r;
    let u = &u[..n * r];
    // t = ∂y·B (n, r): what reaches x·Aᵀ.
    let t = buffer(t, n * r);
    kernels::matmul(
        MatMut::new(t, n, r),
        dym,
        Mat::new(&pair.b, out, r),
        1.0,
        false,
        Threads::All,
    );
    let rows = n / groups;
    let (mut ga, mut gb) = (vec![0f32; groups * r * inp], vec![0f32; groups * out * r]);
    for g in 0..groups {
        let span = g * rows..(g + 1) * rows;
        let dy_g = Mat::new(&dy[span.start * out..span.end * out], rows, out);
        let u_g = Mat::new(&u[span.start * r..span.end * r], rows, r);
        let t_g = Mat::new(&t[span.start * r..span.end * r], rows, r);
        let x_g = Mat::new(&x[span.start * inp..span.end * inp], rows, inp);
        // ∂B = scale·∂yᵀ·(x·Aᵀ); ∂A = scale·tᵀ·x
        let gb_g = &mut gb[g * out * r..][..out * r];
        kernels::matmul(
            MatMut::new(gb_g, out, r),
            dy_g.t(),
            u_g,
            scale,
            false,
            Threads::All,
        );
        let ga_g = &mut ga[g * r * inp..][..r * inp];
        kernels::matmul(
            MatMut::new(ga_g, r, inp),
            t_g.t(),
            x_g,
            scale,
            false,
            Threads::All,
        );
    }
    if let Some((dx, _)) = dx {
        // ∂x += scale·t·A
        let a = Mat::new(&pair.a, r, inp);
        kernels::matmul(
            MatMut::new(dx, n, inp),
            Mat::new(t, n, r),
            a,
            scale,
            true,
            Threads::All,
        );
    }
    Some((ga, gb))
}

fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(4096)
        .zip(a.par_chunks(4096).zip(b.par_chunks(4096)))
        .for_each(|(o, (a, b))| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                *o = a + b;
            }
        });
}

/// cos and sin of the rotation angles of positions `0..s`, `(s, d/2)` each, computed as
/// `Llama`'s own tables are.
fn rope_tables(config: &Config, s: usize) -> (Vec<f32>, Vec<f32>) {
    let d = config.head_dim();
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f32 / d as f32))
        .collect();
    let angles: Vec<f32> = (0..s)
        .flat_map(|p| inv.iter().map(move |f| p as f32 * f))
        .collect();
    (
        angles.iter().map(|a| a.cos()).collect(),
        angles.iter().map(|a| a.sin()).collect(),
    )
}

#[cfg(test)]
mod tests;
