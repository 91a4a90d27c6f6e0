//! The attribution REST API, on the node's API port.
//!
//! | Route | What |
//! |---|---|
//! | `POST /api/attribution/explain` | `{adapter, prompt, answer?, max_tokens?, amount?}`: the answer (generated with the adapter when not given), its attribution explained, and the receipt |
//! | `POST /api/attribution/receipts/explain` | `{receipt}` (hex): a receipt made before (a paid answer's), explained |
//! | `POST /api/attribution/verify` | `{receipt}` (hex): recomputed from the published artifacts, `identical` or the fields that differ |
//! | `GET /api/attribution/{weights hash}/{file}` | what a validator may download instead of building: `sketches.bin`, `spans/{index.json,tokens.bin,suffixes.bin,documents.bin}` |
//!
//! Errors are `{"error": {"message", "type", "param"}}` with 400, 404, 429 (with
//! `Retry-After`) or 500.

use crate::service::{Attributor, ExplainRequest, ServiceError};
use alloy_primitives::B256;
use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<Attributor>>;

/// One OPEN in its smallest unit: the amount split when a request names none.
const DEFAULT_AMOUNT: u128 = 1_000_000_000_000_000_000;

/// The routes.
pub fn router(attributor: Arc<Attributor>) -> Router {
    Router::new()
        .route("/api/attribution/explain", post(explain))
        .route("/api/attribution/verify", post(verify))
        .route("/api/attribution/receipts/explain", post(explain_receipt))
        .route("/api/attribution/{hash}/{*file}", get(index_file))
        .with_state(attributor)
}

struct ApiError(ServiceError, Option<&'static str>);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self.0 {
            ServiceError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            ServiceError::Busy => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            ServiceError::Attribution(crate::AttributionError::Span(
                crate::span::SpanError::TokenOutOfRange { .. },
            )) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let body = json!({"error": {"message": self.0.to_string(), "type": kind, "param": self.1}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        response
    }
}

fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError(ServiceError::InvalidRequest(message.into()), Some(param))
}

fn adapter_hash(text: &str) -> Result<B256, ApiError> {
    text.parse().map_err(|_| {
        bad(
            "adapter",
            format!("{text:?} is not an adapter's weights hash (0x and 64 hex digits)"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    adapter: String,
    prompt: String,
    answer: Option<String>,
    max_tokens: Option<usize>,
    /// A decimal string (amounts exceed JSON's safe integers) or a number.
    amount: Option<Value>,
}

async fn explain(State(attributor): Shared, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: ExplainBody = serde_json::from_slice(&body).map_err(|e| {
        bad(
            "body",
            format!("the request is not an explain request: {e}"),
        )
    })?;
    let amount = match &body.amount {
        None => DEFAULT_AMOUNT,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| bad("amount", format!("{s:?} is not a whole amount")))?,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(u128::from)
            .ok_or_else(|| bad("amount", format!("{n} is not a whole amount")))?,
        Some(other) => return Err(bad("amount", format!("{other} is not an amount"))),
    };
    let request = ExplainRequest {
        adapter: adapter_hash(&body.adapter)?,
        prompt: body.prompt,
        answer: body.answer,
        max_tokens: body.max_tokens.unwrap_or(64),
        amount,
    };
    let explanation = attributor.explain(request).await?;
    Ok(Json(explanation).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    receipt: String,
}

async fn verify(State(attributor): Shared, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: VerifyBody = serde_json::from_slice(&body)
        .map_err(|e| bad("body", format!("the request is not a verify request: {e}")))?;
    let bytes = alloy_primitives::hex::decode(body.receipt.trim())
        .map_err(|e| bad("receipt", format!("the receipt is not hex: {e}")))?;
    let (hash, differences) = attributor.verify(bytes).await?;
    Ok(Json(json!({
        "receipt_hash": hash,
        "identical": differences.is_empty(),
        "differences": differences,
    }))
    .into_response())
}

async fn explain_receipt(
    State(attributor): Shared,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: VerifyBody = serde_json::from_slice(&body).map_err(|e| {
        bad(
            "body",
            format!("the request is not {{\"receipt\": hex}}: {e}"),
        )
    })?;
    let bytes = alloy_primitives::hex::decode(body.receipt.trim())
        .map_err(|e| bad("receipt", format!("the receipt is not hex: {e}")))?;
    Ok(Json(attributor.explain_receipt(bytes).await?).into_response())
}

async fn index_file(
    State(attributor): Shared,
    Path((hash, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let adapter = adapter_hash(&hash)?;
    let path = attributor.index_file(adapter, &file).ok_or_else(|| {
        ApiError(
            ServiceError::NotFound(format!(
                "no {file} for adapter {adapter}: the indexes are built on the first attribution"
            )),
            Some("file"),
        )
    })?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError(ServiceError::Internal(e.to_string()), None))?;
    // Streamed in blocks: a sketch store can be hundreds of megabytes.
    let blocks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut block = vec![0u8; 1 << 16];
        match file.read(&mut block).await {
            Ok(0) => None,
            Ok(n) => {
                block.truncate(n);
                Some((Ok::<_, std::io::Error>(block), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(blocks),
    )
        .into_response())
}
