//! Abusive JSON-RPC requests against a running node: each gets a clear error (or is cut to
//! the limit) and blocks keep coming meanwhile.

use alloy_primitives::{Address, Bytes, B256, U256};
use futures_util::{SinkExt, StreamExt};
use openledger_chain::{
    genesis::GenesisAccount,
    mempool::PoolLimits,
    rpc::{Cors, RpcLimits},
    Genesis, Node, NodeConfig,
};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Runtime code that loops forever: JUMPDEST PUSH1 0 JUMP.
const LOOP: [u8; 4] = [0x5b, 0x60, 0x00, 0x56];
const LOOPER: Address = Address::repeat_byte(0x10);
/// Runtime code that emits one empty log: PUSH1 0 PUSH1 0 LOG0 STOP.
const EMIT: [u8; 6] = [0x60, 0x00, 0x60, 0x00, 0xa0, 0x00];
const EMITTER: Address = Address::repeat_byte(0x11);

struct Live {
    node: Node,
    _dir: tempfile::TempDir,
}

async fn start(limits: RpcLimits) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let mut genesis = Genesis::dev();
    genesis.alloc.insert(
        LOOPER,
        GenesisAccount {
            balance: U256::ZERO,
            nonce: 1,
            code: Some(Bytes::from(LOOP.to_vec())),
            storage: Default::default(),
        },
    );
    genesis.alloc.insert(
        EMITTER,
        GenesisAccount {
            balance: U256::ZERO,
            nonce: 1,
            code: Some(Bytes::from(EMIT.to_vec())),
            storage: Default::default(),
        },
    );
    let node = Node::start(NodeConfig {
        data_dir: dir.path().to_path_buf(),
        genesis,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: None,
        block_time: Duration::from_millis(100),
        dev: true,
        pool: PoolLimits::default(),
        rpc: limits,
    })
    .await
    .unwrap();
    Live { node, _dir: dir }
}

/// One HTTP request over a fresh connection; returns the status, the raw headers and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

