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

    /// `y = x·Wᵀ` for `x` `(m, in)`, `y` `(m, out)`, any `m ≥ 1`. Each weight row is read
    /// once for all `m` inputs (in groups of four), so a batch costs one pass over the
    /// weights. Every output is summed in the same order whatever `m` is and whatever the
    /// other rows hold: a row's result does not depend on the batch it runs in.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(m >= 1 && x.len() == m * self.inp, "shape of the input");
        // (out, m): each task writes a contiguous range of output rows for every input.
        let mut yt = vec![0f32; self.out * m];
        let task_rows = if m == 1 {
            ROWS_PER_TASK
        } else {
            ROWS_PER_TASK.div_ceil(m.min(8)).max(8)
        };
        yt.par_chunks_mut(task_rows * m)
            .enumerate()
            .for_each(|(task, yt)| {
                let first = task * task_rows;
                let rows = yt.len() / m;
                self.task(first, rows, x, m, yt);
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

impl Q8 {
    /// Weight rows `first..first + rows` against all `m` inputs into `yt` `(rows, m)`:
    /// inputs in groups of up to four, and as many weight rows at a time as keep four sums
    /// in flight (one FMA chain per output would otherwise wait on its own latency).
    fn task(&self, first: usize, rows: usize, x: &[f32], m: usize, yt: &mut [f32]) {
        let blocks = self.inp / BLOCK;
        let mut tile = [0f32; 16];
        for g0 in (0..m).step_by(4) {
            let gm = (m - g0).min(4);
            let xg = &x[g0 * self.inp..][..gm * self.inp];
            let per = match gm {
                1 => 4,
                2 => 2,
                _ => 1,
            };
            let mut k = 0;
            while k < rows {
                let r = if rows - k >= per { per } else { 1 };
                let n = first + k;
                let w = &self.values[n * self.inp..][..r * self.inp];
                let s = &self.scales[n * blocks..][..r * blocks];
                let out = &mut tile[..r * gm];
                tile_product(w, s, self.inp, xg, gm, out);
                for j in 0..r {
                    yt[(k + j) * m + g0..][..gm].copy_from_slice(&out[j * gm..][..gm]);
                }
                k += r;
            }
        }
    }
}

/// `out[j·m + i] = Σ_b scale[j, b]·((w0·x0 + w1·x1) + (w2·x2 + w3·x3))` over the blocks of
/// weight row `j` and input `i`, the four products of eight lanes each; every path sums in
/// this order, so an output does not depend on which rows share its tile.
fn tile_product(w: &[i8], scales: &[f32], inp: usize, x: &[f32], m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        let r = w.len() / inp;
        // SAFETY: the CPU has AVX2 and FMA (checked); the shapes are checked in `tile`.
        unsafe {
            match (r, m) {
                (4, 1) => tile::<4, 1>(w, scales, inp, x, out),
                (2, 2) => tile::<2, 2>(w, scales, inp, x, out),
                (1, 1) => tile::<1, 1>(w, scales, inp, x, out),
                (1, 2) => tile::<1, 2>(w, scales, inp, x, out),
                (1, 3) => tile::<1, 3>(w, scales, inp, x, out),
                (1, 4) => tile::<1, 4>(w, scales, inp, x, out),
                _ => unreachable!("tiles are 4×1, 2×2 or 1×m"),
            }
        }
        return;
    }
    let blocks = inp / BLOCK;
    for (j, w) in w.chunks(inp).enumerate() {
        row_plain(
            w,
            &scales[j * blocks..][..blocks],
            x,
            &mut out[j * m..][..m],
        );
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const M: usize>(
    w: &[i8],
    scales: &[f32],
    inp: usize,
    x: &[f32],
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let blocks = inp / BLOCK;
    assert!(
        inp.is_multiple_of(BLOCK)
            && w.len() == R * inp
            && scales.len() == R * blocks
            && x.len() == M * inp
            && out.len() == R * M
    );
    let mut acc = [[_mm256_setzero_ps(); M]; R];
    let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
    for b in 0..blocks {
        for (j, acc) in acc.iter_mut().enumerate() {
            let packed = _mm256_loadu_si256(w.as_ptr().add(j * inp + b * BLOCK) as *const __m256i);
            let (lo, hi) = (
                _mm256_castsi256_si128(packed),
                _mm256_extracti128_si256(packed, 1),
            );
            let ws = [
                widen(lo),
                widen(_mm_srli_si128(lo, 8)),
                widen(hi),
                widen(_mm_srli_si128(hi, 8)),
            ];
            let s = _mm256_set1_ps(*scales.get_unchecked(j * blocks + b));
            for (i, acc) in acc.iter_mut().enumerate() {
                let xp = x.as_ptr().add(i * inp + b * BLOCK);
                let t01 = _mm256_fmadd_ps(
                    ws[1],
                    _mm256_loadu_ps(xp.add(8)),
                    _mm256_mul_ps(ws[0], _mm256_loadu_ps(xp)),
                );
                let t23 = _mm256_fmadd_ps(
                    ws[3],
                    _mm256_loadu_ps(xp.add(24)),
                    _mm256_mul_ps(ws[2], _mm256_loadu_ps(xp.add(16))),
                );
                *acc = _mm256_fmadd_ps(_mm256_add_ps(t01, t23), s, *acc);
            }
        }
    }
    for (j, acc) in acc.iter().enumerate() {
        for (i, acc) in acc.iter().enumerate() {
            let mut l = [0f32; 8];
            _mm256_storeu_ps(l.as_mut_ptr(), *acc);
            out[j * M + i] = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        }
    }
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
        for m in 1..=9 {
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
