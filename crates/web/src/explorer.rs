//! The explorer: the latest blocks (paged), a block with its transactions, a transaction with
//! its receipt and logs (calls and events of the protocol's contracts named), an address, and
//! search by block number, transaction hash or address. Everything is read over JSON-RPC.

use crate::{format, Failure, Web};
use alloy_primitives::{hex, Address, Bytes, B256, U256};
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use minijinja::{context, Value};
use serde_json::{json, Value as Json};
use std::{sync::Arc, time::Instant};

/// Blocks per page.
const PER_PAGE: u64 = 20;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/explorer", get(blocks))
        .route("/explorer/blocks/{number}", get(block))
        .route("/explorer/tx/{hash}", get(transaction))
        .route("/explorer/address/{address}", get(address))
        .route("/explorer/search", get(search))
}

impl Web {
    async fn rpc(&self, method: &str, params: Json) -> Result<Json, Failure> {
        self.client
            .rpc()
            .request::<Json>(method, params)
            .await
            .map_err(Failure::chain)
    }

    async fn block_json(&self, number: u64, full: bool) -> Result<Json, Failure> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), full]),
            )
            .await?;
        if block.is_null() {
            return Err(Failure::not_found(format!(
                "there is no block {number} yet"
            )));
        }
        Ok(block)
    }
}

/// A quantity (`0x…`) of a JSON-RPC answer.
fn quantity(v: &Json) -> U256 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

fn number(v: &Json) -> u64 {
    quantity(v).saturating_to()
}

fn address_of(v: &Json) -> Option<Address> {
    v.as_str().and_then(|s| s.parse().ok())
}

#[derive(serde::Deserialize)]
struct Page {
    before: Option<u64>,
}

