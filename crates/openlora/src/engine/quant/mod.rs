//! Quantized weights and their products with 8-bit activations, as llama.cpp computes them:
//! weights stay in the model file's own blocks of 32 (Q4_1: four-bit values with a scale and a
//! minimum; Q8_0: eight-bit values with a scale), activations are rounded to eight bits per
//! block of 32 with a scale, and each block's dot product is exact integer arithmetic (VNNI's
//! `vpdpbusd` where the CPU has AVX-VNNI, else AVX2's `vpmaddubsw` + `vpmaddwd`, which give
//! the same integers), scaled once per block.
//!
//! Every output is summed in one fixed order whatever rows share its tile, so a sequence's
//! numbers never depend on its batch.

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
    /// `(m, blocks)`: the scale, and the scale times the block's sum of `q`.
    d: Vec<f32>,
    s: Vec<f32>,
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
        if x.len() < PARALLEL_VALUES {
            round(x, &mut q, &mut d, &mut s);
        } else {
            let (qp, dp, sp) = (
                Shared(q.as_mut_ptr()),
                Shared(d.as_mut_ptr()),
                Shared(s.as_mut_ptr()),
            );
            super::team::Team::global().run(&|member, members| {
                let r = super::team::share(blocks, 1, member, members);
                // SAFETY: members' block ranges are disjoint and inside the three vectors,
                // which outlive the run.
                let (q, d, s) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(qp.at(r.start * QK), r.len() * QK),
                        std::slice::from_raw_parts_mut(dp.at(r.start), r.len()),
                        std::slice::from_raw_parts_mut(sp.at(r.start), r.len()),
                    )
                };
                round(&x[r.start * QK..r.end * QK], q, d, s);
            });
        }
        Self { m, inp, q, d, s }
    }
}

/// Rounds `x` to eight bits per block: values `q`, scales `d`, scaled sums `s`.
fn round(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { round_avx2(x, q, d, s) };
    }
    round_blocks(x, q, d, s)
}

/// [`round_blocks`] in AVX2 vectors: the same numbers (the maximum is exact, each value is
/// multiplied by the same inverse and rounded to nearest, ties to even).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn round_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    use std::arch::x86_64::*;
    let blocks = d.len();
    assert!(x.len() == blocks * QK && q.len() == x.len() && s.len() == blocks);
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
        s[b] = d[b] * _mm_cvtsi128_si32(t) as f32;
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
fn round_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((x, q), d), s) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).zip(d).zip(s) {
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
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Q4_1,
    Q8_0,
}

/// Weight rows a batch's input groups pass over together (a multiple of [`GROUP`]).
const CHUNK_ROWS: usize = 32;

/// Rows interleaved block by block, so that the four rows a decode tile reads are one
/// sequential stream (a block of each in one cache line for Q4_1).
const GROUP: usize = 4;

/// A weight matrix `(out, in)` in blocks of 32 along `in`, rows in groups of [`GROUP`]:
/// block `b` of row `n` is block number `((n / 4)·blocks + b)·4 + n % 4` (see [`Matrix::at`]).
pub(crate) struct Matrix {
    format: Format,
    out: usize,
    inp: usize,
    /// Q4_1: 16 bytes of nibbles per block (byte `j`: value `j` low, value `j + 16` high);
    /// Q8_0: 32 signed bytes per block.
    qs: Vec<u8>,
    /// One scale per block, in block order.
    d: Vec<f32>,
    /// Q4_1's minimums, one per block, in block order.
    m: Vec<f32>,
}

fn f16(lo: u8, hi: u8) -> f32 {
    half_to_f32(u16::from_le_bytes([lo, hi]))
}

/// IEEE half to single precision.
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let shift = frac.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((frac << shift) & 0x3ff) << 13
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

impl Matrix {
    /// Block number of row `n`'s block `b`.
    fn at(&self, n: usize, b: usize) -> usize {
        let blocks = self.inp / QK;
        ((n / GROUP) * blocks + b) * GROUP + n % GROUP
    }

