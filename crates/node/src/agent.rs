//! `openledger agent`: deploy an agent on a published adapter (the host it names must accept
//! it), accept one as its host, list and show agents, change an agent's prices, pause and
//! resume it. Prices are OPEN per 1,000 tokens, input and output apart.

use crate::gov::parse_open;
use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Context, Result};
use openledger_protocol::{
    model_registry::ModelRegistry::AgentDeployed, ModelRegistry, ProtocolClient,
};
use openledger_studio::agents::Metadata;
use std::collections::BTreeMap;

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// Propose an agent on adapter ADAPTER (a `ModelRegistry` id), served by --host once the
    /// host accepts it; prints its id.
    Deploy {
        adapter: u64,
        /// The host that will serve it (a staked host).
        #[arg(long)]
        host: Address,
        /// OPEN per 1,000 input tokens ("0.001").
        #[arg(long)]
        price_in: String,
        /// OPEN per 1,000 output tokens.
        #[arg(long)]
        price_out: String,
        /// The name `model` may use besides `agent-<id>`.
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Put before every conversation that brings no system message of its own.
        #[arg(long)]
        system_prompt: Option<String>,
        /// Sampling defaults for requests that do not set them.
        #[arg(long)]
        temperature: Option<f32>,
        #[arg(long)]
        max_tokens: Option<u64>,
        /// A datanet it answers from (retrieval).
        #[arg(long)]
        knowledge: Option<u32>,
    },
    /// As the host it names: agree to serve agent ID (again after its prices change).
    Accept { id: u64 },
    /// As its host: stop serving agent ID.
    Release { id: u64 },
    /// Every agent, or those of --host.
    List {
        #[arg(long)]
        host: Option<Address>,
    },
    /// One agent: adapter, host, owner, prices, state and metadata.
    Show { id: u64 },
    /// As its owner: set agent ID's prices (receipts are held to the prices at settlement).
    Update {
        id: u64,
        #[arg(long)]
        price_in: String,
        #[arg(long)]
        price_out: String,
    },
    /// As its owner: pause agent ID (it is no longer served, and its receipts wait).
    Retire { id: u64 },
    /// As its owner: serve agent ID again.
    Resume { id: u64 },
}

impl AgentCommand {
    /// Whether the command sends a transaction.
    pub fn sends(&self) -> bool {
        !matches!(self, AgentCommand::List { .. } | AgentCommand::Show { .. })
    }
}

fn price(text: &str, flag: &str) -> Result<u128> {
    parse_open(text)
        .with_context(|| flag.to_string())?
        .try_into()
        .with_context(|| format!("{flag} is too large"))
}

