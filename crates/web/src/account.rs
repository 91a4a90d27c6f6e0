//! What an address is to the protocol, for its explorer page: its stakes by role (validator,
//! host, curator of a datanet) with their pending withdrawals, its voting power, the rewards
//! it can claim from inference settlement, and its inference credit as a consumer.

use crate::{format, Failure, Web};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use minijinja::{context, Value};
use openledger_protocol::{
    staking::Staking::{Staked, UnstakeRequested},
    InferenceSettlement, Staking,
};
use serde_json::json;
use std::collections::BTreeSet;

/// Stakes (role and subject) shown at most: an account could stake on many datanets.
const MAX_STAKES: usize = 50;

fn role_name(role: u8, subject: U256) -> String {
    match role {
        0 => "validator".into(),
        1 => format!("curator of datanet {subject}"),
        2 => "host".into(),
        _ => format!("role {role}"),
    }
}

impl Web {
    /// `who`'s stakes and unstake requests, from one pass over the staking contract's logs.
    async fn staking_logs(
        &self,
        staking: Address,
        who: Address,
    ) -> Result<(Vec<Staked>, Vec<UnstakeRequested>), Failure> {
        let filter = json!({"address": staking, "topics": [
            [Staked::SIGNATURE_HASH, UnstakeRequested::SIGNATURE_HASH],
            B256::left_padding_from(who.as_slice()),
        ]});
        let logs = self
            .client
            .logs_from(&filter, 0)
            .await
            .map_err(Failure::chain)?;
        let (mut staked, mut requested) = (Vec::new(), Vec::new());
        for l in &logs {
            match l.topics.first() {
                Some(&Staked::SIGNATURE_HASH) => staked.extend(l.decode::<Staked>().ok()),
                Some(&UnstakeRequested::SIGNATURE_HASH) => {
                    requested.extend(l.decode::<UnstakeRequested>().ok())
                }
                _ => {}
            }
        }
        Ok((staked, requested))
    }

    /// Every log of event `E` whose first indexed argument is `topic`: (block, event).
    pub(crate) async fn logs_where<E: SolEvent>(
        &self,
        contract: Address,
        topic: B256,
    ) -> Result<Vec<(u64, E)>, Failure> {
        let filter = json!({"address": contract, "topics": [E::SIGNATURE_HASH, topic]});
        let logs = self
            .client
            .logs_from(&filter, 0)
            .await
            .map_err(Failure::chain)?;
        Ok(logs
            .iter()
            .filter_map(|l| Some((l.block(), l.decode::<E>().ok()?)))
            .collect())
    }

    async fn view<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, Failure> {
        self.client.call(to, call).await.map_err(Failure::chain)
    }
}

/// `who`'s roles in the protocol, or `None` where the protocol's addresses are not known.
pub(crate) async fn roles(web: &Web, who: Address) -> Result<Option<Value>, Failure> {
    let Some(a) = web.client.addresses().copied() else {
        return Ok(None);
    };
    let ((staked, requested), votes, claimable, credit, now) = futures_util::try_join!(
        web.staking_logs(a.staking, who),
        web.view(a.staking, Staking::getVotesCall::new((who,))),
        web.view(
            a.inference_settlement,
            InferenceSettlement::claimableCall::new((who,)),
        ),
        web.view(
            a.inference_settlement,
            InferenceSettlement::creditOfCall::new((who,)),
        ),
        async { web.client.latest_timestamp().await.map_err(Failure::chain) },
    )?;
    let kinds: BTreeSet<(u8, U256)> = staked.iter().map(|e| (e.role, e.subject)).collect();
    let kinds: Vec<(u8, U256)> = kinds.into_iter().take(MAX_STAKES).collect();
    let amounts = futures_util::future::try_join_all(kinds.iter().map(|&(role, subject)| {
        web.view(a.staking, Staking::stakeOfCall::new((who, role, subject)))
    }))
    .await?;
    let stakes: Vec<Value> = kinds
        .iter()
        .zip(amounts)
        .filter(|(_, amount)| !amount.is_zero())
        .map(|(&(role, subject), amount)| {
            let datanet = (role == 1).then(|| subject.saturating_to::<u64>());
            let kind = ["validator", "curator", "host"]
                .get(usize::from(role))
                .copied();
            context! {
                role => role_name(role, subject), kind, datanet, amount => format::open(amount),
                exact => format::open_exact(amount),
            }
        })
        .collect();
    // A second request adds to a pending withdrawal under the same id: one row per id, the
    // newest ids (those still likely unpaid) first.
    let ids: BTreeSet<U256> = requested.iter().map(|e| e.withdrawalId).collect();
    let ids: Vec<U256> = ids.into_iter().rev().take(MAX_STAKES).collect();
    let pending = futures_util::future::try_join_all(
        ids.iter()
            .map(|&id| web.view(a.staking, Staking::withdrawalCall::new((id,)))),
    )
    .await?;
    let withdrawals: Vec<Value> = ids
        .iter()
        .zip(pending)
        .filter(|(_, w)| !w.amount.is_zero())
        .map(|(id, w)| {
            context! {
                id => id.to_string(),
                role => role_name(w.role, w.subject),
                amount => format::open(w.amount),
                ready => w.readyAt <= now,
                ready_at => format::iso(w.readyAt),
            }
        })
        .collect();
    Ok(Some(context! {
        stakes, withdrawals,
        votes => format::open(votes),
        claimable => format::open(claimable),
        can_claim => !claimable.is_zero(),
        credit => format::open(credit),
    }))
}
