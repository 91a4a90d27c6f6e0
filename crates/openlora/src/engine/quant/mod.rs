//! Quantized weights and their products with 8-bit activations, as llama.cpp computes them:
//! weights stay in the model file's own blocks of 32 (Q4_1: four-bit values with a scale and a
//! minimum; Q8_0: eight-bit values with a scale), activations are rounded to eight bits per
//! block of 32 with a scale, and each block's dot product is exact integer arithmetic (VNNI's
//! `vpdpbusd` where the CPU has it, else AVX2's `vpmaddubsw` + `vpmaddwd`, which give the
//! same integers), scaled once per block.
//!
//! Every output is summed in one fixed order whatever rows and inputs share its tile (see
//! [`plain`]), so a sequence's numbers never depend on its batch.
//!
//! `layout` says how a matrix lies in memory, `simd` holds the vector kernels, and this
//! module rounds activations, shares a product out over the team and dispatches to the
//! kernel the CPU runs best.

mod layout;
mod simd;

use super::team::Shared;

#[cfg(target_arch = "x86_64")]
use simd::{avx2, avx512, vnni};

/// Values per block.
pub(crate) const QK: usize = 32;

/// Activations `(m, in)` rounded to eight bits per block of 32.
pub(crate) struct QRows {
    m: usize,
    inp: usize,
    /// `(m, in)`.
    q: Vec<i8>,
    /// `(m, blocks)`: the scale, the scale times the block's sum of `q`, and 128 times
    /// that sum (what Q8_0's stored `w + 128` adds to a dot product).
    d: Vec<f32>,
    s: Vec<f32>,
    bias: Vec<i32>,
}

/// Inputs at least this many values are rounded by the whole team.
const PARALLEL_VALUES: usize = 8192;

impl QRows {
    pub fn new(x: &[f32], inp: usize) -> Self {
        assert!(inp.is_multiple_of(QK) && x.len().is_multiple_of(inp));
        let m = x.len() / inp;
        let blocks = x.len() / QK;
        let mut q = vec![0i8; x.len()];
        let mut d = vec![0f32; blocks];
        let mut s = vec![0f32; blocks];
        let mut bias = vec![0i32; blocks];
        if x.len() < PARALLEL_VALUES {
            round(x, &mut q, &mut d, &mut s, &mut bias);
        } else {
            let (qp, dp, sp, bp) = (
                Shared(q.as_mut_ptr()),
                Shared(d.as_mut_ptr()),
                Shared(s.as_mut_ptr()),
                Shared(bias.as_mut_ptr()),
            );
            super::team::Team::global().run(&|member, members| {
                let r = super::team::share(blocks, 1, member, members);
                // SAFETY: members' block ranges are disjoint and inside the four vectors,
                // which outlive the run.
                let (q, d, s, bias) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(qp.at(r.start * QK), r.len() * QK),
                        std::slice::from_raw_parts_mut(dp.at(r.start), r.len()),
                        std::slice::from_raw_parts_mut(sp.at(r.start), r.len()),
                        std::slice::from_raw_parts_mut(bp.at(r.start), r.len()),
                    )
                };
                round(&x[r.start * QK..r.end * QK], q, d, s, bias);
            });
        }
        Self {
            m,
            inp,
            q,
            d,
            s,
            bias,
        }
    }
}

/// Rounds `x` to eight bits per block: values `q`, scales `d`, scaled sums `s`, biases.
fn round(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32], bias: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { round_avx2(x, q, d, s, bias) };
    }
    round_blocks(x, q, d, s, bias)
}

/// [`round_blocks`] in AVX2 vectors: the same numbers (the maximum is exact, each value is
/// multiplied by the same inverse and rounded to nearest, ties to even).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn round_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32], bias: &mut [i32]) {
    use std::arch::x86_64::*;
    let blocks = d.len();
    assert!(x.len() == blocks * QK && q.len() == x.len());
    assert!(s.len() == blocks && bias.len() == blocks);
    let sign = _mm256_set1_ps(-0.0);
    for b in 0..blocks {
        let p = x.as_ptr().add(b * QK);
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let a = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let a = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let a = _mm_max_ps(a, _mm_movehl_ps(a, a));
        let amax = _mm_cvtss_f32(_mm_max_ss(a, _mm_shuffle_ps(a, a, 1)));
        d[b] = amax / 127.0;
        let inv = _mm256_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let i = v.map(|v| _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v, inv))));
        // Sum of the 32 rounded values (each within ±127: exact in i32).
        let t = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let t = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(t);
        s[b] = d[b] * sum as f32;
        bias[b] = sum << 7;
        // i32 → i16 → i8 packs interleave 128-bit lanes; the permute puts them back in order.
        let w = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr().add(b * QK) as *mut __m256i, w);
    }
}

