//! The vector kernels. Lane `r` of a register is weight row `r` of a group (see
//! [`super::layout`]): a block's 32 products for all the group's rows take eight 4-byte dot
//! product steps, each against four bytes of one input broadcast to every lane, and the
//! block's scales are applied once per row, not once per eight values. AVX-512 runs the
//! group's 16 rows in one register against up to eight inputs; the 256-bit kernels (AVX-VNNI,
//! or AVX2's two-step products, which give the same integers) run its two halves of eight.
//! Every kernel sums in the order of [`super::plain`].

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::{Matrix, QRows, Shared, GROUP, QK};
    use std::arch::x86_64::*;

    /// Bytes ahead of the record being read to prefetch: past the 4 KiB pages at which the
    /// hardware prefetcher stops.
    const AHEAD: usize = 2048;

    /// Group `g`'s rows against inputs `i0..i0 + M`, into `y` `(m, out)`. `Q4` says the
    /// matrix is Q4_1 (else Q8_0); `fetch` prefetches its records (the first input tile).
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; no one else writes these columns of `y`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn tile<const Q4: bool, const M: usize>(
        w: &Matrix,
        g: usize,
        x: &QRows,
        i0: usize,
        y: &Shared<f32>,
        fetch: bool,
    ) {
        let blocks = w.inp / QK;
        let (qs, rec) = w.format.layout();
        assert!((g + 1) * blocks * rec <= w.data.len() && (i0 + M) * w.inp <= x.q.len());
        assert!(Q4 == (w.format == super::super::Format::Q4_1));
        let first = w.data.as_ptr().add(g * blocks * rec);
        let low = _mm512_set1_epi8(0x0f);
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); M];
        for b in 0..blocks {
            let r = first.add(b * rec);
            if fetch {
                for line in (0..rec).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(AHEAD + line) as *const i8);
                }
            }
            // Values 4c..4c + 4 of every row, c = 0..8 (Q4_1: chunk c's low nibbles, then
            // their high nibbles for values 16 on).
            let mut wv = [zero; 8];
            if Q4 {
                for c in 0..4 {
                    let v = _mm512_loadu_si512(r.add(64 * c) as *const _);
                    wv[c] = _mm512_and_si512(v, low);
                    wv[c + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                }
            } else {
                for (c, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(r.add(64 * c) as *const _);
                }
            }
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(r.add(qs) as *const __m256i));
            let mw = if Q4 {
                _mm512_cvtph_ps(_mm256_loadu_si256(r.add(qs + 32) as *const __m256i))
            } else {
                _mm512_setzero_ps()
            };
            for (i, acc) in acc.iter_mut().enumerate() {
                let at = (i0 + i) * blocks + b;
                let xq = x.q.as_ptr().add(at * QK) as *const i32;
                // Two chains of four steps: integer sums, so any order gives the same.
                let mut p = [zero; 2];
                for (c, wv) in wv.iter().enumerate() {
                    let xc = _mm512_set1_epi32(xq.add(c).read_unaligned());
                    p[c % 2] = _mm512_dpbusd_epi32(p[c % 2], *wv, xc);
                }
                let mut dot = _mm512_add_epi32(p[0], p[1]);
                if !Q4 {
                    dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(*x.bias.get_unchecked(at)));
                }
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*x.d.get_unchecked(at)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, *acc);
                if Q4 {
                    let s = _mm512_set1_ps(*x.s.get_unchecked(at));
                    *acc = _mm512_fmadd_ps(mw, s, *acc);
                }
            }
        }
        let n0 = g * GROUP;
        let valid = (w.out - n0).min(GROUP);
        let mask: __mmask16 = if valid == GROUP {
            u16::MAX
        } else {
            (1 << valid) - 1
        };
        for (i, acc) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(y.at((i0 + i) * w.out + n0), mask, *acc);
        }
    }
}

