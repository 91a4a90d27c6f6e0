//! Attribution of paid answers, from the host's side. A worker attributes each receipt in
//! order, once, after its answer was served, and records the attribution receipt (what a
//! validator recomputes) and the credits it pays by contribution, in basis points. Settlement
//! takes only receipts whose attribution is recorded.
//!
//! The rule turning an attribution receipt into on-chain credits is [`credits`]: its payouts
//! (10,000 basis points split by largest remainder) restricted to the contributions that can
//! be paid (accepted in their datanet, in the adapter's lineage), split again over 10,000.
//! Settlement and validators apply the same rule.

use crate::store::{Attribution as Recorded, ReceiptRow, Store, StoreError};
use alloy_primitives::{keccak256, B256, U256};
use alloy_sol_types::SolValue;
use futures_util::future::BoxFuture;
use openledger_attribution::{payout::largest_remainder, receipt::AttributionReceipt};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// What a receipt's credits add up to: basis points.
pub const BASIS_POINTS: u128 = 10_000;
/// Contributions one receipt credits at most: bounds settlement gas, and keeps a batch's
/// contribution list (256 receipts) within the 16-bit positions credits use.
pub const MAX_CREDITS: usize = 64;
/// Tries at attributing one receipt before it is recorded as unattributed (so that one bad
/// receipt never holds up the settlement of the rest).
const TRIES: u32 = 5;

/// An attribution's outcome.
pub enum Attributed {
    /// The attribution receipt's canonical bytes.
    Receipt(Vec<u8>),
    /// Why this answer cannot be attributed at all (an adapter without published training
    /// artifacts, an answer too long to attribute): its attribution share goes to the treasury.
    Unattributable(String),
    /// The service is busy: try again later (not counted as a failure).
    Busy,
}

/// What attribution and lineage need from the node.
pub trait Attribution: Send + Sync {
    /// The attribution of an answer of the adapter whose weights hash to `weights`,
    /// splitting [`BASIS_POINTS`]; `Err` for a failure worth retrying.
    fn attribute(
        &self,
        weights: B256,
        prompt: Vec<u32>,
        answer: Vec<u32>,
    ) -> BoxFuture<'_, Result<Attributed, String>>;

    /// The Merkle proof that `contribution` is in datanet version `version`, if it is.
    fn prove(
        &self,
        version: u64,
        contribution: u64,
    ) -> BoxFuture<'_, Result<Option<Vec<B256>>, String>>;
}

/// Basis-point credits from an attribution receipt's payouts: those of the contributions
/// `payable` admits, the [`MAX_CREDITS`] largest of them (ties to the lower id), split again
/// over [`BASIS_POINTS`] by largest remainder; ascending by contribution, none of weight zero,
/// empty when none is payable.
pub fn credits(payouts: &[(u64, U256)], payable: impl Fn(u64) -> bool) -> Vec<(u64, u16)> {
    let mut ranked: Vec<(u64, u128)> = payouts
        .iter()
        .filter(|(c, a)| payable(*c) && !a.is_zero())
        .map(|(c, a)| (*c, a.saturating_to::<u128>()))
        .collect();
    ranked.sort_by_key(|&(c, a)| (std::cmp::Reverse(a), c));
    ranked.truncate(MAX_CREDITS);
    let weights: BTreeMap<u64, u128> = ranked.into_iter().collect();
    largest_remainder(&weights, BASIS_POINTS)
        .into_iter()
        .filter(|&(_, w)| w > 0)
        .map(|(c, w)| (c, w as u16)) // ≤ 10,000
        .collect()
}

/// An attribution receipt's payouts as (contribution, amount).
pub fn payouts(receipt: &AttributionReceipt) -> Vec<(u64, U256)> {
    receipt
        .payouts
        .iter()
        .map(|p| (p.contribution, p.amount))
        .collect()
}

/// The hash a receipt commits to when nothing could be attributed: its prompt and answer
/// tokens, so it still names what was served.
pub fn served_hash(prompt: &[u32], answer: &[u32]) -> B256 {
    keccak256((prompt.to_vec(), answer.to_vec()).abi_encode())
}

