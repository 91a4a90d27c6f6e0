//! Fuzz targets (see `common/fuzz.rs`): transaction decoding and admission, the JSON-RPC body
//! handler, and log filters. Each runs for `OPENLEDGER_FUZZ_SECS` seconds.

mod common;

use alloy_consensus::{TxEip2930, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Bytes, TxKind, U256};
use common::{fuzz, *};
use openledger_chain::{rpc, submit};
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn signed_seeds() -> Vec<Vec<u8>> {
    let keys = keys();
    let to = address(&keys[1]);
    let mut call = eip1559(1612, 0, Some(to), U256::from(7), Bytes::from(vec![1, 2, 3]));
    call.access_list = alloy_eips::eip2930::AccessList(vec![alloy_eips::eip2930::AccessListItem {
        address: to,
        storage_keys: vec![Default::default()],
    }]);
    let legacy = TxLegacy {
        chain_id: Some(1612),
        nonce: 1,
        gas_price: 2_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::from(1),
        input: Bytes::new(),
    };
    let access = TxEip2930 {
        chain_id: 1612,
        nonce: 2,
        gas_price: 2_000_000_000,
        gas_limit: 50_000,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::from(vec![0xff; 40]),
    };
    vec![
        transfer(&keys[0], 0, to, 1),
        signed_1559(call, &keys[0]),
        signed_1559(
            eip1559(1612, 3, None, U256::ZERO, store_and_log_initcode()),
            &keys[2],
        ),
        signed_legacy(legacy, &keys[0]),
        signed_2930(access, &keys[3]),
        vec![],
    ]
}

/// Any bytes: decoding never panics, what decodes re-encodes to exactly the same bytes (so a
/// transaction has one hash), and admission through eth_sendRawTransaction answers with a
/// result or a JSON-RPC error.
#[test]
fn fuzz_transaction_decoding_and_admission() {
    let rt = runtime();
    let t = TestChain::new();
    let seeds = signed_seeds();
    let mut admitted = 0;
    fuzz::run("tx", &seeds, 200, |input| {
        if let Ok(tx) = submit::decode(input, 1612) {
            assert_eq!(
                tx.tx.encoded_2718(),
                input,
                "a decoded transaction re-encodes exactly"
            );
            admitted += 1;
            if admitted % 16 == 0 {
                let response = rt.block_on(t.send_raw(input));
                assert!(response.get("result").is_some() || response["error"]["code"].is_i64());
            }
        }
    });
}

fn rpc_seeds() -> Vec<Vec<u8>> {
    let dev = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}),
        json!({"jsonrpc": "2.0", "id": "a", "method": "eth_getBalance", "params": [dev, "latest"]}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "eth_call", "params": [{"to": dev, "data": "0x1234"}, "latest"]}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "eth_estimateGas", "params": [{"from": dev, "to": dev, "value": "0x1"}]}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "eth_getBlockByNumber", "params": ["0x0", true]}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "eth_feeHistory", "params": ["0x4", "latest", [10, 50]]}),
        json!({"jsonrpc": "2.0", "id": 6, "method": "eth_getLogs", "params": [{"fromBlock": "0x0", "topics": [null]}]}),
        json!({"jsonrpc": "2.0", "id": 7, "method": "eth_getProof", "params": [dev, ["0x0"], "latest"]}),
        json!({"jsonrpc": "2.0", "method": "eth_blockNumber"}),
        json!([{"jsonrpc": "2.0", "id": 8, "method": "eth_gasPrice"}, {"jsonrpc": "2.0", "id": 9, "method": "net_version"}]),
    ];
    requests
        .iter()
        .map(|r| r.to_string().into_bytes())
        .collect()
}

/// Any body: the handler answers with a JSON-RPC response (or nothing, for notifications),
/// never a panic.
#[test]
fn fuzz_the_json_rpc_body_handler() {
    let rt = runtime();
    let t = TestChain::new();
    fuzz::run("rpc", &rpc_seeds(), 200, |input| {
        let answer = rt.block_on(rpc::handle_body(&t.rpc, input));
        let Some(answer) = answer else { return };
        let each = match &answer {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for response in each {
            assert_eq!(response["jsonrpc"], "2.0", "{response}");
            assert!(response.get("result").is_some() != response.get("error").is_some());
        }
    });
}

/// Any filter: parsing and answering `eth_getLogs` never panics, and what it answers is a list.
#[test]
fn fuzz_log_filters() {
    let rt = runtime();
    let t = TestChain::new();
    // A few blocks with logs to filter.
    let keys = keys();
    rt.block_on(async {
        let deploy = signed_1559(
            eip1559(1612, 0, None, U256::ZERO, store_and_log_initcode()),
            &keys[0],
        );
        t.send_raw(&deploy).await;
        t.mine();
    });
    let contract = address(&keys[0]).create(0).to_string();
    let filters = [
        json!({"fromBlock": "0x0", "toBlock": "latest"}),
        json!({"address": contract, "topics": [null, ["0x00000000000000000000000000000000000000000000000000000000000000aa"]]}),
        json!({"blockHash": "0x0000000000000000000000000000000000000000000000000000000000000000"}),
        json!({"fromBlock": "earliest", "address": [contract, contract], "topics": []}),
    ];
    let seeds: Vec<Vec<u8>> = filters.iter().map(|f| f.to_string().into_bytes()).collect();
    fuzz::run("logs", &seeds, 200, |input| {
        let Ok(filter) = serde_json::from_slice::<Value>(input) else {
            return;
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [filter]});
        let answer = rt
            .block_on(rpc::handle_body(&t.rpc, body.to_string().as_bytes()))
            .expect("an answer");
        match answer.get("result") {
            Some(result) => assert!(result.is_array(), "{answer}"),
            None => assert!(answer["error"]["message"].is_string(), "{answer}"),
        }
    });
}