/// Runs an agent command with a client that knows the protocol's addresses.
pub async fn run(client: &ProtocolClient, command: AgentCommand) -> Result<()> {
    let registry = client.addresses().expect("addresses loaded").model_registry;
    match command {
        AgentCommand::Deploy {
            adapter,
            host,
            price_in,
            price_out,
            name,
            description,
            system_prompt,
            temperature,
            max_tokens,
            knowledge,
        } => {
            let metadata = serde_json::json!({
                "name": name,
                "description": description,
                "system_prompt": system_prompt,
                "temperature": temperature,
                "max_tokens": max_tokens,
            });
            let uri = openledger_studio::agents::metadata_uri(&metadata);
            let call = ModelRegistry::deployAgentCall::new((
                U256::from(adapter),
                host,
                price(&price_in, "--price-in")?,
                price(&price_out, "--price-out")?,
                knowledge.unwrap_or(0),
                uri,
            ));
            let id = client.call(registry, call.clone()).await?;
            client.send(registry, call, U256::ZERO).await?;
            println!("{id}");
            eprintln!("agent: agent-{id} proposed on adapter {adapter}; {host} must accept it (`openledger agent accept {id}`)");
        }
        AgentCommand::Accept { id } => {
            let call = ModelRegistry::acceptAgentCall::new((U256::from(id),));
            client.send(registry, call, U256::ZERO).await?;
            eprintln!("agent: agent-{id} accepted; it is served within seconds");
        }
        AgentCommand::Release { id } => {
            let call = ModelRegistry::releaseAgentCall::new((U256::from(id),));
            client.send(registry, call, U256::ZERO).await?;
            eprintln!("agent: agent-{id} is no longer served by this host");
        }
        AgentCommand::Update {
            id,
            price_in,
            price_out,
        } => {
            let agent = client
                .call(registry, ModelRegistry::agentCall::new((U256::from(id),)))
                .await?;
            let call = ModelRegistry::updateAgentCall::new((
                U256::from(id),
                agent.active,
                price(&price_in, "--price-in")?,
                price(&price_out, "--price-out")?,
            ));
            client.send(registry, call, U256::ZERO).await?;
            eprintln!("agent: agent-{id} now costs {price_in} OPEN per 1,000 input tokens and {price_out} per 1,000 output tokens, once its host accepts them");
        }
        AgentCommand::Retire { id } | AgentCommand::Resume { id } => {
            let active = matches!(command, AgentCommand::Resume { .. });
            let agent = client
                .call(registry, ModelRegistry::agentCall::new((U256::from(id),)))
                .await?;
            if agent.host == Address::ZERO {
                bail!("there is no agent {id}");
            }
            let call = ModelRegistry::updateAgentCall::new((
                U256::from(id),
                active,
                agent.priceIn,
                agent.priceOut,
            ));
            client.send(registry, call, U256::ZERO).await?;
            eprintln!(
                "agent: agent-{id} {}",
                if active { "resumed" } else { "paused" }
            );
        }
        AgentCommand::List { host } => {
            let metadata = metadata(client, registry).await?;
            let count = client
                .call(registry, ModelRegistry::countsCall {})
                .await?
                .agents;
            println!("id\thost\tadapter\tprice in\tprice out\tstate\tname");
            for id in 1..=count.to::<u64>() {
                let a = client
                    .call(registry, ModelRegistry::agentCall::new((U256::from(id),)))
                    .await?;
                if host.is_some_and(|h| h != a.host) {
                    continue;
                }
                let name = metadata.get(&id).map_or("", |m| m.name.as_str());
                println!(
                    "agent-{id}\t{}\t{}\t{}\t{}\t{}\t{name}",
                    a.host,
                    a.adapterId,
                    crate::stake::open(U256::from(a.priceIn)),
                    crate::stake::open(U256::from(a.priceOut)),
                    state(a.accepted, a.active),
                );
            }
        }
        AgentCommand::Show { id } => {
            let a = client
                .call(registry, ModelRegistry::agentCall::new((U256::from(id),)))
                .await?;
            if a.host == Address::ZERO {
                bail!("there is no agent {id}");
            }
            let route = client
                .call(
                    registry,
                    ModelRegistry::agentRouteCall::new((U256::from(id),)),
                )
                .await?;
            let m = metadata(client, registry)
                .await?
                .remove(&id)
                .unwrap_or_default();
            println!("agent-{id}");
            println!("name:        {}", m.name);
            println!("description: {}", m.description);
            println!("adapter:     {}", a.adapterId);
            println!("host:        {}", a.host);
            println!(
                "owner:       {} (the model owner paid is the adapter's: {})",
                a.owner, route.modelOwner
            );
            println!(
                "price in:    {} per 1,000 tokens",
                crate::stake::open(U256::from(a.priceIn))
            );
            println!(
                "price out:   {} per 1,000 tokens",
                crate::stake::open(U256::from(a.priceOut))
            );
            println!(
                "state:       {}{}",
                state(a.accepted, a.active),
                if route.servable { ", served" } else { "" }
            );
            if a.knowledgeDatanetId != 0 {
                println!("knowledge:   datanet {}", a.knowledgeDatanetId);
            }
            if let Some(prompt) = m.system_prompt {
                println!("system:      {prompt}");
            }
        }
    }
    Ok(())
}

fn state(accepted: bool, active: bool) -> &'static str {
    match (accepted, active) {
        (false, _) => "waiting for its host",
        (true, true) => "active",
        (true, false) => "paused",
    }
}

/// Every agent's metadata, from the events that deployed them.
async fn metadata(client: &ProtocolClient, registry: Address) -> Result<BTreeMap<u64, Metadata>> {
    Ok(client
        .events::<AgentDeployed>(registry, 0, None)
        .await?
        .into_iter()
        .map(|(_, e)| {
            (
                e.agentId.to::<u64>(),
                Metadata::from_uri(&e.metadataURI).unwrap_or_default(),
            )
        })
        .collect())
}
