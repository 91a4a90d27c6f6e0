//! The rewards page: what an account earned from paid inference, by role (contributor,
//! curator, model owner, host) and datanet, each payout with the settlement batch that made
//! it, the account's claims, and the claim form for its owner. `/rewards?address=0x…` is the
//! page of one account; without an address the page asks for one (the signed-in account's is
//! filled in by `assets/forms.js`).

use crate::{format, params, Failure, Web};
use alloy_primitives::Address;
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::{context, Value};
use openledger_protocol::rewards;
use serde::Deserialize;
use std::{sync::Arc, time::Instant};

/// Payouts listed, newest first (the totals count them all).
const MAX_PAYOUTS: usize = 100;
/// Claims listed, newest first.
const MAX_CLAIMS: usize = 50;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/rewards", get(page))
}

#[derive(Deserialize)]
struct RewardsQuery {
    address: Option<String>,
}

async fn page(
    State(web): State<Arc<Web>>,
    query: Result<Query<RewardsQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let ctx = async {
        let query = params(query)?;
        match query.address.as_deref().map(str::trim) {
            None | Some("") => Ok(context! {}),
            Some(text) => {
                let who: Address = text.parse().map_err(|_| {
                    let shown = format::short(text, 60);
                    Failure::bad_input(format!("{shown:?} is not a 0x address"))
                })?;
                earnings(&web, who).await
            }
        }
    };
    match ctx.await {
        Ok(ctx) => web.page(started, "rewards", "rewards.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn earnings(web: &Web, who: Address) -> Result<Value, Failure> {
    if web.client.addresses().is_none() {
        return Err(Failure::not_found(
            "this node does not know the protocol's addresses",
        ));
    }
    let e = rewards::earnings(&web.client, who)
        .await
        .map_err(Failure::chain)?;
    let by_role: Vec<Value> = e
        .by_role()
        .into_iter()
        .map(|((role, datanet), amount)| {
            context! { role => role.name(), datanet, amount => format::open_or_wei(amount) }
        })
        .collect();
    let payouts: Vec<Value> = e
        .payouts
        .iter()
        .rev()
        .take(MAX_PAYOUTS)
        .map(|p| {
            context! {
                block => p.block, batch => p.batch.to_string(), role => p.role.name(),
                datanet => p.datanet, contribution => p.contribution.map(|c| c.to_string()),
                amount => format::open_or_wei(p.amount),
            }
        })
        .collect();
    let claims: Vec<Value> = e
        .claims
        .iter()
        .rev()
        .take(MAX_CLAIMS)
        .map(|(block, amount)| context! { block, amount => format::open_or_wei(*amount) })
        .collect();
    let claimed = e.claims.iter().map(|(_, amount)| *amount).sum();
    Ok(context! {
        account => who.to_string(),
        earned => format::open_or_wei(e.total()),
        claimed => format::open_or_wei(claimed),
        claimable => format::open_or_wei(e.claimable),
        can_claim => !e.claimable.is_zero(),
        by_role, payouts, claims,
        more_payouts => e.payouts.len().saturating_sub(MAX_PAYOUTS),
    })
}
