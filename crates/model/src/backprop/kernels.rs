//! The kernels of the training pass: matrix products on `gemm` into buffers the caller owns,
//! and the fused forward and backward of RMSNorm, rotary embeddings, SwiGLU, causal
//! attention and the output head with its cross-entropy, each one pass over its rows and
//! spread over rayon's threads.
//!
//! Matrices are `f32` slices with explicit strides, so a head's columns inside a `(n, h·d)`
//! buffer or a transposed weight are read in place, never copied.

use gemm::Parallelism;
use rayon::prelude::*;

/// Rows per rayon task in the row-wise kernels: enough work to outweigh the scheduling.
const ROWS_PER_TASK: usize = 16;

/// A read-only matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `(rows, cols)` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `(rows, cols)` whose rows start `rs` apart (columns of a wider buffer).
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        };
        m.check();
        m
    }

    /// The transpose, without copying.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view past its buffer");
        }
    }
}

/// A row-major destination `(rows, cols)` whose rows start `rs` apart.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub(crate) fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + cols <= data.len(),
                "matrix past its buffer"
            );
        }
        Self {
            data,
            rows,
            cols,
            rs,
        }
    }
}

/// Whether a product runs on all threads or only the caller's (inside a parallel task).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    All,
    One,
}

/// `dst = (dst if accumulate) + scale · a · b`.
pub(crate) fn matmul(dst: MatMut, a: Mat, b: Mat, scale: f32, accumulate: bool, threads: Threads) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!((dst.rows, dst.cols), (a.rows, b.cols), "output shape");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for i in 0..dst.rows {
                dst.data[i * dst.rs..i * dst.rs + dst.cols].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::All => Parallelism::Rayon(rayon::current_num_threads()),
        Threads::One => Parallelism::None,
    };
    // SAFETY: every view was bounds-checked against its slice on construction, and `dst` is
    // borrowed mutably, so no input aliases it.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Grows `v` to at least `n` values and returns the first `n` (their contents are stale).
pub(crate) fn buffer(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `out = x / rms(x) · w` per row of width `w.len()`; `rstd` gets each row's `1 / rms`.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], rstd: &mut [f32]) {
    let e = w.len();
    out.par_chunks_mut(e * ROWS_PER_TASK)
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(e * ROWS_PER_TASK))
        .for_each(|((out, rstd), x)| {
            for ((o, r), x) in out.chunks_mut(e).zip(rstd.iter_mut()).zip(x.chunks(e)) {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / e as f32;
                *r = 1.0 / (ms + eps).sqrt();
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * *r * w;
                }
            }
        });
}

/// Adds to `dx` the gradient through [`rms_norm`] of `dy` (the weight is frozen):
/// `dx = r·(dy⊙w) − x·r³·mean(dy⊙w⊙x)`.
pub(crate) fn rms_norm_back(dy: &[f32], x: &[f32], w: &[f32], rstd: &[f32], dx: &mut [f32]) {
    let e = w.len();
    dx.par_chunks_mut(e * ROWS_PER_TASK)
        .zip(dy.par_chunks(e * ROWS_PER_TASK))
        .zip(x.par_chunks(e * ROWS_PER_TASK))
        .zip(rstd.par_chunks(ROWS_PER_TASK))
        .for_each(|(((dx, dy), x), rstd)| {
            for (((dx, dy), x), &r) in dx
                .chunks_mut(e)
                .zip(dy.chunks(e))
                .zip(x.chunks(e))
                .zip(rstd)
            {
                let dot: f32 = dy.iter().zip(w).zip(x).map(|((g, w), x)| g * w * x).sum();
                let c = r * r * r * dot / e as f32;
                for (((d, &g), &w), &x) in dx.iter_mut().zip(dy).zip(w).zip(x) {
                    *d += r * g * w - x * c;
                }
            }
        });
}

/// Rotary embedding, rotate-half form, in place on rows of `heads` heads of width `d`; row
/// `i` is at position `i % positions`. `cos` and `sin` are `(positions, d/2)`. `inverse`
/// rotates back, which is also the backward pass (a rotation's transpose is its inverse).
pub(crate) fn rope(
    x: &mut [f32],
    heads: usize,
    d: usize,
    positions: usize,
    cos: &[f32],
    sin: &[f32],
    inverse: bool,
) {
    let width = heads * d;
    let half = d / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    x.par_chunks_mut(width * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            for (k, row) in rows.chunks_mut(width).enumerate() {
                let p = (task * ROWS_PER_TASK + k) % positions;
                let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
                for head in row.chunks_mut(d) {
                    let (a, b) = head.split_at_mut(half);
                    for i in 0..half {
                        let (x1, x2, si) = (a[i], b[i], sign * s[i]);
                        a[i] = x1 * c[i] - x2 * si;
                        b[i] = x2 * c[i] + x1 * si;
                    }
                }
            }
        });
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `a = silu(g) ⊙ u`.
pub(crate) fn swiglu(g: &[f32], u: &[f32], a: &mut [f32]) {
    a.par_chunks_mut(4096)
        .zip(g.par_chunks(4096))
        .zip(u.par_chunks(4096))
        .for_each(|((a, g), u)| {
            for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                *a = g * sigmoid(g) * u;
            }
        });
}

