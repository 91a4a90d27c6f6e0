//! Serving: the OpenAI-compatible inference API over OpenLoRA, on the node's REST port or on
//! its own (`openledger serve`), and `openledger model chat --server` as its client.

use anyhow::{Context, Result};
use openledger_openlora::{AdapterSource, ServeError, Settings};
use openledger_studio::Slot;
use serde_json::{json, Value};
use std::{path::PathBuf, sync::Arc};

/// How the node serves models.
#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Do not serve inference (the /v1 chat and completion routes answer 503).
    #[arg(long)]
    pub no_serve: bool,
    /// The base model to serve (.gguf or a Hugging Face directory) [default: SmolLM2-135M-Instruct
    /// in the models directory].
    #[arg(long)]
    pub serve_model: Option<PathBuf>,
    /// The name the base model is served under (`model` in requests).
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    pub serve_name: String,
    /// A directory of PEFT adapter directories, each served by its name (repeatable)
    /// [default: <data-dir>/adapters].
    #[arg(long = "adapter-dir")]
    pub adapter_dirs: Vec<PathBuf>,
    /// Sequences in the running batch at most.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Requests waiting at most; beyond it the API answers 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub queue_len: usize,
    /// MiB of adapters kept in memory (least recently used out first).
    #[arg(long, default_value_t = 512)]
    pub adapter_cache_mb: usize,
    /// MiB of prompt prefixes kept for reuse.
    #[arg(long, default_value_t = 256)]
    pub prefix_cache_mb: usize,
    /// Tokens one step runs at most (prompts are prefilled in chunks of what is left).
    #[arg(long, default_value_t = 256)]
    pub step_tokens: usize,
    /// Seconds a request may take, queue included, before it ends (finish_reason "length").
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// A key for the adapter-management routes (`/v1/load_lora_adapter`, which reads the
    /// server's disk, and `/v1/unload_lora_adapter`), repeatable; without one they are open on
    /// --dev (or on `openledger serve` without --api-key) and closed otherwise.
    #[arg(
        long = "admin-key",
        env = "OPENLEDGER_ADMIN_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_keys: Vec<String>,
}

impl ServeArgs {
    /// Who may manage adapters: the admin keys, else everyone when `open`, else no one.
    pub fn admin_access(&self, open: bool) -> openledger_factory::api::Access {
        match (self.admin_keys.is_empty(), open) {
            (false, _) => openledger_factory::api::Access::Keys(self.admin_keys.clone()),
            (true, true) => openledger_factory::api::Access::Open,
            (true, false) => openledger_factory::api::Access::Keys(Vec::new()),
        }
    }
}

impl ServeArgs {
    fn settings(&self) -> Result<Settings> {
        anyhow::ensure!(self.max_batch >= 1, "--max-batch is at least 1");
        anyhow::ensure!(self.step_tokens >= 1, "--step-tokens is at least 1");
        Ok(Settings {
            max_batch: self.max_batch,
            queue_len: self.queue_len,
            step_tokens: self.step_tokens,
            cache_bytes: self.adapter_cache_mb << 20,
            prefix_cache_bytes: self.prefix_cache_mb << 20,
            request_timeout: std::time::Duration::from_secs(self.request_timeout.max(1)),
            ..Settings::default()
        })
    }

    /// Loads the model on a blocking thread and fills `slot` when it is ready (the routes
    /// answer 503 until then); the serving metrics join `metrics` when given.
    pub fn spawn_load(
        &self,
        slot: Slot,
        default_adapters: PathBuf,
        published: Option<Arc<dyn AdapterSource>>,
        chain: Option<Arc<openledger_chain::chain::Chain>>,
        paid: Option<openledger_studio::Paid>,
    ) -> Result<()> {
        if self.no_serve {
            tracing::info!("--no-serve: inference is off");
            return Ok(());
        }
        let settings = self.settings()?;
        let model = self
            .serve_model
            .clone()
            .unwrap_or_else(openledger_model::default_model_path);
        let dirs = if self.adapter_dirs.is_empty() {
            vec![default_adapters]
        } else {
            self.adapter_dirs.clone()
        };
        let name = self.serve_name.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match openledger_studio::Studio::load(&model, &name, dirs, published, settings) {
                Ok(studio) => {
                    if let Some(paid) = paid {
                        studio.set_paid(paid);
                    }
                    if let Some(chain) = chain {
                        let s = studio.clone();
                        chain.metrics.add_source(move || s.metrics());
                    }
                    let _ = slot.set(studio);
                    tracing::info!(model = %model.display(), seconds = started.elapsed().as_secs_f64(), "serving inference");
                }
                Err(e) => {
                    tracing::warn!(model = %model.display(), error = %e, "inference is off: the model did not load")
                }
            }
        });
        Ok(())
    }
}

