//! `openledger factory …`: fine-tuning jobs from the command line, through the node's
//! OpenAI-shaped jobs API. This side holds the key: it pays job fees into the escrow and
//! sends the `registerAdapter` call publication prepares.

use crate::{rest::Api, verify};
use alloy_primitives::{Address, B256, U256};
use anyhow::{bail, Context, Result};
use openledger_protocol::{model_factory::ModelFactory, ProtocolClient, Signer};
use serde_json::{json, Map, Value};
use std::{io::IsTerminal, path::PathBuf};

#[derive(clap::Subcommand)]
pub enum FactoryCommand {
    /// Fine-tune a LoRA adapter on datanet versions (and/or a JSONL file), pay the job fee
    /// and follow the run with a live progress line; prints the job id.
    Train(Box<TrainArgs>),
    /// Jobs, newest first.
    Jobs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A job: status, validation report, plan, progress and evaluation.
    Show { id: String },
    /// A job's events, oldest first; with --follow, new ones as they happen until it ends.
    Logs {
        id: String,
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a job (at once if it has not started, else at its next step).
    Cancel { id: String },
    /// Store a succeeded job's adapter and lineage and register it on chain; prints the
    /// adapter id.
    Publish { id: String },
    /// Answer a prompt with the base model and the job's adapter, side by side.
    Compare {
        id: String,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
    },
    /// Recompute a published adapter's lineage from its stored files: weights, config and
    /// manifest hashes, the datanet versions' roots, and the examples' contributions.
    Verify { adapter: u64 },
}

/// `openledger factory train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// A datanet to train on, as ID or ID@VERSION (the latest version without one);
    /// repeatable.
    #[arg(long = "datanet")]
    datanets: Vec<String>,
    /// A JSONL file of your own (uploaded first).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A JSONL file of held-out examples for evaluation (instead of a split).
    #[arg(long)]
    validation_data: Option<PathBuf>,
    /// The base model.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model: String,
    /// Goes into the fine-tuned model's name, ft:<base>:<suffix>:<job>.
    #[arg(long)]
    suffix: Option<String>,
    #[arg(long)]
    epochs: Option<u32>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    learning_rate: Option<f64>,
    #[arg(long)]
    lora_rank: Option<usize>,
    #[arg(long)]
    lora_alpha: Option<f64>,
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Projections to adapt, comma-separated (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).
    #[arg(long)]
    targets: Option<String>,
    /// Examples are cut to this many tokens.
    #[arg(long)]
    cutoff_length: Option<usize>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Share of the examples held out for evaluation.
    #[arg(long)]
    eval_split: Option<f64>,
    #[arg(long)]
    eval_interval: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Held-out prompts answered for ROUGE-L at the end.
    #[arg(long)]
    eval_samples: Option<usize>,
    /// Held-out prompts answered by base and tuned model side by side.
    #[arg(long)]
    compare_samples: Option<usize>,
    /// Create and pay, then return without following the run.
    #[arg(long)]
    detach: bool,
}

impl TrainArgs {
    fn hyperparameters(&self) -> Value {
        let mut h = Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(v) = value {
                h.insert(name.to_string(), v);
            }
        };
        put("n_epochs", self.epochs.map(Value::from));
        put("batch_size", self.batch_size.map(Value::from));
        put("learning_rate", self.learning_rate.map(Value::from));
        put("lora_rank", self.lora_rank.map(Value::from));
        put("lora_alpha", self.lora_alpha.map(Value::from));
        put("lora_dropout", self.lora_dropout.map(Value::from));
        put(
            "lora_target_modules",
            self.targets.as_ref().map(|t| {
                Value::from(
                    t.split(',')
                        .map(|s| s.trim().to_string())
                        .collect::<Vec<_>>(),
                )
            }),
        );
        put("cutoff_length", self.cutoff_length.map(Value::from));
        put("warmup_steps", self.warmup_steps.map(Value::from));
        put(
            "gradient_accumulation_steps",
            self.grad_accum.map(Value::from),
        );
        put("eval_split", self.eval_split.map(Value::from));
        put("eval_interval", self.eval_interval.map(Value::from));
        put("eval_samples", self.eval_samples.map(Value::from));
        put("compare_samples", self.compare_samples.map(Value::from));
        Value::Object(h)
    }
}

