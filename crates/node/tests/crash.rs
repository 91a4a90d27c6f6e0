//! Crash safety of the real binary: `kill -9` while transactions stream in loses no accepted
//! transaction and no reported block, and every reported block keeps its state root.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{hex, Signature, TxKind, B256, U256};
use openledger_chain::devkeys::dev_accounts;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

mod common;

use common::{free_addr, rpc, NodeProcess};

fn start(dir: &Path, addr: SocketAddr, metrics: SocketAddr) -> NodeProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_openledger"))
        .args(["node", "--dev", "--block-time", "150", "--data-dir"])
        .arg(dir)
        .args(["--http-addr", &addr.to_string()])
        .args(["--metrics-addr", &metrics.to_string()])
        .args(["--api-addr", &free_addr().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the node");
    let child = NodeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rpc(addr, "eth_chainId", json!([])).is_none() {
        assert!(Instant::now() < deadline, "node did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signed_transfers(per_key: u64) -> Vec<(B256, String)> {
    let mut out = Vec::new();
    for nonce in 0..per_key {
        for key in dev_accounts() {
            let tx = TxEip1559 {
                chain_id: 1612,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: 100_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(alloy_primitives::Address::with_last_byte(nonce as u8)),
                value: U256::from(1 + nonce),
                access_list: Default::default(),
                input: Default::default(),
            };
            let (sig, recid) = key
                .key
                .sign_prehash_recoverable(tx.signature_hash().as_slice())
                .unwrap();
            let envelope = TxEnvelope::from(tx.into_signed(Signature::from((sig, recid))));
            out.push((
                *envelope.tx_hash(),
                hex::encode_prefixed(envelope.encoded_2718()),
            ));
        }
    }
    out
}

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Records every block the node reports: number → (hash, state root).
fn watch_blocks(
    addr: SocketAddr,
    seen: Arc<Mutex<BTreeMap<u64, (String, String)>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(v) = rpc(addr, "eth_getBlockByNumber", json!(["latest", false])) {
            let block = &v["result"];
            if block.is_object() {
                let entry = (
                    block["hash"].as_str().unwrap().to_string(),
                    block["stateRoot"].as_str().unwrap().to_string(),
                );
                seen.lock()
                    .unwrap()
                    .insert(quantity(&block["number"]), entry);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_nine_loses_no_accepted_transaction_and_no_reported_block() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let metrics = free_addr();
    let txs = signed_transfers(150);
    let accepted: Arc<Mutex<Vec<B256>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<u64, (String, String)>>> = Arc::default();
    let mut next = 0;

    for round in 0..2 {
        let mut node = start(dir.path(), addr, metrics);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || watch_blocks(addr, seen, stop))
        };
        // Stream transactions from two threads; kill the node mid-stream.
        let batch: Vec<(B256, String)> = txs[next..next + 700].to_vec();
        next += 700;
        let streamers: Vec<_> = batch
            .chunks(350)
            .map(|chunk| {
                let (chunk, accepted) = (chunk.to_vec(), accepted.clone());
                std::thread::spawn(move || {
                    for (hash, raw) in chunk {
                        match rpc(addr, "eth_sendRawTransaction", json!([raw])) {
                            Some(v) if v.get("result").is_some() => {
                                assert_eq!(v["result"], json!(hash));
                                accepted.lock().unwrap().push(hash);
                            }
                            Some(v) => {
                                // A transaction whose predecessor was lost unacknowledged may
                                // be refused after a restart; nothing else may be.
                                let message = v["error"]["message"].as_str().unwrap_or_default();
                                assert!(
                                    message.contains("nonce") || message.contains("already known"),
                                    "unexpected refusal: {v}"
                                );
                            }
                            None => {}
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(600 + 300 * round));
        node.kill_nine();
        stop.store(true, Ordering::Relaxed);
        for s in streamers {
            s.join().unwrap();
        }
        watcher.join().unwrap();
        assert!(
            !accepted.lock().unwrap().is_empty(),
            "some transactions were accepted"
        );

        // Restart: every reported block is there with the same hash and state root, and every
        // accepted transaction is mined or pending.
        let mut node = start(dir.path(), addr, metrics);
        let head = quantity(&rpc(addr, "eth_blockNumber", json!([])).unwrap()["result"]);
        let reported = seen.lock().unwrap().clone();
        assert!(!reported.is_empty());
        for (number, (hash, root)) in &reported {
            assert!(
                *number <= head,
                "reported block {number} lost (head {head})"
            );
            let block = rpc(
                addr,
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), false]),
            )
            .unwrap();
            assert_eq!(
                block["result"]["hash"],
                json!(hash),
                "block {number} changed"
            );
            assert_eq!(
                block["result"]["stateRoot"],
                json!(root),
                "state root of {number} changed"
            );
        }
        for hash in accepted.lock().unwrap().iter() {
            let mined = &rpc(addr, "eth_getTransactionReceipt", json!([hash])).unwrap()["result"];
            if mined.is_null() {
                let pending =
                    &rpc(addr, "eth_getTransactionByHash", json!([hash])).unwrap()["result"];
                assert!(
                    pending.is_object(),
                    "accepted transaction {hash} lost after kill -9"
                );
            }
        }
        // A client resends what was never acknowledged; then nothing blocks the nonce queues and
        // every accepted transaction is mined.
        let acknowledged: std::collections::HashSet<B256> =
            accepted.lock().unwrap().iter().copied().collect();
        for (hash, raw) in &batch {
            if !acknowledged.contains(hash) {
                rpc(addr, "eth_sendRawTransaction", json!([raw])).unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let unmined = accepted
                .lock()
                .unwrap()
                .iter()
                .filter(|h| {
                    rpc(addr, "eth_getTransactionReceipt", json!([h])).unwrap()["result"].is_null()
                })
                .count();
            if unmined == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{unmined} accepted transactions never mined"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The metrics endpoint reports the head and the mined transactions.
        let page = http_get(metrics, "/metrics");
        let head = quantity(&rpc(addr, "eth_blockNumber", json!([])).unwrap()["result"]);
        let reported_head: u64 = page
            .lines()
            .find_map(|l| l.strip_prefix("openledger_chain_head "))
            .expect("head gauge")
            .parse()
            .unwrap();
        assert!(reported_head <= head && reported_head + 5 >= head);
        for name in [
            "openledger_txs_mined_total",
            "openledger_mempool_size",
            "openledger_rpc_latency_seconds_count",
        ] {
            assert!(page.contains(name), "{name} missing from /metrics");
        }
        node.kill_nine();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}
