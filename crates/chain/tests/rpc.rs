//! The JSON-RPC envelope: batches, malformed requests, unknown methods, bad parameters,
//! dev-only methods, and a genesis with predeployed code and storage.

mod common;

use alloy_primitives::{Address, Bytes, B256, U256};
use common::*;
use openledger_chain::{
    genesis::{allocation_address, GenesisAccount},
    rpc, Chain, Genesis,
};
use serde_json::{json, Value};

async fn raw(t: &TestChain, body: &str) -> Option<Value> {
    rpc::handle_body(&t.rpc, body.as_bytes()).await
}

#[tokio::test]
async fn batches_answer_each_request_in_order() {
    let t = TestChain::new();
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": "two", "method": "no_such_method"},
        {"jsonrpc": "2.0", "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": ["0x1234"]},
        {"id": 4, "method": "eth_chainId"},
    ]);
    let out = raw(&t, &body.to_string()).await.unwrap();
    let out = out.as_array().unwrap();
    assert_eq!(
        out.len(),
        4,
        "the notification (no id) gets no answer: {out:?}"
    );
    assert_eq!(
        out[0],
        json!({"jsonrpc": "2.0", "id": 1, "result": "0x64c"})
    );
    assert_eq!(out[1]["id"], "two");
    assert_eq!(out[1]["error"]["code"], -32601);
    assert_eq!(out[2]["id"], 3);
    assert_eq!(out[2]["error"]["code"], -32602);
    assert!(
        out[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid parameter 0 (address)"),
        "{}",
        out[2]
    );
    assert_eq!(out[3]["error"]["code"], -32600, "jsonrpc 2.0 is required");
}

#[tokio::test]
async fn malformed_bodies_get_standard_errors() {
    let t = TestChain::new();
    let parse = raw(&t, "{not json").await.unwrap();
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(parse["id"], Value::Null);
    let empty = raw(&t, "[]").await.unwrap();
    assert_eq!(empty["error"]["code"], -32600);
    let (code, message) = t.err("eth_getBlockByNumber", json!(["0xzz", false])).await;
    assert_eq!(code, -32602);
    assert!(message.contains("block number"), "{message}");
    let (code, _) = t.err("eth_getBalance", json!("not an array")).await;
    assert_eq!(code, -32602);
    let (code, message) = t.err("eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(code, -32000);
    assert!(message.contains("WebSocket"), "{message}");
}

#[tokio::test]
async fn send_transaction_needs_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(dir.path(), Genesis::dev(), false).unwrap();
    let t = TestChain::from_parts(chain, dir);
    assert_eq!(t.ok("eth_accounts", json!([])).await, json!([]));
    let from = address(&keys()[0]);
    let (code, message) = t
        .err(
            "eth_sendTransaction",
            json!([{"from": from, "to": from, "value": "0x1"}]),
        )
        .await;
    assert_eq!(code, -32000);
    assert!(message.contains("--dev"), "{message}");
    assert_eq!(t.nonce(from).await, 0);
}

#[tokio::test]
async fn clock_and_block_control_need_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(dir.path(), Genesis::dev(), false).unwrap();
    let t = TestChain::from_parts(chain, dir);
    for method in ["evm_increaseTime", "evm_mine", "openledger_totalSupply"] {
        let (code, message) = t.err(method, json!(["0x3c"])).await;
        assert_eq!(code, -32000);
        assert!(message.contains("--dev"), "{message}");
    }
    assert_eq!(t.chain.head().header.number, 0);
}

#[tokio::test]
async fn a_dev_node_moves_its_clock_and_mines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(dir.path(), Genesis::dev(), true).unwrap();
    let t = TestChain::from_parts(chain, dir);
    let before = now();
    assert_eq!(t.ok("evm_mine", json!([])).await, json!("0x1"));
    assert_eq!(
        t.ok("evm_increaseTime", json!(["0xe10"])).await,
        json!("0xe10")
    );
    assert_eq!(t.ok("evm_mine", json!([])).await, json!("0x2"));
    let head = t.chain.head().header.clone();
    assert_eq!(head.number, 2);
    assert!(head.timestamp >= before + 3600, "{head:?}");
    let (code, _) = t.err("evm_increaseTime", json!(["soon"])).await;
    assert_eq!(code, -32602);
    // The dev node reports the supply: 10^27 wei, whatever blocks were made.
    assert_eq!(
        t.ok("openledger_totalSupply", json!([])).await,
        json!("0x33b2e3c9fd0803ce8000000")
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn genesis_predeploys_code_and_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut genesis = Genesis::dev();
    let runtime: Bytes = vec![
        0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
    ]
    .into();
    let predeploy = Address::repeat_byte(0xcc);
    genesis.alloc.insert(
        predeploy,
        GenesisAccount {
            balance: U256::ZERO,
            nonce: 1,
            code: Some(runtime.clone()),
            storage: [(B256::ZERO, B256::with_last_byte(42))]
                .into_iter()
                .collect(),
        },
    );
    genesis.validate().unwrap();
    let chain = Chain::open(dir.path(), genesis, true).unwrap();
    let t = TestChain::from_parts(chain, dir);
    assert_eq!(
        t.ok("eth_getCode", json!([predeploy, "latest"])).await,
        json!(runtime)
    );
    assert_eq!(
        t.ok("eth_getStorageAt", json!([predeploy, "0x0", "earliest"]))
            .await,
        json!(B256::with_last_byte(42))
    );
    // The predeployed code runs: it returns slot 0.
    let out = t.ok("eth_call", json!([{"to": predeploy}, "latest"])).await;
    assert_eq!(out, json!(B256::with_last_byte(42)));
    // And a genesis that moves a single wei out of the supply is refused.
    let mut broken = Genesis::dev();
    broken
        .alloc
        .get_mut(&allocation_address("team"))
        .unwrap()
        .balance -= U256::from(1);
    let error = broken.validate().unwrap_err().to_string();
    assert!(error.contains("1 wei missing"), "{error}");
}

