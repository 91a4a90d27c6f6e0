//! `openledger demo`: the whole story on a fresh dev network, in one command.
//!
//! It starts a dev node in this process (its own data directory and free ports), then plays
//! the story through the same APIs and contracts a person would use: contributors bring
//! records to a datanet (one upload is refused, with its reason), curators review, a version
//! is published, the factory fine-tunes the default model on it, the adapter is published
//! with its lineage, an agent is deployed on it, a consumer signs in and asks, the answers are
//! attributed and settled, the challenge window passes, and everyone paid claims. A closing
//! table shows who earned what, checked against the chain (see [`ledger`]).
//!
//! - [`cast`]: the people, their data and the questions;
//! - [`story`]: the steps;
//! - [`ledger`]: the closing table and its checks.

mod cast;
mod ledger;
mod story;

use crate::start::{self, NodeArgs};
use alloy_primitives::{B256, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Context, Result};
use clap::Parser;
use openledger_protocol::{deploy::Addresses, ProtocolParams};
use std::{io::Write, path::PathBuf, time::Instant};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo's network lives; it must not hold one already [default: a new directory
    /// under $OPENLEDGER_HOME/demo].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A shorter story for CI: fewer records, one epoch, no evaluation, two questions.
    #[arg(long)]
    quick: bool,
    /// Stop the node once the story is told, instead of serving the web app until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// The progress lines: one per step, numbered, with the details and transactions under it.
pub struct Steps {
    total: usize,
    done: usize,
    started: Instant,
    step_started: Instant,
}

impl Steps {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            step_started: Instant::now(),
        }
    }

    pub fn step(&mut self, title: &str) {
        self.finish_step();
        self.done += 1;
        self.step_started = Instant::now();
        println!("[{}/{}] {title}", self.done, self.total);
    }

    fn finish_step(&self) {
        if self.done > 0 {
            println!("      ({:.1} s)", self.step_started.elapsed().as_secs_f64());
        }
    }

    pub fn detail(&self, text: &str) {
        println!("      {text}");
        let _ = std::io::stdout().flush();
    }

    pub fn tx(&self, what: &str, hash: B256) {
        println!("      {what}\n        tx {hash}");
    }
}

/// Whole OPEN and millionths of one in `wei` (rounded down).
pub fn micro_open(wei: U256) -> (u128, u128) {
    let micro: u128 = (wei / U256::from(1_000_000_000_000u64))
        .try_into()
        .unwrap_or(u128::MAX);
    (micro / 1_000_000, micro % 1_000_000)
}

/// OPEN with up to six decimals, for the progress lines.
pub fn open_text(wei: U256) -> String {
    let (whole, micro) = micro_open(wei);
    let text = format!("{whole}.{micro:06}");
    format!("{} OPEN", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Only the node's own flags, to build its arguments the way its command line does.
#[derive(Parser)]
struct NodeOnly {
    #[command(flatten)]
    args: NodeArgs,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let dir = claim_directory(args.data_dir)?;
    let (rpc, api, metrics) = (free_port()?, free_port()?, free_port()?);
    let hex = |key: openledger_genesis::devkeys::DevKey| {
        alloy_primitives::hex::encode(key.key.to_bytes())
    };
    // Every setting the node would otherwise take from the environment is given here, so
    // that the demo's node is the dev network the story expects: hosted by the dev host key,
    // its factory run by the dev deployer, its APIs open (an empty key list).
    let argv = [
        "node".to_string(),
        "--dev".into(),
        "--block-time=0".into(),
        format!("--data-dir={}", dir.display()),
        format!("--http-addr=127.0.0.1:{rpc}"),
        format!("--api-addr=127.0.0.1:{api}"),
        format!("--metrics-addr=127.0.0.1:{metrics}"),
        format!(
            "--host-key={}",
            hex(openledger_protocol::genesis::dev_host())
        ),
        format!(
            "--factory-key={}",
            hex(openledger_protocol::genesis::dev_deployer())
        ),
        "--api-key=".into(),
    ];
    let node_args = NodeOnly::try_parse_from(argv)
        .context("the demo's node settings")?
        .args;
    println!("OpenLedger demo: a fresh dev network in {}", dir.display());
    let mut steps = Steps::new(10);
    steps.step("starting the node: chain, protocol contracts, APIs, serving, web app");
    let started = start::start(node_args).await?;
    let api_addr = started.api_addr.context("the dev node serves its API")?;
    let (rpc_url, web) = (
        format!("http://{}", started.node.http_addr),
        format!("http://{api_addr}"),
    );
    let addresses = Addresses::load(&dir.join("protocol.json"))?;
    let cast = cast::Cast::new(&rpc_url, addresses).await?;
    let api = crate::rest::Api::new(&web)?;
    wait_for_model(&api, &steps).await?;
    let supply = ledger::total_supply(&cast.owner.client).await?;
    let window = cast
        .owner
        .client
        .call(
            addresses.protocol_params,
            ProtocolParams::challengeWindowCall::new(()),
        )
        .await?;
    let work = dir.join("demo-files");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut story = story::Story {
        api: &api,
        cast: &cast,
        scale: cast::Scale::new(args.quick),
        steps: &mut steps,
        work: &work,
        made: story::Made::default(),
    };
    story.datanet().await?;
    story.contributions().await?;
    story.review_and_publish().await?;
    story.fine_tune().await?;
    story.agent().await?;
    let key = story.ask().await?;
    story.settlement(&key).await?;
    story.release(&key, window).await?;
    story.claim().await?;
    let made = std::mem::take(&mut story.made);
    steps.finish_step();
    ledger::close(&cast, &made, supply).await?;
    println!(
        "\nthe story took {:.0} s; see it in the web app:",
        steps.started.elapsed().as_secs_f64()
    );
    for (what, url) in ledger::links(&web, &cast, &made) {
        println!("  {what:<26} {url}");
    }
    if args.exit {
        return Ok(());
    }
    println!(
        "\nthe node keeps running (JSON-RPC {rpc_url}, API {web}); Ctrl-C stops it, and \
         `openledger node --dev --data-dir {}` starts it again",
        dir.display()
    );
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}

/// The demo's data directory, made now so that no other run shares it: a new one under
/// `$OPENLEDGER_HOME/demo`, or `dir` if it does not exist or is empty.
fn claim_directory(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            let parent = crate::default_home().join("demo");
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            parent.join(format!("{}-{}", now.as_secs(), std::process::id()))
        }
    };
    let empty = match std::fs::read_dir(&dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if !empty {
        bail!(
            "{} is not empty: the demo plays on a fresh network (name a new --data-dir)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Waits until the serving engine has loaded the model (`/health` answers 200).
async fn wait_for_model(api: &crate::rest::Api, steps: &Steps) -> Result<()> {
    let model = openledger_model::default_model_path();
    if !model.exists() {
        bail!(
            "the default model is not at {} (fetch it with `scripts/fetch-model`)",
            model.display()
        );
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while api.get_raw("/health").await.map(|(s, _)| s).unwrap_or(0) != 200 {
        if Instant::now() > deadline {
            bail!("the model did not load within 300 s (is it fetched? `scripts/fetch-model`)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    steps.detail("the model is loaded and the agents' API answers");
    Ok(())
}

/// A port nobody listens on now (the OS picks it; taken again a moment later by the node).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