/// Runs a factory command against the API at `api_url` and the chain at `rpc_url`.
pub async fn run(
    api_url: &str,
    rpc_url: &str,
    key: Option<&str>,
    reader: Option<ProtocolClient>,
    command: FactoryCommand,
) -> Result<()> {
    let api = Api::new(api_url)?;
    let signer = || async {
        let key =
            key.context("this command sends a transaction: pass --key HEX or set OPENLEDGER_KEY")?;
        let client = ProtocolClient::connect(rpc_url, Some(Signer::from_hex(key)?))
            .await
            .with_context(|| format!("connecting to {rpc_url}"))?;
        Ok::<_, anyhow::Error>(client)
    };
    match command {
        FactoryCommand::Train(args) => train(&api, signer().await?, &args).await,
        FactoryCommand::Jobs { limit } => {
            let list = api
                .get(&format!(
                    "/v1/fine_tuning/jobs?limit={}",
                    limit.clamp(1, 100)
                ))
                .await?;
            println!(
                "{:<12} {:<11} {:>9} {:<28} fine-tuned model",
                "id", "status", "step", "training files"
            );
            for job in list["data"].as_array().into_iter().flatten() {
                let total = job["plan"]["total_steps"].as_u64().unwrap_or(0);
                println!(
                    "{:<12} {:<11} {:>9} {:<28} {}",
                    job["id"].as_str().unwrap_or("?"),
                    job["status"].as_str().unwrap_or("?"),
                    format!("{}/{}", job["step"], total),
                    job["training_file"].as_str().unwrap_or("?"),
                    job["fine_tuned_model"].as_str().unwrap_or("-")
                );
            }
            Ok(())
        }
        FactoryCommand::Show { id } => {
            let job = api
                .get(&format!("/v1/fine_tuning/jobs/{}", job_id(&id)))
                .await?;
            println!("{}", serde_json::to_string_pretty(&job)?);
            Ok(())
        }
        FactoryCommand::Logs { id, follow } => logs(&api, &job_id(&id), follow).await,
        FactoryCommand::Cancel { id } => {
            let job = api
                .post(
                    &format!("/v1/fine_tuning/jobs/{}/cancel", job_id(&id)),
                    &json!({}),
                )
                .await?;
            println!(
                "{}: {}",
                job["id"].as_str().unwrap_or("?"),
                job["status"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        FactoryCommand::Publish { id } => publish(&api, signer().await?, &job_id(&id)).await,
        FactoryCommand::Compare {
            id,
            prompt,
            max_tokens,
        } => {
            let answer = api
                .post(
                    &format!("/v1/fine_tuning/jobs/{}/compare", job_id(&id)),
                    &json!({"prompt": prompt, "max_tokens": max_tokens}),
                )
                .await?;
            println!("prompt: {prompt}\n");
            println!("base model:\n{}\n", answer["base"].as_str().unwrap_or(""));
            println!("tuned adapter:\n{}", answer["tuned"].as_str().unwrap_or(""));
            Ok(())
        }
        FactoryCommand::Verify { adapter } => {
            let client =
                reader.context("verify reads the chain through the protocol's addresses")?;
            verify::run(&api, &client, adapter).await
        }
    }
}

/// `7` and `ftjob-7` name the same job.
fn job_id(id: &str) -> String {
    if id.starts_with("ftjob-") {
        id.to_string()
    } else {
        format!("ftjob-{id}")
    }
}

async fn upload(api: &Api, path: &PathBuf) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map_or("data.jsonl".into(), |n| n.to_string_lossy().into_owned());
    let file = api
        .post_file("/v1/files", &[("purpose", "fine-tune")], &name, bytes)
        .await
        .with_context(|| format!("uploading {}", path.display()))?;
    let id = file["id"].as_str().context("the upload answer has no id")?;
    eprintln!("factory: uploaded {} as {id}", path.display());
    Ok(id.to_string())
}

async fn train(api: &Api, client: ProtocolClient, args: &TrainArgs) -> Result<()> {
    let mut files: Vec<String> = args
        .datanets
        .iter()
        .map(|d| format!("datanet:{d}"))
        .collect();
    if let Some(path) = &args.data {
        files.push(upload(api, path).await?);
    }
    if files.is_empty() {
        bail!("name what to train on: --datanet ID[@VERSION] (repeatable) and/or --data FILE");
    }
    let mut body = json!({
        "model": args.model,
        "training_file": files.join(","),
        "method": {"type": "supervised", "supervised": {"hyperparameters": args.hyperparameters()}},
    });
    if let Some(path) = &args.validation_data {
        body["validation_file"] = json!(upload(api, path).await?);
    }
    if let Some(suffix) = &args.suffix {
        body["suffix"] = json!(suffix);
    }
    if let Some(seed) = args.seed {
        body["seed"] = json!(seed);
    }
    let job = api.post("/v1/fine_tuning/jobs", &body).await?;
    let id = job["id"].as_str().context("the job has no id")?.to_string();
    println!("{id}");
    let (fee, transaction) = pay(&client, &job).await?;
    eprintln!(
        "factory: paid the job fee of {} OPEN (transaction {transaction})",
        fee as f64 / 1e18
    );
    if args.detach {
        eprintln!(
            "factory: {id} is paid for; follow it with `openledger factory logs {id} --follow`"
        );
        return Ok(());
    }
    follow(api, &id).await?;
    let done = api.get(&format!("/v1/fine_tuning/jobs/{id}")).await?;
    summary(&done);
    match done["status"].as_str() {
        Some("succeeded") => Ok(()),
        Some(status) => bail!(
            "{id} {status}: {}",
            done["error"]["message"].as_str().unwrap_or("")
        ),
        None => bail!("{id} has no status"),
    }
}

/// Funds the job's key in the escrow with the operator's fee: the fee (wei) and the
/// transaction.
pub async fn pay(client: &ProtocolClient, job: &Value) -> Result<(u128, B256)> {
    let p = &job["payment"];
    let escrow: Address = p["escrow"]
        .as_str()
        .context("the job has no escrow")?
        .parse()?;
    let operator: Address = p["operator"].as_str().context("no operator")?.parse()?;
    let key: B256 = p["job_key"].as_str().context("no job key")?.parse()?;
    let fee: u128 = p["fee"].as_str().context("no fee")?.parse()?;
    let receipt = client
        .send(
            escrow,
            ModelFactory::fundCall {
                operator,
                jobKey: key,
            },
            U256::from(fee),
        )
        .await
        .context("paying the job fee")?;
    Ok((fee, receipt.transaction_hash))
}

/// Follows a job's event stream: a live progress line on a terminal, the messages always.
async fn follow(api: &Api, id: &str) -> Result<()> {
    let live = std::io::stderr().is_terminal();
    let mut drawn = false;
    api.get_lines(
        &format!("/v1/fine_tuning/jobs/{id}/events?stream=true"),
        |line| {
            let Some(data) = line.strip_prefix("data:") else {
                return true;
            };
            let data = data.trim();
            if data == "[DONE]" {
                return false;
            }
            let Ok(event) = serde_json::from_str::<Value>(data) else {
                return true;
            };
            let d = &event["data"];
            if live && d.get("train_loss").is_some() {
                draw(d);
                drawn = true;
            } else {
                if drawn {
                    eprintln!();
                    drawn = false;
                }
                eprintln!("{}", event["message"].as_str().unwrap_or(""));
            }
            true
        },
    )
    .await?;
    if drawn {
        eprintln!();
    }
    Ok(())
}

fn draw(d: &Value) {
    let (step, total) = (
        d["step"].as_u64().unwrap_or(0),
        d["total_steps"].as_u64().unwrap_or(1),
    );
    let filled = (step * 24 / total.max(1)) as usize;
    eprint!(
        "\rstep {step}/{total} [{}{}] loss {:.4}  {:.0} tokens/s  ETA {:.0} s   ",
        "#".repeat(filled.min(24)),
        "-".repeat(24 - filled.min(24)),
        d["train_loss"].as_f64().unwrap_or(f64::NAN),
        d["tokens_per_second"].as_f64().unwrap_or(0.0),
        d["eta_seconds"].as_f64().unwrap_or(0.0),
    );
}

fn summary(job: &Value) {
    let e = &job["evaluation"];
    eprintln!(
        "factory: {} {} — {}",
        job["id"].as_str().unwrap_or("?"),
        job["status"].as_str().unwrap_or("?"),
        job["fine_tuned_model"].as_str().unwrap_or("no model")
    );
    if e.is_object() {
        eprintln!(
            "factory: held-out loss {} → {}, perplexity {}, ROUGE-L {}",
            e["eval_loss_before"], e["eval_loss"], e["perplexity"], e["rouge_l"]
        );
        for c in e["comparisons"].as_array().into_iter().flatten() {
            eprintln!(
                "  prompt:    {}\n  reference: {}\n  base:      {}\n  tuned:     {}",
                last_line(c["prompt"].as_str().unwrap_or("")),
                c["reference"].as_str().unwrap_or(""),
                c["base"].as_str().unwrap_or(""),
                c["tuned"].as_str().unwrap_or("")
            );
        }
    }
}

/// The user's words at the end of a rendered chat prompt.
fn last_line(prompt: &str) -> &str {
    prompt
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("<|im_start|>assistant"))
        .unwrap_or(prompt)
}

async fn logs(api: &Api, id: &str, follow_on: bool) -> Result<()> {
    if follow_on {
        return follow(api, id).await;
    }
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/fine_tuning/jobs/{id}/events?limit=100&after={a}"),
            None => format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
        };
        let page = api.get(&path).await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|e| e["id"].as_str().map(str::to_string));
        events.extend(data);
        if !page["has_more"].as_bool().unwrap_or(false) {
            break;
        }
    }
    for e in events.iter().rev() {
        println!("{}", e["message"].as_str().unwrap_or(""));
    }
    Ok(())
}

