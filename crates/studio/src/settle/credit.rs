//! A batch's credits: each receipt's recorded attribution, kept to the contributions the
//! contract will pay (accepted in their datanet, and proven in the agent adapter's lineage or
//! in the agent's knowledge datanet), and the batch's sorted contribution list the credits
//! point into.
//!
//! A contribution is proven in an adapter's lineage once (`proveLineage`, with its Merkle
//! proof in one of the adapter's datanet versions); later batches find it remembered.

use super::SettleError;
use crate::{
    attribute::{credits, payouts, served_hash, weights, Attribution},
    store::{ReceiptRow, Store},
};
use alloy_primitives::{Bytes, B256, U256};
use alloy_sol_types::SolCall;
use openledger_attribution::receipt::AttributionReceipt;
use openledger_protocol::{
    inference_settlement::{pack_credits, InferenceSettlement as IS},
    ClientError, DatanetRegistry, ModelRegistry, ProtocolClient,
};
use std::collections::{BTreeMap, BTreeSet};

/// `DatanetRegistry.Status.Accepted`.
const ACCEPTED: u8 = 2;

/// What the batch's receipts credit.
pub(super) struct BatchCredits {
    /// Ascending: the `contributions` argument of `settle`.
    pub contributions: Vec<u64>,
    /// Per receipt: its attribution hash and packed credits.
    pub receipts: Vec<(B256, Bytes)>,
}

/// What this round learnt of contributions and adapters.
struct Payable<'a> {
    client: &'a ProtocolClient,
    attribution: &'a dyn Attribution,
    /// Contribution → (accepted, its datanet).
    standing: BTreeMap<u64, (bool, u64)>,
    lineage: BTreeMap<(u64, u64), bool>,
    versions: BTreeMap<u64, Vec<u64>>,
}

impl Payable<'_> {
    /// Whether `contribution` is accepted, and its datanet.
    async fn standing(&mut self, contribution: u64) -> Result<(bool, u64), SettleError> {
        if let Some(&known) = self.standing.get(&contribution) {
            return Ok(known);
        }
        let a = self.client.addresses().ok_or(SettleError::Client)?;
        let call = DatanetRegistry::standingCall::new((U256::from(contribution),));
        let standing = self.client.call(a.datanet_registry, call).await?;
        let known = (standing.status == ACCEPTED, u64::from(standing.datanetId));
        self.standing.insert(contribution, known);
        Ok(known)
    }

    /// Whether `contribution` is (or can now be proven) in `adapter`'s lineage.
    async fn in_lineage(&mut self, adapter: u64, contribution: u64) -> Result<bool, SettleError> {
        if let Some(&known) = self.lineage.get(&(adapter, contribution)) {
            return Ok(known);
        }
        let a = *self.client.addresses().ok_or(SettleError::Client)?;
        let (id, c) = (U256::from(adapter), U256::from(contribution));
        let mut found = self
            .client
            .call(a.inference_settlement, IS::inLineageCall::new((id, c)))
            .await?;
        if !found {
            found = self.prove(adapter, contribution).await?;
        }
        self.lineage.insert((adapter, contribution), found);
        Ok(found)
    }

    /// Proves `contribution` in the first of `adapter`'s versions that holds it.
    async fn prove(&mut self, adapter: u64, contribution: u64) -> Result<bool, SettleError> {
        let a = *self.client.addresses().ok_or(SettleError::Client)?;
        if !self.versions.contains_key(&adapter) {
            let call = ModelRegistry::adapterCall::new((U256::from(adapter),));
            let versions = self
                .client
                .call(a.model_registry, call)
                .await?
                .datanetVersions;
            let versions = versions.iter().map(|v| v.saturating_to()).collect();
            self.versions.insert(adapter, versions);
        }
        for &version in &self.versions[&adapter] {
            let proof = match self.attribution.prove(version, contribution).await {
                Ok(Some(proof)) => proof,
                Ok(None) => continue,
                // Not known now (a version not yet synced, a store error): try again later
                // rather than leave the contribution unpaid.
                Err(e) => return Err(SettleError::Proof(e)),
            };
            let call = IS::proveLineageCall::new((
                U256::from(adapter),
                U256::from(version),
                U256::from(contribution),
                proof,
            ));
            match self
                .client
                .send(a.inference_settlement, call, U256::ZERO)
                .await
            {
                Ok(_) => return Ok(true),
                // Refused by the contract: this proof does not hold; try the next version.
                Err(e @ ClientError::Reverted { .. }) => {
                    tracing::warn!(adapter, contribution, error = %e, "proveLineage refused")
                }
                // Not sent (a nonce taken by another transaction, the node unreachable): the
                // round stops and is tried again, rather than leaving the contribution unpaid.
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }
}

/// The credits of `batch`, whose agents run the adapters and retrieve from the knowledge
/// datanets `agents` says (agent id → (adapter id, knowledge datanet id or 0)).
pub(super) async fn plan(
    store: &Store,
    client: &ProtocolClient,
    attribution: &dyn Attribution,
    batch: &[ReceiptRow],
    agents: &BTreeMap<u64, (u64, u64)>,
) -> Result<BatchCredits, SettleError> {
    let mut payable = Payable {
        client,
        attribution,
        standing: BTreeMap::new(),
        lineage: BTreeMap::new(),
        versions: BTreeMap::new(),
    };
    let mut kept: Vec<(B256, Vec<(u64, u16)>)> = Vec::with_capacity(batch.len());
    for r in batch {
        let Some(recorded) = store.attribution(r.id)? else {
            kept.push((served_hash(&r.prompt, &r.answer), Vec::new()));
            continue;
        };
        // The rule validators apply: the attribution receipt's payouts (with the retrieved
        // passages' scores), kept to the payable ones, the largest 64 of those split over 10,000 (not the recorded credits split
        // again, which would round twice and could keep a different 64).
        let trained = match store.attribution_receipt(recorded.trained.unwrap_or(recorded.hash))? {
            Some(bytes) => AttributionReceipt::decode(&bytes)
                .map(|receipt| payouts(&receipt))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let paid = weights(&trained, r.retrieval.as_ref());
        let (adapter, knowledge) = agents.get(&r.agent_id).copied().unwrap_or_default();
        let mut ok = BTreeSet::new();
        for (c, amount) in &paid {
            if amount.is_zero() {
                continue;
            }
            let (accepted, datanet) = payable.standing(*c).await?;
            let retrieved = knowledge != 0 && datanet == knowledge;
            if accepted && (retrieved || payable.in_lineage(adapter, *c).await?) {
                ok.insert(*c);
            }
        }
        kept.push((recorded.hash, credits(&paid, |c| ok.contains(&c))));
    }
    let contributions: Vec<u64> = kept
        .iter()
        .flat_map(|(_, cs)| cs.iter().map(|&(c, _)| c))
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let receipts = kept
        .into_iter()
        .map(|(hash, cs)| {
            let positions: Vec<(u16, u16)> = cs
                .iter()
                .map(|&(c, w)| {
                    let at = contributions.binary_search(&c).expect("listed");
                    (at as u16, w) // a batch lists far fewer than 65,536
                })
                .collect();
            (hash, pack_credits(&positions))
        })
        .collect();
    Ok(BatchCredits {
        contributions,
        receipts,
    })
}
