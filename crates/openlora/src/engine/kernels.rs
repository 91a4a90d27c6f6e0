//! The small kernels of the serving pass, on plain f32 slices. Every one computes each row
//! on its own, in an order that does not depend on the other rows, so a sequence gets the
//! same numbers whatever batch it runs in.

/// Whether the CPU has AVX2, FMA and F16C (checked once; the same path for the whole
/// process, so results never depend on which thread ran a row).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `Σ a[i]·b[i]`, with eight partial sums added in a fixed order.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are equal (asserted above).
        return unsafe { dot_avx2(a, b) };
    }
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len() / 8 * 8;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < n {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc);
        i += 8;
    }
    let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum();
    lanes_sum(acc) + tail
}

/// The eight lanes of `acc` added pairwise, in the order the plain [`dot`] adds its sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lanes_sum(acc: std::arch::x86_64::__m256) -> f32 {
    let mut l = [0f32; 8];
    std::arch::x86_64::_mm256_storeu_ps(l.as_mut_ptr(), acc);
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// `y += c·x`.
pub(crate) fn axpy(c: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are equal (asserted above).
        return unsafe { axpy_avx2(c, x, y) };
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += c * *x;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(c: f32, x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len() / 8 * 8;
    let cv = _mm256_set1_ps(c);
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let v = _mm256_fmadd_ps(cv, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
        _mm256_storeu_ps(py.add(i), v);
        i += 8;
    }
    for (y, x) in y[n..].iter_mut().zip(&x[n..]) {
        *y = c.mul_add(*x, *y);
    }
}

fn half_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// `values` rounded to IEEE halves (to nearest, ties to even), as bits.
pub(crate) fn to_halves(values: &[f32]) -> Vec<u16> {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has F16C (with AVX2 and FMA).
        return unsafe { to_halves_f16c(values) };
    }
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn to_halves_f16c(values: &[f32]) -> Vec<u16> {
    use std::arch::x86_64::*;
    let mut out = vec![0u16; values.len()];
    let n = values.len() / 8 * 8;
    for i in (0..n).step_by(8) {
        let h =
            _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(values.as_ptr().add(i)));
        _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, h);
    }
    for (o, &v) in out[n..].iter_mut().zip(&values[n..]) {
        *o = half::f16::from_f32(v).to_bits();
    }
    out
}

