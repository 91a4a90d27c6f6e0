//! The node as a host: the agents it serves, read from the chain, and its settlement rounds. Every few seconds it reads
//! the `AgentDeployed` events naming this host (for their metadata URIs) and each agent's route
//! (prices, whether it may be settled: accepted, active, not retired), so a price change or a
//! pause reaches serving within one refresh.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use futures_util::future::BoxFuture;
use openledger_attribution::service::{Attributor, ServiceError};
use openledger_protocol::{ModelRegistry, ProtocolClient};
use openledger_studio::{
    agents::{agent_id, Agent, AgentBook, Metadata},
    attribute::{Attributed, Attribution},
};
use std::sync::RwLock;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// How often the agents are read again.
const REFRESH: Duration = Duration::from_secs(2);
/// Agents naming this host that it has not accepted, kept (newest) until it does: anyone may
/// deploy agents naming any host, so this is bounded; accepted ones are the host's own doing.
const MAX_PROPOSED: usize = 1024;

/// An agent as first deployed: what its event says.
struct Deployed {
    adapter_id: u64,
    metadata: Metadata,
}

/// The agents this host serves, as of the last refresh.
pub struct ChainAgents {
    agents: RwLock<Vec<Agent>>,
}

impl AgentBook for ChainAgents {
    fn find(&self, model: &str) -> Option<Agent> {
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        match agent_id(model) {
            Some(id) => agents.iter().find(|a| a.id == id).cloned(),
            None => agents
                .iter()
                .find(|a| !a.name.is_empty() && a.name == model)
                .cloned(),
        }
    }