    /// Interleaves row-major blocks (`width` bytes each) into groups of rows.
    fn pack(mut self) -> Option<Self> {
        if !self.out.is_multiple_of(GROUP) {
            return None;
        }
        let blocks = self.inp / QK;
        let width = self.qs.len() / self.d.len();
        let mut qs = vec![0u8; self.qs.len()];
        let mut d = vec![0f32; self.d.len()];
        let mut m = vec![0f32; self.m.len()];
        for n in 0..self.out {
            for b in 0..blocks {
                let (from, to) = (n * blocks + b, self.at(n, b));
                qs[to * width..][..width].copy_from_slice(&self.qs[from * width..][..width]);
                d[to] = self.d[from];
                if !m.is_empty() {
                    m[to] = self.m[from];
                }
            }
        }
        self.qs = qs;
        self.d = d;
        self.m = m;
        Some(self)
    }

    /// llama.cpp's Q4_1 blocks (20 bytes: f16 d, f16 m, 16 bytes of nibbles).
    pub fn from_q4_1(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        let blocks = rows * cols / QK;
        if !cols.is_multiple_of(QK) || bytes.len() != blocks * 20 {
            return None;
        }
        let mut qs = Vec::with_capacity(blocks * 16);
        let (mut d, mut m) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        for b in bytes.chunks_exact(20) {
            d.push(f16(b[0], b[1]));
            m.push(f16(b[2], b[3]));
            qs.extend_from_slice(&b[4..]);
        }
        Self {
            format: Format::Q4_1,
            out: rows,
            inp: cols,
            qs,
            d,
            m,
        }
        .pack()
    }

    /// llama.cpp's Q8_0 blocks (34 bytes: f16 d, 32 signed bytes).
    pub fn from_q8_0(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        let blocks = rows * cols / QK;
        if !cols.is_multiple_of(QK) || bytes.len() != blocks * 34 {
            return None;
        }
        let mut qs = Vec::with_capacity(blocks * 32);
        let mut d = Vec::with_capacity(blocks);
        for b in bytes.chunks_exact(34) {
            d.push(f16(b[0], b[1]));
            qs.extend_from_slice(&b[2..]);
        }
        Self {
            format: Format::Q8_0,
            out: rows,
            inp: cols,
            qs,
            d,
            m: Vec::new(),
        }
        .pack()
    }

    /// Rounds f32 weights `(rows, cols)` to Q8_0 blocks.
    pub fn quantize_q8_0(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || w.len() != rows * cols {
            return None;
        }
        let x = QRows::new(w, cols);
        Self {
            format: Format::Q8_0,
            out: rows,
            inp: cols,
            qs: x.q.iter().map(|&v| v as u8).collect(),
            d: x.d,
            m: Vec::new(),
        }
        .pack()
    }

    /// The rows of `parts` one after another (q|k|v, gate|up); `None` if they differ in
    /// format or width. Whole groups of rows, so the packed blocks simply follow each other.
    pub fn concat(parts: Vec<Matrix>) -> Option<Self> {
        let first = parts.first()?;
        let (format, inp) = (first.format, first.inp);
        if parts.iter().any(|p| p.format != format || p.inp != inp) {
            return None;
        }
        let mut all = Self {
            format,
            out: 0,
            inp,
            qs: Vec::new(),
            d: Vec::new(),
            m: Vec::new(),
        };
        for p in parts {
            all.out += p.out;
            all.qs.extend(p.qs);
            all.d.extend(p.d);
            all.m.extend(p.m);
        }
        Some(all)
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.out, self.inp)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * (self.d.len() + self.m.len())
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row(&self, r: usize) -> Vec<f32> {
        let blocks = self.inp / QK;
        let mut out = Vec::with_capacity(self.inp);
        for k in 0..blocks {
            let b = self.at(r, k);
            match self.format {
                Format::Q4_1 => {
                    let q = &self.qs[b * 16..][..16];
                    let (d, m) = (self.d[b], self.m[b]);
                    out.extend(q.iter().map(|v| d * (v & 0x0f) as f32 + m));
                    out.extend(q.iter().map(|v| d * (v >> 4) as f32 + m));
                }
                Format::Q8_0 => {
                    let d = self.d[b];
                    out.extend(self.qs[b * 32..][..32].iter().map(|&v| d * v as i8 as f32));
                }
            }
        }
        out
    }