/// `openledger serve`: the inference API alone, without a chain.
#[derive(clap::Args)]
pub struct ServeCommand {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: std::net::SocketAddr,
    /// An API key the routes accept as `Authorization: Bearer KEY` (repeatable); without one
    /// they are open.
    #[arg(
        long = "api-key",
        env = "OPENLEDGER_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The inference routes behind `access` (or, where given, an account's API key from
/// `keys`), adapter management behind `admin`; `/health` and `/metrics` open.
pub fn routes(
    slot: &Slot,
    access: openledger_factory::api::Access,
    admin: openledger_factory::api::Access,
    keys: Option<Arc<openledger_studio::keys::Keys>>,
) -> axum::Router {
    let guard = |access| {
        axum::middleware::from_fn_with_state(Arc::new(access), openledger_factory::api::authorize)
    };
    let inference = match keys {
        Some(keys) => openledger_studio::router(slot).route_layer(
            axum::middleware::from_fn_with_state(Arc::new((keys, access)), consumer_or_key),
        ),
        None => openledger_studio::router(slot).route_layer(guard(access)),
    };
    inference
        .merge(openledger_studio::admin_router(slot).route_layer(guard(admin)))
        .merge(openledger_studio::probe_router(slot))
}

/// Middleware: a request carrying an account's API key (`olk_…`) is that account's, checked
/// against its key (revoked or over its rate: refused); any other request needs one of the
/// operator's static keys, as before (open on `--dev`).
async fn consumer_or_key(
    axum::extract::State(state): axum::extract::State<
        Arc<(
            Arc<openledger_studio::keys::Keys>,
            openledger_factory::api::Access,
        )>,
    >,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (keys, access) = &*state;
    let mut request = request;
    let account_key = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| v.trim().starts_with("olk_"));
    if account_key {
        // An account's key pays for agents; the base model and adapters stay the operator's.
        if !matches!(access, openledger_factory::api::Access::Open) {
            request
                .extensions_mut()
                .insert(openledger_studio::keys::PaidOnly);
        }
        let keys = axum::extract::State(keys.clone());
        openledger_studio::keys::require_key(keys, request, next).await
    } else {
        let access = axum::extract::State(Arc::new(access.clone()));
        openledger_factory::api::authorize(access, request, next).await
    }
}

pub async fn run(command: ServeCommand) -> Result<()> {
    let access = if command.api_keys.is_empty() {
        openledger_factory::api::Access::Open
    } else {
        openledger_factory::api::Access::Keys(command.api_keys.clone())
    };
    let slot = Slot::default();
    let home = std::env::var_os("OPENLEDGER_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".openledger")
        });
    command
        .serve
        .spawn_load(slot.clone(), home.join("adapters"), None, None, None)?;
    let admin = command.serve.admin_access(command.api_keys.is_empty());
    let addr = openledger_chain::rpc::serve(command.addr, routes(&slot, access, admin, None))
        .await
        .with_context(|| format!("cannot listen on {}", command.addr))?;
    tracing::info!(api = %format!("http://{addr}/v1"), "inference API running");
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}

/// One chat turn against a running server, streaming the answer to standard output; returns
/// the answer's text.
pub async fn chat_turn(
    server: &str,
    model: &str,
    messages: &[openledger_model::chat::Message],
    sampling: &crate::model::SamplingArgs,
) -> Result<String> {
    let api = crate::rest::Api::new(server)?;
    let body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": if sampling.top_k == 0 { -1 } else { sampling.top_k as i64 },
        "seed": sampling.seed,
        "stream": true,
    });
    let mut headers = Vec::new();
    if let Ok(key) = std::env::var("OPENLEDGER_API_KEY") {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    let mut text = String::new();
    let mut failure = None;
    api.post_lines("/v1/chat/completions", &body, &headers, |line| {
        let Some(data) = line.strip_prefix("data: ") else {
            return true;
        };
        if data == "[DONE]" {
            return false;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return true;
        };
        if let Some(error) = chunk.get("error") {
            failure = Some(
                error["message"]
                    .as_str()
                    .unwrap_or("the server failed")
                    .to_string(),
            );
            return false;
        }
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            crate::model::print_text(piece);
            text.push_str(piece);
        }
        true
    })
    .await?;
    if let Some(e) = failure {
        anyhow::bail!("{e}");
    }
    Ok(text)
}

