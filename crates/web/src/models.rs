//! Models and agents, read from the model registry: adapters with their lineage (the datanet
//! versions they were trained on, their training config, weights and manifest hashes), and
//! agents with their adapter, host, owner, prices, state and metadata.

use crate::{format, Failure, Web};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::{context, Value};
use openledger_protocol::{model_registry::ModelRegistry::AgentDeployed, ModelRegistry};
use openledger_studio::agents::Metadata;
use serde_json::json;
use std::{collections::BTreeMap, sync::Arc, time::Instant};

/// Adapters or agents per page.
const PER_PAGE: u64 = 25;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/models", get(adapters))
        .route("/agents", get(agents))
        .route("/agents/{id}", get(agent))
}

#[derive(serde::Deserialize)]
struct Page {
    before: Option<u64>,
}

/// The ids of a newest-first page of `count` (ids 1..=count) before `before`, and the cursor
/// to the older page.
fn page_ids(count: u64, before: Option<u64>) -> (Vec<u64>, Option<u64>) {
    let top = before.map_or(count, |b| b.saturating_sub(1).min(count));
    let bottom = top.saturating_sub(PER_PAGE - 1).max(1);
    let ids: Vec<u64> = (bottom..=top).rev().collect();
    let older = (bottom > 1 && !ids.is_empty()).then_some(bottom);
    (ids, older)
}

impl Web {
    fn registry(&self) -> Address {
        self.client
            .addresses()
            .map(|a| a.model_registry)
            .unwrap_or_default()
    }

    async fn counts(&self) -> Result<ModelRegistry::countsReturn, Failure> {
        self.client
            .call(self.registry(), ModelRegistry::countsCall {})
            .await
            .map_err(Failure::chain)
    }

    /// The metadata of agents `ids`, from the events that deployed them (one log query).
    async fn agent_metadata(&self, ids: &[u64]) -> Result<BTreeMap<u64, Metadata>, Failure> {
        let topics: Vec<B256> = ids.iter().map(|&id| B256::from(U256::from(id))).collect();
        let filter = json!({"address": self.registry(),
                            "topics": [AgentDeployed::SIGNATURE_HASH, topics]});
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let head = self.client.block_number().await.map_err(Failure::chain)?;
        let (mut logs, mut from) = (Vec::new(), 0);
        while from <= head {
            let (page, end) = self
                .client
                .logs_page(&filter, from, head)
                .await
                .map_err(Failure::chain)?;
            logs.extend(page);
            from = end + 1;
        }
        Ok(logs
            .iter()
            .filter_map(|l| AgentDeployed::decode_raw_log(l.topics.iter().copied(), &l.data).ok())
            .map(|e| {
                let metadata = Metadata::from_uri(&e.metadataURI).unwrap_or_default();
                (e.agentId.saturating_to::<u64>(), metadata)
            })
            .collect())
    }
}

fn status(s: u8) -> &'static str {
    match s {
        1 => "registered",
        2 => "endorsed",
        3 => "retired",
        _ => "unknown",
    }
}

