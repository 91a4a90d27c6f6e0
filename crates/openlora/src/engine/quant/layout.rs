//! How a weight matrix lies in memory. Rows go in groups of [`GROUP`]; a group's blocks
//! follow each other, and each block of a group is one record:
//!
//! - Q4_1 (320 bytes): four 64-byte chunks, chunk `c` holding bytes `4c..4c + 4` of each of
//!   the 16 rows' nibbles (row `r` at `64c + 4r`; byte `k` holds value `k` low and `k + 16`
//!   high), then the 16 rows' scales and the 16 minimums as IEEE halves.
//! - Q8_0 (544 bytes): eight 64-byte chunks, chunk `c` holding values `4c..4c + 4` of each
//!   row as unsigned bytes `w + 128`, then the 16 scales as halves.
//!
//! So lane `r` of a 64-byte chunk is row `r`: the kernels run 16 rows at once against four
//! bytes of an input broadcast to every lane, and a record is read front to back. Scales
//! stay halves as in the model file: the pass reads 20 bytes per Q4_1 block, as llama.cpp.

use super::{Format, Matrix, QRows, GROUP, QK};

impl Format {
    /// Bytes of values in a record, and of the whole record.
    pub(super) const fn layout(self) -> (usize, usize) {
        match self {
            Format::Q4_1 => (256, 320),
            Format::Q8_0 => (512, 544),
        }
    }
}

/// IEEE half to single precision (exact).
pub(super) fn half_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    half_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Blocks per row of a `(rows, cols)` matrix stored as `len` bytes of `width`-byte blocks;
/// `None` unless rows are whole blocks and the sizes agree (checked, never wrapping).
fn whole_blocks(rows: usize, cols: usize, len: usize, width: usize) -> Option<usize> {
    let blocks = cols / QK;
    let expected = blocks.checked_mul(width).and_then(|b| rows.checked_mul(b));
    (cols.is_multiple_of(QK) && expected == Some(len)).then_some(blocks)
}

impl Matrix {
    /// An all-zero matrix of `out` rows (padded to whole groups) to fill row by row.
    fn empty(format: Format, out: usize, inp: usize) -> Self {
        let groups = out.div_ceil(GROUP);
        Self {
            format,
            out,
            inp,
            data: vec![0u8; groups * (inp / QK) * format.layout().1],
        }
    }

    /// Byte offset of the record holding block `b` of row `n`'s group.
    pub(super) fn record(&self, n: usize, b: usize) -> usize {
        ((n / GROUP) * (self.inp / QK) + b) * self.format.layout().1
    }

    /// Stores row `n`'s block `b`: 32 values as stored bytes (nibble pairs for Q4_1, biased
    /// bytes for Q8_0), its scale and its minimum as halves' bits.
    fn put(&mut self, n: usize, b: usize, values: &[u8], d: [u8; 2], m: [u8; 2]) {
        let (qs, _) = self.format.layout();
        let (at, r) = (self.record(n, b), n % GROUP);
        for (c, four) in values.chunks_exact(4).enumerate() {
            self.data[at + 64 * c + 4 * r..][..4].copy_from_slice(four);
        }
        self.data[at + qs + 2 * r..][..2].copy_from_slice(&d);
        if self.format == Format::Q4_1 {
            self.data[at + qs + 32 + 2 * r..][..2].copy_from_slice(&m);
        }
    }

    /// llama.cpp's Q4_1 blocks (20 bytes: f16 d, f16 m, 16 bytes of nibbles).
    pub fn from_q4_1(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        let blocks = whole_blocks(rows, cols, bytes.len(), 20)?;
        let mut w = Self::empty(Format::Q4_1, rows, cols);
        for (i, b) in bytes.chunks_exact(20).enumerate() {
            w.put(i / blocks, i % blocks, &b[4..], [b[0], b[1]], [b[2], b[3]]);
        }
        Some(w)
    }

    /// llama.cpp's Q8_0 blocks (34 bytes: f16 d, 32 signed bytes).
    pub fn from_q8_0(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        let blocks = whole_blocks(rows, cols, bytes.len(), 34)?;
        let mut w = Self::empty(Format::Q8_0, rows, cols);
        let mut biased = [0u8; QK];
        for (i, b) in bytes.chunks_exact(34).enumerate() {
            biased
                .iter_mut()
                .zip(&b[2..])
                .for_each(|(o, v)| *o = v ^ 0x80);
            w.put(i / blocks, i % blocks, &biased, [b[0], b[1]], [0, 0]);
        }
        Some(w)
    }

