//! The vector kernels: 256-bit tiles for AVX2 and AVX-VNNI (one macro, two instruction
//! sets), and 512-bit tiles of four rows for AVX-512 VNNI. Every path sums each output in the
//! order `plain` does.

#[cfg(target_arch = "x86_64")]
use super::{minimum, Matrix, QRows, GROUP, QK};

/// One tile kernel per instruction set: the block loop is the same, only the integer dot
/// product of 32 bytes differs (and gives the same integers).
macro_rules! tiles {
    ($module:ident, $features:literal, $dp:item) => {
        #[cfg(target_arch = "x86_64")]
        pub(super) mod $module {
            use super::{minimum, Matrix, QRows, QK};
            use std::arch::x86_64::*;

            /// Eight i32 lanes, each the sum of four products `a·b` (`a` unsigned bytes below
            /// 128, `b` signed bytes).
            $dp

            #[target_feature(enable = $features)]
            pub unsafe fn q4_1<const R: usize, const M: usize>(
                w: &Matrix,
                n0: usize,
                x: &QRows,
                i0: usize,
                out: &mut [f32],
            ) {
                let blocks = w.inp / QK;
                assert!((n0 + R) * blocks * 16 <= w.qs.len() && (i0 + M) * w.inp <= x.q.len() && out.len() == R * M);
                assert!(n0 % R == 0 && super::GROUP % R == 0);
                let mask = _mm_set1_epi8(0x0f);
                let mut acc = [[_mm256_setzero_ps(); M]; R];
                for b in 0..blocks {
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let at = w.at(n0 + j, b);
                        let raw = _mm_loadu_si128(w.qs.as_ptr().add(at * 16) as *const __m128i);
                        let lo = _mm_and_si128(raw, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
                        let wv = _mm256_set_m128i(hi, lo);
                        let dw = *w.d.get_unchecked(at);
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let row = i0 + i;
                            let xv = _mm256_loadu_si256(x.q.as_ptr().add(row * w.inp + b * QK) as *const __m256i);
                            let p = dp(wv, xv);
                            let scale = _mm256_set1_ps(dw * *x.d.get_unchecked(row * blocks + b));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, *acc);
                        }
                    }
                }
                store::<R, M>(&acc, w, n0, x, i0, out);
            }

            #[target_feature(enable = $features)]
            pub unsafe fn q8_0<const R: usize, const M: usize>(
                w: &Matrix,
                n0: usize,
                x: &QRows,
                i0: usize,
                out: &mut [f32],
            ) {
                let blocks = w.inp / QK;
                assert!((n0 + R) * blocks * 32 <= w.qs.len() && (i0 + M) * w.inp <= x.q.len() && out.len() == R * M);
                assert!(n0 % R == 0 && super::GROUP % R == 0);
                let mut acc = [[_mm256_setzero_ps(); M]; R];
                for b in 0..blocks {
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let at = w.at(n0 + j, b);
                        let wv = _mm256_loadu_si256(w.qs.as_ptr().add(at * 32) as *const __m256i);
                        let magnitude = _mm256_sign_epi8(wv, wv);
                        let dw = *w.d.get_unchecked(at);
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let row = i0 + i;
                            let xv = _mm256_loadu_si256(x.q.as_ptr().add(row * w.inp + b * QK) as *const __m256i);
                            // |w|·(x with w's sign) = w·x, with the unsigned operand below 128.
                            let p = dp(magnitude, _mm256_sign_epi8(xv, wv));
                            let scale = _mm256_set1_ps(dw * *x.d.get_unchecked(row * blocks + b));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, *acc);
                        }
                    }
                }
                store::<R, M>(&acc, w, n0, x, i0, out);
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn store<const R: usize, const M: usize>(
                acc: &[[__m256; M]; R],
                w: &Matrix,
                n0: usize,
                x: &QRows,
                i0: usize,
                out: &mut [f32],
            ) {
                for (j, acc) in acc.iter().enumerate() {
                    for (i, acc) in acc.iter().enumerate() {
                        let mut l = [0f32; 8];
                        _mm256_storeu_ps(l.as_mut_ptr(), *acc);
                        let sum = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
                        out[j * M + i] = sum + minimum(w, n0 + j, x, i0 + i);
                    }
                }
            }
        }
    };
}

