//! Attribution of paid answers, from the host's side. A worker attributes each receipt in
//! order, once, after its answer was served, and records the attribution receipt (what a
//! validator recomputes) and the credits it pays by contribution, in basis points. Settlement
//! takes only receipts whose attribution is recorded.
//!
//! The rule turning an attribution receipt into on-chain credits is [`credits`]: its payouts
//! (10,000 basis points split by largest remainder) restricted to the contributions that can
//! be paid (accepted in their datanet, in the adapter's lineage), split again over 10,000.
//! Settlement and validators apply the same rule. For an answer that retrieved passages from
//! the agent's knowledge datanet, the retrieved contributions' scores are weighed in beside
//! the payouts ([`weights`]), and the hash settled commits to both.

use crate::{
    knowledge::{combined_hash, Retrieval},
    store::{Attribution as Recorded, ReceiptRow, Store, StoreError},
};
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

/// A receipt's trained-data attribution.
struct Trained {
    /// The attribution receipt's hash, or the served tokens' when nothing was attributed.
    hash: B256,
    payouts: Vec<(u64, U256)>,
    unattributed: Option<String>,
    /// The attribution receipt's bytes.
    bytes: Option<Vec<u8>>,
}

impl Trained {
    fn nothing(row: &ReceiptRow, why: String) -> Self {
        Self {
            hash: served_hash(&row.prompt, &row.answer),
            payouts: Vec::new(),
            unattributed: Some(why),
            bytes: None,
        }
    }

    /// What the receipt settles with: the trained attribution, and what it retrieved.
    fn record(self, row: &ReceiptRow) -> (Recorded, Option<Vec<u8>>) {
        let (hash, trained) = match &row.retrieval {
            Some(r) => (combined_hash(self.hash, r), Some(self.hash)),
            None => (self.hash, None),
        };
        let recorded = Recorded {
            hash,
            credits: credits(&weights(&self.payouts, row.retrieval.as_ref()), |_| true),
            unattributed: self.unattributed,
            trained,
        };
        (recorded, self.bytes)
    }
}

/// The weights a receipt's credits are drawn from: its trained attribution's payouts and, for
/// an answer that retrieved passages, their scores, each half of the whole (all of it when the
/// other is empty). With T the payouts' sum and S the scores', contribution c weighs
/// `payout(c)·S + score(c)·T`: exact in integers, the same everywhere.
pub fn weights(trained: &[(u64, U256)], retrieval: Option<&Retrieval>) -> Vec<(u64, U256)> {
    let retrieved = retrieval.map(Retrieval::weights).unwrap_or_default();
    let t: U256 = trained.iter().map(|(_, a)| *a).sum();
    let s: U256 = retrieved.iter().map(|(_, a)| *a).sum();
    if s.is_zero() {
        return trained.to_vec();
    }
    if t.is_zero() {
        return retrieved;
    }
    let mut all: BTreeMap<u64, U256> = BTreeMap::new();
    for (c, a) in trained {
        *all.entry(*c).or_default() += a.saturating_mul(s);
    }
    for (c, a) in retrieved {
        *all.entry(c).or_default() += a.saturating_mul(t);
    }
    all.into_iter().collect()
}

