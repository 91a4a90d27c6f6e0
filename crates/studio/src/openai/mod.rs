//! The OpenAI-compatible endpoints: chat completions, completions, models, and vLLM's
//! runtime adapter management, tokenizer and health routes.

mod error;
mod generate;
mod respond;
mod retrieve;
mod types;

pub use error::ApiError;
pub(crate) use generate::Out;
pub(crate) use types::Common;

use crate::{
    agents::Agent,
    keys::{Consumer, PaidOnly},
    meter, Ready, Studio,
};
use axum::Extension;
use axum::{
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use generate::Job;
use openledger_model::chat::Message;
use respond::{Header, Kind};
use retrieve::Retrieved;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use types::{ChatRequest, CompletionRequest};

/// Parses a JSON body, answering OpenAI's error object for bad JSON.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("invalid JSON body: {e}")))
}

/// Top log-probabilities per token at most.
const MAX_TOP_LOGPROBS: u32 = 20;

pub async fn chat(
    Ready(studio): Ready,
    consumer: Option<Extension<Consumer>>,
    paid_only: Option<Extension<PaidOnly>>,
    body: Bytes,
) -> Response {
    let who = Who::new(consumer, paid_only);
    match chat_inner(studio, who, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Who sends a request: the account whose key it carries, and whether that key may only pay
/// for agents.
struct Who {
    consumer: Option<Consumer>,
    paid_only: bool,
}

impl Who {
    fn new(consumer: Option<Extension<Consumer>>, paid_only: Option<Extension<PaidOnly>>) -> Self {
        Self {
            consumer: consumer.map(|c| c.0),
            paid_only: paid_only.is_some(),
        }
    }
}

async fn chat_inner(studio: Arc<Studio>, who: Who, body: Bytes) -> Result<Response, ApiError> {
    let mut request: ChatRequest = parse(&body)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages is empty"));
    }
    let agent = studio.agent(&request.common.model);
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(agent) = &agent {
        agent.apply_defaults(&mut request.common);
        let own_system = matches!(request.messages[0].role.as_str(), "system" | "developer");
        if let (Some(system), false) = (&agent.metadata.system_prompt, own_system) {
            messages.push(Message::new("system", system));
        }
    }
    for (i, m) in request.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    &format!("messages[{i}].role"),
                    format!("role {other:?} is not supported (system, developer, user, assistant)"),
                ))
            }
        };
        messages.push(Message::new(role, &m.text(i)?));
    }
    // Only for a consumer who can pay something: others are refused before any search.
    let retrieved = match (&agent, &who.consumer) {
        (Some(agent), Some(consumer)) if agent.knowledge != 0 => {
            drop(studio.hold(consumer, 1).await?);
            studio.retrieve(agent, &mut messages).await?
        }
        _ => None,
    };
    let prompt = studio
        .chat_prompt(&messages)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let top = match (request.logprobs, request.top_logprobs) {
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            ))
        }
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs is at most {MAX_TOP_LOGPROBS}"),
            ))
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, _) => None,
    };
    run(
        &studio,
        &request.common,
        Kind::Chat,
        vec![studio.tokenizer.encode(&prompt)],
        top,
        agent.map(|a| (a, retrieved)),
        who,
    )
    .await
}

pub async fn completions(
    Ready(studio): Ready,
    consumer: Option<Extension<Consumer>>,
    paid_only: Option<Extension<PaidOnly>>,
    body: Bytes,
) -> Response {
    let who = Who::new(consumer, paid_only);
    match completions_inner(studio, who, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(
    studio: Arc<Studio>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut request: CompletionRequest = parse(&body)?;
    let agent = studio.agent(&request.common.model);
    if let Some(agent) = &agent {
        agent.apply_defaults(&mut request.common);
    }
    if request.echo {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "suffix is not supported"));
    }
    let bad = || {
        ApiError::invalid(
            "prompt",
            "prompt is a string, an array of strings, or an array of token ids",
        )
    };
    let prompts: Vec<Vec<u32>> = match &request.prompt {
        Value::String(s) => vec![studio.tokenizer.encode(s)],
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => items
            .iter()
            .map(|s| studio.tokenizer.encode(s.as_str().unwrap_or_default()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_u64) && !items.is_empty() => {
            vec![items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|t| u32::try_from(t).ok())
                        .ok_or_else(bad)
                })
                .collect::<Result<_, _>>()?]
        }
        _ => return Err(bad()),
    };
    if prompts.len() * request.common.n.unwrap_or(1) as usize > types::MAX_N as usize {
        return Err(ApiError::invalid(
            "prompt",
            format!("prompts × n is at most {}", types::MAX_N),
        ));
    }
    if let Some(k) = request.logprobs.filter(|&k| k > 5) {
        return Err(ApiError::invalid(
            "logprobs",
            format!("logprobs is at most 5, not {k}"),
        ));
    }
    let top = request.logprobs.map(|k| k as usize);
    run(
        &studio,
        &request.common,
        Kind::Text,
        prompts,
        top,
        agent.map(|a| (a, None)),
        who,
    )
    .await
}