/// The gradients of [`swiglu`]'s inputs: `dg = da·u·σ(g)·(1 + g·(1 − σ(g)))`,
/// `du = da·silu(g)`.
pub(crate) fn swiglu_back(da: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) {
    dg.par_chunks_mut(4096)
        .zip(du.par_chunks_mut(4096))
        .zip(
            da.par_chunks(4096)
                .zip(g.par_chunks(4096))
                .zip(u.par_chunks(4096)),
        )
        .for_each(|((dg, du), ((da, g), u))| {
            for ((dg, du), ((&da, &g), &u)) in dg
                .iter_mut()
                .zip(du.iter_mut())
                .zip(da.iter().zip(g).zip(u))
            {
                let s = sigmoid(g);
                *du = da * g * s;
                *dg = da * u * s * (1.0 + g * (1.0 - s));
            }
        });
}

/// The shape of one attention call: `b` sequences of `s` positions, `h` query heads sharing
/// `kv` key/value heads, of width `d`.
#[derive(Clone, Copy)]
pub(crate) struct Heads {
    pub b: usize,
    pub s: usize,
    pub h: usize,
    pub kv: usize,
    pub d: usize,
}

impl Heads {
    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }
}

/// Causal attention. `q` `(b·s, h·d)`, `k` and `v` `(b·s, kv·d)`; writes the probabilities
/// `p` `(b, h, s, s)` (zero above the diagonal) and the output `y` `(b·s, h·d)`.
pub(crate) fn attention(
    shape: Heads,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &mut [f32],
    y: &mut [f32],
) {
    let Heads { s, h, kv, d, .. } = shape;
    let (qw, kw, g) = (h * d, kv * d, h / kv);
    let scale = shape.scale();
    p.par_chunks_mut(h * s * s)
        .zip(y.par_chunks_mut(s * qw))
        .zip(
            q.par_chunks(s * qw)
                .zip(k.par_chunks(s * kw))
                .zip(v.par_chunks(s * kw)),
        )
        .for_each(|((p, y), ((q, k), v))| {
            for head in 0..h {
                let kvh = head / g;
                let p = &mut p[head * s * s..][..s * s];
                let qh = Mat::strided(&q[head * d..], s, d, qw);
                let kh = Mat::strided(&k[kvh * d..], s, d, kw);
                let vh = Mat::strided(&v[kvh * d..], s, d, kw);
                matmul(MatMut::new(p, s, s), qh, kh.t(), scale, false, Threads::One);
                for (i, row) in p.chunks_mut(s).enumerate() {
                    let (seen, future) = row.split_at_mut(i + 1);
                    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for x in seen.iter_mut() {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                    seen.iter_mut().for_each(|x| *x /= sum);
                    future.fill(0.0);
                }
                let yh = MatMut::strided(&mut y[head * d..], s, d, qw);
                matmul(yh, Mat::new(p, s, s), vh, 1.0, false, Threads::One);
            }
        });
}

/// The backward pass of [`attention`]: from `dy` `(b·s, h·d)` writes `dq` `(b·s, h·d)` and
/// `dk`, `dv` `(b·s, kv·d)`. `scratch` holds one `(s, s)` matrix per sequence.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_back(
    shape: Heads,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    dy: &[f32],
    scratch: &mut [f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let Heads { s, h, kv, d, .. } = shape;
    let (qw, kw, g) = (h * d, kv * d, h / kv);
    let scale = shape.scale();
    let outputs = dq
        .par_chunks_mut(s * qw)
        .zip(dk.par_chunks_mut(s * kw))
        .zip(dv.par_chunks_mut(s * kw))
        .zip(scratch.par_chunks_mut(s * s));
    let inputs = q
        .par_chunks(s * qw)
        .zip(k.par_chunks(s * kw))
        .zip(v.par_chunks(s * kw))
        .zip(p.par_chunks(h * s * s).zip(dy.par_chunks(s * qw)));
    outputs
        .zip(inputs)
        .for_each(|((((dq, dk), dv), dp), (((q, k), v), (p, dy)))| {
            for head in 0..h {
                let kvh = head / g;
                let first = head % g == 0; // the first query head of its group writes dk, dv
                let ph = &p[head * s * s..][..s * s];
                let dyh = Mat::strided(&dy[head * d..], s, d, qw);
                let kh = Mat::strided(&k[kvh * d..], s, d, kw);
                let vh = Mat::strided(&v[kvh * d..], s, d, kw);
                let qh = Mat::strided(&q[head * d..], s, d, qw);
                // dv += pᵀ·dy; dp = dy·vᵀ
                let dvh = MatMut::strided(&mut dv[kvh * d..], s, d, kw);
                matmul(dvh, Mat::new(ph, s, s).t(), dyh, 1.0, !first, Threads::One);
                matmul(MatMut::new(dp, s, s), dyh, vh.t(), 1.0, false, Threads::One);
                // ds = p ⊙ (dp − rowsum(dp ⊙ p)), computed in place in dp
                for (row, prow) in dp.chunks_mut(s).zip(ph.chunks(s)) {
                    let dot: f32 = row.iter().zip(prow).map(|(a, b)| a * b).sum();
                    for (x, &pv) in row.iter_mut().zip(prow) {
                        *x = pv * (*x - dot);
                    }
                }
                let ds = Mat::new(dp, s, s);
                let dqh = MatMut::strided(&mut dq[head * d..], s, d, qw);
                matmul(dqh, ds, kh, scale, false, Threads::One);
                let dkh = MatMut::strided(&mut dk[kvh * d..], s, d, kw);
                matmul(dkh, ds.t(), qh, scale, !first, Threads::One);
            }
        });
}

/// The output head and its cross-entropy, forward and backward at once, over the rows whose
/// weight is non-zero. `hidden` `(n, e)`, `head` `(e, vocab)`; row `i`'s loss is weighted by
/// `weights[i]`. Returns the weighted sum of the losses and, if `dhidden` `(n, e)` is given,
/// writes its gradient there (zero for rows of weight zero).
///
/// The logits are made `CHUNK` rows at a time into `logits` and turned into their gradient
/// in place, so the `(n, vocab)` matrix never exists whole.
pub(crate) fn head_cross_entropy(
    hidden: &[f32],
    head: Mat,
    targets: &[u32],
    weights: &[f32],
    logits: &mut Vec<f32>,
    mut dhidden: Option<&mut [f32]>,
) -> f64 {
    const CHUNK: usize = 128;
    let (e, vocab) = (head.rows, head.cols);
    if let Some(d) = dhidden.as_deref_mut() {
        d.fill(0.0);
    }
    let rows: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] != 0.0).collect();
    let mut total = 0.0f64;
    let mut gathered = vec![0f32; CHUNK * e];
    let mut grads = vec![0f32; CHUNK * e];
    for chunk in rows.chunks(CHUNK) {
        let c = chunk.len();
        for (dst, &i) in gathered.chunks_mut(e).zip(chunk) {
            dst.copy_from_slice(&hidden[i * e..][..e]);
        }
        let l = buffer(logits, c * vocab);
        matmul(
            MatMut::new(l, c, vocab),
            Mat::new(&gathered, c, e),
            head,
            1.0,
            false,
            Threads::All,
        );
        // Each row becomes w·(softmax − onehot(target)), its loss w·(lse − logit[target]).
        total += l
            .par_chunks_mut(vocab)
            .zip(chunk.par_iter())
            .map(|(row, &i)| {
                let (t, w) = (targets[i] as usize, weights[i]);
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let picked = row[t];
                let mut sum = 0.0f32;
                for x in row.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                let k = w / sum;
                row.iter_mut().for_each(|x| *x *= k);
                row[t] -= w;
                f64::from(w) * (f64::from(max) + f64::from(sum).ln() - f64::from(picked))
            })
            .sum::<f64>();
        let Some(dhidden) = dhidden.as_deref_mut() else {
            continue;
        };
        matmul(
            MatMut::new(&mut grads, c, e),
            Mat::new(l, c, vocab),
            head.t(),
            1.0,
            false,
            Threads::All,
        );
        for (src, &i) in grads.chunks(e).zip(chunk) {
            dhidden[i * e..][..e].copy_from_slice(src);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_handles_strides_transposes_and_accumulation() {
        // a (2, 3) inside a buffer of row stride 4; b (3, 2) read as the transpose of (2, 3).
        let a = [1.0, 2.0, 3.0, 9.0, 4.0, 5.0, 6.0, 9.0];
        let bt = [1.0, 0.0, 2.0, 0.0, 1.0, 1.0];
        let mut out = [10.0; 4];
        let av = Mat::strided(&a, 2, 3, 4);
        let bv = Mat::new(&bt, 2, 3).t();
        matmul(MatMut::new(&mut out, 2, 2), av, bv, 2.0, true, Threads::One);
        // a·b = [[7, 5], [16, 11]]; out = 10 + 2·a·b
        assert_eq!(out, [24.0, 20.0, 42.0, 32.0]);
        matmul(
            MatMut::new(&mut out, 2, 2),
            av,
            bv,
            1.0,
            false,
            Threads::All,
        );
        assert_eq!(out, [7.0, 5.0, 16.0, 11.0]);
    }

    #[test]
    fn rope_inverse_undoes_rope() {
        let (positions, d) = (3, 4);
        let cos: Vec<f32> = (0..positions * d / 2)
            .map(|i| (i as f32 * 0.3).cos())
            .collect();
        let sin: Vec<f32> = (0..positions * d / 2)
            .map(|i| (i as f32 * 0.3).sin())
            .collect();
        let x: Vec<f32> = (0..2 * positions * 2 * d)
            .map(|i| i as f32 * 0.1 - 1.0)
            .collect();
        let mut y = x.clone();
        rope(&mut y, 2, d, positions, &cos, &sin, false);
        assert!(y.iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3));
        rope(&mut y, 2, d, positions, &cos, &sin, true);
        for (a, b) in y.iter().zip(&x) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
