//! WebSocket connections: the same calls as HTTP, plus `newHeads` and `logs` subscriptions.

use super::{format, handle_body, logs::LogFilter, RpcError};
use crate::chain::Chain;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{collections::HashMap, sync::Arc};
use tokio::{sync::mpsc, task::JoinHandle};

/// Serves one WebSocket until the client leaves.
pub async fn serve(chain: Arc<Chain>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = outgoing.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let mut subscriptions: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut next_id: u64 = 1;
    while let Some(Ok(message)) = stream.next().await {
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
            (Some("eth_subscribe"), Some(request)) => match subscribe(&chain, request) {
                Ok(subscription) => {
                    let id = format!("{next_id:#x}");
                    next_id += 1;
                    // The reply goes out before the first notification can.
                    if let Some(reply) = respond(request, Ok(json!(id))) {
                        let _ = out.send(reply.to_string());
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
            _ => handle_body(&chain, &body).await,
        };
        if let Some(reply) = reply {
            if out.send(reply.to_string()).is_err() {
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
fn forward(
    subscription: Subscription,
    id: String,
    out: mpsc::UnboundedSender<String>,
) -> JoinHandle<()> {
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
                if out.send(message).is_err() {
                    return;
                }
            }
        }
    })
}
