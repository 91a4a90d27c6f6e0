//! The timed phase: submitting pre-signed transactions, watching blocks for their inclusion,
//! and checking their receipts afterwards.

use crate::rpc::{hex, quantity_u64, result_of, Rpc, RpcError};
use alloy_primitives::{Address, B256};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    ops::RangeInclusive,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::{task::JoinSet, time::MissedTickBehavior};

/// How often the head is polled. Inclusion is seen up to this late, which bounds the latency
/// figures' resolution; with 1 s blocks, 50 ms is fine and costs the server ~20 tiny requests/s.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Give up when no transaction of the workload got included for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A transaction ready to go: its hash and the whole `eth_sendRawTransaction` request body,
/// built before timing so that the timed loop only writes bytes.
pub struct Request {
    pub hash: B256,
    body: Vec<u8>,
}

impl Request {
    pub fn new(hash: B256, raw: &[u8]) -> Self {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["{}"]}}"#,
            hex(raw)
        );
        Self {
            hash,
            body: body.into_bytes(),
        }
    }
}

/// What the timed phase measured for one workload.
pub struct Measured {
    /// From the first submission to the moment the last inclusion was seen.
    pub elapsed: Duration,
    /// Per transaction, from its submission to the moment its inclusion was seen; sorted.
    pub latencies: Vec<Duration>,
    /// The blocks that hold the workload's transactions (and maybe others).
    pub blocks: RangeInclusive<u64>,
}

impl Measured {
    pub fn tx_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }
}

/// Submits every request keeping `concurrency` of them in flight, and watches the blocks after
/// `after_block` until all are included.
pub async fn measure(
    addr: SocketAddr,
    requests: Arc<Vec<Request>>,
    concurrency: usize,
    after_block: u64,
) -> Result<Measured> {
    ensure!(!requests.is_empty(), "nothing to submit");
    // Built before the first submission so that the watcher only does lookups.
    let index: HashMap<B256, usize> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| (r.hash, i))
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let submit = {
        let requests = requests.clone();
        run_workers(concurrency, move || {
            submit_worker(addr, requests.clone(), next.clone())
        })
    };
    // try_join: a failed submission stops the watcher instead of letting it wait for the stall
    // timeout.
    let (submitted, (included, last_block)) =
        tokio::try_join!(submit, watch(addr, index, after_block))?;

    let mut sent_at = vec![None; requests.len()];
    for (i, at) in submitted.into_iter().flatten() {
        sent_at[i] = Some(at);
    }
    let sent_at: Vec<Instant> = sent_at
        .into_iter()
        .map(|at| at.expect("every request was submitted"))
        .collect();
    let first = *sent_at.iter().min().expect("not empty");
    let last = *included.iter().max().expect("not empty");
    let mut latencies: Vec<Duration> = sent_at
        .iter()
        .zip(&included)
        .map(|(sent, seen)| seen.saturating_duration_since(*sent))
        .collect();
    latencies.sort_unstable();
    Ok(Measured {
        elapsed: last - first,
        latencies,
        blocks: after_block + 1..=last_block,
    })
}

/// Runs `concurrency` copies of a worker, failing as soon as one fails.
async fn run_workers<T, F, Fut>(concurrency: usize, worker: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        set.spawn(worker());
    }
    let mut results = Vec::with_capacity(concurrency);
    while let Some(joined) = set.join_next().await {
        // Dropping the set on error aborts the other workers.
        results.push(joined??);
    }
    Ok(results)
}

/// Takes requests off the shared queue one at a time, on one keep-alive connection; returns
/// when each was submitted.
async fn submit_worker(
    addr: SocketAddr,
    requests: Arc<Vec<Request>>,
    next: Arc<AtomicUsize>,
) -> Result<Vec<(usize, Instant)>> {
    let mut rpc = Rpc::new(addr);
    let mut sent = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(request) = requests.get(i) else {
            return Ok(sent);
        };
        let at = Instant::now();
        let response = rpc.post(&request.body).await?;
        let hash = result_of(response)
            .with_context(|| format!("eth_sendRawTransaction of transaction {i}"))?;
        let expected = hex(request.hash.as_slice());
        ensure!(
            hash.as_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&expected)),
            "eth_sendRawTransaction returned {hash}, expected {expected}"
        );
        sent.push((i, at));
    }
}

/// Polls the head every [`POLL_INTERVAL`]; for every new block, marks the workload's
/// transactions in it as included at the moment the block was first seen. Returns, per
/// request, when its inclusion was seen, and the last block read.
///
/// Reading each block's transaction hashes costs one request per block, where a receipt per
/// transaction would cost one per transaction and load the server under test.
async fn watch(
    addr: SocketAddr,
    index: HashMap<B256, usize>,
    after_block: u64,
) -> Result<(Vec<Instant>, u64)> {
    let mut rpc = Rpc::new(addr);
    let mut included: Vec<Option<Instant>> = vec![None; index.len()];
    let mut remaining = index.len();
    let mut next_block = after_block + 1;
    let mut progress_at = Instant::now();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while remaining > 0 {
        tick.tick().await;
        let head = quantity_u64(&rpc.call("eth_blockNumber", json!([])).await?)?;
        let seen = Instant::now();
        while next_block <= head {
            let block = rpc
                .call(
                    "eth_getBlockByNumber",
                    json!([format!("{next_block:#x}"), false]),
                )
                .await?;
            if block.is_null() {
                // The head moved before the block became readable; try again next tick.
                break;
            }
            for tx in block["transactions"]
                .as_array()
                .ok_or_else(|| anyhow!("block {next_block} without transactions: {block}"))?
            {
                let hash: B256 = tx
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("bad transaction hash {tx} in block {next_block}"))?;
                if let Some(&i) = index.get(&hash) {
                    if included[i].replace(seen).is_none() {
                        remaining -= 1;
                        progress_at = seen;
                    }
                }
            }
            next_block += 1;
        }
        if progress_at.elapsed() > STALL_TIMEOUT {
            bail!(
                "{remaining} of {} transactions still not included after {STALL_TIMEOUT:?} \
                 without progress (head {head})",
                index.len()
            );
        }
    }
    let included = included
        .into_iter()
        .map(|at| at.expect("all included"))
        .collect();
    Ok((included, next_block - 1))
}

