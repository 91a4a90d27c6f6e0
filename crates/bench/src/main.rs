//! `rpc-throughput`: sustained transaction throughput of the openledger node through JSON-RPC,
//! measured side by side with anvil.
//!
//! For each target (the node in `--dev` mode, then anvil), the bench starts the server on a
//! free local port with 1 s blocks, deploys a tiny contract (store a word in slot 0, emit it in
//! a log) and signs every transaction up front: 1-wei EIP-1559 transfers and calls of that
//! contract, spread round-robin over the ten standard dev accounts. Only then does timing
//! start, one workload after the other:
//!
//! - `eth_sendRawTransaction` keeps `--concurrency` requests in flight over keep-alive HTTP
//!   connections, noting when each transaction was submitted;
//! - meanwhile the head is polled every 50 ms and each new block's transaction hashes mark
//!   their transactions as included when the block was first seen.
//!
//! A workload's throughput is its transaction count over the time from its first submission to
//! its last inclusion; latency is per transaction, from submission to inclusion seen (so it
//! includes up to a block time of waiting, plus up to 50 ms of polling). After timing, every
//! receipt is checked for status 1 (and, for contract calls, the log), with `eth_getBlockReceipts`
//! or, where the server lacks it, `eth_getTransactionReceipt`; any failure aborts the run. The
//! bench prints a table and the node/anvil ratios, and can write them as JSON.
//!
//! Usage: `scripts/bench-rpc` (builds, installs anvil, runs both), or
//! `rpc-throughput --node-bin target/release/openledger --anvil-bin PATH [--only node|anvil]`.

mod load;
mod report;
mod rpc;
mod target;
mod txs;

use alloy_primitives::{Address, B256};
use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use load::Request;
use report::{Workload, WorkloadResult};
use rpc::{hex, quantity, quantity_u64, Rpc};
use serde_json::json;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use target::{Kind, Target};
use txs::{Account, Fees};

#[derive(Parser)]
#[command(about = "Sustained JSON-RPC transaction throughput of the node, compared with anvil")]
struct Args {
    /// The openledger binary (run as `openledger node --dev ...`).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// The anvil binary.
    #[arg(long)]
    anvil_bin: Option<PathBuf>,
    /// Number of transfers.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Number of contract calls.
    #[arg(long, default_value_t = 10_000)]
    contract_txs: usize,
    /// Requests kept in flight (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Which targets to run.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// Also write the results to this file as JSON.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Node,
    Anvil,
    Both,
}

