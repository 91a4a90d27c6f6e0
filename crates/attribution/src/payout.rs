//! From attributed spans to whole-unit payouts.
//!
//! Floating point stays out of anything that is paid: a span's credit is its rarity
//! (−ln of its unigram probability, which grows with its length and with how rare its tokens
//! are) quantized to micro-nats, and amounts are split with integer arithmetic alone.

use crate::span::Span;
use alloy_primitives::U256;
use std::collections::BTreeMap;

/// Credit units per nat of a span's rarity.
pub const CREDIT_PER_NAT: f64 = 1e6;

/// Each contribution's credit from `spans`: a span's credit (its rarity, quantized, at least
/// one unit) is shared equally among the distinct contributions among its retrieved
/// occurrences, the units that do not divide evenly going to the lowest ids.
pub fn span_credit(spans: &[Span]) -> BTreeMap<u64, u128> {
    let mut credit = BTreeMap::new();
    for span in spans {
        // Uploaded files trained too but belong to no contribution: nobody is paid for them.
        let holders: std::collections::BTreeSet<u64> = span
            .occurrences
            .iter()
            .map(|o| o.contribution)
            .filter(|&c| c != crate::corpus::UNCREDITED)
            .collect();
        if holders.is_empty() {
            continue;
        }
        // Rounded once, from a value every validator computes the same way (a sum of logs
        // of integer ratios in answer order), then integers only.
        let units = ((-span.log_prob) * CREDIT_PER_NAT).round().max(1.0) as u128;
        let weights = holders.iter().map(|&c| (c, 1u128)).collect();
        for (c, share) in largest_remainder(&weights, units) {
            *credit.entry(c).or_insert(0) += share;
        }
    }
    credit
}

/// Splits `amount` in proportion to `weights`: each id gets ⌊amount·w/W⌋, and the units left
/// over go one each to the largest remainders, ties to the lower id. The payouts sum to
/// `amount` exactly; ids of weight zero get nothing. With no weight at all nothing is split
/// and the map is empty.
pub fn largest_remainder(weights: &BTreeMap<u64, u128>, amount: u128) -> BTreeMap<u64, u128> {
    let total: U256 = weights.values().map(|&w| U256::from(w)).sum();
    if total.is_zero() {
        return BTreeMap::new();
    }
    let amount_wide = U256::from(amount);
    let mut paid = 0u128;
    let mut out = BTreeMap::new();
    let mut remainders = Vec::with_capacity(weights.len());
    for (&id, &w) in weights {
        if w == 0 {
            continue;
        }
        let product = amount_wide * U256::from(w);
        let (share, rest) = product.div_rem(total);
        let share: u128 = share.to(); // ≤ amount
        paid += share;
        out.insert(id, share);
        remainders.push((rest, id));
    }
    // Largest remainder first; among equal ones, the lower id (BTreeMap order, stable sort).
    remainders.sort_by_key(|&(rest, _)| std::cmp::Reverse(rest));
    let left = amount - paid; // fewer than the number of ids
    for &(_, id) in remainders.iter().take(left as usize) {
        *out.get_mut(&id).expect("listed") += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Occurrence;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn map(pairs: &[(u64, u128)]) -> BTreeMap<u64, u128> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn hand_worked_splits() {
        // 100 in thirds: 33 each, the unit left over to the lowest id.
        assert_eq!(
            largest_remainder(&map(&[(3, 1), (1, 1), (2, 1)]), 100),
            map(&[(1, 34), (2, 33), (3, 33)])
        );
        // 10 as 2:1: 6.67 and 3.33; the larger remainder (id 5) takes the last unit.
        assert_eq!(
            largest_remainder(&map(&[(9, 1), (5, 2)]), 10),
            map(&[(5, 7), (9, 3)])
        );
        // 7 as 1:1:2 → 1.75, 1.75, 3.5: floors 1, 1, 3; two units left go to the .75s.
        assert_eq!(
            largest_remainder(&map(&[(1, 1), (2, 1), (3, 2)]), 7),
            map(&[(1, 2), (2, 2), (3, 3)])
        );
        assert_eq!(
            largest_remainder(&map(&[(1, 0), (2, 4)]), 9),
            map(&[(2, 9)])
        );
        assert!(largest_remainder(&map(&[(1, 0)]), 9).is_empty());
        assert!(largest_remainder(&BTreeMap::new(), 9).is_empty());
    }

    #[test]
    fn payouts_always_sum_to_the_amount() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..2_000 {
            let weights: BTreeMap<u64, u128> = (0..rng.random_range(1..40))
                .map(|_| {
                    (
                        rng.random_range(0..100),
                        rng.random::<u64>() as u128 >> rng.random_range(0..64),
                    )
                })
                .collect();
            let amount = match rng.random_range(0..3) {
                0 => rng.random_range(0..50),
                1 => rng.random::<u64>() as u128,
                _ => u128::MAX / 3,
            };
            let out = largest_remainder(&weights, amount);
            if weights.values().all(|&w| w == 0) {
                assert!(out.is_empty());
                continue;
            }
            assert_eq!(out.values().sum::<u128>(), amount, "{weights:?} {amount}");
            // Nobody is more than one unit away from the exact share.
            let total: f64 = weights.values().map(|&w| w as f64).sum();
            for (id, &paid) in &out {
                let exact = amount as f64 * weights[id] as f64 / total;
                assert!(
                    (paid as f64 - exact).abs() <= 1.0 + exact * 1e-9,
                    "{id}: {paid} vs {exact}"
                );
            }
        }
    }

    fn span(log_prob: f64, holders: &[u64]) -> Span {
        Span {
            start: 0,
            end: 2,
            count: holders.len() as u64,
            log_prob,
            occurrences: holders
                .iter()
                .enumerate()
                .map(|(i, &c)| Occurrence {
                    rank: i as u64,
                    position: i as u64,
                    document: i as u64,
                    contribution: c,
                })
                .collect(),
        }
    }

    #[test]
    fn a_rare_span_outweighs_a_common_one_and_shared_spans_are_split() {
        let credit = span_credit(&[span(-30.0, &[7]), span(-4.0, &[1, 2, 2, 3])]);
        // 30 nats to contribution 7 alone; 4 nats split among 1, 2 and 3 (2 holds it twice
        // but counts once), the odd unit to the lowest id.
        assert_eq!(credit[&7], 30_000_000);
        assert_eq!(credit[&1], 1_333_334);
        assert_eq!(credit[&2], 1_333_333);
        assert_eq!(credit[&3], 1_333_333);
        assert!(span_credit(&[span(-3.0, &[])]).is_empty());
        // Data from an uploaded file trained too, but credits nobody.
        let credit = span_credit(&[span(-3.0, &[crate::corpus::UNCREDITED, 5])]);
        assert_eq!(credit, map(&[(5, 3_000_000)]));
    }
}