/// Attributes receipt `row`'s answer to the adapter's training data, or says why it cannot
/// be; `None` when the service is busy.
async fn trained(
    attribution: &dyn Attribution,
    row: &ReceiptRow,
) -> Result<Option<Trained>, String> {
    let Ok(weights) = row.adapter.parse::<B256>() else {
        let why = format!(
            "the agent's adapter {:?} is not a weights hash",
            row.adapter
        );
        return Ok(Some(Trained::nothing(row, why)));
    };
    if row.answer.is_empty() {
        return Ok(Some(Trained::nothing(row, "the answer is empty".into())));
    }
    let found = attribution
        .attribute(weights, row.prompt.clone(), row.answer.clone())
        .await?;
    let bytes = match found {
        Attributed::Receipt(bytes) => bytes,
        Attributed::Unattributable(why) => return Ok(Some(Trained::nothing(row, why))),
        Attributed::Busy => return Ok(None),
    };
    let receipt = AttributionReceipt::decode(&bytes).map_err(|e| e.to_string())?;
    Ok(Some(Trained {
        hash: keccak256(&bytes),
        payouts: payouts(&receipt),
        unattributed: None,
        bytes: Some(bytes),
    }))
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
    match trained(attribution, &row).await {
        Ok(None) => return Ok(false), // busy: the worker pauses and tries again
        Ok(Some(found)) => {
            let (recorded, bytes) = found.record(&row);
            store.record_attribution(id, &recorded, bytes.as_deref())?;
            *failures = 0;
        }
        Err(e) => {
            *failures += 1;
            tracing::warn!(receipt = id, error = %e, try_ = *failures, "attribution failed");
            if *failures >= TRIES {
                let why = format!("attribution failed {TRIES} times: {e}");
                let (recorded, _) = Trained::nothing(&row, why).record(&row);
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

    #[test]
    fn retrieved_contributions_weigh_half_beside_the_trained_attribution() {
        use crate::knowledge::{Hit, Retrieval};
        let hit = |contribution, score| Hit {
            contribution,
            record: 0,
            score,
        };
        let retrieval = Retrieval {
            datanet: 1,
            version: 1,
            query: "q".into(),
            hits: vec![hit(9, 3_000_000), hit(7, 1_000_000)],
        };
        let trained = amounts(&[(3, 6_000), (7, 4_000)]);
        // Half each: 3,000 and 2,000 from training; 3,750 and 1,250 from the hits' scores.
        let both = weights(&trained, Some(&retrieval));
        assert_eq!(
            credits(&both, |_| true),
            [(3, 3_000), (7, 3_250), (9, 3_750)]
        );
        // One side empty: the other takes all of it.
        assert_eq!(weights(&trained, None), trained);
        let nothing_retrieved = Retrieval {
            hits: Vec::new(),
            ..retrieval.clone()
        };
        assert_eq!(weights(&trained, Some(&nothing_retrieved)), trained);
        assert_eq!(
            credits(&weights(&[], Some(&retrieval)), |_| true),
            [(7, 2_500), (9, 7_500)]
        );
        // The payable rule still applies after weighing: without 9, 3 and 7 share it all.
        assert_eq!(credits(&both, |c| c != 9), [(3, 4_800), (7, 5_200)]);
    }

    /// An attribution service for adapters without published artifacts.
    struct NoArtifacts;

    impl Attribution for NoArtifacts {
        fn attribute(
            &self,
            _: B256,
            _: Vec<u32>,
            _: Vec<u32>,
        ) -> BoxFuture<'_, Result<Attributed, String>> {
            Box::pin(async { Ok(Attributed::Unattributable("no artifacts".into())) })
        }

        fn prove(&self, _: u64, _: u64) -> BoxFuture<'_, Result<Option<Vec<B256>>, String>> {
            Box::pin(async { Ok(None) })
        }
    }

    #[tokio::test]
    async fn an_answer_that_retrieved_settles_with_a_hash_of_both_and_credits_its_hits() {
        use crate::{
            knowledge::{Hit, Retrieval},
            store::NewReceipt,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("studio.redb")).unwrap();
        let retrieval = Retrieval {
            datanet: 4,
            version: 2,
            query: "who keeps the light".into(),
            hits: vec![Hit {
                contribution: 12,
                record: 0,
                score: 2_000_000,
            }],
        };
        let row = store
            .record(NewReceipt {
                consumer: alloy_primitives::Address::repeat_byte(1),
                key_id: 1,
                agent_id: 1,
                adapter: format!("{}", B256::repeat_byte(5)),
                settled_seq: 0,
                input_tokens: 3,
                output_tokens: 2,
                fee: 10,
                prompt: vec![1, 2, 3],
                answer: vec![4, 5],
                created_at: 0,
                complete: true,
                retrieval: Some(retrieval.clone()),
            })
            .unwrap();
        assert!(step(&store, &NoArtifacts, &mut 0).await.unwrap());
        let recorded = store.attribution(row.id).unwrap().unwrap();
        let served = served_hash(&row.prompt, &row.answer);
        assert_eq!(recorded.trained, Some(served));
        assert_eq!(recorded.hash, combined_hash(served, &retrieval));
        assert_eq!(recorded.credits, [(12, 10_000)]);
        assert_eq!(recorded.unattributed.as_deref(), Some("no artifacts"));
        assert_eq!(
            store.retrieved_attribution(recorded.hash).unwrap(),
            Some(row.id)
        );
        assert!(!step(&store, &NoArtifacts, &mut 0).await.unwrap());
    }
}
