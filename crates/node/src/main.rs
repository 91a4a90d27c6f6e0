//! `openledger`: the OpenLedger node and its command line.

mod agent;
mod attribution;
mod datanet;
mod demo;
mod deploy;
mod factory;
mod gov;
mod host;
mod knowledge;
mod limits;
mod model;
mod progress;
mod receipts;
mod rest;
mod rewards;
mod serve;
mod stake;
mod start;
mod token;
mod validator;
mod verify;

use alloy_primitives::U256;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use openledger_protocol::{deploy::Addresses, ProtocolClient, Signer};
use std::path::PathBuf;

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
    Node(Box<start::NodeArgs>),
    /// Play the whole story on a fresh dev network: datanet, review, fine-tuning, agent, paid
    /// and attributed answers, settlement, claims; then serve the web app over what it made.
    Demo(demo::DemoArgs),
    /// The OPEN token: supply and unlock schedule.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The model engine on its own: generate text, inspect a model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Serve the OpenAI-compatible inference API (OpenLoRA) on its own, without a chain.
    Serve(Box<serve::ServeCommand>),
    /// Deploy and wire the protocol contracts on any EVM chain; writes their addresses file.
    Deploy {
        #[command(flatten)]
        chain: ChainArgs,
        /// Where to write the contracts' addresses (JSON).
        #[arg(long, default_value = "protocol.json")]
        out: PathBuf,
        /// The initial parameters.
        #[arg(long, value_enum, default_value = "mainnet")]
        preset: deploy::Preset,
    },
    /// Datanets: create, contribute files, review, publish versions, prove, export.
    Datanet {
        #[command(flatten)]
        chain: ChainArgs,
        /// The node's REST API.
        #[arg(
            long,
            global = true,
            env = "OPENLEDGER_API_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api_url: String,
        #[command(subcommand)]
        command: datanet::DatanetCommand,
    },
    /// ModelFactory: fine-tune on datanet versions, follow, evaluate, publish with lineage,
    /// verify.
    Factory {
        #[command(flatten)]
        chain: ChainArgs,
        /// The node's REST API.
        #[arg(
            long,
            global = true,
            env = "OPENLEDGER_API_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api_url: String,
        /// The protocol's addresses file, for `verify` [default: the dev node's, in
        /// $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: factory::FactoryCommand,
    },
    /// Proof of Attribution: which datanet contributions shaped an adapter's answer; verify a
    /// receipt by recomputing it.
    Attribution {
        #[command(flatten)]
        chain: ChainArgs,
        /// The node's REST API.
        #[arg(
            long,
            global = true,
            env = "OPENLEDGER_API_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api_url: String,
        /// The protocol's addresses file, to resolve adapter ids [default: the dev node's, in
        /// $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: attribution::AttributionCommand,
    },
    /// Agents: deploy one on a published adapter, accept one as its host, list, show, change
    /// prices, pause and resume.
    Agent {
        #[command(flatten)]
        chain: ChainArgs,
        /// The protocol's addresses file [default: the dev node's, in $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// A staked validator's process: check the attribution of settled batches' receipts,
    /// challenge a batch where it does not hold, refund the consumers of upheld ones.
    Validator {
        #[command(flatten)]
        chain: ChainArgs,
        /// The protocol's addresses file [default: the dev node's, in $OPENLEDGER_HOME/chain].
        #[arg(long)]
        addresses: Option<PathBuf>,
        #[command(flatten)]
        args: validator::ValidatorArgs,
    },
    /// Your paid answers: list them, or show one with its attribution explained and its
    /// settlement.
    Receipts(receipts::ReceiptsArgs),
    /// Rewards from inference: earnings per role and datanet, and claiming them.
    Rewards {
        #[command(flatten)]
        chain: ChainArgs,
        /// The protocol's addresses file [default: the dev node's, in $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: rewards::RewardsCommand,
    },
    /// Staking: stake OPEN as validator, host or curator of a datanet; unstake; withdraw.
    Stake {
        #[command(flatten)]
        chain: ChainArgs,
        /// The protocol's addresses file [default: the dev node's, in $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: stake::StakeCommand,
    },
    /// Governance: propose parameter changes, vote with staked OPEN, queue, execute.
    Gov {
        #[command(flatten)]
        chain: ChainArgs,
        /// The protocol's addresses file [default: the dev node's, in $OPENLEDGER_HOME/chain].
        #[arg(long, global = true)]
        addresses: Option<PathBuf>,
        #[command(subcommand)]
        command: GovCommand,
    },
}

