//! What a governance proposal can change, as the calls the timelock will make, and those calls
//! back into words. The command line (`openledger gov propose`) and the web app's proposal
//! form build proposals from the same [`Change`]s, so both refuse the same bad values before
//! anything is sent.

use crate::{
    deploy::Addresses,
    model_registry::ModelRegistry,
    protocol_params::ProtocolParams::{self, FeeSplit},
    ClientError, ProtocolClient,
};
use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolInterface};

/// A proposal's state, indexed by `OpenGovernor.state`'s number.
pub const STATES: [&str; 8] = [
    "pending",
    "active",
    "canceled",
    "defeated",
    "succeeded",
    "queued",
    "expired",
    "executed",
];

/// The roles with a minimum stake, by `ProtocolParams.Role`'s number.
pub const ROLES: [&str; 3] = ["validator", "curator", "host"];

/// The model progressions governance sets, by `ModelRegistry.Status`'s number (0 is none).
pub const MODEL_STATUSES: [&str; 4] = ["none", "registered", "endorsed", "retired"];

/// One call the timelock will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub target: Address,
    pub calldata: Bytes,
}

/// A protocol setting a proposal changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Basis points to contributors, curators, model owner, host and treasury.
    FeeSplit([u16; 5]),
    /// `role` is an index into [`ROLES`]; the amount is in wei.
    MinStake {
        role: u8,
        amount: U256,
    },
    ReviewQuorum(u16),
    ChallengeWindow(u64),
    UnbondingDelay(u64),
    /// `status` is an index into [`MODEL_STATUSES`], never 0.
    AdapterStatus {
        adapter: U256,
        status: u8,
    },
    BaseModelStatus {
        base_model: U256,
        status: u8,
    },
}

/// The longest duration `ProtocolParams` accepts (its `MAX_DURATION`, a year).
pub const MAX_DURATION: u64 = 365 * 24 * 3600;
/// The largest review quorum floor (`MAX_QUORUM`).
pub const MAX_QUORUM: u16 = 32;
/// The largest minimum stake, in wei (`MAX_STAKE`, 10^9 OPEN).
pub const MAX_STAKE: u128 = 1_000_000_000_000_000_000_000_000_000;

/// The three durations `ProtocolParams` keeps in step: a stake must stay bonded through a
/// batch's challenge window and the ruling that may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub challenge_window: u64,
    pub ruling_period: u64,
    pub unbonding_delay: u64,
}

/// A change that no contract would accept, named before anything is signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("{what} must be between {min} and {max}, not {value}")]
    OutOfRange {
        what: &'static str,
        value: String,
        min: String,
        max: String,
    },
    #[error(
        "the unbonding delay ({unbonding} s) would be shorter than the challenge window and the \
         ruling period together ({required} s): a stake could leave before a challenge is ruled"
    )]
    UnbondingTooShort { unbonding: u64, required: u64 },
    #[error("the fee split's shares add up to {0} basis points, not 10000")]
    FeeSplitTotal(u32),
    #[error("unknown role {0:?} (validator, curator or host)")]
    UnknownRole(String),
    #[error("unknown model status {0:?} (registered, endorsed or retired)")]
    UnknownStatus(String),
}

/// The durations as the chain holds them now.
pub async fn timing(client: &ProtocolClient) -> Result<Timing, ClientError> {
    let p = client
        .addresses()
        .ok_or(ClientError::NoAddresses)?
        .protocol_params;
    let (challenge_window, ruling_period, unbonding_delay) = tokio::try_join!(
        client.call(p, ProtocolParams::challengeWindowCall {}),
        client.call(p, ProtocolParams::rulingPeriodCall {}),
        client.call(p, ProtocolParams::unbondingDelayCall {}),
    )?;
    Ok(Timing {
        challenge_window,
        ruling_period,
        unbonding_delay,
    })
}

