//! Ethereum JSON-RPC over HTTP and WebSocket on one port.
//!
//! `POST /` takes single and batch requests; `GET /` upgrades to a WebSocket that takes the same
//! requests plus `eth_subscribe`/`eth_unsubscribe`. Method bodies live in [`eth`], JSON shapes in
//! [`format`], parameter parsing in [`params`], and log filters in [`logs`].

mod eth;
pub mod format;
pub mod logs;
pub mod params;
mod ws;

use crate::{
    chain::{Chain, QueryError},
    exec::CallError,
    store::StoreError,
    submit::TxError,
};
use axum::{
    body::Bytes,
    extract::{State, WebSocketUpgrade},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::{json, Value};
use std::{net::SocketAddr, sync::Arc, time::Instant};

/// A JSON-RPC error object.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// -32602: the parameters are wrong.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
            data: None,
        }
    }
    /// -32000: the server refuses (geth's code for most refusals).
    pub fn server(message: impl Into<String>) -> Self {
        Self {
            code: -32000,
            message: message.into(),
            data: None,
        }
    }
    /// -32603: the node itself failed.
    pub fn internal(e: StoreError) -> Self {
        Self {
            code: -32603,
            message: e.to_string(),
            data: None,
        }
    }
    /// -32601.
    pub fn method_not_found(method: &str) -> Self {
        Self {
            code: -32601,
            message: format!("the method {method} does not exist/is not available"),
            data: None,
        }
    }
    fn to_json(&self) -> Value {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            err["data"] = data.clone();
        }
        err
    }
}

impl From<QueryError> for RpcError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::UnknownBlock => Self::server(e.to_string()),
            QueryError::Store(e) => Self::internal(e),
        }
    }
}

impl From<TxError> for RpcError {
    fn from(e: TxError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            data: None,
        }
    }
}

impl From<CallError> for RpcError {
    fn from(e: CallError) -> Self {
        match e {
            // geth's shape: code 3, the revert data in `data`, the reason in the message.
            CallError::Reverted { output, .. } => {
                let reason = revert_reason(&output);
                Self {
                    code: 3,
                    message: match reason {
                        Some(r) => format!("execution reverted: {r}"),
                        None => "execution reverted".into(),
                    },
                    data: Some(json!(output)),
                }
            }
            CallError::Halted(reason) => Self::server(format!("execution halted: {reason:?}")),
            CallError::Invalid(message) => Self::server(message),
        }
    }
}

/// Decodes `Error(string)` revert data.
fn revert_reason(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&[0x08, 0xc3, 0x79, 0xa0][..])?;
    if body.len() < 64 {
        return None;
    }
    let len = usize::try_from(alloy_primitives::U256::from_be_slice(&body[32..64])).ok()?;
    let text = body.get(64..64 + len)?;
    String::from_utf8(text.to_vec()).ok()
}

/// Answers one request object; `None` for a notification (no `id`).
pub async fn handle_request(chain: &Chain, request: &Value) -> Option<Value> {
    let started = Instant::now();
    let id = request.get("id").cloned();
    let result = match (
        request.get("method").and_then(Value::as_str),
        request.get("jsonrpc"),
    ) {
        (Some(method), Some(Value::String(v))) if v == "2.0" => {
            eth::dispatch(chain, method, request.get("params").unwrap_or(&Value::Null)).await
        }
        _ => Err(RpcError {
            code: -32600,
            message: "invalid request: needs jsonrpc \"2.0\" and a method".into(),
            data: None,
        }),
    };
    chain.metrics.rpc_requests.inc();
    chain
        .metrics
        .rpc_latency
        .observe(started.elapsed().as_secs_f64());
    let id = id?;
    Some(match result {
        Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
        Err(e) => {
            chain.metrics.rpc_errors.inc();
            json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})
        }
    })
}

/// Answers a request body: one request or a batch.
pub async fn handle_body(chain: &Chain, body: &[u8]) -> Option<Value> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {e}")}}))
        }
    };
    match parsed {
        Value::Array(requests) if requests.is_empty() => Some(json!({"jsonrpc": "2.0",
            "id": null, "error": {"code": -32600, "message": "empty batch"}})),
        Value::Array(requests) => {
            let mut out = Vec::with_capacity(requests.len());
            for request in &requests {
                out.extend(handle_request(chain, request).await);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        request => handle_request(chain, &request).await,
    }
}

async fn http(State(chain): State<Arc<Chain>>, body: Bytes) -> Response {
    match handle_body(&chain, &body).await {
        Some(value) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&value).unwrap_or_default(),
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn upgrade(State(chain): State<Arc<Chain>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| ws::serve(chain, socket))
}

async fn metrics(State(chain): State<Arc<Chain>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        chain.metrics.render(chain.head().header.number),
    )
        .into_response()
}

/// The JSON-RPC router (HTTP POST and WebSocket upgrade on `/`).
pub fn router(chain: Arc<Chain>) -> Router {
    Router::new()
        .route("/", get(upgrade).post(http))
        .with_state(chain)
}

/// The metrics router (`GET /metrics`).
pub fn metrics_router(chain: Arc<Chain>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(chain)
}

/// Binds `addr` and serves `router` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(bound)
}