    /// Rounds f32 weights `(rows, cols)` to Q8_0 blocks (scales rounded to halves, as a
    /// model file stores them).
    pub fn quantize_q8_0(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || Some(values.len()) != rows.checked_mul(cols) {
            return None;
        }
        let blocks = cols / QK;
        let x = QRows::new(values, cols);
        let mut w = Self::empty(Format::Q8_0, rows, cols);
        let mut biased = [0u8; QK];
        for (i, d) in x.d.iter().enumerate() {
            let q = &x.q[i * QK..][..QK];
            biased
                .iter_mut()
                .zip(q)
                .for_each(|(o, &v)| *o = v as u8 ^ 0x80);
            let d = half::f16::from_f32(*d).to_bits().to_le_bytes();
            w.put(i / blocks, i % blocks, &biased, d, [0, 0]);
        }
        Some(w)
    }

    /// The rows of `parts` one after another (q|k|v, gate|up); `None` if they differ in
    /// format or width.
    pub fn concat(parts: Vec<Matrix>) -> Option<Self> {
        let first = parts.first()?;
        let (format, inp) = (first.format, first.inp);
        if parts.iter().any(|p| p.format != format || p.inp != inp) {
            return None;
        }
        let out = parts.iter().map(|p| p.out).sum();
        let last = parts.len() - 1;
        if parts[..last].iter().all(|p| p.out.is_multiple_of(GROUP)) {
            // Whole groups: the records simply follow each other.
            let data = parts.into_iter().flat_map(|p| p.data).collect();
            return Some(Self {
                format,
                out,
                inp,
                data,
            });
        }
        // A part's padding would land among the next part's rows: move row by row.
        let mut all = Self::empty(format, out, inp);
        let mut to = 0;
        for p in &parts {
            for n in 0..p.out {
                all.copy_row(to, p, n);
                to += 1;
            }
        }
        Some(all)
    }

    /// Row `n` of `from` (same format and width) into row `to`.
    fn copy_row(&mut self, to: usize, from: &Matrix, n: usize) {
        let (qs, _) = self.format.layout();
        let chunks = qs / 64;
        for b in 0..self.inp / QK {
            let (src, dst) = (from.record(n, b), self.record(to, b));
            let (rs, rd) = (4 * (n % GROUP), 4 * (to % GROUP));
            for c in 0..chunks {
                self.data[dst + 64 * c + rd..][..4]
                    .copy_from_slice(&from.data[src + 64 * c + rs..][..4]);
            }
            // Scales (and Q4_1's minimums, 32 bytes further on).
            for extra in (qs..self.format.layout().1).step_by(32) {
                let (rs, rd) = (2 * (n % GROUP), 2 * (to % GROUP));
                self.data[dst + extra + rd..][..2]
                    .copy_from_slice(&from.data[src + extra + rs..][..2]);
            }
        }
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.out, self.inp)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `n`'s stored value `k` of block `b`, as the kernels multiply it (a nibble, or
    /// `w + 128`).
    pub(super) fn stored(&self, n: usize, b: usize, k: usize) -> u8 {
        let at = self.record(n, b) + 4 * (n % GROUP);
        match self.format {
            Format::Q4_1 => {
                let byte = self.data[at + 64 * ((k % 16) / 4) + k % 4];
                if k < 16 {
                    byte & 0x0f
                } else {
                    byte >> 4
                }
            }
            Format::Q8_0 => self.data[at + 64 * (k / 4) + k % 4],
        }
    }

    /// Row `n`'s scale and minimum (0 for Q8_0) of block `b`.
    pub(super) fn scales(&self, n: usize, b: usize) -> (f32, f32) {
        let (qs, _) = self.format.layout();
        let at = self.record(n, b) + qs + 2 * (n % GROUP);
        match self.format {
            Format::Q4_1 => (half_at(&self.data, at), half_at(&self.data, at + 32)),
            Format::Q8_0 => (half_at(&self.data, at), 0.0),
        }
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row(&self, r: usize) -> Vec<f32> {
        let blocks = self.inp / QK;
        let mut out = Vec::with_capacity(self.inp);
        for b in 0..blocks {
            let (d, m) = self.scales(r, b);
            out.extend((0..QK).map(|k| match self.format {
                Format::Q4_1 => d * self.stored(r, b, k) as f32 + m,
                Format::Q8_0 => d * (self.stored(r, b, k) as i32 - 128) as f32,
            }));
        }
        out
    }
}