    fn list(&self) -> Vec<Agent> {
        self.agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts reading the agents that name `host`, through `client` (reads only).
pub fn spawn_agents(client: ProtocolClient, host: Address) -> Arc<ChainAgents> {
    let book = Arc::new(ChainAgents {
        agents: RwLock::new(Vec::new()),
    });
    let shared = book.clone();
    tokio::spawn(async move {
        let mut proposed: BTreeMap<u64, Deployed> = BTreeMap::new();
        let mut deployed: BTreeMap<u64, Deployed> = BTreeMap::new();
        let mut weights: BTreeMap<u64, B256> = BTreeMap::new();
        let mut from = 0u64;
        loop {
            let known = (&mut proposed, &mut deployed);
            match refresh(&client, host, known, &mut weights, &mut from).await {
                Ok(agents) => *shared.agents.write().unwrap_or_else(|p| p.into_inner()) = agents,
                Err(e) => tracing::warn!(error = %e, "reading this host's agents failed"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
    book
}

async fn refresh(
    client: &ProtocolClient,
    host: Address,
    (proposed, deployed): (&mut BTreeMap<u64, Deployed>, &mut BTreeMap<u64, Deployed>),
    weights: &mut BTreeMap<u64, B256>,
    from: &mut u64,
) -> anyhow::Result<Vec<Agent>> {
    let registry = client
        .addresses()
        .ok_or_else(|| anyhow::anyhow!("no protocol addresses"))?
        .model_registry;
    let head = client.block_number().await?;
    if head >= *from {
        let events = client
            .events::<ModelRegistry::AgentDeployed>(registry, *from, Some(head))
            .await?;
        for (_, e) in events.into_iter().filter(|(_, e)| e.host == host) {
            let metadata = Metadata::from_uri(&e.metadataURI).unwrap_or_else(|err| {
                tracing::warn!(agent = %e.agentId, error = %err, "agent metadata ignored");
                Metadata::default()
            });
            let adapter_id = e.adapterId.to::<u64>();
            proposed.insert(
                e.agentId.to(),
                Deployed {
                    adapter_id,
                    metadata,
                },
            );
            while proposed.len() > MAX_PROPOSED {
                proposed.pop_first();
            }
        }
        // Only the agents this host accepted are followed (and asked for their route).
        let accepted = client
            .events::<ModelRegistry::AgentAccepted>(registry, *from, Some(head))
            .await?;
        for (_, e) in accepted.into_iter().filter(|(_, e)| e.host == host) {
            let id: u64 = e.agentId.to();
            match proposed.remove(&id) {
                Some(d) => {
                    deployed.insert(id, d);
                }
                None if deployed.contains_key(&id) => {}
                None => tracing::warn!(
                    agent = id,
                    "accepted an agent proposed too long ago to be kept"
                ),
            }
        }
        *from = head + 1;
    }
    let mut agents = Vec::new();
    for (&id, d) in deployed.iter() {
        let route = client
            .call(
                registry,
                ModelRegistry::agentRouteCall::new((U256::from(id),)),
            )
            .await?;
        if !route.servable || route.host != host {
            continue;
        }
        let hash = match weights.get(&d.adapter_id) {
            Some(h) => *h,
            None => {
                let call = ModelRegistry::adapterCall::new((U256::from(d.adapter_id),));
                let h = client.call(registry, call).await?._0.weightsHash;
                weights.insert(d.adapter_id, h);
                h
            }
        };
        agents.push(Agent {
            id,
            name: d.metadata.name.clone(),
            adapter: format!("{hash}"),
            price_in: route.priceIn,
            price_out: route.priceOut,
            knowledge: route.knowledgeDatanetId.saturating_to(),
            metadata: d.metadata.clone(),
        });
    }
    Ok(agents)
}

/// Attribution of this host's receipts by the node's attribution service, and lineage proofs
/// from its datanet versions.
pub struct HostAttribution {
    attributor: Arc<Attributor>,
    datanets: Arc<openledger_datanets::Datanets>,
}

impl HostAttribution {
    pub fn new(
        attributor: Arc<Attributor>,
        datanets: Arc<openledger_datanets::Datanets>,
    ) -> Arc<Self> {
        Arc::new(Self {
            attributor,
            datanets,
        })
    }
}

impl Attribution for HostAttribution {
    fn attribute(
        &self,
        weights: B256,
        prompt: Vec<u32>,
        answer: Vec<u32>,
    ) -> BoxFuture<'_, Result<Attributed, String>> {
        Box::pin(async move {
            let amount = openledger_studio::attribute::BASIS_POINTS;
            match self
                .attributor
                .attribute_served(weights, prompt, answer, amount)
                .await
            {
                Ok(receipt) => Ok(Attributed::Receipt(receipt.encode())),
                // No published training artifacts, or an answer too long: never attributable.
                Err(e @ (ServiceError::NotFound(_) | ServiceError::InvalidRequest(_))) => {
                    Ok(Attributed::Unattributable(e.to_string()))
                }
                Err(ServiceError::Busy) => Ok(Attributed::Busy),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn prove(
        &self,
        version: u64,
        contribution: u64,
    ) -> BoxFuture<'_, Result<Option<Vec<B256>>, String>> {
        Box::pin(async move {
            match self.datanets.prove(version, contribution).await {
                Ok(proof) => Ok(Some(proof.proof)),
                Err(openledger_datanets::DatanetsError::NotInVersion { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Runs the host's settlement rounds every `every`: receipts on chain, batches released.
pub fn spawn_settlement(
    store: Arc<openledger_studio::store::Store>,
    client: ProtocolClient,
    attribution: Arc<HostAttribution>,
    every: Duration,
) {
    tokio::spawn(async move {
        let settings = openledger_studio::settle::Settings::default();
        loop {
            tokio::time::sleep(every).await;
            let round =
                openledger_studio::settle::round(&store, &client, attribution.as_ref(), &settings);
            match round.await {
                Ok(round) => {
                    if let Some((batch, receipts)) = round.settled {
                        tracing::info!(batch, receipts, "settled a batch of receipts");
                    }
                    for batch in round.released {
                        tracing::info!(batch, "released a batch");
                    }
                    if round.recovered > 0 {
                        tracing::info!(
                            receipts = round.recovered,
                            "found receipts already settled"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "settlement round failed"),
            }
        }
    });
}

/// What consumers can pay this host, read on chain for each paid request.
pub struct ChainFunds {
    client: ProtocolClient,
    host: Address,
}

impl ChainFunds {
    pub fn new(client: ProtocolClient, host: Address) -> Arc<Self> {
        Arc::new(Self { client, host })
    }
}

impl openledger_studio::agents::Funds for ChainFunds {
    fn standing(
        &self,
        consumer: Address,
    ) -> futures_util::future::BoxFuture<'_, Result<openledger_studio::agents::Standing, String>>
    {
        Box::pin(async move {
            let settlement = self
                .client
                .addresses()
                .ok_or("no protocol addresses")?
                .inference_settlement;
            let auth = openledger_protocol::InferenceSettlement::authorizationCall::new((
                consumer, self.host,
            ));
            let auth = self
                .client
                .call(settlement, auth)
                .await
                .map_err(|e| e.to_string())?;
            let credit = openledger_protocol::InferenceSettlement::creditOfCall::new((consumer,));
            let credit = self
                .client
                .call(settlement, credit)
                .await
                .map_err(|e| e.to_string())?;
            // A pending lowering already bounds what new requests may cost.
            let allowance = if auth.lowersAt != 0 {
                auth.allowance.min(auth.lowerTo)
            } else {
                auth.allowance
            };
            Ok(openledger_studio::agents::Standing {
                available: allowance.min(credit.saturating_to::<u128>()),
                last_seq: auth.lastSeq,
            })
        })
    }
}

/// Who is a staked validator, read on chain (for reading attribution receipts).
pub struct ChainValidators {
    client: ProtocolClient,
}

impl ChainValidators {
    pub fn new(client: ProtocolClient) -> Arc<Self> {
        Arc::new(Self { client })
    }
}

impl openledger_studio::receipts::Validators for ChainValidators {
    fn is_validator(&self, account: Address) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let staking = self
                .client
                .addresses()
                .ok_or("no protocol addresses")?
                .staking;
            // Role 0 is Validator; validators stake on no subject.
            let call = openledger_protocol::Staking::isStakedCall::new((account, 0, U256::ZERO));
            self.client
                .call(staking, call)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