/// Attributes receipt `row`, or says why it cannot be; `None` when the service is busy.
async fn attribute(
    attribution: &dyn Attribution,
    row: &ReceiptRow,
) -> Result<Option<(Recorded, Option<Vec<u8>>)>, String> {
    let unattributed = |why: String| {
        let recorded = Recorded {
            hash: served_hash(&row.prompt, &row.answer),
            credits: Vec::new(),
            unattributed: Some(why),
        };
        Ok(Some((recorded, None)))
    };
    let Ok(weights) = row.adapter.parse::<B256>() else {
        return unattributed(format!(
            "the agent's adapter {:?} is not a weights hash",
            row.adapter
        ));
    };
    if row.answer.is_empty() {
        return unattributed("the answer is empty".into());
    }
    let found = attribution
        .attribute(weights, row.prompt.clone(), row.answer.clone())
        .await?;
    let bytes = match found {
        Attributed::Receipt(bytes) => bytes,
        Attributed::Unattributable(why) => return unattributed(why),
        Attributed::Busy => return Ok(None),
    };
    let receipt = AttributionReceipt::decode(&bytes).map_err(|e| e.to_string())?;
    let recorded = Recorded {
        hash: keccak256(&bytes),
        credits: credits(&payouts(&receipt), |_| true),
        unattributed: None,
    };
    Ok(Some((recorded, Some(bytes))))
}

/// Attributes the next receipt, if there is one: `Ok(false)` when all are attributed (or the
/// service is busy).
pub async fn step(
    store: &Store,
    attribution: &dyn Attribution,
    failures: &mut u32,
) -> Result<bool, StoreError> {
    let id = store.attribute_from()?;
    let Some(row) = store.receipt(id)? else {
        return Ok(false);
    };
    match attribute(attribution, &row).await {
        Ok(None) => return Ok(false), // busy: the worker pauses and tries again
        Ok(Some((recorded, bytes))) => {
            store.record_attribution(id, &recorded, bytes.as_deref())?;
            *failures = 0;
        }
        Err(e) => {
            *failures += 1;
            tracing::warn!(receipt = id, error = %e, try_ = *failures, "attribution failed");
            if *failures >= TRIES {
                let recorded = Recorded {
                    hash: served_hash(&row.prompt, &row.answer),
                    credits: Vec::new(),
                    unattributed: Some(format!("attribution failed {TRIES} times: {e}")),
                };
                store.record_attribution(id, &recorded, None)?;
                *failures = 0;
            }
        }
    }
    Ok(true)
}

/// Runs the attribution worker: every receipt attributed in order, as soon as it is
/// recorded; a failed one is tried again after `pause`.
pub fn spawn(store: Arc<Store>, attribution: Arc<dyn Attribution>, pause: Duration) {
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            match step(&store, attribution.as_ref(), &mut failures).await {
                Ok(true) if failures == 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the attribution worker failed"),
            }
            tokio::time::sleep(pause).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(pairs: &[(u64, u64)]) -> Vec<(u64, U256)> {
        pairs.iter().map(|&(c, a)| (c, U256::from(a))).collect()
    }

    #[test]
    fn credits_keep_the_payouts_and_renormalise_over_the_payable_ones() {
        let p = amounts(&[(3, 5_000), (7, 3_000), (9, 2_000)]);
        assert_eq!(credits(&p, |_| true), [(3, 5_000), (7, 3_000), (9, 2_000)]);
        // Without contribution 7: 5,000 : 2,000 over 10,000 is 7,142.86 : 2,857.14.
        assert_eq!(credits(&p, |c| c != 7), [(3, 7_143), (9, 2_857)]);
        assert!(credits(&p, |_| false).is_empty());
        let zero = amounts(&[(1, 0), (2, 10_000)]);
        assert_eq!(credits(&zero, |_| true), [(2, 10_000)]);
        // Only the largest MAX_CREDITS are kept: 100 contributions of 1 to 100 units.
        let many: Vec<(u64, U256)> = (1..=100u64).map(|c| (c, U256::from(c))).collect();
        let kept = credits(&many, |_| true);
        assert_eq!(kept.len(), MAX_CREDITS);
        assert_eq!(kept[0].0, 100 - MAX_CREDITS as u64 + 1);
        assert_eq!(kept.iter().map(|&(_, w)| u32::from(w)).sum::<u32>(), 10_000);
        for kept in [vec![3u64], vec![3, 9], vec![7, 9]] {
            let sum: u32 = credits(&p, |c| kept.contains(&c))
                .iter()
                .map(|&(_, w)| u32::from(w))
                .sum();
            assert_eq!(sum, 10_000);
        }
    }
}
