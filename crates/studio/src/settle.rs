//! Settlement from the host's side. Receipts go on chain in batches, one `settle` transaction
//! each, taking from every consumer only what its authorisation of this host and its credit
//! still cover (the rest waits); a batch is released once its challenge window has passed with
//! no challenge open, paying everyone it owes.
//!
//! What was settled is written to the studio store in the same step that learns it, and a
//! receipt the chain already holds (its sequence number at or under the consumer's last
//! settled one, after a crash between sending and recording) is recognised, never sent twice.

mod credit;

use crate::{
    attribute::Attribution,
    store::{ReceiptRow, Store, StoreError},
};
use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolEvent};
use openledger_protocol::{
    inference_settlement::{
        pack_receipts,
        InferenceSettlement::{self as IS, Receipt},
    },
    ClientError, ModelRegistry, ProtocolClient, ProtocolParams,
};
use std::collections::BTreeMap;

/// Unsettled receipts one round looks at, at most.
const MAX_SCAN: usize = 100_000;

/// Why a settlement round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Chain(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the settlement client has no protocol addresses or no signer")]
    Client,
    #[error("a lineage proof: {0}")]
    Proof(String),
}

/// How batches are made.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Receipts in one batch at most.
    pub batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { batch: 256 }
    }
}

/// What a round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The batch settled, with how many receipts.
    pub settled: Option<(u64, usize)>,
    /// Batches released.
    pub released: Vec<u64>,
    /// Receipts found already on chain.
    pub recovered: usize,
}

/// One round: settle what can be, then release what has matured.
pub async fn round(
    store: &Store,
    client: &ProtocolClient,
    attribution: &dyn Attribution,
    settings: &Settings,
) -> Result<Round, SettleError> {
    let mut out = Round::default();
    // A batch that cannot be settled now must not keep matured ones from being released.
    let settled = settle(store, client, attribution, settings, &mut out).await;
    release(store, client, &mut out).await?;
    settled.map(|()| out)
}