/// Fee cap: far above any base fee these chains reach during a run, so that no transaction is
/// priced out (unless the base fee starts higher, see [`fees`]).
const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
const PRIORITY_FEE_PER_GAS: u128 = 1_000_000_000;

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let mut targets = Vec::new();
    if args.only != Only::Anvil {
        let bin = args.node_bin.clone().context("--node-bin is required")?;
        targets.push((Kind::Node, bin));
    }
    if args.only != Only::Node {
        let bin = args.anvil_bin.clone().context("--anvil-bin is required")?;
        targets.push((Kind::Anvil, bin));
    }
    // One thread: the client shares the (small) machine with the server it measures, so it must
    // not take more than a core. Signing, the CPU-heavy part, uses its own threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    // The targets run one after the other so that they never compete for the CPU.
    for (kind, bin) in targets {
        results.extend(runtime.block_on(bench_target(kind, &bin, &args))?);
    }
    report::print(&results);
    if let Some(path) = &args.json_out {
        std::fs::write(path, report::json(&results, &args_json(&args)))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn args_json(args: &Args) -> serde_json::Value {
    json!({
        "txs": args.txs,
        "contract_txs": args.contract_txs,
        "concurrency": args.concurrency,
        "block_time_ms": 1000,
    })
}

async fn bench_target(
    kind: Kind,
    bin: &std::path::Path,
    args: &Args,
) -> Result<Vec<WorkloadResult>> {
    eprintln!("{kind}: starting {}", bin.display());
    let target = Target::start(kind, bin).await?;
    run_workloads(&target, args).await.with_context(|| {
        format!(
            "{kind} run failed; its log ends with:\n{}",
            target.log_tail()
        )
    })
}

async fn run_workloads(target: &Target, args: &Args) -> Result<Vec<WorkloadResult>> {
    let kind = target.kind;
    let mut rpc = Rpc::new(target.addr);
    let accounts = txs::dev_accounts();
    let mut nonces = Vec::with_capacity(accounts.len());
    for account in &accounts {
        let balance = quantity(
            &rpc.call("eth_getBalance", json!([account.address, "latest"]))
                .await?,
        )?;
        ensure!(
            balance > 0,
            "dev account {} has no funds: not the standard dev accounts?",
            account.address
        );
        let nonce = rpc
            .call(
                "eth_getTransactionCount",
                json!([account.address, "latest"]),
            )
            .await?;
        nonces.push(quantity_u64(&nonce)?);
    }
    let fees = fees(&mut rpc, target.chain_id).await?;
    eprintln!(
        "{kind}: chain id {}, max fee {} gwei",
        target.chain_id,
        fees.max_fee_per_gas / 1_000_000_000
    );

    let contract = deploy(&mut rpc, &accounts[0], fees, nonces[0]).await?;
    nonces[0] += 1;

    let started = Instant::now();
    let transfers = txs::sign_many(&accounts, &nonces, args.txs, |account, nonce, i| {
        txs::sign_transfer(account, fees, nonce, i)
    })?;
    // Calls follow the transfers in each sender's nonce sequence.
    let call_nonces: Vec<u64> = nonces
        .iter()
        .zip(txs::per_account(args.txs, accounts.len()))
        .map(|(first, sent)| first + sent)
        .collect();
    let calls = txs::sign_many(
        &accounts,
        &call_nonces,
        args.contract_txs,
        |account, nonce, i| txs::sign_call(account, fees, nonce, contract, i),
    )?;
    eprintln!(
        "{kind}: signed {} transfers and {} calls in {:.1?}",
        transfers.len(),
        calls.len(),
        started.elapsed()
    );

    let mut results = Vec::new();
    for (workload, signed, log_from) in [
        (Workload::Transfers, transfers, None),
        (Workload::ContractCalls, calls, Some(contract)),
    ] {
        if signed.is_empty() {
            continue;
        }
        let requests: Vec<Request> = signed
            .iter()
            .map(|tx| Request::new(tx.hash, &tx.raw))
            .collect();
        let hashes: Vec<B256> = signed.iter().map(|tx| tx.hash).collect();
        drop(signed);
        let head = quantity_u64(&rpc.call("eth_blockNumber", json!([])).await?)?;
        eprintln!(
            "{kind}: {workload}: submitting {} transactions",
            requests.len()
        );
        let cpu_before = client_cpu_time();
        let measured = load::measure(target.addr, Arc::new(requests), args.concurrency, head)
            .await
            .with_context(|| format!("{workload} on {kind}"))?;
        let client_cpu = client_cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| (after - before).as_secs_f64() / measured.elapsed.as_secs_f64());
        let result = WorkloadResult::new(workload, kind, &measured);
        eprintln!(
            "{kind}: {workload}: {:.0} tx/s, p50 {:.0} ms, p99 {:.0} ms (the bench used {} of a \
             core); checking receipts",
            result.tx_per_sec,
            result.p50_ms,
            result.p99_ms,
            client_cpu.map_or("?".into(), |share| format!("{:.0}%", share * 100.0)),
        );
        let started = Instant::now();
        let blocks = measured.blocks.clone();
        load::verify_receipts(target.addr, hashes, args.concurrency, log_from, blocks)
            .await
            .with_context(|| format!("checking the receipts of {workload} on {kind}"))?;
        eprintln!(
            "{kind}: {workload}: all {} receipts have status 1 (checked in {:.1?})",
            result.txs,
            started.elapsed()
        );
        results.push(result);
    }
    Ok(results)
}

/// The fees every transaction pays: the fixed cap, or four times the current base fee if that
/// is higher, so that base-fee growth during the run cannot price transactions out.
async fn fees(rpc: &mut Rpc, chain_id: u64) -> Result<Fees> {
    let latest = rpc
        .call("eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    let base_fee = match latest.get("baseFeePerGas") {
        Some(fee) if !fee.is_null() => quantity(fee)?,
        _ => 0,
    };
    Ok(Fees {
        chain_id,
        max_fee_per_gas: MAX_FEE_PER_GAS.max(base_fee.saturating_mul(4)),
        max_priority_fee_per_gas: PRIORITY_FEE_PER_GAS,
    })
}

/// Deploys the benchmark contract and checks that it holds the expected code.
async fn deploy(rpc: &mut Rpc, account: &Account, fees: Fees, nonce: u64) -> Result<Address> {
    let (tx, address) = txs::sign_deploy(account, fees, nonce)?;
    rpc.call("eth_sendRawTransaction", json!([hex(&tx.raw)]))
        .await
        .context("deploying the contract")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let receipt = loop {
        let receipt = rpc
            .call("eth_getTransactionReceipt", json!([tx.hash]))
            .await?;
        if !receipt.is_null() {
            break receipt;
        }
        if Instant::now() > deadline {
            bail!("the deployment {} got no receipt within 30 s", tx.hash);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        quantity_u64(&receipt["status"]).ok() == Some(1),
        "the deployment failed: {receipt}"
    );
    let code = rpc.call("eth_getCode", json!([address, "latest"])).await?;
    ensure!(
        code.as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(&hex(&txs::RUNTIME_CODE))),
        "the contract at {address} has code {code}, expected {}",
        hex(&txs::RUNTIME_CODE)
    );
    Ok(address)
}

/// CPU time this process has used so far (Linux only), to tell whether the client, which
/// shares the machine with the server, could be what limits the figures.
fn client_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces; utime and stime
    // are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}
