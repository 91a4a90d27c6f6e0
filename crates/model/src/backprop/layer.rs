//! One layer's forward and backward pass, and the adapted projections inside it.

use super::{
    kernels::{self, buffer, Heads, Mat, MatMut, Threads},
    Back, Proj, Saved,
};
use rayon::prelude::*;

/// One layer forward: from `sv.x` fills the rest of `sv` and writes the layer's output to
/// `next`.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_forward<'w>(
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
pub(super) fn layer_backward<'w>(
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
        let dropped = dropped(x, p);
        let xm = dropped.as_deref().map_or(xm, |x| Mat::new(x, n, inp));
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
    // The adapter read x through its dropout mask: so do its gradients.
    let dropped = dropped(x, p);
    let x = dropped.as_deref().unwrap_or(x);
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
        // ∂x += scale·t·A, through the dropout mask if there is one.
        let a = Mat::new(&pair.a, r, inp);
        match p.dropout {
            None => kernels::matmul(
                MatMut::new(dx, n, inp),
                Mat::new(t, n, r),
                a,
                scale,
                true,
                Threads::All,
            ),
            Some(dropout) => {
                let mut ta = vec![0f32; n * inp];
                kernels::matmul(
                    MatMut::new(&mut ta, n, inp),
                    Mat::new(t, n, r),
                    a,
                    scale,
                    false,
                    Threads::All,
                );
                dropout.apply(&mut ta);
                add_into(dx, &ta);
            }
        }
    }
    Some((ga, gb))
}

/// `x` through the projection's dropout mask, if it has one.
fn dropped(x: &[f32], p: &Proj) -> Option<Vec<f32>> {
    p.dropout.map(|d| {
        let mut x = x.to_vec();
        d.apply(&mut x);
        x
    })
}

fn add_into(out: &mut [f32], a: &[f32]) {
    out.par_chunks_mut(4096)
        .zip(a.par_chunks(4096))
        .for_each(|(o, a)| o.iter_mut().zip(a).for_each(|(o, a)| *o += a));
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
