//! Ethereum JSON-RPC over HTTP: one request, one typed answer, with the node's error kept
//! whole (a revert's data comes back to be decoded against the contracts' errors).

use alloy_primitives::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes as Body, Request, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How long one request may take before it is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a JSON-RPC request failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("bad RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the node at {url} took longer than {REQUEST_TIMEOUT:?} to answer {method}")]
    Timeout { url: String, method: String },
    #[error("the node answered {method} with HTTP {status}: {body}")]
    Http {
        method: String,
        status: u16,
        body: String,
    },
    #[error("the node's answer to {method} is not valid JSON-RPC: {reason}")]
    Malformed { method: String, reason: String },
    /// The node refused the request; `data` holds a revert's return data where there is one.
    #[error("{method} failed: {message} (code {code})")]
    Node {
        method: String,
        code: i64,
        message: String,
        data: Option<Bytes>,
    },
}

/// A JSON-RPC endpoint over plain HTTP, with pooled keep-alive connections.
#[derive(Debug, Clone)]
pub struct Rpc {
    url: String,
    uri: Uri,
    client: Client<HttpConnector, Full<Body>>,
    next_id: std::sync::Arc<AtomicU64>,
}

impl Rpc {
    /// An endpoint at `url` (`http://host:port[/path]`). Nothing is sent until the first
    /// request.
    pub fn new(url: &str) -> Result<Self, RpcError> {
        let bad = |reason: &str| RpcError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported yet; reach the node over http (e.g. through a local \
                     TLS-terminating proxy)",
                ))
            }
            _ => return Err(bad("expected http://host:port")),
        }
        if uri.host().is_none() {
            return Err(bad("no host"));
        }
        Ok(Self {
            url: url.to_string(),
            uri,
            client: Client::builder(TokioExecutor::new()).build_http(),
            next_id: Default::default(),
        })
    }

    /// The endpoint's URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and decodes the result.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request = Request::post(self.uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(Body::from(body.to_string())))
            .expect("a POST with a JSON body is a valid request");
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| RpcError::Unreachable {
                        url: self.url.clone(),
                        reason: error_chain(&e),
                    })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| RpcError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, RpcError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RpcError::Timeout {
                url: self.url.clone(),
                method: method.to_string(),
            })??;
        let malformed = |reason: String| RpcError::Malformed {
            method: method.to_string(),
            reason,
        };
        let answer: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) if !status.is_success() => {
                return Err(RpcError::Http {
                    method: method.to_string(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                })
            }
            Err(e) => return Err(malformed(e.to_string())),
        };
        if let Some(error) = answer.get("error") {
            return Err(RpcError::Node {
                method: method.to_string(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                data: error
                    .get("data")
                    .and_then(Value::as_str)
                    .and_then(|d| d.parse().ok()),
            });
        }
        let result = answer
            .get("result")
            .ok_or_else(|| malformed("no result".into()))?;
        serde_json::from_value(result.clone()).map_err(|e| malformed(e.to_string()))
    }
}

/// An error with its causes, e.g. "client error (Connect): tcp connect error: Connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
