//! Who may train on a datanet: its access policy (open, or permissioned with a fee each
//! request pays), and the accounts that asked, were granted, turned down or withdrew, read
//! from the registry's access events. The forms are the owner's (policy, grant, deny) and
//! any other account's (request, withdraw), prepared here as `calls` prepares the others':
//!
//! | Route | Prepares |
//! |---|---|
//! | `POST /wallet/calls/access` | by `action`: `setAccessPolicy` (`policy`), `requestAccess` with its fee (`request`), `grantAccess` (`grant`), `denyAccess` (`deny`), `withdrawAccessRequest` (`withdraw`) |

use crate::calls::{address, addresses, fields, number, open_amount, prepared, Prepared, Refused};
use crate::{format, Failure, Web};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use axum::{
    extract::{rejection::JsonRejection, State},
    routing::post,
    Json, Router,
};
use minijinja::{context, Value};
use openledger_protocol::{
    datanet_registry::DatanetRegistry::{
        AccessDenied, AccessGranted, AccessRequestWithdrawn, AccessRequested,
    },
    DatanetRegistry,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/wallet/calls/access", post(access))
}

/// Accounts listed at most, the latest to change first.
const SHOWN: usize = 50;

/// How a request that is no longer waiting ended, from its latest closing event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    Denied,
    Withdrawn,
}

impl Standing {
    fn name(self) -> &'static str {
        match self {
            Standing::Denied => "turned down",
            Standing::Withdrawn => "withdrawn",
        }
    }
}

/// The datanet's access policy and requests, for its page.
pub(crate) async fn of(web: &Web, datanet: u64) -> Result<Value, Failure> {
    let Some(a) = web.client.addresses().copied() else {
        return Ok(Value::from(()));
    };
    let registry = a.datanet_registry;
    let topic = B256::from(U256::from(datanet));
    let (policy, requested, granted, denied, withdrawn) = futures_util::try_join!(
        async {
            let call = DatanetRegistry::accessPolicyCall::new((U256::from(datanet),));
            web.client
                .call(registry, call)
                .await
                .map_err(Failure::chain)
        },
        web.logs_where::<AccessRequested>(registry, topic),
        web.logs_where::<AccessGranted>(registry, topic),
        web.logs_where::<AccessDenied>(registry, topic),
        web.logs_where::<AccessRequestWithdrawn>(registry, topic),
    )?;
    // The accounts that asked or were granted, the latest to change first; the registry's
    // own record says where each stands (several events in one block cannot be ordered from
    // their blocks alone).
    let mut latest: BTreeMap<Address, u64> = BTreeMap::new();
    let mut closed: BTreeMap<Address, (u64, Standing)> = BTreeMap::new();
    let mut granted_fee: BTreeMap<Address, u128> = BTreeMap::new();
    for (block, account) in requested.iter().map(|(b, e)| (*b, e.account)) {
        let at = latest.entry(account).or_default();
        *at = (*at).max(block);
    }
    for (block, e) in &granted {
        let at = latest.entry(e.account).or_default();
        *at = (*at).max(*block);
        granted_fee.insert(e.account, e.fee);
    }
    let closings = denied
        .iter()
        .map(|(b, e)| (*b, e.account, Standing::Denied))
        .chain(
            withdrawn
                .iter()
                .map(|(b, e)| (*b, e.account, Standing::Withdrawn)),
        );
    for (block, account, standing) in closings {
        let at = latest.entry(account).or_default();
        *at = (*at).max(block);
        if closed.get(&account).is_none_or(|(b, _)| *b <= block) {
            closed.insert(account, (block, standing));
        }
    }
    let mut rows: Vec<(Address, u64)> = latest.into_iter().collect();
    rows.sort_by_key(|(_, block)| std::cmp::Reverse(*block));
    let shown = &rows[..rows.len().min(SHOWN)];
    let records = futures_util::future::try_join_all(shown.iter().map(|(account, _)| {
        let call = DatanetRegistry::accessOfCall::new((U256::from(datanet), *account));
        web.client.call(registry, call)
    }))
    .await
    .map_err(Failure::chain)?;
    let mut busy = Vec::new(); // accounts for whom a request would be refused
    let accounts: Vec<Value> = shown
        .iter()
        .zip(records)
        .map(|((account, block), record)| {
            let (standing, fee) = match record.status {
                1 => ("waiting", Some(record.fee)),
                2 => ("granted", granted_fee.get(account).copied()),
                _ => match closed.get(account) {
                    Some((_, s)) => (s.name(), None),
                    None => ("no request", None),
                },
            };
            if record.status != 0 {
                busy.push(account.to_string());
            }
            context! {
                account => account.to_string(),
                standing,
                waiting => record.status == 1,
                fee => fee.map(|f| format::open_or_wei(U256::from(f))),
                block,
            }
        })
        .collect();
    Ok(context! {
        permissioned => policy.permissioned,
        fee => format::open_or_wei(U256::from(policy.fee)),
        free => policy.fee == 0,
        fee_exact => format::open_exact(U256::from(policy.fee)),
        accounts,
        busy => busy.join(","),
        more => rows.len().saturating_sub(SHOWN),
    })
}

#[derive(Deserialize)]
struct AccessForm {
    action: String,
    datanet: String,
    #[serde(default)]
    account: String,
    /// `policy`: "permissioned" or "open".
    #[serde(default)]
    policy: String,
    /// `policy`: the fee a request pays, in OPEN.
    #[serde(default)]
    fee: String,
}

async fn access(
    State(web): State<Arc<Web>>,
    body: Result<Json<AccessForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let datanet: U256 = number("datanet", &form.datanet)?;
    let to = addresses(&web)?.datanet_registry;
    let (what, data, value) = match form.action.as_str() {
        "policy" => {
            let permissioned = match form.policy.as_str() {
                "permissioned" => true,
                "open" => false,
                other => {
                    return Err(Refused::field(
                        "policy",
                        format!("{other:?}: choose open or permissioned"),
                    ))
                }
            };
            let fee = open_amount("fee", &form.fee)?;
            let fee: u128 = fee
                .try_into()
                .map_err(|_| Refused::field("fee", "too large"))?;
            let call = DatanetRegistry::setAccessPolicyCall::new((datanet, permissioned, fee));
            ("set the access policy", call.abi_encode(), U256::ZERO)
        }
        "request" => {
            // The request pays the policy's fee as it is now; the contract refuses any other.
            let policy = web
                .client
                .call(to, DatanetRegistry::accessPolicyCall::new((datanet,)))
                .await
                .map_err(|e| Refused::field("datanet", e))?;
            let call = DatanetRegistry::requestAccessCall::new((datanet,));
            ("request access", call.abi_encode(), U256::from(policy.fee))
        }
        "grant" | "deny" => {
            let account = address("account", &form.account)?;
            if form.action == "grant" {
                let call = DatanetRegistry::grantAccessCall::new((datanet, account));
                ("grant access", call.abi_encode(), U256::ZERO)
            } else {
                let call = DatanetRegistry::denyAccessCall::new((datanet, account));
                ("turn down the request", call.abi_encode(), U256::ZERO)
            }
        }
        "withdraw" => {
            let call = DatanetRegistry::withdrawAccessRequestCall::new((datanet,));
            ("withdraw the request", call.abi_encode(), U256::ZERO)
        }
        other => {
            return Err(Refused::field(
                "action",
                format!("{other:?}: expected policy, request, grant, deny or withdraw"),
            ))
        }
    };
    prepared(what, to, data.into(), value)
}