/// The rounding in plain Rust; every path gives these numbers.
fn round_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32], bias: &mut [i32]) {
    let blocks = x.chunks_exact(QK).zip(q.chunks_exact_mut(QK));
    for ((((x, q), d), s), bias) in blocks.zip(d).zip(s).zip(bias) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        *d = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in q.iter_mut().zip(x) {
            // |v·inv| ≤ 127 by construction: no clamp needed.
            let r = (v * inv).round_ties_even() as i8;
            *q = r;
            sum += r as i32;
        }
        *s = *d * sum as f32;
        *bias = sum << 7;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Q4_1,
    Q8_0,
}

/// Weight rows a kernel runs at once: one 512-bit register of f32 sums.
const GROUP: usize = 16;

/// A weight matrix `(out, in)` in blocks of 32 along `in`, laid out by groups of rows (see
/// [`layout`]). Rows past `out` in the last group are zeros, never written out.
pub(crate) struct Matrix {
    format: Format,
    out: usize,
    inp: usize,
    data: Vec<u8>,
}

impl Matrix {
    /// `y = x·Wᵀ`, `(m, out)`. Members take whole groups of rows; each group's blocks stay
    /// in cache while every input passes over them, so a batch reads each weight from memory
    /// once.
    pub fn matmul(&self, x: &QRows) -> Vec<f32> {
        self.matmul_on(*PATH.get_or_init(detect), x)
    }

    /// [`Matrix::matmul`] on a given path (the CPU must have its features).
    fn matmul_on(&self, path: Path, x: &QRows) -> Vec<f32> {
        assert_eq!(x.inp, self.inp, "the input's width");
        let mut y = vec![0f32; x.m * self.out];
        let target = Shared(y.as_mut_ptr());
        let groups = self.out.div_ceil(GROUP);
        super::team::Team::global().run(&|member, members| {
            for g in super::team::share(groups, 1, member, members) {
                self.group(path, g, x, &target);
            }
        });
        y
    }

    /// Group `g`'s rows against every input, into their columns of `y`.
    fn group(&self, path: Path, g: usize, x: &QRows, y: &Shared<f32>) {
        let inputs = if path == Path::Avx512 { 8 } else { 4 };
        for i0 in (0..x.m).step_by(inputs) {
            let gm = (x.m - i0).min(inputs);
            #[cfg(target_arch = "x86_64")]
            if path != Path::Plain {
                // Only the first pass over the group comes from memory.
                let fetch = i0 == 0;
                // SAFETY: the CPU has the path's features (detected); shapes are checked
                // inside; members' groups are disjoint columns of `y`, which outlives the run.
                unsafe { simd_tile(path, self, g, x, i0, gm, y, fetch) };
                continue;
            }
            for n in g * GROUP..((g + 1) * GROUP).min(self.out) {
                for i in i0..i0 + gm {
                    // SAFETY: as above.
                    unsafe { *y.at(i * self.out + n) = plain(self, n, x, i) };
                }
            }
        }
    }
}

/// One tile on a vector path. The number of inputs `gm` (1 to 8 on AVX-512, 1 to 4
/// otherwise) is a constant inside the kernels, so their loops unroll.
///
/// # Safety
/// The CPU has `path`'s features; `y` is `(x.m, w.out)`, and no one else writes group `g`'s
/// columns of it meanwhile.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn simd_tile(
    path: Path,
    w: &Matrix,
    g: usize,
    x: &QRows,
    i0: usize,
    gm: usize,
    y: &Shared<f32>,
    fetch: bool,
) {
    macro_rules! dispatch {
        ($module:ident, [$($m:literal),*]) => {
            match (w.format, gm) {
                $((Format::Q4_1, $m) => $module::tile::<true, $m>(w, g, x, i0, y, fetch),)*
                $((Format::Q8_0, $m) => $module::tile::<false, $m>(w, g, x, i0, y, fetch),)*
                _ => unreachable!("a tile of {gm} inputs"),
            }
        };
    }
    match path {
        Path::Avx512 => dispatch!(avx512, [1, 2, 3, 4, 5, 6, 7, 8]),
        Path::Vnni => dispatch!(vnni, [1, 2, 3, 4]),
        Path::Avx2 => dispatch!(avx2, [1, 2, 3, 4]),
        Path::Plain => unreachable!("the plain path has no tiles"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// 512-bit tiles: a group's 16 rows in one register.
    Avx512,
    /// 256-bit tiles with AVX-VNNI's dot products.
    Vnni,
    Avx2,
    Plain,
}

static PATH: std::sync::OnceLock<Path> = std::sync::OnceLock::new();

fn detect() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
            return Path::Avx512;
        }
        if avx2 && has!("avxvnni") {
            return Path::Vnni;
        }
        if avx2 {
            return Path::Avx2;
        }
    }
    Path::Plain
}

