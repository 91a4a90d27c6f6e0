//! A receipt and its attribution, for the consumer who paid it, and attribution receipts by
//! hash, for the staked validators who check settled batches.
//!
//! | Route | Who | What |
//! |---|---|---|
//! | `GET /v1/receipts/{id}` | the receipt's consumer | the receipt, its attribution (hash, credits by contribution, the attribution receipt in hex) and its settlement |
//! | `GET /v1/attributions/{hash}` | a staked validator | the attribution receipt whose keccak256 is `hash`, in hex; for an answer that retrieved, the trained attribution's hash and receipt (or, when nothing was attributed, the served prompt and answer tokens) and the retrieval whose combined hash is `hash` |
//!
//! Attribution receipts hold the prompt and the answer, so nobody else reads them.

use crate::{
    keys::{require_key, Consumer, Keys},
    store::Store,
    ApiError,
};
use alloy_primitives::{hex, Address, B256};
use axum::{
    extract::{Path, State},
    routing::get,
    Extension, Json, Router,
};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::Arc;

/// Who may read attribution receipts: what the chain says of an account.
pub trait Validators: Send + Sync {
    /// Whether `account` is staked as a validator.
    fn is_validator(&self, account: Address) -> BoxFuture<'_, Result<bool, String>>;
}

#[derive(Clone)]
struct Shared {
    store: Arc<Store>,
    validators: Arc<dyn Validators>,
}

/// The routes; both need an API key.
pub fn router(keys: Arc<Keys>, store: Arc<Store>, validators: Arc<dyn Validators>) -> Router {
    Router::new()
        .route("/v1/receipts/{id}", get(receipt))
        .route("/v1/attributions/{hash}", get(attribution))
        .route_layer(axum::middleware::from_fn_with_state(keys, require_key))
        .with_state(Shared { store, validators })
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

async fn receipt(
    State(s): State<Shared>,
    Extension(consumer): Extension<Consumer>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let missing = || ApiError::not_found("id", format!("you have no receipt {id}"));
    let n: u64 = id.parse().map_err(|_| missing())?;
    // Another account's receipt is as absent as one that does not exist.
    let row = s
        .store
        .receipt(n)
        .map_err(store_error)?
        .filter(|r| r.consumer == consumer.account)
        .ok_or_else(missing)?;
    let settlement = s.store.settlement_of(n).map_err(store_error)?;
    let attribution = match s.store.attribution(n).map_err(store_error)? {
        None => json!({"status": "pending"}),
        Some(a) => {
            let bytes = match a.unattributed {
                None => s
                    .store
                    .attribution_receipt(a.trained.unwrap_or(a.hash))
                    .map_err(store_error)?,
                Some(_) => None,
            };
            let nobody = a.unattributed.is_some() && a.credits.is_empty();
            json!({
                "status": if nobody { "unattributed" } else { "attributed" },
                "hash": a.hash,
                "trained": a.trained,
                "credits": a.credits.iter()
                    .map(|&(c, bps)| json!({"contribution": c, "basis_points": bps}))
                    .collect::<Vec<_>>(),
                "reason": a.unattributed,
                "receipt": bytes.map(|b| format!("0x{}", hex::encode(b))),
            })
        }
    };
    Ok(Json(json!({
        "id": row.id,
        "object": "receipt",
        "agent": format!("agent-{}", row.agent_id),
        "adapter": row.adapter,
        "seq": row.seq,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "fee": row.fee.to_string(),
        "complete": row.complete,
        "created_at": row.created_at,
        "attribution": attribution,
        "retrieval": row.retrieval.as_ref().map(crate::knowledge::Retrieval::json),
        "batch": settlement.map(|s| s.0),
        "released": settlement.is_some_and(|s| s.1),
    })))
}

async fn attribution(
    State(s): State<Shared>,
    Extension(consumer): Extension<Consumer>,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hash: B256 = hash.parse().map_err(|_| {
        ApiError::invalid(
            "hash",
            format!("{hash:?} is not a 32-byte hash (0x and 64 hex digits)"),
        )
    })?;
    let allowed = s
        .validators
        .is_validator(consumer.account)
        .await
        .map_err(ApiError::internal)?;
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "{} is not a staked validator: only validators read attribution receipts",
            consumer.account
        )));
    }
    let missing = || ApiError::not_found("hash", format!("no attribution receipt {hash} here"));
    let as_hex = |bytes: Vec<u8>| format!("0x{}", hex::encode(bytes));
    if let Some(bytes) = s.store.attribution_receipt(hash).map_err(store_error)? {
        return Ok(Json(json!({"hash": hash, "receipt": as_hex(bytes)})));
    }
    // An answer that retrieved settles with a hash of its trained attribution and its
    // retrieval: both are served.
    let id = s
        .store
        .retrieved_attribution(hash)
        .map_err(store_error)?
        .ok_or_else(missing)?;
    let row = s.store.receipt(id).map_err(store_error)?;
    let recorded = s.store.attribution(id).map_err(store_error)?;
    let (Some(row), Some(recorded)) = (row, recorded) else {
        return Err(missing());
    };
    let (Some(trained), Some(retrieval)) = (recorded.trained, row.retrieval) else {
        return Err(missing());
    };
    // Without an attribution receipt, `trained` is the served tokens' hash: they are served
    // so that it can be checked, and the query read from the prompt.
    let bytes = s.store.attribution_receipt(trained).map_err(store_error)?;
    let served = bytes
        .is_none()
        .then(|| json!({"prompt": row.prompt, "answer": row.answer}));
    Ok(Json(json!({
        "hash": hash,
        "trained": trained,
        "receipt": bytes.map(as_hex),
        "served": served,
        "retrieval": retrieval.json(),
    })))
}
