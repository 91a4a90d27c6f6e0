//! `web-bench`: how long the web app's pages take on the server, over a dev network of
//! `--blocks` (10,000) blocks.
//!
//! It starts a dev chain in this process with the protocol deployed, sends `--txs` (1,000)
//! transfers to one busy address (so that its history is long) and a few protocol calls, mines
//! empty blocks up to `--blocks`, then serves the web app and asks each page `--rounds` (30)
//! times, the pages in turn. The figure is the server's own time for the page, as its
//! `Server-Timing: app;dur=…` header reports it (template rendering and every JSON-RPC read),
//! and the wall time a client saw beside it.
//!
//! Prints a table and one JSON object. Usage:
//! `cargo run --release -p openledger-bench --bin web-bench [-- --blocks 10000]`.

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Context, Result};
use clap::Parser;
use openledger_chain::{Node, NodeConfig};
use openledger_protocol::{deploy::DeployConfig, genesis, ProtocolClient, Signer, Staking};
use serde_json::json;
use std::{net::SocketAddr, sync::Arc, time::Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Blocks on the chain when the pages are timed.
    #[arg(long, default_value_t = 10_000)]
    blocks: u64,
    /// Transfers to the busy address (each in its own block).
    #[arg(long, default_value_t = 1_000)]
    txs: u64,
    /// Requests per page.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// The target: every page's p99 server time under this many milliseconds.
    #[arg(long, default_value_t = 50.0)]
    target_ms: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(NodeConfig {
        data_dir: dir.path().join("chain"),
        genesis: genesis::dev_genesis(),
        http_addr: "127.0.0.1:0".parse()?,
        metrics_addr: None,
        block_time: std::time::Duration::ZERO,
        dev: true,
        pool: Default::default(),
        rpc: Default::default(),
    })
    .await?;
    let url = format!("http://{}", node.http_addr);
    let started = Instant::now();
    let deployer =
        ProtocolClient::connect(&url, Some(Signer::from_key(genesis::dev_deployer().key))).await?;
    let addresses = deployer
        .deploy(&DeployConfig::dev(), Some(0), |_, _, _| {})
        .await?;
    let (busy, staking_tx, proposal) = fill(&node, &url, addresses, &args).await?;
    let staker = openledger_chain::devkeys::dev_accounts()[0].address;
    let filled = started.elapsed().as_secs_f64();
    let reader = ProtocolClient::connect(&url, None)
        .await?
        .with_addresses(addresses);
    let datanets = Arc::new(openledger_datanets::Datanets::open(
        ProtocolClient::connect(&url, None)
            .await?
            .with_addresses(addresses),
        openledger_datanets::store::Store::open(&dir.path().join("blobs").display().to_string())?,
        &dir.path().join("datanets"),
        openledger_datanets::Policy::default(),
    )?);
    datanets.sync().await?;
    let web = openledger_chain::rpc::serve(
        "127.0.0.1:0".parse()?,
        openledger_web::router(openledger_web::Web::new(
            reader,
            datanets,
            openledger_web::WalletSettings {
                rpc_url: url.clone(),
                dev_keys: Vec::new(),
            },
        )),
    )
    .await?;
    let half = args.blocks / 2;
    let pages = [
        ("home", "/".to_string()),
        ("datanets", "/datanets".into()),
        ("latest blocks", "/explorer".into()),
        ("older blocks", format!("/explorer?before={half}")),
        ("block", format!("/explorer/blocks/{half}")),
        ("transaction", format!("/explorer/tx/{staking_tx}")),
        ("busy address (newest)", format!("/explorer/address/{busy}")),
        (
            "busy address (page 20)",
            format!("/explorer/address/{busy}?before={}.0", args.txs / 2),
        ),
        (
            "contract address",
            format!("/explorer/address/{}", addresses.staking),
        ),
        ("token", "/token".into()),
        ("models", "/models".into()),
        ("agents", "/agents".into()),
        ("factory", "/factory".into()),
        ("governance", "/governance".into()),
        ("proposal", format!("/governance/proposals/{proposal}")),
        ("rewards", format!("/rewards?address={staker}")),
    ];
    let mut server: Vec<Vec<f64>> = vec![Vec::new(); pages.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); pages.len()];
    for round in 0..args.rounds + 3 {
        for (i, (_, path)) in pages.iter().enumerate() {
            let (status, dur, took) = get(web, path).await?;
            if !(200..400).contains(&status) {
                bail!("{path} answered {status}");
            }
            if round >= 3 {
                server[i].push(dur);
                wall[i].push(took);
            }
        }
    }
    println!(
        "{} blocks ({} transfers to one address), filled in {filled:.1} s; {} requests per page",
        args.blocks, args.txs, args.rounds
    );
    println!(
        "{:<24} {:>12} {:>12} {:>12}",
        "page", "server p50", "server p99", "wall p50"
    );
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for (i, (name, path)) in pages.iter().enumerate() {
        let (p50, p99, w50) = (
            percentile(&mut server[i], 0.50),
            percentile(&mut server[i], 0.99),
            percentile(&mut wall[i], 0.50),
        );
        worst = worst.max(p99);
        println!("{name:<24} {p50:>9.2} ms {p99:>9.2} ms {w50:>9.2} ms");
        rows.push(json!({"page": name, "path": path, "server_p50_ms": p50,
                         "server_p99_ms": p99, "wall_p50_ms": w50}));
    }
    println!(
        "worst p99 {worst:.2} ms: target < {} ms {}",
        args.target_ms,
        if worst < args.target_ms {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "{}",
        json!({"blocks": args.blocks, "transfers": args.txs, "rounds": args.rounds,
               "pages": rows, "worst_p99_ms": worst, "target_ms": args.target_ms})
    );
    Ok(())
}

