//! The governance forms' transactions, prepared as the other forms' are (see `calls`):
//!
//! | Route | Prepares |
//! |---|---|
//! | `POST /wallet/calls/propose` | `propose` of the settings the form changes |
//! | `POST /wallet/calls/vote` | `castVoteWithReason` |
//! | `POST /wallet/calls/queue` | `queue` of a succeeded proposal in the timelock |
//! | `POST /wallet/calls/execute` | `execute` of a queued proposal |
//!
//! A proposal's fields left empty change nothing; a form that changes nothing is refused.

use crate::calls::{addresses, at_most, fields, number, open_amount, prepared, Prepared, Refused};
use crate::{governance, Web};
use alloy_primitives::{keccak256, U256};
use alloy_sol_types::SolCall;
use axum::{
    extract::{rejection::JsonRejection, State},
    http::StatusCode,
    routing::post,
    Json, Router,
};
use openledger_protocol::{
    proposal::{self, Change, ChangeError},
    OpenGovernor,
};
use serde::Deserialize;
use std::sync::Arc;

/// The longest description a proposal may carry (it is stored in a log forever).
const MAX_DESCRIPTION: usize = 4000;
/// The longest reason a vote may give.
const MAX_REASON: usize = 1000;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/wallet/calls/propose", post(propose))
        .route("/wallet/calls/vote", post(vote))
        .route("/wallet/calls/queue", post(queue))
        .route("/wallet/calls/execute", post(execute))
}

/// The proposal form: every setting as typed, empty for unchanged.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ProposalForm {
    description: String,
    /// Basis points, all five or none.
    fee_contributors: String,
    fee_curators: String,
    fee_model_owner: String,
    fee_host: String,
    fee_treasury: String,
    min_stake_role: String,
    /// OPEN.
    min_stake: String,
    review_quorum: String,
    /// Seconds.
    challenge_window: String,
    /// Seconds.
    unbonding_delay: String,
    adapter: String,
    adapter_status: String,
}

fn invalid(name: &str, e: ChangeError) -> Refused {
    Refused::field(name, e)
}

impl ProposalForm {
    fn changes(&self) -> Result<Vec<Change>, Refused> {
        let mut out = Vec::new();
        let set = |s: &String| !s.trim().is_empty();
        let split = [
            ("fee_contributors", &self.fee_contributors),
            ("fee_curators", &self.fee_curators),
            ("fee_model_owner", &self.fee_model_owner),
            ("fee_host", &self.fee_host),
            ("fee_treasury", &self.fee_treasury),
        ];
        if split.iter().any(|(_, v)| set(v)) {
            let mut shares = [0u16; 5];
            for (share, (name, text)) in shares.iter_mut().zip(split) {
                if !set(text) {
                    return Err(Refused::field(
                        name,
                        "a new fee split needs all five shares",
                    ));
                }
                *share = number(name, text)?;
            }
            out.push(Change::fee_split(shares).map_err(|e| invalid("fee split", e))?);
        }
        if set(&self.min_stake) {
            let amount = open_amount("min_stake", &self.min_stake)?;
            let role = self.min_stake_role.trim();
            out.push(Change::min_stake(role, amount).map_err(|e| invalid("min_stake_role", e))?);
        }
        if set(&self.review_quorum) {
            let quorum: u16 = number("review_quorum", &self.review_quorum)?;
            if quorum == 0 {
                return Err(Refused::field("review_quorum", "at least 1"));
            }
            out.push(Change::ReviewQuorum(quorum));
        }
        if set(&self.challenge_window) {
            let seconds = number("challenge_window", &self.challenge_window)?;
            out.push(Change::ChallengeWindow(seconds));
        }
        if set(&self.unbonding_delay) {
            let seconds = number("unbonding_delay", &self.unbonding_delay)?;
            out.push(Change::UnbondingDelay(seconds));
        }
        if set(&self.adapter) {
            let adapter: U256 = number("adapter", &self.adapter)?;
            let status = Change::status(self.adapter_status.trim())
                .map_err(|e| invalid("adapter_status", e))?;
            out.push(Change::AdapterStatus { adapter, status });
        }
        if out.is_empty() {
            return Err(Refused::field(
                "proposal",
                "it changes nothing: fill in at least one setting",
            ));
        }
        Ok(out)
    }
}