tiles!(
    vnni,
    "avx2,fma,avxvnni",
    #[target_feature(enable = "avx2,fma,avxvnni")]
    #[inline]
    unsafe fn dp(a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b)
    }
);

tiles!(
    avx2,
    "avx2,fma",
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dp(a: __m256i, b: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    }
);

/// The four-row tiles (any number of inputs up to eight) in 512-bit registers: a step reads block `b`
/// of the four rows (one cache line of Q4_1), unpacks it into two registers of two rows each,
/// and runs each against the input's block broadcast to both halves. Each row's eight lanes
/// get exactly the sums the 256-bit tiles give them.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{Matrix, QRows, GROUP, QK};
    use std::arch::x86_64::*;

    /// Bytes of Q4_1 blocks prefetched ahead of the one being read (twice that of Q8_0).
    const AHEAD: usize = 1024;

    /// The four rows' scales of block `at`, spread over the two halves of two registers
    /// (rows 0 and 1, rows 2 and 3) as the products' lanes are.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn scales(w: &Matrix, at: usize) -> (__m512, __m512) {
        let s = _mm512_castps128_ps512(_mm_loadu_ps(w.d.as_ptr().add(at)));
        let first = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let second = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
        (
            _mm512_permutexvar_ps(first, s),
            _mm512_permutexvar_ps(second, s),
        )
    }

    /// Four Q4_1 rows against `M` inputs (up to eight: a prompt's tokens share each unpacked
    /// block).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn q4_1_x4<const M: usize>(
        w: &Matrix,
        n0: usize,
        x: &QRows,
        i0: usize,
        out: &mut [f32],
    ) {
        let blocks = w.inp / QK;
        assert!(n0.is_multiple_of(GROUP) && (n0 + 4) * blocks * 16 <= w.qs.len());
        assert!((i0 + M) * w.inp <= x.q.len() && out.len() == 4 * M);
        let mask = _mm512_set1_epi8(0x0f);
        // 64-bit lanes: row 0 low, row 0 high, row 1 low, row 1 high (and rows 2, 3).
        let rows01 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
        let rows23 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
        let mut acc = [[_mm512_setzero_ps(); 2]; M];
        // Q4_1's minimum term of the four rows, per input: one fused multiply-add per block,
        // here for a few inputs, in a second pass for many (registers run out).
        let mut minimums = [_mm_setzero_ps(); M];
        let first = (n0 / GROUP) * blocks * GROUP;
        for b in 0..blocks {
            let at = first + b * GROUP;
            // The rows ahead, past the 4 KiB pages the hardware prefetcher stops at.
            _mm_prefetch::<_MM_HINT_T0>(w.qs.as_ptr().wrapping_add(at * 16 + AHEAD) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(w.d.as_ptr().wrapping_add(at + AHEAD / 16) as *const i8);
            let v = _mm512_loadu_si512(w.qs.as_ptr().add(at * 16) as *const _);
            let lo = _mm512_and_si512(v, mask);
            let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
            let w01 = _mm512_permutex2var_epi64(lo, rows01, hi);
            let w23 = _mm512_permutex2var_epi64(lo, rows23, hi);
            let (d01, d23) = scales(w, at);
            for (i, acc) in acc.iter_mut().enumerate() {
                let row = i0 + i;
                if M <= 4 {
                    let mins = _mm_loadu_ps(w.m.as_ptr().add(at));
                    let sx = _mm_set1_ps(*x.s.get_unchecked(row * blocks + b));
                    minimums[i] = _mm_fmadd_ps(mins, sx, minimums[i]);
                }
                let xq = x.q.as_ptr().add(row * w.inp + b * QK);
                let xv = _mm512_broadcast_i64x4(_mm256_loadu_si256(xq as *const __m256i));
                let p01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, xv);
                let p23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w23, xv);
                let dx = _mm512_set1_ps(*x.d.get_unchecked(row * blocks + b));
                acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_mul_ps(d01, dx), acc[0]);
                acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_mul_ps(d23, dx), acc[1]);
            }
        }
        if M > 4 {
            for b in 0..blocks {
                let mins = _mm_loadu_ps(w.m.as_ptr().add(first + b * GROUP));
                for (i, minimum) in minimums.iter_mut().enumerate() {
                    let sx = _mm_set1_ps(*x.s.get_unchecked((i0 + i) * blocks + b));
                    *minimum = _mm_fmadd_ps(mins, sx, *minimum);
                }
            }
        }
        store::<M>(&acc, Some(&minimums), out);
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn q8_0_x4<const M: usize>(
        w: &Matrix,
        n0: usize,
        x: &QRows,
        i0: usize,
        out: &mut [f32],
    ) {
        let blocks = w.inp / QK;
        assert!(n0.is_multiple_of(GROUP) && (n0 + 4) * blocks * 32 <= w.qs.len());
        assert!((i0 + M) * w.inp <= x.q.len() && out.len() == 4 * M);
        let mut acc = [[_mm512_setzero_ps(); 2]; M];
        let zero = _mm512_setzero_si512();
        for b in 0..blocks {
            let at = ((n0 / GROUP) * blocks + b) * GROUP;
            _mm_prefetch::<_MM_HINT_T0>(
                w.qs.as_ptr().wrapping_add(at * 32 + 2 * AHEAD) as *const i8
            );
            _mm_prefetch::<_MM_HINT_T0>(
                w.qs.as_ptr().wrapping_add(at * 32 + 2 * AHEAD + 64) as *const i8
            );
            _mm_prefetch::<_MM_HINT_T0>(w.d.as_ptr().wrapping_add(at + AHEAD / 16) as *const i8);
            let wv = [
                _mm512_loadu_si512(w.qs.as_ptr().add(at * 32) as *const _),
                _mm512_loadu_si512(w.qs.as_ptr().add((at + 2) * 32) as *const _),
            ];
            let magnitude = [_mm512_abs_epi8(wv[0]), _mm512_abs_epi8(wv[1])];
            let negative = [_mm512_movepi8_mask(wv[0]), _mm512_movepi8_mask(wv[1])];
            let (d01, d23) = scales(w, at);
            for (i, acc) in acc.iter_mut().enumerate() {
                let row = i0 + i;
                let xq = x.q.as_ptr().add(row * w.inp + b * QK);
                let xv = _mm512_broadcast_i64x4(_mm256_loadu_si256(xq as *const __m256i));
                let dx = _mm512_set1_ps(*x.d.get_unchecked(row * blocks + b));
                let s = [_mm512_mul_ps(d01, dx), _mm512_mul_ps(d23, dx)];
                for k in 0..2 {
                    // |w|·(x with w's sign) = w·x, as the 256-bit tiles compute it.
                    let signed = _mm512_mask_sub_epi8(xv, negative[k], zero, xv);
                    let p = _mm512_dpbusd_epi32(zero, magnitude[k], signed);
                    acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s[k], acc[k]);
                }
            }
        }
        store::<M>(&acc, None, out);
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn store<const M: usize>(
        acc: &[[__m512; 2]; M],
        minimums: Option<&[__m128; M]>,
        out: &mut [f32],
    ) {
        for (i, acc) in acc.iter().enumerate() {
            let mut lanes = [0f32; 32];
            _mm512_storeu_ps(lanes.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(lanes.as_mut_ptr().add(16), acc[1]);
            let mut mins = [0f32; 4];
            if let Some(m) = minimums {
                _mm_storeu_ps(mins.as_mut_ptr(), m[i]);
            }
            for (j, l) in lanes.chunks_exact(8).enumerate() {
                let sum = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
                // Output layout `(rows, inputs)`: row j, input i.
                out[j * M + i] = sum + mins[j];
            }
        }
    }
}
