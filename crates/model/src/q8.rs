//! 8-bit copies of frozen weights for decode steps: each row of `W` `(out, in)` in blocks of
//! 32 values, each block an `i8` per value and one `f32` scale (llama.cpp's Q8_0 layout), and
//! a matrix-vector product that reads them against f32 inputs.
//!
//! A decode step reads every weight once for a single new position, so it is bound by memory,
//! not arithmetic: the 8-bit copy is a quarter of the f32 bytes. The inputs stay f32 (unlike
//! llama.cpp, which rounds them to 8 bits too), so the only rounding is the weights'. The
//! inner loop widens 8 weights at a time to f32 and multiplies on AVX2 + FMA when the CPU has
//! them (checked at run time), else in plain Rust.

use rayon::prelude::*;

/// Values per block.
pub(crate) const BLOCK: usize = 32;

/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// A weight matrix `(out, in)` rounded to 8 bits per value.
pub(crate) struct Q8 {
    out: usize,
    inp: usize,
    /// `(out, in)` row-major.
    values: Vec<i8>,
    /// `(out, in / BLOCK)`.
    scales: Vec<f32>,
}

impl Q8 {
    /// Rounds `w` `(out, in)` row-major; `in` must be a multiple of [`BLOCK`].
    pub(crate) fn quantize(w: &[f32], out: usize, inp: usize) -> Q8 {
        assert!(
            inp.is_multiple_of(BLOCK) && w.len() == out * inp,
            "shape of the weight"
        );
        let mut values = vec![0i8; out * inp];
        let mut scales = vec![0f32; out * inp / BLOCK];
        values
            .par_chunks_mut(BLOCK)
            .zip(scales.par_iter_mut())
            .zip(w.par_chunks(BLOCK))
            .for_each(|((q, scale), w)| {
                let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                *scale = max / 127.0;
                let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
                for (q, v) in q.iter_mut().zip(w) {
                    *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
                }
            });
        Q8 {
            out,
            inp,
            values,
            scales,
        }
    }

    /// `y = x·Wᵀ` for `x` `(m, in)`, `y` `(m, out)`, `m` from 1 to 4.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(
            (1..=4).contains(&m) && x.len() == m * self.inp,
            "shape of the input"
        );
        // (out, m): each task writes a contiguous range of output rows for every input.
        let mut yt = vec![0f32; self.out * m];
        let blocks = self.inp / BLOCK;
        yt.par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(task, yt)| {
                let first = task * ROWS_PER_TASK;
                for (k, y) in yt.chunks_mut(m).enumerate() {
                    let n = first + k;
                    let w = &self.values[n * self.inp..][..self.inp];
                    let s = &self.scales[n * blocks..][..blocks];
                    row(w, s, x, y);
                }
            });
        let mut y = vec![0f32; m * self.out];
        for (n, values) in yt.chunks(m).enumerate() {
            for (r, v) in values.iter().enumerate() {
                y[r * self.out + n] = *v;
            }
        }
        y
    }
}

/// `y[r] = Σ_j w[j]·scale[j / BLOCK]·x[r, j]` for each of the `y.len()` inputs in `x`.
fn row(w: &[i8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); `row_avx2` reads `w`,
        // `scales` and `x` only within the lengths asserted there.
        unsafe { row_avx2(w, scales, x, y) };
        return;
    }
    row_plain(w, scales, x, y);
}

fn row_plain(w: &[i8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    let inp = w.len();
    for (r, y) in y.iter_mut().enumerate() {
        let x = &x[r * inp..][..inp];
        *y = w
            .chunks(BLOCK)
            .zip(x.chunks(BLOCK))
            .zip(scales)
            .map(|((w, x), s)| s * w.iter().zip(x).map(|(&w, x)| f32::from(w) * x).sum::<f32>())
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(w: &[i8], scales: &[f32], x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let inp = w.len();
    let m = y.len();
    assert!(
        inp.is_multiple_of(BLOCK) && scales.len() == inp / BLOCK && x.len() == m * inp && m <= 4
    );
    let mut acc = [_mm256_setzero_ps(); 4];
    for (b, &scale) in scales.iter().enumerate() {
        let packed = _mm256_loadu_si256(w.as_ptr().add(b * BLOCK) as *const __m256i);
        let (lo, hi) = (
            _mm256_castsi256_si128(packed),
            _mm256_extracti128_si256(packed, 1),
        );
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        let ws = [
            widen(lo),
            widen(_mm_srli_si128(lo, 8)),
            widen(hi),
            widen(_mm_srli_si128(hi, 8)),
        ];
        let s = _mm256_set1_ps(scale);
        for (r, acc) in acc.iter_mut().enumerate().take(m) {
            let xp = x.as_ptr().add(r * inp + b * BLOCK);
            let mut t = _mm256_mul_ps(ws[0], _mm256_loadu_ps(xp));
            t = _mm256_fmadd_ps(ws[1], _mm256_loadu_ps(xp.add(8)), t);
            t = _mm256_fmadd_ps(ws[2], _mm256_loadu_ps(xp.add(16)), t);
            t = _mm256_fmadd_ps(ws[3], _mm256_loadu_ps(xp.add(24)), t);
            *acc = _mm256_fmadd_ps(t, s, *acc);
        }
    }
    for (y, acc) in y.iter_mut().zip(acc) {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        *y = lanes.iter().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    }

    #[test]
    fn the_product_is_the_rounded_weights_times_the_input() {
        let (out, inp) = (70, 96); // more than one task of rows, three blocks per row
        let w = values(out * inp, 1);
        let q = Q8::quantize(&w, out, inp);
        for m in 1..=4 {
            let x = values(m * inp, 2 + m as u32);
            let y = q.matmul(&x, m);
            let mut plain = vec![0f32; out];
            for r in 0..m {
                for n in 0..out {
                    let wq = &q.values[n * inp..][..inp];
                    let s = &q.scales[n * inp / BLOCK..][..inp / BLOCK];
                    row_plain(wq, s, &x[r * inp..][..inp], &mut plain[n..n + 1]);
                    let exact: f32 = (0..inp).map(|j| w[n * inp + j] * x[r * inp + j]).sum();
                    let got = y[r * out + n];
                    // The same rounded product on either path, to f32 summation order.
                    assert!((got - plain[n]).abs() < 1e-4, "m {m} row {r} out {n}");
                    // And within the rounding of 8-bit weights: half a step per value.
                    let bound: f32 = (0..inp)
                        .map(|j| q.scales[(n * inp + j) / BLOCK] * 0.5 * x[r * inp + j].abs())
                        .sum();
                    assert!((got - exact).abs() <= bound + 1e-5, "m {m} row {r} out {n}");
                }
            }
        }
    }
}