async fn propose(
    State(web): State<Arc<Web>>,
    body: Result<Json<ProposalForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let description = form.description.trim();
    if description.is_empty() {
        return Err(Refused::field(
            "description",
            "say what the proposal does and why",
        ));
    }
    at_most("description", description, MAX_DESCRIPTION)?;
    let a = addresses(&web)?;
    let changes = form.changes()?;
    let now = proposal::timing(&web.client)
        .await
        .map_err(|e| Refused(StatusCode::BAD_GATEWAY, format!("the chain: {e}")))?;
    let changes = proposal::plan(changes, now).map_err(|e| Refused::field("proposal", e))?;
    let actions: Vec<_> = changes.iter().map(|c| c.action(a)).collect();
    let call = OpenGovernor::proposeCall {
        targets: actions.iter().map(|x| x.target).collect(),
        values: vec![U256::ZERO; actions.len()],
        calldatas: actions.into_iter().map(|x| x.calldata).collect(),
        description: description.to_string(),
    };
    prepared("propose", a.governor, call.abi_encode().into(), U256::ZERO)
}

#[derive(Deserialize)]
struct VoteForm {
    proposal: String,
    support: String,
    #[serde(default)]
    reason: String,
}

async fn vote(
    State(web): State<Arc<Web>>,
    body: Result<Json<VoteForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let proposal: U256 = number("proposal", &form.proposal)?;
    let support = match form.support.as_str() {
        "against" => 0,
        "for" => 1,
        "abstain" => 2,
        other => {
            return Err(Refused::field(
                "support",
                format!("{other:?}: choose for, against or abstain"),
            ))
        }
    };
    at_most("reason", &form.reason, MAX_REASON)?;
    let call = OpenGovernor::castVoteWithReasonCall {
        proposalId: proposal,
        support,
        reason: form.reason.trim().to_string(),
    };
    let to = addresses(&web)?.governor;
    prepared("vote", to, call.abi_encode().into(), U256::ZERO)
}

#[derive(Deserialize)]
struct ProposalRef {
    proposal: String,
}

/// The proposal's calls and description hash, from its log.
async fn recorded(web: &Web, form: &ProposalRef) -> Result<OpenGovernor::queueCall, Refused> {
    let id: U256 = number("proposal", &form.proposal)?;
    let p = governance::find(web, id)
        .await
        .map_err(|_| Refused(StatusCode::BAD_GATEWAY, "the chain cannot be read".into()))?
        .ok_or_else(|| Refused(StatusCode::NOT_FOUND, format!("no proposal {id}")))?;
    Ok(OpenGovernor::queueCall {
        targets: p.targets,
        values: p.values,
        calldatas: p.calldatas,
        descriptionHash: keccak256(p.description.as_bytes()),
    })
}

async fn queue(
    State(web): State<Arc<Web>>,
    body: Result<Json<ProposalRef>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let call = recorded(&web, &form).await?;
    let to = addresses(&web)?.governor;
    prepared("queue", to, call.abi_encode().into(), U256::ZERO)
}

async fn execute(
    State(web): State<Arc<Web>>,
    body: Result<Json<ProposalRef>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let q = recorded(&web, &form).await?;
    let call = OpenGovernor::executeCall {
        targets: q.targets,
        values: q.values,
        calldatas: q.calldatas,
        descriptionHash: q.descriptionHash,
    };
    let to = addresses(&web)?.governor;
    prepared("execute", to, call.abi_encode().into(), U256::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(form: ProposalForm) -> String {
        form.changes().expect_err("refused").1
    }

    #[test]
    fn a_form_that_changes_nothing_or_half_a_fee_split_is_refused_by_field() {
        assert!(refusal(ProposalForm::default()).contains("changes nothing"));
        let half = ProposalForm {
            fee_contributors: "5000".into(),
            ..Default::default()
        };
        assert!(refusal(half).starts_with("fee_curators: "));
        let uneven = ProposalForm {
            fee_contributors: "5000".into(),
            fee_curators: "1000".into(),
            fee_model_owner: "2000".into(),
            fee_host: "1000".into(),
            fee_treasury: "500".into(),
            ..Default::default()
        };
        assert!(refusal(uneven).contains("9500"));
        let role = ProposalForm {
            min_stake: "5".into(),
            min_stake_role: "king".into(),
            ..Default::default()
        };
        assert!(refusal(role).starts_with("min_stake_role: "));
    }

    #[test]
    fn each_setting_filled_in_becomes_one_change() {
        let form = ProposalForm {
            min_stake: "2.5".into(),
            min_stake_role: "curator".into(),
            challenge_window: "900".into(),
            adapter: "3".into(),
            adapter_status: "endorsed".into(),
            ..Default::default()
        };
        let changes = form.changes().unwrap();
        assert_eq!(
            changes,
            vec![
                Change::MinStake {
                    role: 1,
                    amount: U256::from(25u64) * U256::from(10u64).pow(U256::from(17))
                },
                Change::ChallengeWindow(900),
                Change::AdapterStatus {
                    adapter: U256::from(3),
                    status: 2
                },
            ]
        );
    }
}