#[test]
fn a_data_directory_refuses_another_genesis() {
    let dir = tempfile::tempdir().unwrap();
    drop(Chain::open(dir.path(), Genesis::dev(), true).unwrap());
    let mut other = Genesis::dev();
    let team = other.alloc.get_mut(&allocation_address("team")).unwrap();
    team.balance -= U256::from(5);
    other
        .alloc
        .get_mut(&allocation_address("liquidity"))
        .unwrap()
        .balance += U256::from(5);
    let error = Chain::open(dir.path(), other, true)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("genesis state root"), "{error}");
    let mut renumbered = Genesis::dev();
    renumbered.chain_id = 7;
    let error = Chain::open(dir.path(), renumbered, true)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("holds chain 1612"), "{error}");
    // The right genesis still opens it.
    Chain::open(dir.path(), Genesis::dev(), true).unwrap();
}

/// The hashes of a page of `openledger_getTransactionsByAddress` and its `next` cursor.
async fn history(t: &TestChain, who: Address, before: Value, limit: Value) -> (Vec<String>, Value) {
    let page = t
        .ok(
            "openledger_getTransactionsByAddress",
            json!([who, before, limit]),
        )
        .await;
    let hashes = page["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tx| tx["hash"].as_str().unwrap().to_string())
        .collect();
    (hashes, page["next"].clone())
}

#[tokio::test]
async fn an_address_history_lists_sent_received_and_created_newest_first_in_pages() {
    let t = TestChain::new();
    let keys = keys();
    let (alice, bob, carol) = (&keys[0], address(&keys[1]), address(&keys[2]));
    let mut sent = Vec::new();
    for (nonce, to) in [bob, carol, bob].into_iter().enumerate() {
        let hash = t.send_raw(&transfer(alice, nonce as u64, to, 1)).await;
        sent.push(hash["result"].as_str().unwrap().to_string());
        t.mine();
    }
    // A creation: listed under its creator and under the contract it made.
    let create = signed_1559(
        eip1559(
            1612,
            3,
            None,
            U256::ZERO,
            Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]),
        ),
        alice,
    );
    let created = t.send_raw(&create).await["result"]
        .as_str()
        .unwrap()
        .to_string();
    t.mine();
    let contract = address(alice).create(3);

    let (all, next) = history(&t, address(alice), Value::Null, Value::Null).await;
    let mut newest_first = sent.clone();
    newest_first.push(created.clone());
    newest_first.reverse();
    assert_eq!(all, newest_first);
    assert_eq!(next, Value::Null);
    let (to_bob, _) = history(&t, bob, Value::Null, Value::Null).await;
    assert_eq!(to_bob, vec![sent[2].clone(), sent[0].clone()]);
    assert_eq!(
        history(&t, contract, Value::Null, Value::Null).await.0,
        vec![created]
    );
    assert!(history(&t, address(&keys[5]), Value::Null, Value::Null)
        .await
        .0
        .is_empty());

    // Paged one at a time, the cursors walk the same list.
    let (mut walked, mut cursor) = (Vec::new(), Value::Null);
    loop {
        let (page, next) = history(&t, address(alice), cursor, json!("0x1")).await;
        walked.extend(page);
        if next.is_null() || walked.len() > 10 {
            break;
        }
        cursor = next;
    }
    // The last full page still names a cursor; the page after it is empty.
    assert_eq!(walked, newest_first);

    for bad in [json!("0x0"), json!("0x65")] {
        let (code, message) = t
            .err(
                "openledger_getTransactionsByAddress",
                json!([bob, null, bad]),
            )
            .await;
        assert_eq!(code, -32602, "{message}");
        assert!(message.contains("1 to 100"), "{message}");
    }
    let (code, _) = t
        .err(
            "openledger_getTransactionsByAddress",
            json!(["0x12", null, null]),
        )
        .await;
    assert_eq!(code, -32602);

    // The index is in the database: a reopened node answers the same.
    let TestChain { chain, rpc, dir } = t;
    drop((rpc, chain));
    let chain = Chain::open(dir.path(), Genesis::dev(), true).unwrap();
    let t = TestChain::from_parts(chain, dir);
    assert_eq!(
        history(&t, address(alice), Value::Null, Value::Null)
            .await
            .0,
        newest_first
    );
}
