//! Governance's pages: the rules of a vote and the settings a proposal can change, the
//! proposals newest first with their states and tallies, and one proposal with its actions in
//! words and the forms to vote, queue and execute it. The governor keeps only a hash of a
//! proposal's actions; the pages read them from its `ProposalCreated` log.

use crate::{format, params, Failure, Web};
use alloy_primitives::{Address, U256};
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::{context, Value};
use openledger_protocol::{
    governor::OpenGovernor::{self, ProposalCreated},
    proposal::{self, Action, Change, ROLES, STATES},
    OpenTimelock, ProtocolParams,
};
use serde::Deserialize;
use std::{sync::Arc, time::Instant};

/// Proposals on one page of the list.
const PAGE: usize = 25;
/// Actions described on a proposal's page (a proposal may carry many calls).
const MAX_ACTIONS: usize = 50;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/governance", get(list))
        .route("/governance/proposals/{id}", get(proposal))
}

/// Every proposal ever made, oldest first: (block, event).
pub(crate) async fn created(web: &Web) -> Result<Vec<(u64, ProposalCreated)>, Failure> {
    let Some(a) = web.client.addresses() else {
        return Ok(Vec::new());
    };
    web.client
        .events::<ProposalCreated>(a.governor, 0, None)
        .await
        .map_err(Failure::chain)
}

/// The proposal with this id.
pub(crate) async fn find(web: &Web, id: U256) -> Result<Option<ProposalCreated>, Failure> {
    Ok(created(web)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| p.proposalId == id))
}

#[derive(Deserialize)]
struct ListQuery {
    /// Show proposals made before this one (its 1-based position in creation order).
    before: Option<usize>,
}

