//! `openledger`: the OpenLedger node and its command line.

mod agent;
mod attribution;
mod datanet;
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
mod token;
mod validator;
mod verify;

use alloy_primitives::U256;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use openledger_chain::{Genesis, Node, NodeConfig};
use openledger_protocol::{deploy::Addresses, ProtocolClient, Signer};
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
    Node(Box<NodeArgs>),
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

#[derive(clap::Args)]
struct NodeArgs {
    /// Where the chain's database lives [default: $OPENLEDGER_HOME/chain, or ~/.openledger/chain].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// JSON-RPC address (HTTP and WebSocket on one port).
    #[arg(long, default_value = "127.0.0.1:8545")]
    http_addr: SocketAddr,
    /// REST API address (datanets), served once the protocol's addresses are known.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_addr: SocketAddr,
    /// The key of the account this node hosts agents as (their receipts are settled from it);
    /// on --dev, the twelfth key of the dev mnemonic by default.
    #[arg(long, env = "OPENLEDGER_HOST_KEY", hide_env_values = true)]
    host_key: Option<String>,
    /// Seconds between the host's settlement rounds (settle receipts, release batches)
    /// [default: 2 on --dev, 30 otherwise].
    #[arg(long)]
    settle_interval: Option<u64>,
    /// The host (and port) that Sign-In with Ethereum messages must name to get API keys, as
    /// clients reach this API [default: the --api-addr].
    #[arg(long)]
    api_domain: Option<String>,
    /// Where datanet blobs live: a directory, or s3://bucket[/prefix] (a build with the `s3`
    /// feature; AWS_* environment variables) [default: <data-dir>/datanets/blobs].
    #[arg(long)]
    blob_store: Option<String>,
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
    #[command(flatten)]
    limits: limits::LimitArgs,
    /// A base model the factory fine-tunes, as NAME=PATH (repeatable) [default:
    /// SmolLM2-135M-Instruct=<models dir>/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long = "factory-model", value_name = "NAME=PATH")]
    factory_models: Vec<String>,
    /// An API key the /v1 APIs accept as `Authorization: Bearer KEY` (repeatable); without
    /// one, they are open on --dev and closed otherwise.
    #[arg(
        long = "api-key",
        env = "OPENLEDGER_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// The factory operator's private key (hex): it is paid the job fees and signs the job
    /// escrow's transactions [default on --dev: the dev deployer, the mnemonic's eleventh key].
    #[arg(long, env = "OPENLEDGER_FACTORY_KEY", hide_env_values = true)]
    factory_key: Option<String>,
    /// The fee the factory charges per fine-tuning job, in OPEN.
    #[arg(long, default_value = "1")]
    factory_fee: String,
    #[command(flatten)]
    serve: serve::ServeArgs,
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
    if !args.dev && args.block_time < 1000 {
        // Every block is at least a second after its parent: faster blocks would let anyone
        // who sends transactions run the chain's clock ahead, and with it every deadline.
        bail!(
            "--block-time {} is under a second: only a --dev node may make blocks faster than \
             one a second",
            args.block_time
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_home().join("chain"));
    let node = Node::start(NodeConfig {
        data_dir: data_dir.clone(),
        genesis,
        http_addr: args.http_addr,
        metrics_addr: Some(args.metrics_addr),
        block_time: Duration::from_millis(args.block_time),
        dev: args.dev,
        pool: args.limits.pool(),
        rpc: args.limits.rpc(args.dev),
    })
    .await
    .with_context(|| format!("starting the node in {}", data_dir.display()))?;
    if args.dev && args.genesis.is_none() {
        let file = data_dir.join("protocol.json");
        let addresses =
            deploy::ensure_dev_protocol(&format!("http://{}", node.http_addr), &file).await?;
        tracing::info!(
            governor = %addresses.governor,
            datanets = %addresses.datanet_registry,
            settlement = %addresses.inference_settlement,
            file = %file.display(),
            "protocol deployed"
        );
    }
    let addresses_file = data_dir.join("protocol.json");
    if addresses_file.exists() {
        let blobs = args.blob_store.clone().unwrap_or_else(|| {
            data_dir
                .join("datanets")
                .join("blobs")
                .display()
                .to_string()
        });
        let factory = factory_settings(&args)?;
        let slot = openledger_studio::Slot::default();
        let studio_dir = data_dir.join("studio");
        std::fs::create_dir_all(&studio_dir)
            .with_context(|| format!("cannot create {}", studio_dir.display()))?;
        let studio_store = std::sync::Arc::new(openledger_studio::store::Store::open(
            &studio_dir.join("studio.redb"),
        )?);
        let domain = args
            .api_domain
            .clone()
            .unwrap_or_else(|| args.api_addr.to_string());
        let keys = openledger_studio::keys::Keys::new(
            studio_store.clone(),
            domain,
            node.chain.genesis.chain_id,
        );
        let (datanets, attributor) = open_datanets(
            ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
                .await?
                .with_addresses(Addresses::load(&addresses_file)?),
            &data_dir,
            &blobs,
            &factory,
        )?;
        let host = match (&args.host_key, args.dev) {
            (Some(key), _) => Some(Signer::from_hex(key).context("--host-key")?),
            (None, true) => Some(Signer::from_key(
                openledger_protocol::genesis::dev_host().key,
            )),
            (None, false) => None,
        };
        let paid = match &host {
            Some(host) => {
                let reader = ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
                    .await?
                    .with_addresses(Addresses::load(&addresses_file)?);
                let agents = host::spawn_agents(reader, host.address());
                tracing::info!(host = %host.address(), "hosting agents");
                let settler = ProtocolClient::connect(
                    &format!("http://{}", node.http_addr),
                    Some(host.clone()),
                )
                .await?
                .with_addresses(Addresses::load(&addresses_file)?);
                let every = args
                    .settle_interval
                    .unwrap_or(if args.dev { 2 } else { 30 });
                let attribution = host::HostAttribution::new(attributor.clone(), datanets.clone());
                openledger_studio::attribute::spawn(
                    studio_store.clone(),
                    attribution.clone(),
                    std::time::Duration::from_secs(2),
                );
                host::spawn_settlement(
                    studio_store.clone(),
                    settler,
                    attribution,
                    std::time::Duration::from_secs(every.max(1)),
                );
                let funds = host::ChainFunds::new(
                    ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
                        .await?
                        .with_addresses(Addresses::load(&addresses_file)?),
                    host.address(),
                );
                Some(openledger_studio::Paid {
                    agents,
                    funds,
                    store: studio_store.clone(),
                    knowledge: Some(knowledge::HostKnowledge::new(datanets.clone())),
                })
            }
            None => None,
        };
        let inference = serve::routes(
            &slot,
            factory.access.clone(),
            args.serve.admin_access(args.dev),
            Some(keys.clone()),
        )
        .merge(openledger_studio::keys::router(keys.clone()))
        .merge(openledger_studio::receipts::router(
            keys,
            studio_store,
            host::ChainValidators::new(
                ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
                    .await?
                    .with_addresses(Addresses::load(&addresses_file)?),
            ),
        ));
        let registry = ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
            .await?
            .with_addresses(Addresses::load(&addresses_file)?);
        let published = serve::Published::new(
            openledger_datanets::store::Store::open(&blobs)?,
            data_dir.join("serving").join("published"),
            Some(registry),
        );
        args.serve.spawn_load(
            slot.clone(),
            data_dir.join("adapters"),
            Some(std::sync::Arc::new(published)),
            Some(node.chain.clone()),
            paid,
        )?;
        let addr = serve_api(
            &node,
            &data_dir,
            &addresses_file,
            args.api_addr,
            factory,
            inference,
            datanets,
            attributor,
        )
        .await?;
        tracing::info!(api = %format!("http://{addr}/api"), "REST API running");
    } else {
        tracing::info!(
            file = %addresses_file.display(),
            "no protocol addresses file: the REST API is off"
        );
    }
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

/// How often the datanet index follows the chain, and how long an upload may wait for its
/// transaction before it is swept away.
const DATANETS_SYNC: Duration = Duration::from_secs(2);
const UPLOAD_TTL: Duration = Duration::from_secs(3600);

/// The factory's base models, operator and fee, and who may call the /v1 APIs.
struct FactorySettings {
    models: std::collections::BTreeMap<String, PathBuf>,
    access: openledger_factory::api::Access,
    operator: Option<Signer>,
    fee: u128,
}

fn factory_settings(args: &NodeArgs) -> Result<FactorySettings> {
    let (keys, dev) = (&args.api_keys, args.dev);
    let mut named = std::collections::BTreeMap::new();
    for pair in &args.factory_models {
        let (name, path) = pair
            .split_once('=')
            .with_context(|| format!("--factory-model {pair:?} is not NAME=PATH"))?;
        named.insert(name.to_string(), PathBuf::from(path));
    }
    if named.is_empty() {
        named.insert(
            "SmolLM2-135M-Instruct".to_string(),
            openledger_model::default_model_path(),
        );
    }
    let keys: Vec<String> = keys.iter().filter(|k| !k.is_empty()).cloned().collect();
    let access = if keys.is_empty() && dev {
        openledger_factory::api::Access::Open
    } else {
        if keys.is_empty() {
            tracing::warn!(
                "no --api-key: the /v1 APIs refuse every request (they are open only on --dev)"
            );
        }
        openledger_factory::api::Access::Keys(keys)
    };
    let operator = match (&args.factory_key, dev) {
        (Some(key), _) => Some(Signer::from_hex(key).context("--factory-key")?),
        // The dev deployer: idle once the protocol is deployed (the factory starts after), and
        // not one of the ten dev accounts, whose nonces belong to the people using them.
        (None, true) => Some(Signer::from_key(
            openledger_protocol::genesis::dev_deployer().key,
        )),
        (None, false) => None,
    };
    let fee = gov::parse_open(&args.factory_fee)
        .context("--factory-fee")?
        .try_into()
        .context("--factory-fee is too large")?;
    Ok(FactorySettings {
        models: named,
        access,
        operator,
        fee,
    })
}

/// Opens the datanet service in `<data-dir>/datanets` and the factory in
/// `<data-dir>/factory`, and serves the REST API.
/// The datanets service (its index kept in sync, stale uploads swept) and the attribution
/// service reading its blob store.
fn open_datanets(
    client: ProtocolClient,
    data_dir: &std::path::Path,
    blobs: &str,
    factory: &FactorySettings,
) -> Result<(
    std::sync::Arc<openledger_datanets::Datanets>,
    std::sync::Arc<openledger_attribution::service::Attributor>,
)> {
    let dir = data_dir.join("datanets");
    let store = openledger_datanets::store::Store::open(blobs)?;
    let service = std::sync::Arc::new(openledger_datanets::Datanets::open(
        client,
        store,
        &dir,
        openledger_datanets::Policy::default(),
    )?);
    let maintained = service.clone();
    tokio::spawn(async move {
        let mut ticks = 0u64;
        loop {
            if let Err(e) = maintained.sync().await {
                tracing::warn!(error = %e, "datanet index sync failed");
            }
            ticks += 1;
            if ticks.is_multiple_of(30) {
                match maintained.sweep(UPLOAD_TTL).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(removed = n, "swept uploads whose transaction never landed")
                    }
                    Err(e) => tracing::warn!(error = %e, "sweeping uploads failed"),
                }
            }
            tokio::time::sleep(DATANETS_SYNC).await;
        }
    });
    let attributor = std::sync::Arc::new(openledger_attribution::service::Attributor::new(
        service.clone(),
        &data_dir.join("attribution"),
        factory.models.clone(),
    ));
    Ok((service, attributor))
}