/// [`dot`] with `a` in IEEE halves (an adapter's weights).
pub(crate) fn dot_half(a: &[u16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C; the lengths are equal (asserted above).
        return unsafe { dot_half_avx2(a, b) };
    }
    let a: Vec<f32> = a.iter().map(|&h| half_to_f32(h)).collect();
    dot(&a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_half_avx2(a: &[u16], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len() / 8 * 8;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < n {
        let av = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
        acc = _mm256_fmadd_ps(av, _mm256_loadu_ps(pb.add(i)), acc);
        i += 8;
    }
    let tail: f32 = a[n..]
        .iter()
        .zip(&b[n..])
        .map(|(x, y)| half_to_f32(*x) * y)
        .sum();
    lanes_sum(acc) + tail
}

/// [`axpy`] with `x` in IEEE halves.
pub(crate) fn axpy_half(c: f32, x: &[u16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C; the lengths are equal (asserted above).
        return unsafe { axpy_half_avx2(c, x, y) };
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y = c.mul_add(half_to_f32(*x), *y);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_half_avx2(c: f32, x: &[u16], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len() / 8 * 8;
    let cv = _mm256_set1_ps(c);
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let xv = _mm256_cvtph_ps(_mm_loadu_si128(px.add(i) as *const __m128i));
        _mm256_storeu_ps(
            py.add(i),
            _mm256_fmadd_ps(cv, xv, _mm256_loadu_ps(py.add(i))),
        );
        i += 8;
    }
    for (y, x) in y[n..].iter_mut().zip(&x[n..]) {
        *y = c.mul_add(half_to_f32(*x), *y);
    }
}

/// RMSNorm of each `width`-wide row of `x` into a new buffer.
pub(crate) fn rms_norm(x: &[f32], width: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (o, x) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
        let mean = dot(x, x) / width as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((o, x), w) in o.iter_mut().zip(x).zip(weight) {
            *o = x * inv * w;
        }
    }
    out
}

/// Rotates each `d`-wide head of `x` in place by the angles of one position (rotate-half
/// convention: pairs `(i, i + d/2)`); `cos` and `sin` are that position's `d/2` values.
pub(crate) fn rope(x: &mut [f32], d: usize, cos: &[f32], sin: &[f32]) {
    let half = d / 2;
    for head in x.chunks_exact_mut(d) {
        let (lo, hi) = head.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (lo[i], hi[i]);
            lo[i] = a * cos[i] - b * sin[i];
            hi[i] = b * cos[i] + a * sin[i];
        }
    }
}

/// `silu(gate)·up` for each row of the fused `(rows, 2·inter)` gate|up output.
pub(crate) fn swiglu(gate_up: &[f32], inter: usize) -> Vec<f32> {
    let m = gate_up.len() / (2 * inter);
    let mut out = vec![0f32; m * inter];
    let rows = |out: &mut [f32], first: usize| {
        let input = gate_up[first * 2 * inter..].chunks_exact(2 * inter);
        for (out, row) in out.chunks_exact_mut(inter).zip(input) {
            let (gate, up) = row.split_at(inter);
            for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        }
    };
    // A prompt's rows are worth sharing out; a decode step's few are not.
    if m * inter >= 32 * 1024 {
        super::team::Team::global().for_shares(&mut out, inter, 1, rows);
    } else {
        rows(&mut out, 0);
    }
    out
}

/// One query head's attention over `n` cached positions: `keys` and `values` are
/// `(n, stride)` with this head's `d` values at `offset` in each row. Writes `(d,)` to `out`.
pub(crate) fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    n: usize,
    stride: usize,
    offset: usize,
    out: &mut [f32],
) {
    let d = q.len();
    #[cfg(target_arch = "x86_64")]
    let end = (n.checked_sub(1))
        .and_then(|last| last.checked_mul(stride))
        .and_then(|at| at.checked_add(offset + d));
    if avx2() && end.is_some_and(|end| end <= keys.len().min(values.len())) {
        // SAFETY: the CPU has AVX2 and FMA; every row read is inside `keys` and `values`
        // (checked just above) and the kernels check `q` and `out` hold `d`.
        match d {
            64 => return unsafe { attend_avx2::<8>(q, keys, values, n, stride, offset, out) },
            128 => return unsafe { attend_avx2::<16>(q, keys, values, n, stride, offset, out) },
            _ => {}
        }
    }
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores: Vec<f32> = (0..n)
        .map(|j| dot(q, &keys[j * stride + offset..][..d]) * scale)
        .collect();
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        axpy(p / sum, &values[j * stride + offset..][..d], out);
    }
}

/// [`attend`] for heads of `8·V` values: the query and the output's sums stay in registers
/// over all positions, instead of a call per position.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2<const V: usize>(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    n: usize,
    stride: usize,
    offset: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    assert!(q.len() == 8 * V && out.len() == 8 * V);
    assert!(n > 0 && (n - 1) * stride + offset + 8 * V <= keys.len().min(values.len()));
    let scale = 1.0 / ((8 * V) as f32).sqrt();
    let mut qv = [_mm256_setzero_ps(); V];
    for (k, qv) in qv.iter_mut().enumerate() {
        *qv = _mm256_loadu_ps(q.as_ptr().add(8 * k));
    }
    let mut scores = Vec::with_capacity(n);
    let mut max = f32::NEG_INFINITY;
    for j in 0..n {
        let key = keys.as_ptr().add(j * stride + offset);
        let mut acc = _mm256_mul_ps(qv[0], _mm256_loadu_ps(key));
        for (k, qv) in qv.iter().enumerate().skip(1) {
            acc = _mm256_fmadd_ps(*qv, _mm256_loadu_ps(key.add(8 * k)), acc);
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let s = _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps(half, half, 1))) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    let mut acc = [_mm256_setzero_ps(); V];
    for (j, p) in scores.iter().enumerate() {
        let value = values.as_ptr().add(j * stride + offset);
        let weight = _mm256_set1_ps(p / sum);
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(weight, _mm256_loadu_ps(value.add(8 * k)), *acc);
        }
    }
    for (k, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * k), *acc);
    }
}