async fn settle(
    store: &Store,
    client: &ProtocolClient,
    attribution: &dyn Attribution,
    settings: &Settings,
    out: &mut Round,
) -> Result<(), SettleError> {
    let (Some(a), Some(host)) = (client.addresses().copied(), client.sender()) else {
        return Err(SettleError::Client);
    };
    // Every unsettled receipt already attributed (up to a bound), so that consumers who cannot
    // pay now do not keep newer receipts of others from being settled.
    let attributed = store.attribute_from()?;
    let pending: Vec<ReceiptRow> = store
        .unsettled(MAX_SCAN)?
        .into_iter()
        .filter(|r| r.id < attributed)
        .collect();
    let mut by_consumer: BTreeMap<Address, Vec<ReceiptRow>> = BTreeMap::new();
    for r in pending {
        by_consumer.entry(r.consumer).or_default().push(r);
    }
    // Each agent's current route: receipts of an agent that may not be settled now (paused,
    // retired) wait, and a fee above a since-lowered price is settled at the price.
    let mut routes: BTreeMap<u64, Option<(u128, u128)>> = BTreeMap::new();
    let mut agents: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in by_consumer.values().flatten() {
        if let std::collections::btree_map::Entry::Vacant(slot) = routes.entry(r.agent_id) {
            let call = ModelRegistry::agentRouteCall::new((U256::from(r.agent_id),));
            let route = client.call(a.model_registry, call).await?;
            let knowledge = route.knowledgeDatanetId.saturating_to();
            agents.insert(r.agent_id, (route.adapterId.saturating_to(), knowledge));
            slot.insert(
                (route.servable && route.host == host).then_some((route.priceIn, route.priceOut)),
            );
        }
    }
    let mut batch: Vec<ReceiptRow> = Vec::new();
    for (consumer, mut receipts) in by_consumer {
        if batch.len() >= settings.batch {
            break;
        }
        receipts.sort_by_key(|r| r.seq);
        let auth = client
            .call(
                a.inference_settlement,
                IS::authorizationCall::new((consumer, host)),
            )
            .await?;
        let done: Vec<u64> = receipts
            .iter()
            .filter(|r| r.seq <= auth.lastSeq)
            .map(|r| r.id)
            .collect();
        if !done.is_empty() {
            out.recovered += done.len();
            store.mark_settled(&done, 0)?;
        }
        let credit = client
            .call(a.inference_settlement, IS::creditOfCall::new((consumer,)))
            .await?;
        let mut budget = U256::from(auth.allowance).min(credit);
        for mut r in receipts.into_iter().filter(|r| r.seq > auth.lastSeq) {
            let Some(Some((price_in, price_out))) = routes.get(&r.agent_id).copied() else {
                break; // its agent cannot be settled now: this consumer's receipts wait
            };
            let most = crate::meter::fee(
                r.input_tokens.into(),
                r.output_tokens.into(),
                price_in,
                price_out,
            );
            r.fee = r.fee.min(most);
            let fee = U256::from(r.fee);
            if fee > budget || batch.len() >= settings.batch {
                break; // the rest of this consumer's receipts wait, in order
            }
            budget -= fee;
            batch.push(r);
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let credits = credit::plan(store, client, attribution, &batch, &agents).await?;
    let receipts: Vec<Receipt> = batch
        .iter()
        .zip(credits.receipts)
        .map(|(r, (hash, credits))| Receipt {
            consumer: r.consumer,
            agentId: r.agent_id,
            seq: r.seq,
            inputTokens: r.input_tokens,
            outputTokens: r.output_tokens,
            fee: r.fee,
            attributionHash: hash,
            credits,
        })
        .collect();
    let call = IS::settleCall::new((pack_receipts(&receipts), credits.contributions));
    let receipt = client
        .send(a.inference_settlement, call, U256::ZERO)
        .await?;
    let payouts = receipt
        .logs
        .iter()
        .find_map(|l| IS::BatchPayouts::decode_raw_log(l.topics.iter().copied(), &l.data).ok())
        .ok_or_else(|| ClientError::Decode {
            what: "BatchPayouts".into(),
            reason: "the settlement logged no payouts".into(),
        })?;
    let id: u64 = payouts.batchId.to();
    let release = IS::releaseCall::new((payouts.batchId, payouts.contributions, payouts.owners));
    let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
    store.record_batch(id, &ids, &release.abi_encode())?;
    out.settled = Some((id, ids.len()));
    Ok(())
}

async fn release(
    store: &Store,
    client: &ProtocolClient,
    out: &mut Round,
) -> Result<(), SettleError> {
    let a = client.addresses().copied().ok_or(SettleError::Client)?;
    recover_batches(store, client).await?;
    let window = client
        .call(a.protocol_params, ProtocolParams::challengeWindowCall {})
        .await?;
    let head = client.latest_timestamp().await?;
    for (id, call) in store.unreleased()? {
        let batch = client
            .call(
                a.inference_settlement,
                IS::batchCall::new((U256::from(id),)),
            )
            .await?;
        // Escrowed (1) only; a challenge may have turned it (then it is not ours to release).
        if batch.state != 1 {
            store.mark_released(id)?;
            continue;
        }
        if head <= batch.settledAt + window || batch.openChallenges != 0 {
            continue;
        }
        client
            .send_raw("release", a.inference_settlement, call.into(), U256::ZERO)
            .await?;
        store.mark_released(id)?;
        out.released.push(id);
    }
    Ok(())
}

/// Records the batches this host settled that the store does not know (the node stopped
/// between sending a settlement and recording it), from the chain's events, so each is still
/// released.
async fn recover_batches(store: &Store, client: &ProtocolClient) -> Result<(), SettleError> {
    let (Some(a), Some(host)) = (client.addresses().copied(), client.sender()) else {
        return Err(SettleError::Client);
    };
    let from = store.scan_from()?;
    let head = client.block_number().await?;
    if head < from {
        return Ok(());
    }
    let settled = client
        .events::<IS::BatchSettled>(a.inference_settlement, from, Some(head))
        .await?;
    let ours: Vec<u64> = settled
        .iter()
        .filter(|(_, e)| e.host == host)
        .map(|(_, e)| e.batchId.to())
        .filter(|id| store.batch(*id).map_or(true, |b| b.is_none()))
        .collect();
    if !ours.is_empty() {
        let payouts = client
            .events::<IS::BatchPayouts>(a.inference_settlement, from, Some(head))
            .await?;
        for (_, p) in payouts {
            let id: u64 = p.batchId.to();
            if ours.contains(&id) {
                let release = IS::releaseCall::new((p.batchId, p.contributions, p.owners));
                store.record_batch(id, &[], &release.abi_encode())?;
                tracing::info!(batch = id, "recovered a batch settled before a restart");
            }
        }
    }
    store.set_scan_from(head + 1)?;
    Ok(())
}