/// Where the chain is and who signs.
#[derive(clap::Args)]
struct ChainArgs {
    /// JSON-RPC endpoint (http).
    #[arg(
        long,
        global = true,
        env = "OPENLEDGER_RPC_URL",
        default_value = "http://127.0.0.1:8545"
    )]
    rpc_url: String,
    /// Private key (hex) that signs transactions.
    #[arg(long, global = true, env = "OPENLEDGER_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Complete a prompt (raw text, no chat template), streaming the text.
    Generate(model::GenerateArgs),
    /// Chat under the model's chat template: one question with --prompt, else line by line.
    Chat(model::ChatArgs),
    /// Fine-tune a LoRA adapter on JSONL data.
    Train(model::TrainArgs),
    /// Fold a LoRA adapter into the base weights; writes config.json + model.safetensors.
    Merge {
        /// The adapter directory (PEFT layout).
        #[arg(long)]
        adapter: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The model file (.gguf) [default: SmolLM2-135M-Instruct in the models directory].
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Print a model's shape and tokenizer.
    Inspect {
        /// The model file (.gguf) [default: SmolLM2-135M-Instruct in the models directory].
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GovCommand {
    /// Propose one or more actions; prints the proposal id.
    Propose {
        #[command(flatten)]
        actions: gov::Actions,
        /// What the proposal does and why.
        #[arg(long)]
        description: String,
    },
    /// Vote on an active proposal with the signer's staked OPEN.
    Vote {
        id: U256,
        /// for, against or abstain.
        support: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Queue a succeeded proposal in the timelock.
    Queue { id: U256 },
    /// Execute a queued proposal once the timelock's delay has passed.
    Execute { id: U256 },
    /// Show a proposal (or all of them): state, votes, actions.
    Status { id: Option<U256> },
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

fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("OPENLEDGER_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".openledger")
}

/// A client for the protocol's contracts, checked against the addresses file's chain.
async fn protocol_client(
    chain: &ChainArgs,
    addresses: Option<PathBuf>,
    sends: bool,
) -> Result<ProtocolClient> {
    let file = addresses.unwrap_or_else(|| default_home().join("chain").join("protocol.json"));
    let addresses = Addresses::load(&file)?;
    let signer = chain.key.as_deref().map(Signer::from_hex).transpose()?;
    if sends && signer.is_none() {
        bail!("this command sends a transaction: pass --key HEX or set OPENLEDGER_KEY");
    }
    let client = ProtocolClient::connect(&chain.rpc_url, signer)
        .await
        .with_context(|| format!("connecting to {}", chain.rpc_url))?;
    if client.chain_id() != addresses.chain_id {
        bail!(
            "{} is for chain {} but {} is chain {}",
            file.display(),
            addresses.chain_id,
            chain.rpc_url,
            client.chain_id()
        );
    }
    Ok(client.with_addresses(addresses))
}

async fn run_gov(chain: ChainArgs, addresses: Option<PathBuf>, command: GovCommand) -> Result<()> {
    let sends = !matches!(command, GovCommand::Status { .. });
    let client = protocol_client(&chain, addresses, sends).await?;
    match command {
        GovCommand::Propose {
            actions,
            description,
        } => gov::propose(&client, &actions, &description).await,
        GovCommand::Vote {
            id,
            support,
            reason,
        } => gov::vote(&client, id, &support, &reason).await,
        GovCommand::Queue { id } => gov::queue_or_execute(&client, id, false).await,
        GovCommand::Execute { id } => gov::queue_or_execute(&client, id, true).await,
        GovCommand::Status { id } => gov::status(&client, id).await,
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; the node it starts speaks only of trouble.
    let default = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Node(args) => runtime.block_on(start::run(*args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Serve(command) => runtime.block_on(serve::run(*command)),
        Command::Model(ModelCommand::Generate(args)) => model::generate(args),
        Command::Model(ModelCommand::Chat(args)) => model::chat(args),
        Command::Model(ModelCommand::Train(args)) => model::train(args),
        Command::Model(ModelCommand::Merge {
            adapter,
            out,
            model,
        }) => model::merge(model, adapter, out),
        Command::Model(ModelCommand::Inspect { model }) => model::inspect(model),
        Command::Deploy { chain, out, preset } => runtime.block_on(async {
            let key = chain
                .key
                .context("deploying needs the deployer's key: --key HEX or OPENLEDGER_KEY")?;
            deploy::run(&chain.rpc_url, &key, &out, preset).await
        }),
        Command::Gov {
            chain,
            addresses,
            command,
        } => runtime.block_on(run_gov(chain, addresses, command)),
        Command::Stake {
            chain,
            addresses,
            command,
        } => runtime.block_on(async {
            let client = protocol_client(&chain, addresses, command.sends()).await?;
            stake::run(&client, command).await
        }),
        Command::Rewards {
            chain,
            addresses,
            command,
        } => runtime.block_on(async {
            let client = protocol_client(&chain, addresses, command.sends()).await?;
            rewards::run(&client, command).await
        }),
        Command::Receipts(args) => runtime.block_on(receipts::run(args)),
        Command::Validator {
            chain,
            addresses,
            args,
        } => runtime.block_on(async {
            let client = protocol_client(&chain, addresses, true).await?;
            validator::run(&client, args, &default_home()).await
        }),
        Command::Agent {
            chain,
            addresses,
            command,
        } => runtime.block_on(async {
            let client = protocol_client(&chain, addresses, command.sends()).await?;
            agent::run(&client, command).await
        }),
        Command::Datanet {
            chain,
            api_url,
            command,
        } => runtime.block_on(datanet::run(
            &api_url,
            &chain.rpc_url,
            chain.key.as_deref(),
            command,
        )),
        Command::Factory {
            chain,
            api_url,
            addresses,
            command,
        } => runtime.block_on(async {
            let reader = match &command {
                factory::FactoryCommand::Verify { .. } => {
                    Some(protocol_client(&chain, addresses, false).await?)
                }
                _ => None,
            };
            factory::run(
                &api_url,
                &chain.rpc_url,
                chain.key.as_deref(),
                reader,
                command,
            )
            .await
        }),
        Command::Attribution {
            chain,
            api_url,
            addresses,
            command,
        } => runtime.block_on(async {
            let by_id = matches!(
                &command,
                attribution::AttributionCommand::Explain { adapter, .. } if !adapter.starts_with("0x")
            );
            let client = match by_id {
                true => Some(protocol_client(&chain, addresses, false).await?),
                // Verification checks the served manifest against the registry when it can.
                false if matches!(command, attribution::AttributionCommand::Verify { .. }) => {
                    protocol_client(&chain, addresses, false).await.ok()
                }
                false => None,
            };
            let api = rest::Api::new(&api_url)?;
            attribution::run(&api, client, &default_home(), command).await
        }),
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