/// Checks every change against the contract's bounds and the durations after all of them,
/// and orders them so that each call succeeds in turn (the proposal is executed call by call,
/// and a call that reverts fails the whole proposal, after its vote): a longer unbonding
/// delay is set before a longer challenge window, a shorter one after a shorter window.
pub fn plan(mut changes: Vec<Change>, now: Timing) -> Result<Vec<Change>, ChangeError> {
    let mut after = now;
    for change in &changes {
        change.check()?;
        match *change {
            Change::ChallengeWindow(s) => after.challenge_window = s,
            Change::UnbondingDelay(s) => after.unbonding_delay = s,
            _ => {}
        }
    }
    let required = after.challenge_window.saturating_add(after.ruling_period);
    if after.unbonding_delay < required {
        return Err(ChangeError::UnbondingTooShort {
            unbonding: after.unbonding_delay,
            required,
        });
    }
    let grows = after.unbonding_delay >= now.unbonding_delay;
    // A stable sort: the other changes keep their order.
    changes.sort_by_key(|c| match c {
        Change::UnbondingDelay(_) if grows => 0,
        Change::UnbondingDelay(_) => 2,
        _ => 1,
    });
    Ok(changes)
}

impl Change {
    /// Refuses a value outside what the contract accepts.
    fn check(&self) -> Result<(), ChangeError> {
        let range = |what, value: u128, min: u128, max: u128| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ChangeError::OutOfRange {
                    what,
                    value: value.to_string(),
                    min: min.to_string(),
                    max: max.to_string(),
                })
            }
        };
        let seconds = u128::from(MAX_DURATION);
        match *self {
            Change::MinStake { amount, .. } if amount > U256::from(MAX_STAKE) => {
                Err(ChangeError::OutOfRange {
                    what: "a minimum stake (wei)",
                    value: amount.to_string(),
                    min: "0".into(),
                    max: MAX_STAKE.to_string(),
                })
            }
            Change::ReviewQuorum(q) => {
                range("the review quorum floor", q.into(), 1, MAX_QUORUM.into())
            }
            Change::ChallengeWindow(s) => {
                range("the challenge window (seconds)", s.into(), 1, seconds)
            }
            Change::UnbondingDelay(s) => {
                range("the unbonding delay (seconds)", s.into(), 1, seconds)
            }
            _ => Ok(()),
        }
    }

    /// A fee split, refused unless its shares add up to 100%.
    pub fn fee_split(shares: [u16; 5]) -> Result<Self, ChangeError> {
        let total: u32 = shares.iter().map(|&s| u32::from(s)).sum();
        if total != 10_000 {
            return Err(ChangeError::FeeSplitTotal(total));
        }
        Ok(Self::FeeSplit(shares))
    }

    /// A role's minimum stake, the role by name.
    pub fn min_stake(role: &str, amount: U256) -> Result<Self, ChangeError> {
        let role = ROLES
            .iter()
            .position(|r| *r == role)
            .ok_or_else(|| ChangeError::UnknownRole(role.into()))?;
        Ok(Self::MinStake {
            role: role as u8,
            amount,
        })
    }

    /// A model status by name.
    pub fn status(name: &str) -> Result<u8, ChangeError> {
        MODEL_STATUSES
            .iter()
            .skip(1)
            .position(|s| *s == name)
            .map(|i| i as u8 + 1)
            .ok_or_else(|| ChangeError::UnknownStatus(name.into()))
    }

    /// The call that makes this change.
    pub fn action(&self, a: &Addresses) -> Action {
        let params = |calldata: Vec<u8>| Action {
            target: a.protocol_params,
            calldata: calldata.into(),
        };
        match *self {
            Self::FeeSplit([contributors, curators, model_owner, host, treasury]) => params(
                ProtocolParams::setFeeSplitCall {
                    split: FeeSplit {
                        contributors,
                        curators,
                        modelOwner: model_owner,
                        host,
                        treasury,
                    },
                }
                .abi_encode(),
            ),
            Self::MinStake { role, amount } => {
                params(ProtocolParams::setMinStakeCall { role, amount }.abi_encode())
            }
            Self::ReviewQuorum(quorum) => {
                params(ProtocolParams::setReviewQuorumCall { quorum }.abi_encode())
            }
            Self::ChallengeWindow(seconds) => params(
                ProtocolParams::setChallengeWindowCall {
                    secondsLong: seconds,
                }
                .abi_encode(),
            ),
            Self::UnbondingDelay(seconds) => params(
                ProtocolParams::setUnbondingDelayCall {
                    secondsLong: seconds,
                }
                .abi_encode(),
            ),
            Self::AdapterStatus { adapter, status } => Action {
                target: a.model_registry,
                calldata: ModelRegistry::setAdapterStatusCall {
                    adapterId: adapter,
                    status,
                }
                .abi_encode()
                .into(),
            },
            Self::BaseModelStatus { base_model, status } => Action {
                target: a.model_registry,
                calldata: ModelRegistry::setBaseModelStatusCall {
                    baseModelId: base_model,
                    status,
                }
                .abi_encode()
                .into(),
            },
        }
    }

    /// The change a call makes, where it is one of these.
    pub fn from_action(action: &Action, a: &Addresses) -> Option<Self> {
        let data = &action.calldata[..];
        if action.target == a.protocol_params {
            use ProtocolParams::ProtocolParamsCalls as P;
            return match P::abi_decode(data).ok()? {
                P::setFeeSplit(c) => {
                    let s = c.split;
                    Some(Self::FeeSplit([
                        s.contributors,
                        s.curators,
                        s.modelOwner,
                        s.host,
                        s.treasury,
                    ]))
                }
                P::setMinStake(c) => Some(Self::MinStake {
                    role: c.role,
                    amount: c.amount,
                }),
                P::setReviewQuorum(c) => Some(Self::ReviewQuorum(c.quorum)),
                P::setChallengeWindow(c) => Some(Self::ChallengeWindow(c.secondsLong)),
                P::setUnbondingDelay(c) => Some(Self::UnbondingDelay(c.secondsLong)),
                _ => None,
            };
        }
        if action.target == a.model_registry {
            use ModelRegistry::ModelRegistryCalls as M;
            return match M::abi_decode(data).ok()? {
                M::setAdapterStatus(c) => Some(Self::AdapterStatus {
                    adapter: c.adapterId,
                    status: c.status,
                }),
                M::setBaseModelStatus(c) => Some(Self::BaseModelStatus {
                    base_model: c.baseModelId,
                    status: c.status,
                }),
                _ => None,
            };
        }
        None
    }

    /// The change in words, amounts of OPEN in wei.
    pub fn describe(&self) -> String {
        let status = |s: u8| MODEL_STATUSES.get(usize::from(s)).copied().unwrap_or("?");
        match self {
            Self::FeeSplit([c, cu, mo, h, t]) => format!(
                "set the fee split to contributors {}, curators {}, model owner {}, host {}, treasury {}",
                percent(*c), percent(*cu), percent(*mo), percent(*h), percent(*t)
            ),
            Self::MinStake { role, amount } => format!(
                "set the {}s' minimum stake to {amount} wei of OPEN",
                ROLES.get(usize::from(*role)).copied().unwrap_or("unknown role")
            ),
            Self::ReviewQuorum(q) => format!("set the curators' review quorum floor to {q}"),
            Self::ChallengeWindow(s) => format!("set the challenge window to {s} s"),
            Self::UnbondingDelay(s) => format!("set the unbonding delay to {s} s"),
            Self::AdapterStatus { adapter, status: s } => {
                format!("mark adapter {adapter} {}", status(*s))
            }
            Self::BaseModelStatus { base_model, status: s } => {
                format!("mark base model {base_model} {}", status(*s))
            }
        }
    }
}