/// Resolves the model, checks the settings, submits every choice and answers; a request for
/// an agent (with what it retrieved, if anything) is billed to its consumer.
async fn run(
    studio: &Arc<Studio>,
    common: &Common,
    kind: Kind,
    prompts: Vec<Vec<u32>>,
    logprobs: Option<usize>,
    agent: Option<(Agent, Option<Retrieved>)>,
    who: Who,
) -> Result<Response, ApiError> {
    let checked = common.check()?;
    if prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    let choices = prompts.len() * checked.n;
    let n = checked.n;
    let citations = agent
        .as_ref()
        .and_then(|(_, r)| r.as_ref())
        .map(|r| r.citations.clone());
    let (adapters, ticket, hold) = match agent {
        None if who.paid_only => {
            return Err(ApiError::unauthenticated(format!(
                "an account's key pays for agents; `{}` needs one of the operator's API keys",
                common.model
            )))
        }
        None => (studio.resolve(common)?, None, None),
        Some((agent, retrieved)) => {
            let consumer = who.consumer;
            if common.adapters.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(ApiError::invalid(
                    "adapters",
                    "an agent runs its own adapter",
                ));
            }
            let consumer = consumer.ok_or_else(|| {
                ApiError::unauthenticated(format!(
                    "`{}` is a paid agent: send an account's API key (sign in at /v1/auth/login)",
                    common.model
                ))
            })?;
            let input: u64 = prompts.iter().map(|p| p.len() as u64).sum();
            let most_out = (checked.max_tokens.unwrap_or(generate::DEFAULT_MAX_TOKENS) as u64)
                .saturating_mul(choices as u64);
            let most = meter::fee(input, most_out, agent.price_in, agent.price_out);
            let (hold, settled_seq) = studio.hold(&consumer, most).await?;
            let ticket = meter::Ticket {
                consumer,
                agent_id: agent.id,
                adapter: agent.adapter.clone(),
                settled_seq,
                price_in: agent.price_in,
                price_out: agent.price_out,
                prompt: prompts[0].clone(),
                choices,
                n,
                retrieval: retrieved.map(|r| r.retrieval),
            };
            (vec![(agent.adapter.clone(), 1.0)], Some(ticket), Some(hold))
        }
    };
    let header = Header {
        kind,
        id: format!(
            "{}-{:016x}",
            if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            rand::random::<u64>()
        ),
        created: now(),
        model: common.model.clone(),
        choices,
        include_usage: checked.include_usage,
        citations,
    };
    let stream = common.stream;
    let mut rx = generate::start(
        studio,
        Job {
            prompts,
            adapters,
            checked,
            logprobs,
        },
    )?;
    if let (Some(ticket), Some(paid), Some(hold)) = (ticket, studio.paid.get(), hold) {
        rx = meter::wrap(rx, ticket, paid.store.clone(), hold);
    }
    Ok(if stream {
        respond::stream(header, rx, n, logprobs.is_some())
    } else {
        respond::body(header, rx, n, logprobs.is_some()).await
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /v1/models`: the base model and every servable adapter (its parent the base).
pub async fn models(Ready(studio): Ready) -> Response {
    let created = studio.created;
    let mut data = vec![json!({
        "id": studio.base_name,
        "object": "model",
        "created": created,
        "owned_by": "openledger",
        "root": studio.base_name,
        "parent": null,
    })];
    for name in studio.engine.source().names() {
        data.push(json!({
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "openledger",
            "root": name,
            "parent": studio.base_name,
        }));
    }
    for agent in studio
        .paid
        .get()
        .map(|p| p.agents.list())
        .unwrap_or_default()
    {
        data.push(json!({
            "id": format!("agent-{}", agent.id),
            "object": "model",
            "created": created,
            "owned_by": "openledger",
            "root": agent.adapter,
            "parent": studio.base_name,
            "name": agent.metadata.name,
            "price_in": agent.price_in.to_string(),
            "price_out": agent.price_out.to_string(),
        }));
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

#[derive(serde::Deserialize)]
struct LoadAdapter {
    lora_name: String,
    #[serde(default)]
    lora_path: Option<String>,
    /// OpenLoRA's extension: keep it resident.
    #[serde(default)]
    pinned: bool,
}

/// `POST /v1/load_lora_adapter` (vLLM's shape): registers a PEFT directory under a name and
/// loads it ahead of use.
pub async fn load_adapter(Ready(studio): Ready, body: Bytes) -> Response {
    let result = (|| -> Result<String, ApiError> {
        let request: LoadAdapter = parse(&body)?;
        let path = request
            .lora_path
            .ok_or_else(|| ApiError::invalid("lora_path", "lora_path is required"))?;
        if request.lora_name == studio.base_name {
            return Err(ApiError::invalid(
                "lora_name",
                "that name is the base model's",
            ));
        }
        studio
            .dirs
            .register(&request.lora_name, path.into())
            .map_err(|e| ApiError::invalid("lora_path", e.to_string()))?;
        studio.engine.evict(&request.lora_name);
        studio.engine.prefetch(&request.lora_name, request.pinned);
        Ok(format!(
            "Success: LoRA adapter '{}' added successfully.",
            request.lora_name
        ))
    })();
    match result {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct UnloadAdapter {
    lora_name: String,
}

/// `POST /v1/unload_lora_adapter` (vLLM's shape).
pub async fn unload_adapter(Ready(studio): Ready, body: Bytes) -> Response {
    let request: UnloadAdapter = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !studio.dirs.unregister(&request.lora_name) {
        return ApiError::unknown_model(&request.lora_name).into_response();
    }
    studio.engine.evict(&request.lora_name);
    (
        StatusCode::OK,
        format!(
            "Success: LoRA adapter '{}' removed successfully.",
            request.lora_name
        ),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Tokenize {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<types::ChatMessage>>,
}

/// `POST /tokenize` (vLLM's shape): a prompt's or a conversation's token ids.
pub async fn tokenize(Ready(studio): Ready, body: Bytes) -> Response {
    let result = (|| -> Result<Value, ApiError> {
        let request: Tokenize = parse(&body)?;
        let text = match (request.prompt, request.messages) {
            (Some(p), None) => p,
            (None, Some(messages)) => {
                let messages = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Ok(Message::new(&m.role, &m.text(i)?)))
                    .collect::<Result<Vec<_>, ApiError>>()?;
                studio
                    .chat_prompt(&messages)
                    .map_err(|e| ApiError::invalid("messages", e.to_string()))?
            }
            _ => return Err(ApiError::invalid("prompt", "give prompt or messages")),
        };
        let tokens = studio.tokenizer.encode(&text);
        Ok(
            json!({"count": tokens.len(), "max_model_len": studio.engine.max_positions(), "tokens": tokens}),
        )
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Detokenize {
    tokens: Vec<u32>,
}

/// `POST /detokenize` (vLLM's shape).
pub async fn detokenize(Ready(studio): Ready, body: Bytes) -> Response {
    let request: Detokenize = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let vocab = studio.tokenizer.vocab_size();
    if let Some(bad) = request.tokens.iter().find(|&&t| t as usize >= vocab) {
        return ApiError::invalid(
            "tokens",
            format!("token {bad} is outside the vocabulary of {vocab}"),
        )
        .into_response();
    }
    Json(json!({"prompt": studio.tokenizer.decode(&request.tokens)})).into_response()
}

impl Studio {
    /// The agent `model` names, if agents are served.
    fn agent(&self, model: &str) -> Option<Agent> {
        self.paid.get()?.agents.find(model)
    }

    /// Reserves the most a request may cost, or refuses it (429 `insufficient_quota`): against
    /// its key's spend limit, and against what its consumer can pay this host (the least of its
    /// authorisation of the host and its credit, on chain, less its receipts not yet settled
    /// and the holds of its other requests in flight). The hold ends with the request.
    async fn hold(
        self: &Arc<Self>,
        consumer: &Consumer,
        most: u128,
    ) -> Result<(meter::Hold, u64), ApiError> {
        let paid = self
            .paid
            .get()
            .ok_or_else(|| ApiError::internal("agents are served without a store"))?;
        let internal = |e: crate::store::StoreError| ApiError::internal(e.to_string());
        let standing = paid
            .funds
            .standing(consumer.account)
            .await
            .map_err(|e| ApiError::internal(format!("reading the consumer's funds: {e}")))?;
        let available = standing.available;
        let key = paid
            .store
            .key_of(consumer.account, consumer.key_id)
            .map_err(internal)?;
        let owed = paid
            .store
            .unsettled_fees(consumer.account)
            .map_err(internal)?;
        // Revoked (or its record replaced) since it authenticated: it spends nothing more.
        let Some(key) = key.filter(|k| k.revoked_at.is_none()) else {
            return Err(ApiError::forbidden("this key has been revoked"));
        };
        let mut holds = self.holds.lock();
        let held_key = holds.keys.get(&consumer.key_id).copied().unwrap_or(0);
        if let Some((limit, spent)) = key.spend_limit.map(|l| (l, key.spent)) {
            let committed = spent.saturating_add(held_key);
            if committed.saturating_add(most) > limit {
                return Err(ApiError::quota(format!(
                    "this key may spend {limit} wei and has spent or holds {committed}; this \
                     request may cost up to {most}"
                )));
            }
        }
        let held = holds.accounts.get(&consumer.account).copied().unwrap_or(0);
        let left = available.saturating_sub(owed).saturating_sub(held);
        if left < most {
            return Err(ApiError::quota(format!(
                "{} can pay this host {left} wei more (the least of its authorisation of the host \
                 and its credit in InferenceSettlement, less {owed} not yet settled and {held} \
                 held for requests in flight); this request may cost up to {most}: deposit and \
                 authorize the host",
                consumer.account
            )));
        }
        *holds.accounts.entry(consumer.account).or_default() += most;
        *holds.keys.entry(consumer.key_id).or_default() += most;
        let hold = meter::Hold::new(self.clone(), *consumer, most);
        Ok((hold, standing.last_seq))
    }

    /// The adapter mix a request names: the base model, one adapter (at `adapter_scale`), or
    /// the `adapters` list of an ensemble.
    fn resolve(&self, common: &Common) -> Result<Vec<(String, f32)>, ApiError> {
        let source = self.engine.source();
        if let Some(list) = common.adapters.as_ref().filter(|l| !l.is_empty()) {
            if common.model != self.base_name && !list.iter().any(|a| a.name == common.model) {
                return Err(ApiError::invalid(
                    "model",
                    "with adapters, model is the base model or one of the adapters",
                ));
            }
            for a in list {
                if !source.contains(&a.name) {
                    return Err(ApiError::unknown_model(&a.name));
                }
            }
            return Ok(list.iter().map(|a| (a.name.clone(), a.weight)).collect());
        }
        if common.model == self.base_name {
            return Ok(Vec::new());
        }
        if source.contains(&common.model) {
            return Ok(vec![(
                common.model.clone(),
                common.adapter_scale.unwrap_or(1.0),
            )]);
        }
        Err(ApiError::unknown_model(&common.model))
    }

    fn token_logprob(&self, id: u32, logprob: f32, top: &[(u32, f32)]) -> generate::TokenLogprob {
        let piece = |id: u32| {
            let bytes = self.tokenizer.decode_piece(id).unwrap_or_default().to_vec();
            (String::from_utf8_lossy(&bytes).into_owned(), bytes)
        };
        let (token, bytes) = piece(id);
        generate::TokenLogprob {
            token,
            bytes,
            logprob,
            top: top
                .iter()
                .map(|&(t, lp)| {
                    let (s, b) = piece(t);
                    (s, b, lp)
                })
                .collect(),
        }
    }
}