async fn adapters(
    State(web): State<Arc<Web>>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    match adapters_page(&web, page.before).await {
        Ok(ctx) => web.page(started, "models", "models.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn adapters_page(web: &Web, before: Option<u64>) -> Result<Value, Failure> {
    let count: u64 = web.counts().await?.adapters.saturating_to();
    let (ids, older) = page_ids(count, before);
    let registry = web.registry();
    let read = ids.iter().map(|&id| {
        web.client
            .call(registry, ModelRegistry::adapterCall::new((U256::from(id),)))
    });
    let found = futures_util::future::try_join_all(read)
        .await
        .map_err(Failure::chain)?;
    let index = web.datanets.index();
    let rows: Vec<Value> = ids
        .iter()
        .zip(found)
        .map(|(&id, a)| {
            let lineage: Vec<Value> = a
                .datanetVersions
                .iter()
                .map(|v| {
                    let version = v.saturating_to::<u64>();
                    let datanet = index.version(version).ok().flatten().map(|r| r.datanet);
                    context! {version, datanet}
                })
                .collect();
            let adapter = a._0;
            context! {
                id,
                owner => adapter.owner.to_string(),
                status => status(adapter.status),
                base => adapter.baseModelId,
                weights => adapter.weightsHash.to_string(),
                manifest => adapter.manifestHash.to_string(),
                config => adapter.trainingConfigHash.to_string(),
                lineage,
            }
        })
        .collect();
    Ok(context! {adapters => rows, older, newest => before.is_some(), count})
}

async fn agents(
    State(web): State<Arc<Web>>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let page = match crate::params(page) {
        Ok(page) => page,
        Err(f) => return web.error(started, f),
    };
    match agents_page(&web, page.before).await {
        Ok(ctx) => web.page(started, "agents", "agents.html", ctx),
        Err(f) => web.error(started, f),
    }
}

fn agent_state(a: &ModelRegistry::Agent) -> &'static str {
    match (a.accepted, a.active) {
        (false, _) => "waiting for its host",
        (true, true) => "active",
        (true, false) => "paused",
    }
}

fn agent_row(id: u64, a: &ModelRegistry::Agent, m: Option<&Metadata>) -> Value {
    context! {
        id,
        name => m.map(|m| format::short(&m.name, 60)).unwrap_or_default(),
        description => m.map(|m| m.description.clone()).unwrap_or_default(),
        system_prompt => m.and_then(|m| m.system_prompt.clone()),
        adapter => a.adapterId,
        host => a.host.to_string(),
        owner => a.owner.to_string(),
        price_in => format::open(U256::from(a.priceIn)),
        price_out => format::open(U256::from(a.priceOut)),
        state => agent_state(a),
        knowledge => (a.knowledgeDatanetId != 0).then_some(a.knowledgeDatanetId),
    }
}

async fn agents_page(web: &Web, before: Option<u64>) -> Result<Value, Failure> {
    let count: u64 = web.counts().await?.agents.saturating_to();
    let (ids, older) = page_ids(count, before);
    let registry = web.registry();
    let read = ids.iter().map(|&id| {
        web.client
            .call(registry, ModelRegistry::agentCall::new((U256::from(id),)))
    });
    let (found, metadata) = futures_util::future::try_join(
        async {
            futures_util::future::try_join_all(read)
                .await
                .map_err(Failure::chain)
        },
        web.agent_metadata(&ids),
    )
    .await?;
    let rows: Vec<Value> = ids
        .iter()
        .zip(&found)
        .map(|(&id, a)| agent_row(id, a, metadata.get(&id)))
        .collect();
    // A dev node serves agents as the dev host: the deploy form offers it.
    let dev_host = web.dev_host.map(|a| a.to_string());
    Ok(context! {agents => rows, older, newest => before.is_some(), count, dev_host})
}

async fn agent(State(web): State<Arc<Web>>, Path(raw): Path<String>) -> Response {
    let started = Instant::now();
    let id = raw.strip_prefix("agent-").unwrap_or(&raw);
    let Ok(id) = id.parse::<u64>() else {
        let text = format::short(&raw, 40);
        return web.error(
            started,
            Failure::bad_input(format!(
                "{text:?} is not an agent id (a number, or agent-N)"
            )),
        );
    };
    match agent_page(&web, id).await {
        Ok(ctx) => web.page(started, "agents", "agent.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn agent_page(web: &Web, id: u64) -> Result<Value, Failure> {
    let call = ModelRegistry::agentCall::new((U256::from(id),));
    let a = web
        .client
        .call(web.registry(), call)
        .await
        .map_err(Failure::chain)?;
    if a.host == Address::ZERO {
        return Err(Failure::not_found(format!("there is no agent {id}")));
    }
    let metadata = web.agent_metadata(&[id]).await?;
    Ok(context! {agent => agent_row(id, &a, metadata.get(&id))})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_registry_ids_cover_each_id_once() {
        assert_eq!(page_ids(0, None), (vec![], None));
        let (first, older) = page_ids(30, None);
        assert_eq!(
            (first.first(), first.len(), older),
            (Some(&30), 25, Some(6))
        );
        let (second, older) = page_ids(30, older);
        assert_eq!((second, older), ((1..=5).rev().collect::<Vec<_>>(), None));
        assert_eq!(page_ids(30, Some(1)), (vec![], None));
        assert_eq!(page_ids(3, Some(99)).0, vec![3, 2, 1]);
    }
}