    /// `y = x·Wᵀ`, `(m, out)`. Each weight row is read once for all rows of `x`.
    pub fn matmul(&self, x: &QRows) -> Vec<f32> {
        assert_eq!(x.inp, self.inp, "the input's width");
        let mut y = vec![0f32; x.m * self.out];
        let target = Shared(y.as_mut_ptr());
        let team = super::team::Team::global();
        team.run(&|member, members| {
            let rows = super::team::share(self.out, GROUP, member, members);
            if !rows.is_empty() {
                self.task(rows.start, rows.len(), x, &target);
            }
        });
        y
    }

    /// Weight rows `first..first + rows` against every input into their columns of `y`
    /// `(m, out)`: inputs in groups of up to four, weight rows in tiles that keep four sums
    /// in flight.
    fn task(&self, first: usize, rows: usize, x: &QRows, y: &Shared<f32>) {
        let (m, out) = (x.m, self.out);
        // The 512-bit tiles take up to eight inputs, the others four.
        let inputs = if wide() { 8 } else { 4 };
        let mut tile = [0f32; 32];
        // Rows in chunks small enough to stay in cache while every input group passes over
        // them, so a batch reads each weight from memory once.
        for c0 in (0..rows).step_by(CHUNK_ROWS) {
            let c1 = (c0 + CHUNK_ROWS).min(rows);
            for g0 in (0..m).step_by(inputs) {
                let gm = (m - g0).min(inputs);
                let per = match (gm, wide()) {
                    (_, true) | (1, _) => 4,
                    (2, _) => 2,
                    _ => 1,
                };
                // Tiles of `per` rows start at multiples of `per`: never across a group.
                let mut k = c0;
                while k < c1 {
                    let r = if c1 - k >= per { per } else { 1 };
                    product(self, first + k, r, x, g0, gm, &mut tile[..r * gm]);
                    for j in 0..r {
                        for i in 0..gm {
                            // SAFETY: `g0 + i < m` and `first + k + j < out`, inside `y`;
                            // members' columns are disjoint and `y` outlives the run.
                            unsafe { *y.at((g0 + i) * out + first + k + j) = tile[j * gm + i] };
                        }
                    }
                    k += r;
                }
            }
        }
    }
}