async fn rpc(addr: SocketAddr, body: &Value) -> Value {
    let (status, _, body) = http(
        addr,
        "POST",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn call(addr: SocketAddr, method: &str, params: Value) -> Value {
    rpc(
        addr,
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    .await
}

async fn block_number(addr: SocketAddr) -> u64 {
    let v = call(addr, "eth_blockNumber", json!([])).await;
    u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Runs `abuse` while checking that blocks keep coming and the node keeps answering fast;
/// returns what `abuse` returned.
async fn while_blocks_continue<T>(
    addr: SocketAddr,
    abuse: impl std::future::Future<Output = T>,
) -> T {
    let first = block_number(addr).await;
    let watcher = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        let mut last = first;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let asked = Instant::now();
            last = block_number(addr).await;
            slowest = slowest.max(asked.elapsed());
        }
        (last, slowest)
    });
    let out = abuse.await;
    let (last, slowest) = watcher.await.unwrap();
    assert!(last >= first + 3, "blocks stalled: {first} -> {last}");
    assert!(
        // Generous for a loaded CI machine; the stall this guards against lasted seconds.
        slowest < Duration::from_millis(1500),
        "eth_blockNumber took {slowest:?}"
    );
    out
}

#[tokio::test]
async fn an_endless_eth_call_is_capped_while_blocks_keep_coming() {
    let live = start(RpcLimits::default()).await;
    let addr = live.node.http_addr;
    let started = Instant::now();
    let response = while_blocks_continue(addr, async {
        // The block's whole gas limit is asked for; the cap (50M) applies.
        call(
            addr,
            "eth_call",
            json!([{"to": LOOPER, "gas": "0x11e1a300"}, "latest"]),
        )
        .await
    })
    .await;
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("OutOfGas"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn an_eth_call_past_its_time_is_aborted() {
    let live = start(RpcLimits {
        gas_cap: 300_000_000,
        evm_timeout: Duration::from_millis(100),
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let response = while_blocks_continue(addr, async {
        let calls = (0..3).map(|_| call(addr, "eth_estimateGas", json!([{"to": LOOPER}])));
        futures_util::future::join_all(calls).await
    })
    .await;
    for response in response {
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(message, "execution aborted (timeout = 100ms)", "{response}");
    }
}

#[tokio::test]
async fn batches_are_bounded_in_length_and_answer_size() {
    let live = start(RpcLimits {
        batch_response_bytes: 2_000,
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let request = |id: usize| {
        json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBlockByNumber",
        "params": ["latest", false]})
    };
    let too_long = Value::Array((0..1001).map(request).collect());
    let response = while_blocks_continue(addr, rpc(addr, &too_long)).await;
    assert_eq!(response["error"]["code"], -32600, "{response}");
    assert!(response["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("batch too large"));

    let big = Value::Array((0..20).map(request).collect());
    let response = rpc(addr, &big).await;
    let answers = response.as_array().unwrap();
    assert_eq!(answers.len(), 20);
    assert!(answers[0].get("result").is_some());
    assert_eq!(answers[19]["error"]["code"], -32003, "{}", answers[19]);
}

#[tokio::test]
async fn oversized_bodies_and_non_json_posts_are_refused() {
    let live = start(RpcLimits {
        max_body_bytes: 64 * 1024,
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let padding = "x".repeat(100 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [padding]});
    let (status, _, _) = while_blocks_continue(
        addr,
        http(
            addr,
            "POST",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 413);

    // A cross-site form or a text/plain fetch needs no preflight: refused before it runs.
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
        "params": [{"from": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "to": LOOPER}]});
    for kind in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, _, body) = http(
            addr,
            "POST",
            &[("Content-Type", kind), ("Origin", "https://evil.example")],
            send.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 415, "{kind}: {body}");
    }
    assert_eq!(
        call(
            addr,
            "eth_getTransactionCount",
            json!(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "pending"])
        )
        .await["result"],
        "0x0",
        "nothing was sent"
    );
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let live = start(RpcLimits {
        cors: Cors::parse("https://app.example"),
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let preflight = |origin: &'static str| async move {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        http(addr, "OPTIONS", &headers, b"").await
    };
    let (status, head, _) = preflight("https://app.example").await;
    assert_eq!(status, 204);
    assert!(head
        .to_lowercase()
        .contains("access-control-allow-origin: https://app.example"));
    let (status, head, _) = preflight("https://evil.example").await;
    assert_eq!(status, 403);
    assert!(!head.to_lowercase().contains("access-control-allow-origin"));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).to_string();
    let (_, head, _) = http(
        addr,
        "POST",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://app.example"),
        ],
        body.as_bytes(),
    )
    .await;
    assert!(head
        .to_lowercase()
        .contains("access-control-allow-origin: https://app.example"));
    // WebSockets carry no preflight: a page from another origin is refused at the upgrade.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    for (origin, allowed) in [
        ("https://evil.example", false),
        ("https://app.example", true),
    ] {
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let upgraded = tokio_tungstenite::client_async(request, stream).await;
        assert_eq!(upgraded.is_ok(), allowed, "{origin}");
    }
}

#[tokio::test]
async fn fee_history_logs_and_proofs_are_bounded() {
    let live = start(RpcLimits {
        max_log_range: 3,
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let percentiles: Vec<f64> = (0..101).map(|i| i as f64 * 0.5).collect();
    let response = while_blocks_continue(
        addr,
        call(
            addr,
            "eth_feeHistory",
            json!(["0x4", "latest", percentiles]),
        ),
    )
    .await;
    assert!(response["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too many reward percentiles"));
    let response = call(
        addr,
        "eth_feeHistory",
        json!(["0x4", "latest", [10.0, 10.0]]),
    )
    .await;
    assert!(response["error"]["message"]
        .as_str()
        .unwrap()
        .contains("strictly ascending"));
    let response = call(addr, "eth_feeHistory", json!(["0xffffffff", "latest", []])).await;
    let reported = response["result"]["gasUsedRatio"].as_array().unwrap().len();
    assert!(reported <= 1024, "{reported} blocks");

    let response = call(
        addr,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest"}]),
    )
    .await;
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max block range"),
        "{response}"
    );

    let slots: Vec<B256> = (0..1025u64).map(|i| B256::from(U256::from(i))).collect();
    let response = call(addr, "eth_getProof", json!([LOOPER, slots, "latest"])).await;
    assert!(response["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too many storage keys"));
    let response = call(
        addr,
        "eth_getProof",
        json!([LOOPER, [B256::ZERO], "latest"]),
    )
    .await;
    assert!(response.get("result").is_some(), "{response}");
}

#[tokio::test]
async fn get_logs_names_its_result_limit() {
    let live = start(RpcLimits {
        max_logs: 0,
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let dev = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let sent = call(
        addr,
        "eth_sendTransaction",
        json!([{"from": dev, "to": EMITTER}]),
    )
    .await;
    let hash = sent["result"].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(addr, "eth_getTransactionReceipt", json!([hash])).await["result"].is_null() {
        assert!(Instant::now() < deadline, "the transaction was not mined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = call(
        addr,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "address": EMITTER}]),
    )
    .await;
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("query returned more than 0 results"),
        "{response}"
    );
}

async fn ws(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .unwrap();
    socket
}

#[tokio::test]
async fn websockets_are_bounded_in_connections_subscriptions_and_queue() {
    let live = start(RpcLimits {
        ws_connections: 2,
        ws_subscriptions: 2,
        ws_queue: 4,
        ..RpcLimits::default()
    })
    .await;
    let addr = live.node.http_addr;
    let mut first = ws(addr).await;
    let subscribe =
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});
    for _ in 0..2 {
        first
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
    }
    first
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..3 {
        let Some(Ok(Message::Text(text))) = first.next().await else {
            break;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        refused |= v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("too many subscriptions"));
    }
    assert!(refused, "the third subscription is refused");

    let _second = ws(addr).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let third = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream).await;
    assert!(third.is_err(), "a third connection is refused");

    // A client that asks for large answers and never reads them fills its queue once the
    // socket's buffers are full: it is dropped, and blocks keep coming meanwhile.
    drop((first, _second));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut greedy = ws(addr).await;
    let percentiles: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let ask = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_feeHistory",
        "params": ["0x400", "latest", percentiles]});
    while_blocks_continue(addr, async {
        for _ in 0..400 {
            if greedy.send(Message::text(ask.to_string())).await.is_err() {
                break;
            }
        }
    })
    .await;
    let (mut answers, mut closed) = (0, false);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), greedy.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => answers += 1,
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(answers < 400, "every request was answered: {answers}");
    assert!(closed, "the client that did not read was disconnected");

    // A message over the size limit closes the connection too.
    let live = start(RpcLimits {
        ws_message_bytes: 1024,
        ..RpcLimits::default()
    })
    .await;
    let mut socket = ws(live.node.http_addr).await;
    let _ = socket.send(Message::text("x".repeat(4096))).await;
    let next = tokio::time::timeout(Duration::from_secs(2), socket.next())
        .await
        .unwrap();
    assert!(
        matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{next:?}"
    );
}