/// Log-probabilities of `logits` (log-softmax), in f64 for the sum.
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let log_sum = sum.ln() as f32 + max;
    logits.iter().map(|&l| l - log_sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32 - 1.5).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }

    #[test]
    fn rounding_to_halves_is_the_same_in_vectors_and_one_by_one() {
        let mut values: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) * 0.37e-3).collect();
        values.extend([
            1e9,
            -1e9,
            f32::NAN,
            65504.0,
            65520.0,
            1e-8,
            1.0 + 2f32.powi(-11),
        ]);
        let each: Vec<u16> = values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let fast = to_halves(&values);
        for (i, (a, b)) in fast.iter().zip(&each).enumerate() {
            // NaNs may differ in payload; they must stay NaNs.
            let nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
            assert!(
                a == b || (nan(*a) && nan(*b)),
                "{}: {a:#x} vs {b:#x}",
                values[i]
            );
        }
    }

    #[test]
    fn half_kernels_match_the_f32_ones_on_the_same_values() {
        let h: Vec<u16> = (0..37)
            .map(|i| half::f16::from_f32(i as f32 * 0.25 - 3.0).to_bits())
            .collect();
        let a: Vec<f32> = h.iter().map(|&v| half_to_f32(v)).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32 - 1.5).collect();
        assert_eq!(dot_half(&h, &b), dot(&a, &b));
        let (mut y1, mut y2) = (b.clone(), b.clone());
        axpy_half(0.5, &h, &mut y1);
        for (y, x) in y2.iter_mut().zip(&a) {
            *y = 0.5f32.mul_add(*x, *y);
        }
        assert_eq!(y1, y2);
    }

    #[test]
    fn attention_over_one_position_returns_its_value() {
        let q = [1.0, 0.0, 0.0, 1.0];
        let keys = [9.0, 9.0, 0.5, 0.5, 0.5, 0.5];
        let values = [7.0, 7.0, 1.0, 2.0, 3.0, 4.0];
        let mut out = [0f32; 4];
        attend(&q, &keys, &values, 1, 6, 2, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn attention_in_registers_agrees_with_the_plain_kernel() {
        for d in [64, 128] {
            let (n, stride, offset) = (37, 3 * d, d);
            let v = |k: usize, len: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i * 7 + k) % 13) as f32 * 0.1 - 0.6)
                    .collect()
            };
            let (q, keys, values) = (v(1, d), v(2, n * stride), v(3, n * stride));
            let mut fast = vec![0f32; d];
            attend(&q, &keys, &values, n, stride, offset, &mut fast);
            // Attention written out: softmax of q·k/√d, then the weighted sum of values.
            let row = |x: &[f32], j: usize| x[j * stride + offset..][..d].to_vec();
            let scores: Vec<f32> = (0..n)
                .map(|j| {
                    row(&keys, j)
                        .iter()
                        .zip(&q)
                        .map(|(k, q)| k * q)
                        .sum::<f32>()
                })
                .map(|s| s / (d as f32).sqrt())
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
            let mut plain = vec![0f32; d];
            for (j, s) in scores.iter().enumerate() {
                let p = (s - max).exp() / total;
                plain
                    .iter_mut()
                    .zip(row(&values, j))
                    .for_each(|(o, v)| *o += p * v);
            }
            for (a, b) in fast.iter().zip(&plain) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let lp = log_softmax(&[1.0, 2.0, 3.0, -50.0]);
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