async fn blocks(
    State(web): State<Arc<Web>>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    if page.before == Some(0) {
        return web.error(
            started,
            Failure::bad_input("there is no block before block 0"),
        );
    }
    match blocks_page(&web, page.before).await {
        Ok(ctx) => web.page(started, "explorer", "explorer/blocks.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn blocks_page(web: &Web, before: Option<u64>) -> Result<Value, Failure> {
    let head = web.client.block_number().await.map_err(Failure::chain)?;
    let top = before.map_or(head, |b| b.saturating_sub(1).min(head));
    let bottom = top.saturating_sub(PER_PAGE - 1);
    let numbers: Vec<u64> = (bottom..=top).rev().collect();
    // Read together: one page is one round of requests, not twenty in a row.
    let read = numbers.iter().map(|&n| web.block_json(n, false));
    let found = futures_util::future::try_join_all(read).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Value> = found
        .iter()
        .map(|b| {
            let time = number(&b["timestamp"]);
            context! {
                number => number(&b["number"]),
                hash => b["hash"].as_str().unwrap_or_default(),
                transactions => b["transactions"].as_array().map_or(0, Vec::len),
                gas_used => number(&b["gasUsed"]),
                time_iso => format::iso(time),
                age => format::age(time, now),
            }
        })
        .collect();
    let older = (bottom > 0).then_some(bottom);
    let newer = (top < head).then(|| (top + PER_PAGE + 1).min(head + 1));
    Ok(context! {blocks => rows, older, newer})
}

async fn block(State(web): State<Arc<Web>>, Path(raw): Path<String>) -> Response {
    let started = Instant::now();
    let Ok(n) = raw.parse::<u64>() else {
        return web.error(
            started,
            Failure::bad_input(format!("{raw:?} is not a block number")),
        );
    };
    match block_page(&web, n).await {
        Ok(ctx) => web.page(started, "explorer", "explorer/block.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn block_page(web: &Web, n: u64) -> Result<Value, Failure> {
    let b = web.block_json(n, true).await?;
    let txs: Vec<Value> = b["transactions"]
        .as_array()
        .map(|list| list.iter().map(|t| tx_row(web, t)).collect())
        .unwrap_or_default();
    let block = context! {
        number => n,
        hash => b["hash"].as_str().unwrap_or_default(),
        parent => b["parentHash"].as_str().unwrap_or_default(),
        time_iso => format::iso(number(&b["timestamp"])),
        gas_used => number(&b["gasUsed"]),
        gas_limit => number(&b["gasLimit"]),
        base_fee => number(&b["baseFeePerGas"]),
    };
    Ok(context! {block, txs})
}

/// A transaction as a block's table lists it.
fn tx_row(web: &Web, t: &Json) -> Value {
    let to = address_of(&t["to"]);
    let input: Bytes = serde_json::from_value(t["input"].clone()).unwrap_or_default();
    context! {
        hash => t["hash"].as_str().unwrap_or_default(),
        from => t["from"].as_str().unwrap_or_default(),
        to => to.map(|a| a.to_string()),
        to_name => to.and_then(|a| web.names.contract(a)),
        value => format::open(quantity(&t["value"])),
        call => web.names.call(to, &input),
        block => number(&t["blockNumber"]),
    }
}

async fn transaction(State(web): State<Arc<Web>>, Path(raw): Path<String>) -> Response {
    let started = Instant::now();
    let Ok(hash) = raw.parse::<B256>() else {
        return web.error(
            started,
            Failure::bad_input(format!(
                "{raw:?} is not a transaction hash (0x and 64 hex digits)"
            )),
        );
    };
    match transaction_page(&web, hash).await {
        Ok(ctx) => web.page(started, "explorer", "explorer/tx.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn transaction_page(web: &Web, hash: B256) -> Result<Value, Failure> {
    let (t, r) = futures_util::future::try_join(
        web.rpc("eth_getTransactionByHash", json!([hash])),
        web.rpc("eth_getTransactionReceipt", json!([hash])),
    )
    .await?;
    if t.is_null() {
        return Err(Failure::not_found(format!(
            "this node knows no transaction {hash}"
        )));
    }
    let to = address_of(&t["to"]);
    let input: Bytes = serde_json::from_value(t["input"].clone()).unwrap_or_default();
    let logs: Vec<Value> = r["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .map(|l| {
                    let address = address_of(&l["address"]).unwrap_or_default();
                    let topics: Vec<String> = l["topics"]
                        .as_array()
                        .map(|ts| ts.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    let event = topics
                        .first()
                        .and_then(|t| t.parse().ok())
                        .and_then(|t| web.names.event(address, t));
                    context! {
                        address => address.to_string(),
                        address_name => event.or_else(|| web.names.contract(address).map(String::from)),
                        topics,
                        data => l["data"].as_str().unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let status = (!r.is_null()).then(|| number(&r["status"]) == 1);
    let tx = context! {
        hash => hash.to_string(),
        status,
        block => (!t["blockNumber"].is_null()).then(|| number(&t["blockNumber"])),
        from => t["from"].as_str().unwrap_or_default(),
        to => to.map(|a| a.to_string()),
        to_name => to.and_then(|a| web.names.contract(a)),
        created => r["contractAddress"].as_str(),
        value => format::open(quantity(&t["value"])),
        gas_used => number(&r["gasUsed"]),
        call => web.names.call(to, &input),
        input => format!("0x{}", hex::encode(&input)),
    };
    Ok(context! {tx, logs})
}

/// Transactions per page of an address's history.
const HISTORY_PAGE: u64 = 25;

#[derive(serde::Deserialize)]
struct HistoryPage {
    /// `BLOCK.INDEX`: list the transactions before that one.
    before: Option<String>,
}

/// `BLOCK.INDEX` as a position in the chain.
fn position(text: &str) -> Option<(u64, u32)> {
    let (block, index) = text.split_once('.')?;
    Some((block.parse().ok()?, index.parse().ok()?))
}

async fn address(
    State(web): State<Arc<Web>>,
    Path(raw): Path<String>,
    page: Result<Query<HistoryPage>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    let Ok(account) = raw.parse::<Address>() else {
        return web.error(
            started,
            Failure::bad_input(format!("{raw:?} is not an address (0x and 40 hex digits)")),
        );
    };
    let before = match page.before.as_deref().map(|b| (b, position(b))) {
        None => None,
        Some((_, Some(at))) => Some(at),
        Some((text, None)) => {
            return web.error(
                started,
                Failure::bad_input(format!(
                    "before={:?} is not a position in the chain (BLOCK.INDEX, as 120.0)",
                    format::short(text, 40)
                )),
            )
        }
    };
    match address_page(&web, account, before).await {
        Ok(ctx) => web.page(started, "explorer", "explorer/address.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn address_page(
    web: &Web,
    account: Address,
    before: Option<(u64, u32)>,
) -> Result<Value, Failure> {
    let cursor = before.map(|(b, i)| json!([format!("{b:#x}"), format!("{i:#x}")]));
    let (balance, nonce, code, history, roles) = futures_util::future::try_join5(
        web.rpc("eth_getBalance", json!([account, "latest"])),
        web.rpc("eth_getTransactionCount", json!([account, "latest"])),
        web.rpc("eth_getCode", json!([account, "latest"])),
        web.rpc(
            "openledger_getTransactionsByAddress",
            json!([account, cursor, format!("{HISTORY_PAGE:#x}")]),
        ),
        async {
            // The protocol's view of the address is extra: without it the page still shows
            // the account and its history.
            Ok::<_, Failure>(crate::account::roles(web, account).await.ok().flatten())
        },
    )
    .await?;
    let code: Bytes = serde_json::from_value(code).unwrap_or_default();
    let txs: Vec<Value> = history["transactions"]
        .as_array()
        .map(|list| list.iter().map(|t| tx_row(web, t)).collect())
        .unwrap_or_default();
    let older = history["next"]
        .as_array()
        .filter(|n| n.len() == 2)
        .map(|n| format!("{}.{}", number(&n[0]), number(&n[1])));
    let address = context! {
        address => account.to_string(),
        name => web.names.contract(account),
        balance => format::open(quantity(&balance)),
        nonce => number(&nonce),
        code_bytes => code.len(),
    };
    Ok(context! {address, txs, older, roles, before => before.is_some()})
}

#[derive(serde::Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

/// Sends a block number, a transaction hash or an address to its page.
async fn search(
    State(web): State<Arc<Web>>,
    search: Result<Query<Search>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let search = match crate::params(search) {
        Ok(search) => search,
        Err(f) => return web.error(started, f),
    };
    let q = search.q.trim();
    let target = if let Ok(n) = q.parse::<u64>() {
        format!("/explorer/blocks/{n}")
    } else if q.parse::<B256>().is_ok() {
        format!("/explorer/tx/{q}")
    } else if q.parse::<Address>().is_ok() {
        format!("/explorer/address/{q}")
    } else {
        return web.error(
            started,
            Failure::bad_input(format!(
                "{:?} is neither a block number, a transaction hash (0x and 64 hex digits) nor \
                 an address (0x and 40 hex digits)",
                crate::format::short(q, 80)
            )),
        );
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response()
}
