//! `openledger node`: start the chain, deploy the protocol on a dev network, and serve the
//! REST API beside it: datanets, the factory, attribution, OpenLoRA serving with AI Studio's
//! paid agents, and the web app.

use crate::{deploy, gov, host, knowledge, limits, serve};
use anyhow::{bail, Context, Result};
use openledger_chain::{Genesis, Node, NodeConfig};
use openledger_protocol::{deploy::Addresses, ProtocolClient, Signer};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

#[derive(clap::Args)]
pub struct NodeArgs {
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

/// A running node: its chain, and its REST API once the protocol's addresses are known.
pub struct Started {
    pub node: Node,
    pub api_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
}

/// Runs the node until Ctrl-C.
pub async fn run(args: NodeArgs) -> Result<()> {
    let dev = args.dev;
    let started = start(args).await?;
    let node = &started.node;
    let head = node.chain.head();
    tracing::info!(
        rpc = %format!("http://{0} ws://{0}", node.http_addr),
        metrics = %node.metrics_addr.map(|a| format!("http://{a}/metrics")).unwrap_or_default(),
        chain_id = node.chain.genesis.chain_id,
        head = head.header.number,
        data_dir = %started.data_dir.display(),
        "node running"
    );
    if let Some(api) = started.api_addr {
        tracing::info!(web = %format!("http://{api}/"), "web app running");
    }
    if dev {
        for address in node.chain.dev_addresses() {
            tracing::info!(%address, "dev account");
        }
    }
    tokio::signal::ctrl_c().await.ok();
    tracing::info!("shutting down");
    Ok(())
}

/// Starts the chain and every service beside it, and returns once they listen.
pub async fn start(args: NodeArgs) -> Result<Started> {
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
        .unwrap_or_else(|| crate::default_home().join("chain"));
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
    let api_addr = if addresses_file.exists() {
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
            args.dev,
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
        Some(addr)
    } else {
        tracing::info!(
            file = %addresses_file.display(),
            "no protocol addresses file: the REST API is off"
        );
        None
    };
    Ok(Started {
        node,
        api_addr,
        data_dir,
    })
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

/// The datanets service (its index kept in sync, stale uploads swept) and the attribution
/// service reading its blob store.
fn open_datanets(
    client: ProtocolClient,
    data_dir: &Path,
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
                match maintained.sweep_drafts(UPLOAD_TTL).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        removed = n,
                        "swept prepared calls' blobs whose transaction never landed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "sweeping prepared calls failed"),
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
    dev: bool,
    data_dir: &Path,
    addresses_file: &Path,
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
    // The dev wallet signs for the dev accounts and the node's dev host (which accepts agents)
    // only on a dev node, whose keys everyone knows.
    let wallet = openledger_web::WalletSettings {
        rpc_url: format!("http://{}", node.http_addr),
        dev_keys: if dev {
            let mut keys = openledger_genesis::devkeys::dev_accounts();
            keys.push(openledger_protocol::genesis::dev_host());
            keys
        } else {
            Vec::new()
        },
    };
    router = router.merge(openledger_web::router(openledger_web::Web::new(
        pages,
        service.clone(),
        wallet,
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
