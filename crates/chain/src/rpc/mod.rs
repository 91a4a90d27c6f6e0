//! Ethereum JSON-RPC over HTTP and WebSocket on one port.
//!
//! `POST /` takes single and batch requests; `GET /` upgrades to a WebSocket that takes the same
//! requests plus `eth_subscribe`/`eth_unsubscribe`. Method bodies live in [`eth`], JSON shapes in
//! [`format`], parameter parsing in [`params`], and log filters in [`logs`].

mod eth;
pub mod format;
mod http;
pub mod limits;
pub mod logs;
pub mod params;
mod ws;

pub use http::{metrics_router, router, serve};
pub use limits::{Cors, RpcLimits};

use crate::exec::CallBounds;
use crate::{
    chain::{Chain, QueryError},
    exec::CallError,
    store::StoreError,
    submit::TxError,
};
use serde_json::{json, Value};
use std::{
    sync::{atomic::AtomicUsize, Arc},
    time::Instant,
};
use tokio::sync::Semaphore;

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
            CallError::Timeout(_) => Self::server(e.to_string()),
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

/// The JSON-RPC service: the chain, the server's bounds, and the slots that bound the work
/// running at once.
pub struct Rpc {
    pub chain: Arc<Chain>,
    pub limits: RpcLimits,
    /// Calls (`eth_call`, `eth_estimateGas`, `eth_getProof`, `eth_getLogs`) run on blocking
    /// threads, this many at once; a slot is held until the work ends, even if the client left.
    calls: Arc<Semaphore>,
    /// Open WebSocket connections.
    ws_open: AtomicUsize,
}

impl Rpc {
    /// The service over `chain` with these bounds.
    pub fn new(chain: Arc<Chain>, limits: RpcLimits) -> Arc<Self> {
        Arc::new(Self {
            calls: Arc::new(Semaphore::new(limits.concurrent_calls.max(1))),
            chain,
            limits,
            ws_open: AtomicUsize::new(0),
        })
    }

    /// The bounds of a call starting now.
    fn bounds(&self) -> CallBounds {
        CallBounds {
            gas_cap: self.limits.gas_cap,
            deadline: Instant::now() + self.limits.evm_timeout,
            timeout: self.limits.evm_timeout,
        }
    }

    /// Runs `work` on a blocking thread once a call slot is free, so that neither the async
    /// runtime nor block production waits on it.
    async fn off_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Chain, CallBounds) -> T + Send + 'static,
    ) -> Result<T, RpcError> {
        let slot = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RpcError::server("the node is shutting down"))?;
        let chain = self.chain.clone();
        let bounds = self.bounds();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work(&chain, bounds)
        })
        .await
        .map_err(|e| RpcError::server(format!("call failed: {e}")))
    }
}

/// Answers one request object; `None` for a notification (no `id`).
pub async fn handle_request(rpc: &Rpc, request: &Value) -> Option<Value> {
    let chain = &rpc.chain;
    let started = Instant::now();
    let id = request.get("id").cloned();
    let result = match (
        request.get("method").and_then(Value::as_str),
        request.get("jsonrpc"),
    ) {
        (Some(method), Some(Value::String(v))) if v == "2.0" => {
            eth::dispatch(rpc, method, request.get("params").unwrap_or(&Value::Null)).await
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

fn error_response(code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})
}

/// Answers a request body: one request or a batch.
pub async fn handle_body(rpc: &Rpc, body: &[u8]) -> Option<Value> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(error_response(-32700, format!("parse error: {e}"))),
    };
    match parsed {
        Value::Array(requests) if requests.is_empty() => {
            Some(error_response(-32600, "empty batch".into()))
        }
        Value::Array(requests) if requests.len() > rpc.limits.batch_items => Some(error_response(
            -32600,
            format!(
                "batch too large: {} requests, at most {} (--rpc-batch-items)",
                requests.len(),
                rpc.limits.batch_items
            ),
        )),
        Value::Array(requests) => {
            let mut out = Vec::with_capacity(requests.len());
            let mut bytes = 0usize;
            for request in &requests {
                if bytes > rpc.limits.batch_response_bytes {
                    // geth's answer once a batch's responses pass the limit.
                    out.push(json!({"jsonrpc": "2.0", "id": request.get("id"),
                        "error": {"code": -32003, "message": format!(
                            "response too large: the batch's answers passed {} bytes \
                             (--rpc-batch-response-bytes)", rpc.limits.batch_response_bytes)}}));
                    continue;
                }
                if let Some(response) = handle_request(rpc, request).await {
                    bytes += response.to_string().len();
                    out.push(response);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        request => handle_request(rpc, &request).await,
    }
}