#[allow(clippy::too_many_arguments)]
async fn serve_api(
    node: &Node,
    data_dir: &std::path::Path,
    addresses_file: &std::path::Path,
    addr: SocketAddr,
    factory: FactorySettings,
    inference: axum::Router,
    service: std::sync::Arc<openledger_datanets::Datanets>,
    attributor: std::sync::Arc<openledger_attribution::service::Attributor>,
) -> Result<SocketAddr> {
    let addresses = Addresses::load(addresses_file)?;
    let mut router = openledger_datanets::api::router(service.clone());
    let pages = ProtocolClient::connect(&format!("http://{}", node.http_addr), None)
        .await?
        .with_addresses(addresses);
    router = router.merge(openledger_web::router(openledger_web::Web::new(
        pages,
        service.clone(),
    )));
    router = router.merge(inference);
    router = router.merge(openledger_attribution::api::router(attributor).route_layer(
        axum::middleware::from_fn_with_state(
            std::sync::Arc::new(factory.access.clone()),
            openledger_factory::api::authorize,
        ),
    ));
    match factory.operator {
        Some(operator) => {
            let url = format!("http://{}", node.http_addr);
            let reader = ProtocolClient::connect(&url, None)
                .await?
                .with_addresses(addresses);
            let operator = ProtocolClient::connect(&url, Some(operator))
                .await?
                .with_addresses(addresses);
            let factory_service = openledger_factory::Factory::open(
                &data_dir.join("factory"),
                service,
                reader,
                openledger_factory::Operator {
                    client: operator,
                    fee: factory.fee,
                },
                factory.models,
                std::sync::Arc::new(openledger_factory::LocalRunner),
                openledger_factory::Limits::default(),
            )?;
            factory_service.start().await?;
            router = router.merge(openledger_factory::api::router(
                factory_service,
                factory.access,
            ));
        }
        None => tracing::warn!("no --factory-key: the fine-tuning API is off"),
    }
    openledger_chain::rpc::serve(addr, router)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
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
        Command::Node(args) => runtime.block_on(run_node(*args)),
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