/// Sends the transfers and protocol calls, then mines up to `args.blocks`; returns the busy
/// address and a staking transaction's hash.
async fn fill(
    node: &Node,
    url: &str,
    addresses: openledger_protocol::deploy::Addresses,
    args: &Args,
) -> Result<(Address, String, String)> {
    let busy = Address::repeat_byte(0x5e);
    let keys = openledger_chain::devkeys::dev_accounts()
        .into_iter()
        .map(|k| k.key);
    let mut senders = Vec::new();
    for key in keys {
        let client = ProtocolClient::connect(url, Some(Signer::from_key(key)))
            .await?
            .with_addresses(addresses);
        senders.push(client);
    }
    let stake = Staking::stakeCall::new((0, U256::ZERO));
    let r = senders[0]
        .send(
            addresses.staking,
            stake,
            U256::from(100u64) * U256::from(10u64).pow(U256::from(18)),
        )
        .await?;
    let staking_tx = r.transaction_hash.to_string();
    // A proposal for the governance pages, once the stake counts (from the next second).
    senders[0]
        .rpc()
        .request::<serde_json::Value>("evm_increaseTime", json!([2]))
        .await?;
    let change = openledger_protocol::proposal::Change::UnbondingDelay(1500).action(&addresses);
    let propose = openledger_protocol::OpenGovernor::proposeCall {
        targets: vec![change.target],
        values: vec![U256::ZERO],
        calldatas: vec![change.calldata],
        description: "Unbond over 25 minutes".into(),
    };
    let proposal = senders[0].call(addresses.governor, propose.clone()).await?;
    senders[0]
        .send(addresses.governor, propose, U256::ZERO)
        .await?;
    for i in 0..args.txs {
        let sender = &senders[i as usize % senders.len()];
        sender.transfer(busy, U256::from(i + 1)).await?;
    }
    let rpc = &senders[0];
    while node.chain.head().header.number < args.blocks {
        rpc.rpc()
            .request::<serde_json::Value>("evm_mine", json!([]))
            .await?;
    }
    Ok((busy, staking_tx, proposal.to_string()))
}

/// One GET on a fresh connection: status, the server's `app;dur` in ms, and the wall time.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, f64, f64)> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let took = started.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let dur = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            if !name.eq_ignore_ascii_case("server-timing") {
                return None;
            }
            value.split("dur=").nth(1)?.trim().parse::<f64>().ok()
        })
        .with_context(|| format!("{path} sent no Server-Timing"))?;
    Ok((status, dur, took))
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(i).copied().unwrap_or(f64::NAN)
}