async fn list(
    State(web): State<Arc<Web>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = async {
        let query = params(query)?;
        list_page(&web, query.before).await
    };
    match page.await {
        Ok(ctx) => web.page(started, "governance", "governance.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn list_page(web: &Web, before: Option<usize>) -> Result<Value, Failure> {
    let Some(a) = web.client.addresses().copied() else {
        return Err(Failure::not_found(
            "this node does not know the protocol's addresses",
        ));
    };
    let all = created(web).await?;
    let end = before.unwrap_or(all.len() + 1).clamp(1, all.len() + 1) - 1;
    let start = end.saturating_sub(PAGE);
    let shown = &all[start..end];
    let c = &web.client;
    let tallies = futures_util::future::try_join_all(shown.iter().map(|(_, p)| async move {
        let id = p.proposalId;
        futures_util::try_join!(
            c.call(a.governor, OpenGovernor::stateCall { proposalId: id }),
            c.call(
                a.governor,
                OpenGovernor::proposalVotesCall { proposalId: id }
            ),
        )
    }))
    .await
    .map_err(Failure::chain)?;
    let proposals: Vec<Value> = shown
        .iter()
        .zip(tallies)
        .rev()
        .map(|((block, p), (state, votes))| {
            context! {
                id => p.proposalId.to_string(),
                short_id => format::short(&p.proposalId.to_string(), 12),
                title => title(&p.description),
                state => state_name(state),
                block,
                votes_for => format::open(votes.forVotes),
                against => format::open(votes.againstVotes),
                abstain => format::open(votes.abstainVotes),
            }
        })
        .collect();
    Ok(context! {
        proposals,
        any => !all.is_empty(),
        newer => (end < all.len()).then(|| (end + PAGE + 1).min(all.len() + 1)),
        older => (start > 0).then_some(start + 1),
        rules => rules(web).await?,
        settings => settings(web).await?,
        roles => ROLES,
    })
}

/// How a vote goes, from the governor and the timelock.
async fn rules(web: &Web) -> Result<Value, Failure> {
    let a = web
        .client
        .addresses()
        .copied()
        .expect("checked by the caller");
    let c = &web.client;
    let now = c.latest_timestamp().await.map_err(Failure::chain)?;
    let (delay, period, threshold, timelock) = futures_util::try_join!(
        c.call(a.governor, OpenGovernor::votingDelayCall {}),
        c.call(a.governor, OpenGovernor::votingPeriodCall {}),
        c.call(a.governor, OpenGovernor::proposalThresholdCall {}),
        c.call(a.timelock, OpenTimelock::getMinDelayCall {}),
    )
    .map_err(Failure::chain)?;
    // The quorum is read at a past second: the governor refuses the present.
    let quorum = c
        .call(
            a.governor,
            OpenGovernor::quorumCall {
                timepoint: U256::from(now.saturating_sub(1)),
            },
        )
        .await
        .ok();
    Ok(context! {
        delay => duration(delay),
        period => duration(period),
        threshold => format::open(threshold),
        timelock => duration(timelock),
        quorum => quorum.map(format::open),
    })
}

/// The protocol's settings a proposal can change, as they are now.
async fn settings(web: &Web) -> Result<Value, Failure> {
    let a = web
        .client
        .addresses()
        .copied()
        .expect("checked by the caller");
    let (c, p) = (&web.client, a.protocol_params);
    let (split, validator, curator, host, quorum, timing) = futures_util::try_join!(
        c.call(p, ProtocolParams::feeSplitCall {}),
        c.call(p, ProtocolParams::minStakeCall { role: 0 }),
        c.call(p, ProtocolParams::minStakeCall { role: 1 }),
        c.call(p, ProtocolParams::minStakeCall { role: 2 }),
        c.call(p, ProtocolParams::reviewQuorumCall {}),
        proposal::timing(c),
    )
    .map_err(Failure::chain)?;
    Ok(context! {
        split => [split.contributors, split.curators, split.modelOwner, split.host, split.treasury],
        min_stakes => [format::open_exact(validator), format::open_exact(curator), format::open_exact(host)],
        review_quorum => quorum,
        challenge_window => timing.challenge_window,
        ruling_period => timing.ruling_period,
        unbonding_delay => timing.unbonding_delay,
    })
}

async fn proposal(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    let started = Instant::now();
    match proposal_page(&web, &id).await {
        Ok(ctx) => web.page(started, "governance", "proposal.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn proposal_page(web: &Web, id: &str) -> Result<Value, Failure> {
    let shown = format::short(id, 80);
    let id: U256 = id
        .parse()
        .map_err(|_| Failure::bad_input(format!("{shown:?} is not a proposal id")))?;
    let not_found = || Failure::not_found(format!("no proposal {shown} on this chain"));
    let a = web.client.addresses().copied().ok_or_else(not_found)?;
    let p = find(web, id).await?.ok_or_else(not_found)?;
    let c = &web.client;
    let g = a.governor;
    let (state, votes, deadline, eta, now) = futures_util::try_join!(
        c.call(g, OpenGovernor::stateCall { proposalId: id }),
        c.call(g, OpenGovernor::proposalVotesCall { proposalId: id }),
        c.call(g, OpenGovernor::proposalDeadlineCall { proposalId: id }),
        c.call(g, OpenGovernor::proposalEtaCall { proposalId: id }),
        c.latest_timestamp(),
    )
    .map_err(Failure::chain)?;
    let snapshot: u64 = p.voteStart.saturating_to();
    // Known once the vote has started: the governor reads staked OPEN at the snapshot.
    let quorum = if snapshot < now {
        c.call(
            g,
            OpenGovernor::quorumCall {
                timepoint: U256::from(snapshot),
            },
        )
        .await
        .ok()
        .map(format::open)
    } else {
        None
    };
    let eta: u64 = eta.saturating_to();
    let actions: Vec<Value> = p
        .targets
        .iter()
        .zip(&p.calldatas)
        .zip(&p.values)
        .take(MAX_ACTIONS)
        .map(|((&target, data), value)| action(web, target, data, *value))
        .collect();
    let state = state_name(state);
    Ok(context! {
        id => id.to_string(),
        title => title(&p.description),
        description => p.description.clone(),
        proposer => p.proposer.to_string(),
        state,
        active => state == "active",
        can_queue => state == "succeeded",
        can_execute => state == "queued" && eta != 0 && eta <= now,
        starts => format::iso(snapshot),
        ends => format::iso(deadline.saturating_to()),
        eta => (eta != 0).then(|| format::iso(eta)),
        votes_for => format::open(votes.forVotes),
        against => format::open(votes.againstVotes),
        abstain => format::open(votes.abstainVotes),
        quorum,
        actions,
        more_actions => p.targets.len().saturating_sub(MAX_ACTIONS),
    })
}

/// One of a proposal's calls, in words where it is a setting this app knows.
fn action(web: &Web, target: Address, data: &alloy_primitives::Bytes, value: U256) -> Value {
    let known = web.client.addresses().and_then(|a| {
        Change::from_action(
            &Action {
                target,
                calldata: data.clone(),
            },
            a,
        )
    });
    let words = match known {
        Some(Change::MinStake { role, amount }) => format!(
            "set the {}s' minimum stake to {} OPEN",
            ROLES
                .get(usize::from(role))
                .copied()
                .unwrap_or("unknown role"),
            format::open_exact(amount)
        ),
        Some(change) => change.describe(),
        None => web.names.call(Some(target), data),
    };
    context! {
        words,
        target => target.to_string(),
        contract => web.names.contract(target),
        data => data.to_string(),
        value => (!value.is_zero()).then(|| format::open(value)),
    }
}

fn state_name(state: u8) -> &'static str {
    STATES.get(usize::from(state)).copied().unwrap_or("unknown")
}

/// A proposal's first line, as its title.
fn title(description: &str) -> String {
    let line = description.lines().next().unwrap_or_default().trim();
    let line = line.trim_start_matches('#').trim();
    if line.is_empty() {
        return "(untitled)".into();
    }
    format::short(line, 120)
}

/// Seconds in the largest whole unit that fits ("2 days", "60 s").
fn duration(seconds: U256) -> String {
    let s: u64 = seconds.saturating_to();
    for (unit, name) in [(86_400, "day"), (3_600, "hour"), (60, "minute")] {
        if s >= unit && s.is_multiple_of(unit) {
            let n = s / unit;
            return format!("{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{s} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_first_lines_without_markdown_headings() {
        assert_eq!(title("# Lower the fee\n\nBecause."), "Lower the fee");
        assert_eq!(title("  \n"), "(untitled)");
    }

    #[test]
    fn durations_use_whole_units() {
        assert_eq!(duration(U256::from(172_800)), "2 days");
        assert_eq!(duration(U256::from(60)), "1 minute");
        assert_eq!(duration(U256::from(90)), "90 s");
    }
}
