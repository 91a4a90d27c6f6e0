//! `openledger`: the OpenLedger node and its command line.

mod token;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use openledger_chain::{Genesis, Node, NodeConfig};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Parser)]
#[command(
    name = "openledger",
    version,
    about = "OpenLedger: the AI-native Ethereum L2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the L2 node: sequencer, EVM, and Ethereum JSON-RPC (HTTP and WebSocket).
    Node(NodeArgs),
    /// The OPEN token: supply and unlock schedule.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Total, circulating, locked and vested OPEN per allocation of the dev genesis.
    Supply {
        /// The date to report (YYYY-MM-DD or unix seconds) [default: now].
        #[arg(long)]
        at: Option<String>,
        /// Print the month-by-month unlock schedule as CSV instead.
        #[arg(long)]
        schedule: bool,
    },
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Where the chain's database lives [default: $OPENLEDGER_HOME/chain, or ~/.openledger/chain].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// JSON-RPC address (HTTP and WebSocket on one port).
    #[arg(long, default_value = "127.0.0.1:8545")]
    http_addr: SocketAddr,
    /// Prometheus metrics address (serves /metrics).
    #[arg(long, default_value = "127.0.0.1:9545")]
    metrics_addr: SocketAddr,
    /// Milliseconds between blocks; 0 makes a block as soon as transactions arrive.
    #[arg(long, default_value_t = 1000)]
    block_time: u64,
    /// Genesis file (.json or .toml); required unless --dev.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Dev mode: the built-in dev genesis (unless --genesis is given), the ten dev accounts in
    /// eth_accounts, and eth_sendTransaction signed by them.
    #[arg(long)]
    dev: bool,
}

fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("OPENLEDGER_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".openledger")
}

async fn run_node(args: NodeArgs) -> Result<()> {
    let genesis = match (&args.genesis, args.dev) {
        (Some(path), _) => Genesis::load(path)?,
        (None, true) => openledger_protocol::genesis::dev_genesis(),
        (None, false) => bail!("--genesis FILE is required (or use --dev for the dev chain)"),
    };
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| default_home().join("chain"));
    let node = Node::start(NodeConfig {
        data_dir: data_dir.clone(),
        genesis,
        http_addr: args.http_addr,
        metrics_addr: Some(args.metrics_addr),
        block_time: Duration::from_millis(args.block_time),
        dev: args.dev,
    })
    .await
    .with_context(|| format!("starting the node in {}", data_dir.display()))?;
    let head = node.chain.head();
    tracing::info!(
        rpc = %format!("http://{0} ws://{0}", node.http_addr),
        metrics = %node.metrics_addr.map(|a| format!("http://{a}/metrics")).unwrap_or_default(),
        chain_id = node.chain.genesis.chain_id,
        head = head.header.number,
        data_dir = %data_dir.display(),
        "node running"
    );
    if args.dev {
        for address in node.chain.dev_addresses() {
            tracing::info!(%address, "dev account");
        }
    }
    tokio::signal::ctrl_c().await.ok();
    tracing::info!("shutting down");
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Node(args) => runtime.block_on(run_node(args)),
        Command::Token(TokenCommand::Supply { at, schedule }) => {
            let genesis = openledger_protocol::genesis::dev_genesis();
            if schedule {
                print!("{}", token::schedule_csv(&genesis));
            } else {
                let time = match at {
                    Some(text) => token::parse_date(&text)?,
                    None => std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_secs(),
                };
                print!("{}", token::report(&genesis, time));
            }
            Ok(())
        }
    }
}
