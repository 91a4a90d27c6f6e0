//! Fixed-width unsigned integers packed into a little-endian bit stream.

/// Bits needed to store every value below `n` (at least 1).
pub(super) fn width_for(n: u64) -> u32 {
    (64 - n.saturating_sub(1).leading_zeros()).max(1)
}

/// Packs `values`, each below `2^width`, `width ≤ 56`. The stream is padded with 8 zero bytes
/// so that [`get`] may always read a whole `u64`.
pub(super) fn pack(values: impl Iterator<Item = u64>, count: usize, width: u32) -> Vec<u8> {
    debug_assert!((1..=56).contains(&width));
    let bytes = (count * width as usize).div_ceil(8) + 8;
    let mut out = vec![0u8; bytes];
    let (mut acc, mut bits, mut at) = (0u128, 0u32, 0usize);
    for v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out[at] = acc as u8;
            acc >>= 8;
            bits -= 8;
            at += 1;
        }
    }
    if bits > 0 {
        out[at] = acc as u8;
    }
    out
}

/// The `i`-th value of a stream made by [`pack`].
#[inline]
pub(super) fn get(stream: &[u8], i: usize, width: u32) -> u64 {
    let bit = i * width as usize;
    let at = bit / 8;
    let word = u64::from_le_bytes(stream[at..at + 8].try_into().expect("padded stream"));
    (word >> (bit % 8)) & ((1u64 << width) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_at_every_width() {
        for width in [1, 3, 8, 17, 24, 33, 40, 56] {
            let max = (1u64 << width) - 1;
            let values: Vec<u64> = (0..200u64)
                .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7) & max)
                .collect();
            let stream = pack(values.iter().copied(), values.len(), width);
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(get(&stream, i, width), v, "width {width}, value {i}");
            }
        }
        assert_eq!(width_for(0), 1);
        assert_eq!(width_for(2), 1);
        assert_eq!(width_for(3), 2);
        assert_eq!(width_for(1 << 24), 24);
        assert_eq!(width_for((1 << 24) + 1), 25);
    }
}