/// The 256-bit kernel for one instruction set: only the dot product step differs.
macro_rules! half_tiles {
    ($module:ident, $features:literal, $dp:item) => {
        #[cfg(target_arch = "x86_64")]
        pub(super) mod $module {
            use super::super::{Matrix, QRows, Shared, GROUP, QK};
            use std::arch::x86_64::*;

            /// Eight i32 lanes, each `acc` plus the sum of four products `a·b` (`a` the
            /// stored unsigned values, `b` an input's signed bytes).
            $dp

            /// Group `g`'s rows, eight at a time, against inputs `i0..i0 + M`.
            ///
            /// # Safety
            /// The CPU has the module's features; no one else writes these columns of `y`.
            #[target_feature(enable = $features)]
            pub unsafe fn tile<const Q4: bool, const M: usize>(
                w: &Matrix,
                g: usize,
                x: &QRows,
                i0: usize,
                y: &Shared<f32>,
                _fetch: bool,
            ) {
                let blocks = w.inp / QK;
                let (qs, rec) = w.format.layout();
                assert!((g + 1) * blocks * rec <= w.data.len() && (i0 + M) * w.inp <= x.q.len());
                assert!(Q4 == (w.format == super::super::Format::Q4_1));
                let n0 = g * GROUP;
                for half in 0..2 {
                    let valid = (w.out - n0).saturating_sub(8 * half).min(8);
                    if valid == 0 {
                        break;
                    }
                    let first = w.data.as_ptr().add(g * blocks * rec);
                    let low = _mm256_set1_epi8(0x0f);
                    let zero = _mm256_setzero_si256();
                    let mut acc = [_mm256_setzero_ps(); M];
                    for b in 0..blocks {
                        let r = first.add(b * rec);
                        let mut wv = [zero; 8];
                        for c in 0..if Q4 { 4 } else { 8 } {
                            let v = _mm256_loadu_si256(r.add(64 * c + 32 * half) as *const __m256i);
                            if Q4 {
                                wv[c] = _mm256_and_si256(v, low);
                                wv[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                            } else {
                                wv[c] = v;
                            }
                        }
                        let halves = |at: usize| _mm_loadu_si128(r.add(at + 16 * half) as *const __m128i);
                        let dw = _mm256_cvtph_ps(halves(qs));
                        let mw = if Q4 { _mm256_cvtph_ps(halves(qs + 32)) } else { _mm256_setzero_ps() };
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let at = (i0 + i) * blocks + b;
                            let xq = x.q.as_ptr().add(at * QK) as *const i32;
                            let mut p = [zero; 2];
                            for (c, wv) in wv.iter().enumerate() {
                                let xc = _mm256_set1_epi32(xq.add(c).read_unaligned());
                                p[c % 2] = dp::<Q4>(p[c % 2], *wv, xc);
                            }
                            let mut dot = _mm256_add_epi32(p[0], p[1]);
                            if !Q4 {
                                dot = _mm256_sub_epi32(dot, _mm256_set1_epi32(*x.bias.get_unchecked(at)));
                            }
                            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*x.d.get_unchecked(at)));
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, *acc);
                            if Q4 {
                                *acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(*x.s.get_unchecked(at)), *acc);
                            }
                        }
                    }
                    for (i, acc) in acc.iter().enumerate() {
                        let mut lanes = [0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), *acc);
                        let to = y.at((i0 + i) * w.out + n0 + 8 * half);
                        std::ptr::copy_nonoverlapping(lanes.as_ptr(), to, valid);
                    }
                }
            }
        }
    };
}

half_tiles!(
    vnni,
    "avx2,fma,f16c,avxvnni",
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    unsafe fn dp<const Q4: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, a, b)
    }
);

half_tiles!(
    avx2,
    "avx2,fma,f16c",
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dp<const Q4: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        if Q4 {
            // Nibbles times bytes: pairs' sums stay far inside i16.
            return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        }
        // Q8_0's `w + 128` reaches 255, and 255·127·2 would saturate `vpmaddubsw`'s i16
        // pairs: the low seven bits and the top bit go in separate products.
        let lo = _mm256_and_si256(a, _mm256_set1_epi8(0x7f));
        let hi = _mm256_and_si256(a, _mm256_set1_epi8(-128));
        let lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, b), ones);
        let hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, b), ones);
        _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi))
    }
);