/// Published adapters by their weights hash (`0x` and 64 hex digits, as the registry and the
/// factory name them) or by their registry id (read from `ModelRegistry`): fetched from the
/// blob store on first use into `<dir>/<hash>/`, and served only if the weights hash to it.
pub struct Published {
    store: openledger_datanets::store::Store,
    dir: PathBuf,
    registry: Option<openledger_protocol::client::ProtocolClient>,
    runtime: tokio::runtime::Handle,
}

impl Published {
    pub fn new(
        store: openledger_datanets::store::Store,
        dir: PathBuf,
        registry: Option<openledger_protocol::client::ProtocolClient>,
    ) -> Self {
        Self {
            store,
            dir,
            registry,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// A registry id's weights hash, read on chain (on the loader's thread).
    fn by_id(&self, name: &str) -> Result<alloy_primitives::B256, ServeError> {
        self.runtime
            .block_on(crate::attribution::weights_hash(
                name,
                self.registry.as_ref(),
            ))
            .map_err(|_| ServeError::UnknownAdapter(name.to_string()))
    }

    fn hash(name: &str) -> Option<alloy_primitives::B256> {
        let hex = name.strip_prefix("0x")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| name.parse().ok())
            .flatten()
    }

    /// The adapter's directory, fetched if needed (files written beside and renamed).
    fn fetch(&self, hash: alloy_primitives::B256) -> Result<PathBuf, ServeError> {
        let dir = self.dir.join(format!("{hash:x}"));
        let prefix = openledger_factory::publish::adapter_prefix(hash);
        for file in ["adapter_config.json", "adapter_model.safetensors"] {
            let path = dir.join(file);
            if path.exists() {
                continue;
            }
            let key = format!("{prefix}/{file}");
            // The loader runs on its own thread, outside the runtime: blocking here is fine.
            let bytes = self
                .runtime
                .block_on(self.store.get(&key))
                .map_err(|e| ServeError::BadAdapter(format!("reading {key}: {e}")))?
                .ok_or_else(|| ServeError::UnknownAdapter(format!("{hash:#x}")))?;
            let io = |e: std::io::Error| ServeError::BadAdapter(format!("{}: {e}", path.display()));
            std::fs::create_dir_all(&dir).map_err(io)?;
            let part = path.with_extension("part");
            std::fs::write(&part, &bytes).map_err(io)?;
            std::fs::rename(&part, &path).map_err(io)?;
        }
        let weights = dir.join("adapter_model.safetensors");
        let found = openledger_factory::publish::hash_file(&weights)
            .map_err(|e| ServeError::BadAdapter(format!("{}: {e}", weights.display())))?;
        if found != hash {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ServeError::BadAdapter(format!(
                "the published weights of {hash:x} hash to {found:x}"
            )));
        }
        Ok(dir)
    }
}

impl AdapterSource for Published {
    fn contains(&self, name: &str) -> bool {
        Self::hash(name).is_some()
            || (self.registry.is_some() && openledger_openlora::looks_published(name))
    }

    fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        // Directories are named by the hash without `0x`; the served name has it.
        entries
            .flatten()
            .filter(|e| e.path().join("adapter_model.safetensors").is_file())
            .filter_map(|e| e.file_name().to_str().map(|n| format!("0x{n}")))
            .filter(|n| Self::hash(n).is_some())
            .collect()
    }

    fn load(&self, name: &str) -> Result<openledger_model::lora::LoraAdapter, ServeError> {
        let hash = match Self::hash(name) {
            Some(hash) => hash,
            None if self.contains(name) => self.by_id(name)?,
            None => return Err(ServeError::UnknownAdapter(name.into())),
        };
        let dir = self.fetch(hash)?;
        openledger_model::lora::LoraAdapter::load(&dir)
            .map_err(|e| ServeError::BadAdapter(format!("{name}: {e}")))
    }
}
