//! Deploying an agent from the agents page, prepared as `calls` prepares the other forms:
//!
//! | Route | Prepares |
//! |---|---|
//! | `POST /wallet/calls/agent` | `deployAgent` of an adapter on a host, at prices, with its metadata |
//! | `POST /wallet/calls/accept` | `acceptAgent`, by the host the agent names |
//!
//! The metadata (name, description, system prompt, sampling defaults) travels in the call as a
//! base64 `data:application/json` URI, which the studio reads when it serves the agent.

use crate::calls::{
    address, addresses, at_most, fields, number, open_amount, prepared, Prepared, Refused,
};
use crate::Web;
use alloy_primitives::U256;
use alloy_sol_types::SolCall;
use axum::{
    extract::{rejection::JsonRejection, State},
    routing::post,
    Json, Router,
};
use openledger_protocol::ModelRegistry;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/wallet/calls/agent", post(deploy))
        .route("/wallet/calls/accept", post(accept))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AgentForm {
    adapter: String,
    host: String,
    /// OPEN per 1,000 input tokens.
    price_in: String,
    /// OPEN per 1,000 output tokens.
    price_out: String,
    name: String,
    description: String,
    system_prompt: String,
    temperature: String,
    max_tokens: String,
    /// A datanet whose published version the agent retrieves from; empty for none.
    knowledge: String,
}

impl AgentForm {
    /// The agent's metadata URI, its fields checked.
    fn metadata(&self) -> Result<String, Refused> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(Refused::field("name", "an agent needs a name"));
        }
        at_most("name", name, 80)?;
        at_most("description", &self.description, 2000)?;
        at_most("system_prompt", &self.system_prompt, 4000)?;
        let temperature = optional::<f32>("temperature", &self.temperature)?;
        if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(Refused::field("temperature", "between 0 and 2"));
        }
        let max_tokens = optional::<u64>("max_tokens", &self.max_tokens)?;
        let prompt = self.system_prompt.trim();
        let metadata = json!({
            "name": name,
            "description": self.description.trim(),
            "system_prompt": (!prompt.is_empty()).then_some(prompt),
            "temperature": temperature,
            "max_tokens": max_tokens,
        });
        Ok(openledger_studio::agents::metadata_uri(&metadata))
    }
}

/// An optional number: empty is none.
fn optional<T: std::str::FromStr>(name: &str, text: &str) -> Result<Option<T>, Refused> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    number(name, text).map(Some)
}

fn price(name: &str, text: &str) -> Result<u128, Refused> {
    open_amount(name, text)?
        .try_into()
        .map_err(|_| Refused::field(name, "too large"))
}

async fn deploy(
    State(web): State<Arc<Web>>,
    body: Result<Json<AgentForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let adapter: U256 = number("adapter", &form.adapter)?;
    let host = address("host", &form.host)?;
    let price_in = price("price_in", &form.price_in)?;
    let price_out = price("price_out", &form.price_out)?;
    let knowledge = optional::<u32>("knowledge", &form.knowledge)?.unwrap_or(0);
    let metadata = form.metadata()?;
    let call = ModelRegistry::deployAgentCall::new((
        adapter, host, price_in, price_out, knowledge, metadata,
    ));
    let to = addresses(&web)?.model_registry;
    prepared("deploy the agent", to, call.abi_encode().into(), U256::ZERO)
}

#[derive(Deserialize)]
struct AcceptForm {
    agent: String,
}

async fn accept(
    State(web): State<Arc<Web>>,
    body: Result<Json<AcceptForm>, JsonRejection>,
) -> Prepared {
    let form = fields(body)?;
    let agent: U256 = number("agent", &form.agent)?;
    let call = ModelRegistry::acceptAgentCall::new((agent,));
    let to = addresses(&web)?.model_registry;
    prepared("accept the agent", to, call.abi_encode().into(), U256::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openledger_studio::agents::Metadata;

    #[test]
    fn the_metadata_the_form_builds_is_what_the_studio_reads() {
        let form = AgentForm {
            name: "tutor".into(),
            description: "50% \"quoted\", with a comma, a #hash and %41".into(),
            system_prompt: "Answer in one word.".into(),
            temperature: "0".into(),
            ..Default::default()
        };
        let read = Metadata::from_uri(&form.metadata().unwrap()).unwrap();
        assert_eq!(read.name, "tutor");
        assert_eq!(
            read.description,
            "50% \"quoted\", with a comma, a #hash and %41"
        );
        assert_eq!(read.system_prompt.as_deref(), Some("Answer in one word."));
        assert_eq!(read.temperature, Some(0.0));
        assert_eq!(read.max_tokens, None);
    }

    #[test]
    fn a_nameless_agent_or_a_wild_temperature_is_refused_by_field() {
        let nameless = AgentForm::default();
        assert!(nameless.metadata().unwrap_err().1.starts_with("name: "));
        let hot = AgentForm {
            name: "x".into(),
            temperature: "9".into(),
            ..Default::default()
        };
        assert!(hot.metadata().unwrap_err().1.starts_with("temperature: "));
    }
}