async fn publish(api: &Api, client: ProtocolClient, id: &str) -> Result<()> {
    let published = publish_adapter(api, &client, id).await?;
    println!("{}", published.adapter);
    let p = &published.publication;
    eprintln!(
        "factory: adapter {} registered: weights {}, manifest {}, config {}, at {}",
        published.adapter,
        p["weights_hash"].as_str().unwrap_or("?"),
        p["manifest_hash"].as_str().unwrap_or("?"),
        p["training_config_hash"].as_str().unwrap_or("?"),
        p["uri"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// An adapter registered in the model registry from a job's artifacts.
pub struct Published {
    pub adapter: u64,
    pub transaction: B256,
    /// The API's account of what was published: hashes and where the artifacts are.
    pub publication: Value,
}

/// Registers job `id`'s adapter, with its lineage, from the client's account.
pub async fn publish_adapter(api: &Api, client: &ProtocolClient, id: &str) -> Result<Published> {
    let answer = api
        .post(&format!("/v1/fine_tuning/jobs/{id}/publish"), &json!({}))
        .await?;
    let call = &answer["call"];
    let to: Address = call["to"]
        .as_str()
        .context("the answer has no call")?
        .parse()?;
    let data: alloy_primitives::Bytes = call["data"].as_str().context("no call data")?.parse()?;
    let receipt = client
        .send_raw("registerAdapter", to, data, U256::ZERO)
        .await
        .context("registering the adapter")?;
    let adapter = receipt
        .logs
        .iter()
        .find_map(|l| {
            <openledger_protocol::ModelRegistry::AdapterRegistered as alloy_sol_types::SolEvent>::decode_raw_log(
                l.topics.iter().copied(),
                &l.data,
            )
            .ok()
        })
        .context("registerAdapter emitted no AdapterRegistered")?
        .adapterId;
    Ok(Published {
        adapter: adapter.try_into().context("an adapter id past u64")?,
        transaction: receipt.transaction_hash,
        publication: answer["publication"].clone(),
    })
}