/// Basis points as a percentage ("12.5%").
fn percent(bps: u16) -> String {
    let text = format!("{:.2}", f64::from(bps) / 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses() -> Addresses {
        let at = |n: u8| Address::with_last_byte(n);
        Addresses {
            chain_id: 1,
            timelock: at(1),
            protocol_params: at(2),
            staking: at(3),
            governor: at(4),
            datanet_registry: at(5),
            model_registry: at(6),
            inference_settlement: at(7),
            model_factory: at(8),
        }
    }

    #[test]
    fn a_fee_split_that_does_not_add_up_is_refused() {
        let err = Change::fee_split([5000, 1000, 2000, 1000, 500]).unwrap_err();
        assert_eq!(err, ChangeError::FeeSplitTotal(9500));
        assert!(Change::fee_split([5000, 1000, 2000, 1000, 1000]).is_ok());
    }

    #[test]
    fn every_change_reads_back_from_its_call_and_says_what_it_does() {
        let a = addresses();
        let changes = [
            Change::fee_split([5000, 1250, 2000, 1000, 750]).unwrap(),
            Change::min_stake("host", U256::from(7)).unwrap(),
            Change::ReviewQuorum(2),
            Change::ChallengeWindow(60),
            Change::UnbondingDelay(1200),
            Change::AdapterStatus {
                adapter: U256::from(3),
                status: Change::status("endorsed").unwrap(),
            },
            Change::BaseModelStatus {
                base_model: U256::from(1),
                status: 3,
            },
        ];
        for change in changes {
            let action = change.action(&a);
            assert_eq!(Change::from_action(&action, &a), Some(change.clone()));
        }
        let split = Change::fee_split([5000, 1250, 2000, 1000, 750]).unwrap();
        assert_eq!(
            split.describe(),
            "set the fee split to contributors 50%, curators 12.5%, model owner 20%, host 10%, treasury 7.5%"
        );
        // A call to another contract is not one of these changes.
        let elsewhere = Action {
            target: a.staking,
            ..split.action(&a)
        };
        assert_eq!(Change::from_action(&elsewhere, &a), None);
    }

    #[test]
    fn durations_are_checked_together_and_ordered_so_each_call_succeeds() {
        let now = Timing {
            challenge_window: 600,
            ruling_period: 600,
            unbonding_delay: 1200,
        };
        // Both longer: the delay first, or the window's call reverts.
        let longer = plan(
            vec![Change::ChallengeWindow(900), Change::UnbondingDelay(1500)],
            now,
        )
        .unwrap();
        assert_eq!(
            longer,
            vec![Change::UnbondingDelay(1500), Change::ChallengeWindow(900)]
        );
        // Both shorter: the window first.
        let shorter = plan(
            vec![Change::UnbondingDelay(900), Change::ChallengeWindow(300)],
            now,
        )
        .unwrap();
        assert_eq!(
            shorter,
            vec![Change::ChallengeWindow(300), Change::UnbondingDelay(900)]
        );
        assert_eq!(
            plan(vec![Change::ChallengeWindow(700)], now),
            Err(ChangeError::UnbondingTooShort {
                unbonding: 1200,
                required: 1300
            })
        );
        for bad in [
            Change::UnbondingDelay(0),
            Change::ChallengeWindow(MAX_DURATION + 1),
            Change::ReviewQuorum(33),
            Change::ReviewQuorum(0),
            Change::MinStake {
                role: 0,
                amount: U256::from(MAX_STAKE) + U256::from(1),
            },
        ] {
            assert!(
                matches!(
                    plan(vec![bad.clone()], now),
                    Err(ChangeError::OutOfRange { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_roles_and_statuses_are_named() {
        assert_eq!(
            Change::min_stake("king", U256::ZERO).unwrap_err(),
            ChangeError::UnknownRole("king".into())
        );
        assert!(Change::status("none").is_err());
        assert_eq!(Change::status("retired"), Ok(3));
    }
}