/// Weight row `n` · input `row`, in the order every path sums it: per block, the exact
/// integer dot product of the stored values, turned to f32 and scaled by the two scales'
/// product in one fused multiply-add; then, for Q4_1, the block's minimum times the input
/// block's scaled sum, fused likewise.
fn plain(w: &Matrix, n: usize, x: &QRows, row: usize) -> f32 {
    let blocks = w.inp / QK;
    let mut t = 0f32;
    for b in 0..blocks {
        let at = row * blocks + b;
        let xq = &x.q[at * QK..][..QK];
        let mut dot: i32 = (0..QK)
            .map(|k| w.stored(n, b, k) as i32 * xq[k] as i32)
            .sum();
        if w.format == Format::Q8_0 {
            // Stored values are `w + 128`.
            dot -= x.bias[at];
        }
        let (d, m) = w.scales(n, b);
        t = (dot as f32).mul_add(d * x.d[at], t);
        if w.format == Format::Q4_1 {
            t = m.mul_add(x.s[at], t);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::layout::half_to_f32;
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    }

    /// Q4_1 blocks of `w` the way llama.cpp rounds them.
    fn q4_1_bytes(w: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in w.chunks(QK) {
            let (lo, hi) = b
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let d = (hi - lo) / 15.0;
            let half = |v: f32| {
                // f32 to f16 by truncation is enough for a test's scales.
                let bits = v.to_bits();
                let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
                (((bits >> 16) & 0x8000)
                    | ((exp.clamp(0, 31) as u32) << 10)
                    | ((bits >> 13) & 0x3ff)) as u16
            };
            let (dh, mh) = (half(d), half(lo));
            let (d, lo) = (half_to_f32(dh), half_to_f32(mh));
            out.extend_from_slice(&dh.to_le_bytes());
            out.extend_from_slice(&mh.to_le_bytes());
            let q: Vec<u8> = b
                .iter()
                .map(|v| (((v - lo) / d).round().clamp(0.0, 15.0)) as u8)
                .collect();
            for j in 0..16 {
                out.push(q[j] | (q[j + 16] << 4));
            }
        }
        out
    }

    /// The paths this CPU can run.
    fn paths() -> Vec<Path> {
        let mut paths = vec![Path::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            if avx2 {
                paths.push(Path::Avx2);
            }
            if avx2 && has!("avxvnni") {
                paths.push(Path::Vnni);
            }
            if detect() == Path::Avx512 {
                paths.push(Path::Avx512);
            }
        }
        paths
    }

    #[test]
    fn every_path_and_tile_gives_the_same_products() {
        // 75 rows: four whole groups and one of 11 (a full half and one of three).
        let (out, inp) = (75, 96);
        let w = values(out * inp, 1);
        let q4 = Matrix::from_q4_1(out, inp, &q4_1_bytes(&w)).unwrap();
        let q8 = Matrix::quantize_q8_0(&w, out, inp).unwrap();
        // The layout keeps each row's own values: within half a step of the source.
        for n in 0..out {
            let source = &w[n * inp..][..inp];
            for (matrix, step) in [(&q4, 1.0 / 15.0), (&q8, 0.5 / 127.0)] {
                let row = matrix.row(n);
                for (a, b) in row.iter().zip(source) {
                    assert!((a - b).abs() <= 0.51 * step + 1e-3, "row {n}: {a} vs {b}");
                }
            }
        }
        for m in [1, 2, 3, 5, 9, 15] {
            let x = values(m * inp, 7 + m as u32);
            let xq = QRows::new(&x, inp);
            for matrix in [&q4, &q8] {
                let y = matrix.matmul(&xq);
                for path in paths() {
                    // Bit for bit: the integer sums are exact and the order is fixed.
                    assert_eq!(matrix.matmul_on(path, &xq), y, "{path:?}, {m} inputs");
                }
                for r in 0..m {
                    // Alone, a row gives the same bits.
                    let single = QRows::new(&x[r * inp..][..inp], inp);
                    assert_eq!(matrix.matmul(&single), y[r * out..][..out]);
                    for n in 0..out {
                        assert_eq!(y[r * out + n], plain(matrix, n, &xq, r));
                        // And close to the f32 product of the stored weights.
                        let deq = matrix.row(n);
                        let exact: f32 = (0..inp).map(|j| deq[j] * x[r * inp + j]).sum();
                        assert!(
                            (y[r * out + n] - exact).abs() < 0.02,
                            "{} vs {exact}",
                            y[r * out + n]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fused_parts_of_any_row_count_give_each_parts_products() {
        let inp = 64;
        let (w1, w2, w3) = (values(20 * inp, 2), values(9 * inp, 3), values(16 * inp, 4));
        let part = |w: &[f32]| Matrix::from_q4_1(w.len() / inp, inp, &q4_1_bytes(w)).unwrap();
        let fused = Matrix::concat(vec![part(&w1), part(&w2), part(&w3)]).unwrap();
        assert_eq!(fused.shape(), (45, inp));
        let x = QRows::new(&values(3 * inp, 9), inp);
        let y = fused.matmul(&x);
        let parts: Vec<Vec<f32>> = [&w1, &w2, &w3].map(|w| part(w).matmul(&x)).into();
        for r in 0..3 {
            let mut want = Vec::new();
            for (p, rows) in parts.iter().zip([20, 9, 16]) {
                want.extend_from_slice(&p[r * rows..][..rows]);
            }
            assert_eq!(y[r * 45..][..45], want[..], "input {r}");
        }
        // Aligned parts take the quick way and give the same.
        let aligned = Matrix::concat(vec![part(&w3), part(&w2)]).unwrap();
        let y = aligned.matmul(&x);
        assert_eq!(y[..16], parts[2][..16]);
        assert_eq!(y[16..25], parts[1][..9]);
        let q8 = Matrix::quantize_q8_0(&w1, 20, inp).unwrap();
        assert!(Matrix::concat(vec![part(&w1), q8]).is_none());
    }

    #[test]
    fn q8_0_blocks_keep_every_value_including_the_most_negative() {
        // Two rows of one block, scale 0.5 (half 0x3800): values -128..=-97, and all 127
        // (stored as 255, the most a two-step AVX2 product must hold without saturating).
        let mut bytes = vec![0x00, 0x38];
        bytes.extend((0..32).map(|k: i32| (k - 128) as i8 as u8));
        bytes.extend([0x00, 0x38]);
        bytes.extend([127u8; 32]);
        let w = Matrix::from_q8_0(2, 32, &bytes).unwrap();
        let row = w.row(0);
        assert_eq!(row[0], -64.0);
        assert_eq!(row[31], 0.5 * -97.0);
        assert_eq!(w.row(1), vec![63.5; 32]);
        // Products with an input of ones (rounded exactly: amax 1 → q = 127, d = 1/127).
        let x = QRows::new(&[1.0; 32], 32);
        let sums = [
            (0..32).map(|k| (k - 128) * 127).sum::<i32>(),
            32 * 127 * 127,
        ];
        let want: Vec<f32> = sums.map(|s| s as f32 * (0.5 * (1.0 / 127.0))).into();
        for path in paths() {
            assert_eq!(w.matmul_on(path, &x), want, "{path:?}");
        }
    }

    #[test]
    fn rounding_is_the_same_on_every_path_and_on_the_team() {
        // Ties (halves) included: 127/amax·v lands on .5 for these values.
        let mut x = values(64 * 32 * 5, 3);
        x[..32]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32 - 15.5);
        x[32..64].fill(0.0);
        let (mut q, mut d, mut s) = (
            vec![0i8; x.len()],
            vec![0f32; x.len() / QK],
            vec![0f32; x.len() / QK],
        );
        let mut bias = vec![0i32; x.len() / QK];
        round_blocks(&x, &mut q, &mut d, &mut s, &mut bias);
        let team = QRows::new(&x, 64); // past PARALLEL_VALUES: rounded by the team
        assert!(x.len() >= PARALLEL_VALUES);
        assert_eq!(team.q, q);
        assert_eq!(team.d, d);
        assert_eq!(team.s, s);
        assert_eq!(team.bias, bias);
        let small = QRows::new(&x[..256], 64);
        assert_eq!(small.q, q[..256]);
    }

    #[test]
    fn sizes_that_disagree_or_overflow_are_refused() {
        // A shape whose byte count wraps past usize must not pass as 40 bytes.
        let wraps = (usize::MAX / 40 + 1) * 2;
        assert!(Matrix::from_q4_1(wraps, 64, &[0u8; 40]).is_none());
        assert!(Matrix::from_q4_1(1, 64, &[0u8; 39]).is_none());
        assert!(Matrix::from_q8_0(1, 33, &[0u8; 34]).is_none());
        assert!(Matrix::quantize_q8_0(&[0.0; 32], usize::MAX, 32).is_none());
        assert!(Matrix::from_q4_1(1, 64, &[0u8; 40]).is_some());
    }

    #[test]
    fn halves_convert() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bff), 65504.0);
    }
}