/// `out[j·gm + i]` = weight row `n0 + j` · input row `i0 + i`.
fn product(w: &Matrix, n0: usize, r: usize, x: &QRows, i0: usize, gm: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let path = *PATH.get_or_init(detect);
        if path != Path::Plain {
            macro_rules! dispatch {
                ($module:ident) => {
                    // SAFETY: the CPU has the module's features (detected above); shapes are
                    // checked inside.
                    unsafe {
                        match (w.format, r, gm) {
                            (Format::Q4_1, 4, 1) => $module::q4_1::<4, 1>(w, n0, x, i0, out),
                            (Format::Q4_1, 2, 2) => $module::q4_1::<2, 2>(w, n0, x, i0, out),
                            (Format::Q4_1, 1, 1) => $module::q4_1::<1, 1>(w, n0, x, i0, out),
                            (Format::Q4_1, 1, 2) => $module::q4_1::<1, 2>(w, n0, x, i0, out),
                            (Format::Q4_1, 1, 3) => $module::q4_1::<1, 3>(w, n0, x, i0, out),
                            (Format::Q4_1, 1, 4) => $module::q4_1::<1, 4>(w, n0, x, i0, out),
                            (Format::Q8_0, 4, 1) => $module::q8_0::<4, 1>(w, n0, x, i0, out),
                            (Format::Q8_0, 2, 2) => $module::q8_0::<2, 2>(w, n0, x, i0, out),
                            (Format::Q8_0, 1, 1) => $module::q8_0::<1, 1>(w, n0, x, i0, out),
                            (Format::Q8_0, 1, 2) => $module::q8_0::<1, 2>(w, n0, x, i0, out),
                            (Format::Q8_0, 1, 3) => $module::q8_0::<1, 3>(w, n0, x, i0, out),
                            (Format::Q8_0, 1, 4) => $module::q8_0::<1, 4>(w, n0, x, i0, out),
                            _ => unreachable!("tiles are 4×1, 2×2 or 1×m"),
                        }
                    }
                };
            }
            match path {
                Path::Avx512 if r == 4 => {
                    // SAFETY: the CPU has AVX-512 F, BW, VL and VNNI (detected).
                    unsafe {
                        match (w.format, gm) {
                            (Format::Q4_1, 1) => avx512::q4_1_x4::<1>(w, n0, x, i0, out),
                            (Format::Q4_1, 2) => avx512::q4_1_x4::<2>(w, n0, x, i0, out),
                            (Format::Q4_1, 3) => avx512::q4_1_x4::<3>(w, n0, x, i0, out),
                            (Format::Q4_1, 4) => avx512::q4_1_x4::<4>(w, n0, x, i0, out),
                            (Format::Q4_1, 5) => avx512::q4_1_x4::<5>(w, n0, x, i0, out),
                            (Format::Q4_1, 6) => avx512::q4_1_x4::<6>(w, n0, x, i0, out),
                            (Format::Q4_1, 7) => avx512::q4_1_x4::<7>(w, n0, x, i0, out),
                            (Format::Q4_1, _) => avx512::q4_1_x4::<8>(w, n0, x, i0, out),
                            (Format::Q8_0, 1) => avx512::q8_0_x4::<1>(w, n0, x, i0, out),
                            (Format::Q8_0, 2) => avx512::q8_0_x4::<2>(w, n0, x, i0, out),
                            (Format::Q8_0, 3) => avx512::q8_0_x4::<3>(w, n0, x, i0, out),
                            (Format::Q8_0, 4) => avx512::q8_0_x4::<4>(w, n0, x, i0, out),
                            (Format::Q8_0, 5) => avx512::q8_0_x4::<5>(w, n0, x, i0, out),
                            (Format::Q8_0, 6) => avx512::q8_0_x4::<6>(w, n0, x, i0, out),
                            (Format::Q8_0, 7) => avx512::q8_0_x4::<7>(w, n0, x, i0, out),
                            (Format::Q8_0, _) => avx512::q8_0_x4::<8>(w, n0, x, i0, out),
                        }
                    }
                }
                Path::Vnni | Path::Avx512 if VNNI.get().copied().unwrap_or(false) => {
                    dispatch!(vnni)
                }
                _ => dispatch!(avx2),
            }
            return;
        }
    }
    plain(w, n0, r, x, i0, gm, out);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// 512-bit decode tiles (four rows' blocks in one cache line per step), 256-bit others.
    Avx512,
    Vnni,
    Avx2,
    Plain,
}

static PATH: std::sync::OnceLock<Path> = std::sync::OnceLock::new();

/// Whether every tile is four rows wide (the 512-bit path).
fn wide() -> bool {
    *PATH.get_or_init(detect) == Path::Avx512
}
/// Whether the 256-bit tiles may use AVX-VNNI.
static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn detect() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        let _ = VNNI.set(avx2 && has!("avxvnni"));
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
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

