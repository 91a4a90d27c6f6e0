//! WebSocket connections: the same calls as HTTP, plus `newHeads` and `logs` subscriptions.
//!
//! Outgoing messages wait in a bounded queue: a client that stops reading while notifications
//! pile up is disconnected rather than allowed to grow the node's memory.

use super::{format, handle_body, logs::LogFilter, Rpc, RpcError};
use crate::chain::Chain;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{collections::HashMap, sync::Arc};
use tokio::{
    sync::{mpsc, Notify},
    task::JoinHandle,
};

/// The sending side of a connection's queue; a full queue disconnects the client.
#[derive(Clone)]
struct Outbox {
    queue: mpsc::Sender<String>,
    overflow: Arc<Notify>,
}

impl Outbox {
    /// Queues a message; false once the client is gone or too far behind.
    fn send(&self, message: String) -> bool {
        match self.queue.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Serves one WebSocket until the client leaves or falls too far behind.
pub async fn serve(rpc: Arc<Rpc>, socket: WebSocket) {
    let chain = rpc.chain.clone();
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outgoing) = mpsc::channel::<String>(rpc.limits.ws_queue.max(1));
    let overflow = Arc::new(Notify::new());
    let out = Outbox {
        queue,
        overflow: overflow.clone(),
    };
    let writer = tokio::spawn(async move {
        while let Some(text) = outgoing.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let mut subscriptions: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut next_id: u64 = 1;
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = overflow.notified() => {
                tracing::debug!("WebSocket client not reading; disconnecting it");
                break;
            }
        };
        let Some(Ok(message)) = message else { break };
        let body = match message {
            Message::Text(text) => text.as_bytes().to_vec(),
            Message::Binary(bytes) => bytes.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        let request: Option<Value> = serde_json::from_slice(&body).ok();
        let method = request
            .as_ref()
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        let reply = match (method, &request) {
            (Some("eth_subscribe"), Some(request))
                if subscriptions.len() >= rpc.limits.ws_subscriptions =>
            {
                respond(
                    request,
                    Err(RpcError::server(format!(
                        "too many subscriptions on this connection: at most {} \
                         (--ws-max-subscriptions)",
                        rpc.limits.ws_subscriptions
                    ))),
                )
            }
            (Some("eth_subscribe"), Some(request)) => match subscribe(&chain, request) {
                Ok(subscription) => {
                    let id = format!("{next_id:#x}");
                    next_id += 1;
                    // The reply goes out before the first notification can.
                    if let Some(reply) = respond(request, Ok(json!(id))) {
                        out.send(reply.to_string());
                    }
                    let task = forward(subscription, id.clone(), out.clone());
                    subscriptions.insert(id, task);
                    None
                }
                Err(e) => respond(request, Err(e)),
            },
            (Some("eth_unsubscribe"), Some(request)) => {
                let id = request["params"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let removed = subscriptions.remove(&id).map(|task| task.abort()).is_some();
                respond(request, Ok(json!(removed)))
            }
            _ => handle_body(&rpc, &body).await,
        };
        if let Some(reply) = reply {
            if !out.send(reply.to_string()) {
                break;
            }
        }
    }
    for task in subscriptions.into_values() {
        task.abort();
    }
    writer.abort();
}

fn respond(request: &Value, result: Result<Value, RpcError>) -> Option<Value> {
    let id = request.get("id")?.clone();
    Some(match result {
        Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    })
}

fn notification(id: &str, result: Value) -> String {
    json!({"jsonrpc": "2.0", "method": "eth_subscription",
           "params": {"subscription": id, "result": result}})
    .to_string()
}

/// A subscription accepted but not yet forwarding.
struct Subscription {
    filter: Option<LogFilter>,
    blocks: tokio::sync::broadcast::Receiver<Arc<crate::block::Block>>,
}

fn subscribe(chain: &Chain, request: &Value) -> Result<Subscription, RpcError> {
    let params = &request["params"];
    let kind = params[0].as_str().unwrap_or_default();
    let filter = match kind {
        "newHeads" => None,
        "logs" => Some(LogFilter::parse(params.get(1).unwrap_or(&json!({})))?),
        other => {
            return Err(RpcError::invalid_params(format!(
                "unsupported subscription {other:?}: use newHeads or logs"
            )))
        }
    };
    Ok(Subscription {
        filter,
        blocks: chain.blocks.subscribe(),
    })
}

/// Sends a notification for every new block (or each matching log) until the client leaves.
fn forward(subscription: Subscription, id: String, out: Outbox) -> JoinHandle<()> {
    let Subscription { filter, mut blocks } = subscription;
    tokio::spawn(async move {
        loop {
            let block = match blocks.recv().await {
                Ok(block) => block,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "subscriber too slow; blocks skipped");
                    continue;
                }
                Err(_) => break,
            };
            let messages = match &filter {
                None => vec![notification(&id, format::header(&block))],
                Some(filter) => {
                    let mut logs = Vec::new();
                    filter.block_logs(&block, &mut logs);
                    logs.into_iter().map(|l| notification(&id, l)).collect()
                }
            };
            for message in messages {
                if !out.send(message) {
                    return;
                }
            }
        }
    })
}