/// Checks that every transaction has a receipt with status 1 and, when `log_from` is given,
/// exactly one log emitted by that contract. Runs after timing, so it costs the figures nothing.
///
/// Reads whole blocks' receipts with `eth_getBlockReceipts` where the server has it: anvil takes
/// minutes to serve tens of thousands of `eth_getTransactionReceipt` from big blocks.
pub async fn verify_receipts(
    addr: SocketAddr,
    hashes: Vec<B256>,
    concurrency: usize,
    log_from: Option<Address>,
    blocks: RangeInclusive<u64>,
) -> Result<()> {
    match verify_by_block(addr, hashes.clone(), concurrency, log_from, blocks).await {
        Err(e) if e.is::<BlockReceiptsUnavailable>() => {
            eprintln!("({e}; reading receipts one by one)");
            verify_one_by_one(addr, Arc::new(hashes), concurrency, log_from).await
        }
        result => result,
    }
}

#[derive(Debug)]
struct BlockReceiptsUnavailable(anyhow::Error);

impl std::fmt::Display for BlockReceiptsUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "eth_getBlockReceipts failed: {:#}", self.0)
    }
}

impl std::error::Error for BlockReceiptsUnavailable {}

/// Reads the receipts of `blocks`, several blocks at a time: serving a big block's receipts
/// takes anvil seconds, and it can use more than one core for it.
async fn verify_by_block(
    addr: SocketAddr,
    hashes: Vec<B256>,
    concurrency: usize,
    log_from: Option<Address>,
    blocks: RangeInclusive<u64>,
) -> Result<()> {
    let ours: Arc<HashSet<B256>> = Arc::new(hashes.into_iter().collect());
    // The first block alone: whether the server has the method at all.
    let first = *blocks.start();
    let mut checked = check_block(&mut Rpc::new(addr), first, &ours, log_from)
        .await
        .map_err(|e| match e.downcast::<RpcError>() {
            Ok(e) => BlockReceiptsUnavailable(e.into()).into(),
            Err(e) => e,
        })?;
    let next = Arc::new(AtomicU64::new(first + 1));
    let last = *blocks.end();
    let workers = run_workers(concurrency, || {
        let (ours, next) = (ours.clone(), next.clone());
        async move {
            let mut rpc = Rpc::new(addr);
            let mut checked = 0;
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number > last {
                    return Ok(checked);
                }
                checked += check_block(&mut rpc, number, &ours, log_from).await?;
            }
        }
    });
    checked += workers.await?.into_iter().sum::<usize>();
    // A transaction is in one block only, so the counts add up to all of them iff none is
    // missing.
    ensure!(
        checked == ours.len(),
        "only {checked} of {} transactions have a receipt in the blocks that included them",
        ours.len()
    );
    Ok(())
}

/// Checks the receipts of `ours` in block `number`; returns how many there were.
async fn check_block(
    rpc: &mut Rpc,
    number: u64,
    ours: &HashSet<B256>,
    log_from: Option<Address>,
) -> Result<usize> {
    let receipts = rpc
        .call("eth_getBlockReceipts", json!([format!("{number:#x}")]))
        .await?;
    let mut checked = 0;
    for receipt in receipts
        .as_array()
        .ok_or_else(|| anyhow!("no receipts for block {number}: {receipts}"))?
    {
        let hash: B256 = receipt["transactionHash"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("receipt without transactionHash: {receipt}"))?;
        if ours.contains(&hash) {
            check_receipt(receipt, log_from).with_context(|| format!("transaction {hash}"))?;
            checked += 1;
        }
    }
    Ok(checked)
}

async fn verify_one_by_one(
    addr: SocketAddr,
    hashes: Arc<Vec<B256>>,
    concurrency: usize,
    log_from: Option<Address>,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    run_workers(concurrency, move || {
        let (hashes, next) = (hashes.clone(), next.clone());
        async move {
            let mut rpc = Rpc::new(addr);
            while let Some(hash) = hashes.get(next.fetch_add(1, Ordering::Relaxed)) {
                let receipt = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
                check_receipt(&receipt, log_from).with_context(|| format!("transaction {hash}"))?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

fn check_receipt(receipt: &Value, log_from: Option<Address>) -> Result<()> {
    ensure!(!receipt.is_null(), "no receipt");
    ensure!(
        quantity_u64(&receipt["status"]).ok() == Some(1),
        "failed: receipt {receipt}"
    );
    if let Some(contract) = log_from {
        let logs = receipt["logs"].as_array();
        let emitter = logs
            .filter(|logs| logs.len() == 1)
            .and_then(|logs| logs[0]["address"].as_str())
            .and_then(|a| a.parse::<Address>().ok());
        ensure!(
            emitter == Some(contract),
            "expected one log from {contract}: receipt {receipt}"
        );
    }
    Ok(())
}