/// The same sums in plain Rust (other CPUs), in the same order: each block's integer dot
/// product, scaled, into one of eight lanes as the vector paths do, lanes added pairwise.
fn plain(w: &Matrix, n0: usize, r: usize, x: &QRows, i0: usize, gm: usize, out: &mut [f32]) {
    let blocks = w.inp / QK;
    for j in 0..r {
        let n = n0 + j;
        for i in 0..gm {
            let row = i0 + i;
            let xq = &x.q[row * w.inp..][..w.inp];
            let mut lanes = [0f32; 8];
            for b in 0..blocks {
                let xb = &xq[b * QK..][..QK];
                let at = w.at(n, b);
                let wb: Vec<i32> = match w.format {
                    Format::Q4_1 => {
                        let q = &w.qs[at * 16..][..16];
                        q.iter()
                            .map(|v| (v & 0x0f) as i32)
                            .chain(q.iter().map(|v| (v >> 4) as i32))
                            .collect()
                    }
                    Format::Q8_0 => w.qs[at * 32..][..32]
                        .iter()
                        .map(|&v| v as i8 as i32)
                        .collect(),
                };
                let scale = w.d[at] * x.d[row * blocks + b];
                for (lane, acc) in lanes.iter_mut().enumerate() {
                    let p: i32 = (0..4)
                        .map(|k| wb[lane * 4 + k] * xb[lane * 4 + k] as i32)
                        .sum();
                    *acc = (p as f32).mul_add(scale, *acc);
                }
            }
            out[j * gm + i] = finish(&lanes, w, n, x, row);
        }
    }
}

/// Adds the lanes pairwise, then Q4_1's minimum term `Σ_b m_b·s_b` (one fused multiply-add
/// per block, in block order, as every path sums it).
fn finish(lanes: &[f32; 8], w: &Matrix, n: usize, x: &QRows, row: usize) -> f32 {
    let l = lanes;
    let sum = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    sum + minimum(w, n, x, row)
}

/// Q4_1's minimum term of weight row `n` and input `row` (0 for Q8_0).
#[inline]
fn minimum(w: &Matrix, n: usize, x: &QRows, row: usize) -> f32 {
    if w.format != Format::Q4_1 {
        return 0.0;
    }
    let blocks = w.inp / QK;
    let mut t = 0f32;
    for b in 0..blocks {
        t = w.m[w.at(n, b)].mul_add(x.s[row * blocks + b], t);
    }
    t
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn every_path_and_tile_gives_the_same_products() {
        let (out, inp) = (72, 96);
        let w = values(out * inp, 1);
        let q4 = Matrix::from_q4_1(out, inp, &q4_1_bytes(&w)).unwrap();
        let q8 = Matrix::quantize_q8_0(&w, out, inp).unwrap();
        for m in [1, 2, 3, 5, 9, 15] {
            let x = values(m * inp, 7 + m as u32);
            let xq = QRows::new(&x, inp);
            for matrix in [&q4, &q8] {
                let y = matrix.matmul(&xq);
                let mut reference = vec![0f32; 1];
                for r in 0..m {
                    for n in 0..out {
                        plain(matrix, n, 1, &xq, r, 1, &mut reference);
                        // Bit for bit: the integer sums are exact and the order is fixed.
                        assert_eq!(y[r * out + n], reference[0], "m {m} row {r} out {n}");
                        // Alone, the same row gives the same bits.
                        let single = QRows::new(&x[r * inp..][..inp], inp);
                        assert_eq!(matrix.matmul(&single)[n], y[r * out + n]);
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
        round_blocks(&x, &mut q, &mut d, &mut s);
        let team = QRows::new(&x, 64); // past PARALLEL_VALUES: rounded by the team
        assert!(x.len() >= PARALLEL_VALUES);
        assert_eq!(team.q, q);
        assert_eq!(team.d, d);
        assert_eq!(team.s, s);
        let small = QRows::new(&x[..256], 64);
        assert_eq!(small.q, q[..256]);
    }

    #[test]
    fn halves_convert() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bff), 65504.0);
    }
}
