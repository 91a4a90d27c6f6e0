//! `openledger attribution explain|verify`: which contributions shaped an adapter's answer,
//! and a receipt recomputed on this machine from the adapter's published artifacts.

use crate::rest::Api;
use alloy_primitives::{hex, B256, U256};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use openledger_attribution::{
    attribute::{self, Settings},
    gradient::SketchConfig,
    published::{open_span_index, Published},
    receipt::AttributionReceipt,
};
use openledger_protocol::{model_registry::ModelRegistry, ProtocolClient};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AttributionCommand {
    /// Answer a prompt with an adapter (or take the answer given) and show the answer's
    /// attributed spans and, per credited contribution, its datanet, contributor, share and
    /// the text behind it.
    Explain {
        /// The adapter: its id in the model registry, or its weights hash (0x…).
        #[arg(long)]
        adapter: String,
        #[arg(long)]
        prompt: String,
        /// Attribute this answer instead of generating one.
        #[arg(long)]
        answer: Option<String>,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// The amount to split, in OPEN (decimals allowed).
        #[arg(long, default_value = "1")]
        amount: String,
        /// Print the explanation as JSON (as the REST API returns it).
        #[arg(long)]
        json: bool,
        /// Write the receipt (hex) to this file.
        #[arg(long)]
        receipt_out: Option<PathBuf>,
    },
    /// Recompute a receipt (a file holding its hex or raw bytes) from the adapter's published
    /// artifacts, on this machine: prints `identical` or each field that differs, and fails
    /// when any does.
    Verify {
        receipt: PathBuf,
        /// Check only the span part (the span index root and spans): needs the published
        /// examples and the tokenizer, not gradients.
        #[arg(long)]
        span_only: bool,
        /// The base model file [default: the default model].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Where downloaded artifacts and built indexes are kept [default:
        /// $OPENLEDGER_HOME/attribution].
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

/// The adapter's weights hash: given, or read from the model registry by id.
pub(crate) async fn weights_hash(adapter: &str, client: Option<&ProtocolClient>) -> Result<B256> {
    if adapter.starts_with("0x") {
        return adapter
            .parse()
            .with_context(|| format!("{adapter:?} is not a weights hash"));
    }
    let id: u64 = adapter
        .parse()
        .with_context(|| format!("{adapter:?} is neither an adapter id nor a weights hash"))?;
    let client = client.context("resolving an adapter id needs the chain")?;
    let registry = client
        .addresses()
        .context("resolving an adapter id needs the protocol's addresses (--addresses)")?
        .model_registry;
    let record = client
        .call(
            registry,
            ModelRegistry::adapterCall {
                adapterId: U256::from(id),
            },
        )
        .await?
        ._0;
    if record.status == 0 {
        bail!("adapter {id} is not registered");
    }
    Ok(record.weightsHash)
}

pub async fn run(
    api: &Api,
    client: Option<ProtocolClient>,
    home: &Path,
    command: AttributionCommand,
) -> Result<()> {
    match command {
        AttributionCommand::Explain {
            adapter,
            prompt,
            answer,
            max_tokens,
            amount,
            json,
            receipt_out,
        } => {
            let hash = weights_hash(&adapter, client.as_ref()).await?;
            let amount = crate::gov::parse_open(&amount).context("--amount")?;
            let explanation = api
                .post(
                    "/api/attribution/explain",
                    &json!({"adapter": hash, "prompt": prompt, "answer": answer,
                            "max_tokens": max_tokens, "amount": amount.to_string()}),
                )
                .await?;
            if let Some(path) = receipt_out {
                let receipt = explanation["receipt"].as_str().unwrap_or_default();
                std::fs::write(&path, receipt)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print_explanation(&explanation);
            }
            Ok(())
        }
        AttributionCommand::Verify {
            receipt,
            span_only,
            model,
            cache,
        } => {
            let cache = cache.unwrap_or_else(|| home.join("attribution"));
            verify(api, client.as_ref(), &receipt, span_only, model, &cache).await
        }
    }
}

pub(crate) fn print_explanation(e: &Value) {
    let empty = Vec::new();
    let list = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    let marks = ["¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"];
    let mark = |i: usize| {
        marks
            .get(i)
            .map_or(format!("^{}", i + 1), |m| m.to_string())
    };
    println!(
        "prompt: {}",
        e["prompt"].as_str().unwrap_or_default().trim()
    );
    let mut answer = String::new();
    for s in list(&e["segments"]) {
        let text = s["text"].as_str().unwrap_or_default();
        match s["span"].as_u64() {
            Some(i) => answer.push_str(&format!("[{text}]{}", mark(i as usize))),
            None => answer.push_str(text),
        }
    }
    println!("answer: {}", answer.trim());
    println!(
        "spans cover {:.0}% of the answer; they decide that share of the payout, gradients the rest",
        e["coverage"].as_f64().unwrap_or(0.0) * 100.0
    );
    for (i, s) in list(&e["spans"]).iter().enumerate() {
        println!(
            "  {} {:?}: {} occurrence(s), rarity {:.1} nats",
            mark(i),
            s["text"].as_str().unwrap_or_default(),
            s["count"],
            s["rarity"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "contributions credited (amount {}):",
        e["amount"].as_str().unwrap_or_default()
    );
    for c in list(&e["contributions"]) {
        println!(
            "  contribution {} (datanet {}, contributor {}): {:.1}% = {}\n      {:?}",
            c["contribution"],
            c["datanet"],
            c["contributor"].as_str().unwrap_or("unknown"),
            c["share"].as_f64().unwrap_or(0.0) * 100.0,
            c["payout"].as_str().unwrap_or_default(),
            c["snippet"].as_str().unwrap_or_default()
        );
    }
    let datanets = list(&e["datanets"]);
    if datanets.len() > 1 {
        for d in datanets {
            println!(
                "  datanet {}: {:.1}% = {}",
                d["datanet"],
                d["share"].as_f64().unwrap_or(0.0) * 100.0,
                d["payout"].as_str().unwrap_or_default()
            );
        }
    }
    if list(&e["contributions"]).is_empty() {
        println!("  none: nothing in the answer traces to the adapter's training data");
    }
    println!("receipt {}", e["receipt_hash"].as_str().unwrap_or_default());
}

/// The adapter's published files, downloaded once into `dir`.
async fn download(api: &Api, adapter: B256, dir: &Path, span_only: bool) -> Result<()> {
    let get = |name: String| async move {
        let path = dir.join(&name);
        if path.exists() {
            return Ok::<_, anyhow::Error>(std::fs::read(&path)?);
        }
        let bytes = api
            .get_bytes(&format!("/api/adapters/{adapter:x}/{name}"))
            .await
            .with_context(|| format!("downloading {name}"))?;
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok(bytes)
    };
    let manifest: openledger_factory::publish::Manifest =
        serde_json::from_slice(&get("manifest.json".into()).await?)
            .context("the published manifest")?;
    get("examples.bin".into()).await?;
    if !span_only {
        for c in &manifest.checkpoints {
            for f in ["adapter_config.json", "adapter_model.safetensors"] {
                get(format!("checkpoints/{}/{f}", c.step)).await?;
            }
        }
    }
    Ok(())
}

/// Checks the downloaded manifest against the one the model registry records for the
/// adapter: a node serving forged files (other contribution ids, say) fails here.
async fn check_registry(
    client: Option<&ProtocolClient>,
    adapter: B256,
    manifest: &Path,
) -> Result<()> {
    let Some(client) = client else {
        println!("not checked against the chain (no protocol addresses): the artifacts are trusted as served");
        return Ok(());
    };
    let registry = client
        .addresses()
        .context("the protocol's addresses")?
        .model_registry;
    let registered = client
        .events::<ModelRegistry::AdapterRegistered>(registry, 0, None)
        .await?
        .into_iter()
        .find(|(_, e)| e.weightsHash == adapter)
        .with_context(|| format!("no adapter with weights {adapter} is registered on chain"))?
        .1;
    let found = alloy_primitives::keccak256(std::fs::read(manifest)?);
    if found != registered.manifestHash {
        bail!(
            "the served manifest hashes to {found}, but the registry records {} for adapter {}",
            registered.manifestHash,
            registered.adapterId
        );
    }
    println!(
        "manifest matches the registry (adapter {})",
        registered.adapterId
    );
    Ok(())
}

async fn verify(
    api: &Api,
    client: Option<&ProtocolClient>,
    path: &Path,
    span_only: bool,
    model: Option<PathBuf>,
    cache: &Path,
) -> Result<()> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&raw);
    let bytes = match hex::decode(text.trim()) {
        Ok(bytes) => bytes,
        Err(_) => raw.clone(),
    };
    let receipt = AttributionReceipt::decode(&bytes)?;
    println!(
        "receipt {} for adapter {}",
        receipt.hash(),
        receipt.adapterWeightsHash
    );
    let differences = recompute(api, client, receipt, span_only, model, cache).await?;
    if differences.is_empty() {
        if span_only {
            println!("span part identical (gradients, weights and payouts not checked)");
        } else {
            println!("identical");
        }
        return Ok(());
    }
    println!("differs (recomputed → receipt):");
    for d in &differences {
        println!("  {d}");
    }
    bail!(
        "the receipt does not match its recomputation in {} field(s)",
        differences.len()
    )
}

/// Recomputes `receipt` here from its adapter's published artifacts (downloaded into `cache`
/// once, checked against the registry): the fields that differ, empty when identical.
pub(crate) async fn recompute(
    api: &Api,
    client: Option<&ProtocolClient>,
    receipt: AttributionReceipt,
    span_only: bool,
    model: Option<PathBuf>,
    cache: &Path,
) -> Result<Vec<String>> {
    let adapter = receipt.adapterWeightsHash;
    let dir = cache.join(format!("{adapter:x}"));
    download(api, adapter, &dir.join("published"), span_only).await?;
    check_registry(
        client,
        adapter,
        &dir.join("published").join("manifest.json"),
    )
    .await?;
    let model_path = model.unwrap_or_else(openledger_model::default_model_path);
    let settings = Settings::default();
    tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        let model = openledger_model::Model::load(&model_path)?;
        let published = dir.join("published");
        let local = dir.join("verify");
        if span_only {
            let (manifest_hash, index) = open_span_index(&published, &local)?;
            let started = std::time::Instant::now();
            let mut out = attribute::verify_spans(&model.tokenizer, &index, &receipt, &settings)?;
            if manifest_hash != receipt.manifestHash {
                out.push(format!(
                    "manifest hash: {manifest_hash} → {}",
                    receipt.manifestHash
                ));
            }
            println!(
                "span part checked in {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
            return Ok(out);
        }
        let base = openledger_factory::publish::hash_file(&model_path)?;
        println!("building the span index and sketching the training gradients locally…");
        let published = Published::open(
            &published,
            &local,
            &model,
            base,
            &SketchConfig::default(),
            |done, total| {
                if done == total || done % 50 == 0 {
                    eprintln!("  sketched {done}/{total}");
                }
            },
        )?;
        Ok(attribute::verify(
            &model, base, &published, &receipt, &settings,
        )?)
    })
    .await?
}
