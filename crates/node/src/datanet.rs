//! `openledger datanet …`: datanets from the command line, through the node's REST API.
//!
//! The API stores and checks; this side holds the key: it signs the contribution metadata
//! (EIP-712) and sends every transaction the API prepares, so a key never leaves the
//! user's machine.

use crate::{gov::parse_open, progress::Bar, rest::Api};
use alloy_primitives::U256;
use alloy_sol_types::SolEvent;
use anyhow::{bail, Context, Result};
use openledger_datanets::{
    metadata, Call, Format, NewDatanet, SignedMetadata, UploadRequest, Uploaded,
};
use openledger_protocol::{client::Receipt, datanet_registry::DatanetRegistry, ProtocolClient};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum DatanetCommand {
    /// Create a datanet with a record schema (JSON Schema file); prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// The JSON Schema every record must follow.
        #[arg(long)]
        schema: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
        /// Curator votes on one side that decide a contribution.
        #[arg(long, default_value_t = 1)]
        quorum: u16,
        /// OPEN each contribution deposits (returned once accepted and unchallenged).
        #[arg(long, default_value = "0")]
        fee: String,
    },
    /// List datanets.
    List,
    /// Show a datanet: owner, schema, counts.
    Show { id: u64 },
    /// Contribute a file (.jsonl, .csv, .parquet, .txt, .md): upload, validate, sign, submit.
    Contribute {
        id: u64,
        file: PathBuf,
        #[arg(long, default_value = "CC-BY-4.0")]
        licence: String,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The format, if the extension does not say.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
    },
    /// Pending contributions with their validation reports.
    Queue { id: u64 },
    /// Vote on a pending contribution as a staked curator: approve or reject.
    Review {
        contribution: u64,
        verdict: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Publish a version over every accepted contribution (the datanet's owner).
    Publish { id: u64 },
    /// A datanet's versions.
    Versions { id: u64 },
    /// Print the proof (JSON) that a contribution is in a version.
    Prove { version: u64, contribution: u64 },
    /// Check a proof file here and with the registry contract.
    Verify { proof: PathBuf },
    /// Write a version as JSONL training data, each record with its contribution id.
    Export {
        version: u64,
        /// Where to write [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_format(text: &str) -> Result<Format, String> {
    serde_json::from_value(json!(text.to_ascii_lowercase()))
        .map_err(|_| format!("{text:?}: expected jsonl, csv, parquet, text or markdown"))
}

/// Runs a datanet command against the API at `api_url` and the chain at `rpc_url`.
pub async fn run(
    api_url: &str,
    rpc_url: &str,
    key: Option<&str>,
    command: DatanetCommand,
) -> Result<()> {
    let api = Api::new(api_url)?;
    // Commands that send transactions need the key and the chain.
    let signer = || async {
        let key =
            key.context("this command sends a transaction: pass --key HEX or set OPENLEDGER_KEY")?;
        let signer = openledger_protocol::Signer::from_hex(key)?;
        let client = ProtocolClient::connect(rpc_url, Some(signer))
            .await
            .with_context(|| format!("connecting to {rpc_url}"))?;
        let info = api.get("/api/info").await?;
        let chain_id: Option<U256> = serde_json::from_value(info["chain_id"].clone()).ok();
        if chain_id != Some(U256::from(client.chain_id())) {
            bail!(
                "the API serves chain {} but {rpc_url} is chain {}",
                info["chain_id"],
                client.chain_id()
            );
        }
        Ok::<_, anyhow::Error>((client, info))
    };
    match command {
        DatanetCommand::Create {
            name,
            schema,
            description,
            quorum,
            fee,
        } => {
            let text = std::fs::read_to_string(&schema)
                .with_context(|| format!("reading {}", schema.display()))?;
            let schema: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", schema.display()))?;
            let fee: u128 = parse_open(&fee)?.try_into().context("fee too large")?;
            let (client, _) = signer().await?;
            let spec = NewDatanet {
                name,
                description,
                schema,
                quorum,
                fee,
            };
            let call = api
                .post("/api/datanets", &serde_json::to_value(&spec)?)
                .await?;
            let receipt = send(&client, call, "createDatanet").await?;
            let id = event::<DatanetRegistry::DatanetCreated>(&receipt)?.datanetId;
            println!("{id}");
        }
        DatanetCommand::List => {
            let list = api.get("/api/datanets").await?;
            println!(
                "{:>4}  {:<24} {:<42} {:>6} {:>8}",
                "id", "name", "owner", "quorum", "fee OPEN"
            );
            for d in list.as_array().into_iter().flatten() {
                let row = &d["datanet"];
                let fee = row["fee"].as_f64().unwrap_or(0.0) / 1e18;
                println!(
                    "{:>4}  {:<24} {:<42} {:>6} {:>8}",
                    row["id"],
                    d["description"]["name"].as_str().unwrap_or("?"),
                    row["owner"].as_str().unwrap_or("?"),
                    row["quorum"],
                    fee
                );
            }
        }
        DatanetCommand::Show { id } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&api.get(&format!("/api/datanets/{id}")).await?)?
            );
        }
        DatanetCommand::Contribute {
            id,
            file,
            licence,
            tags,
            format,
        } => {
            let (client, info) = signer().await?;
            let done =
                contribute(&api, (&client, &info), id, &file, &licence, &tags, format).await?;
            let report = &done.report;
            eprintln!(
                "checked: {} records, {} bytes, content hash {}; {} near-duplicates, {} personal-data flags, {} short, {} repeated",
                report.records, report.bytes, report.content_hash, report.near_duplicates,
                report.personal_data, report.quality.short_records, report.quality.repeated_records
            );
            println!("{}", done.id);
            match done.transaction {
                Some(_) => eprintln!(
                    "contribution {} submitted to datanet {id}; it now waits for curators",
                    done.id
                ),
                None => eprintln!(
                    "this file already is your contribution {}; nothing sent",
                    done.id
                ),
            }
        }
        DatanetCommand::Queue { id } => {
            let queue = api.get(&format!("/api/datanets/{id}/queue")).await?;
            let entries = queue.as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                eprintln!("nothing pending in datanet {id}");
            }
            for e in entries {
                let c = &e["contribution"];
                let r = &e["report"];
                println!(
                    "contribution {} from {}: {} records, {} bytes ({}), {} near-duplicates, {} personal-data flags, {} approvals / {} rejections",
                    c["id"], c["contributor"].as_str().unwrap_or("?"), r["records"], r["bytes"],
                    r["format"].as_str().unwrap_or("?"), r["near_duplicates"], r["personal_data"],
                    c["approvals"].as_array().map_or(0, Vec::len), c["rejections"].as_array().map_or(0, Vec::len)
                );
            }
        }
        DatanetCommand::Review {
            contribution,
            verdict,
            reason,
        } => {
            let approve = match verdict.as_str() {
                "approve" => true,
                "reject" => false,
                other => bail!("{other:?}: the verdict is approve or reject"),
            };
            let (client, _) = signer().await?;
            let call = api
                .post(
                    &format!("/api/contributions/{contribution}/reviews"),
                    &json!({"approve": approve, "reason": reason}),
                )
                .await?;
            let receipt = send(&client, call, "review").await?;
            let decided = if event::<DatanetRegistry::ContributionAccepted>(&receipt).is_ok() {
                "accepted"
            } else if event::<DatanetRegistry::ContributionRejected>(&receipt).is_ok() {
                "rejected"
            } else {
                "still pending"
            };
            println!("contribution {contribution}: {decided}");
        }
        DatanetCommand::Publish { id } => {
            let (client, _) = signer().await?;
            let prepared = api
                .post(&format!("/api/datanets/{id}/versions"), &json!({}))
                .await?;
            let receipt = send(&client, prepared["call"].clone(), "publishVersion").await?;
            let e = event::<DatanetRegistry::VersionPublished>(&receipt)?;
            println!(
                "version {} of datanet {id}: {} contributions, root {}",
                e.versionId, e.count, e.root
            );
        }
        DatanetCommand::Versions { id } => {
            let versions = api.get(&format!("/api/datanets/{id}/versions")).await?;
            println!("{:>7}  {:>13}  root", "version", "contributions");
            for v in versions.as_array().into_iter().flatten() {
                println!(
                    "{:>7}  {:>13}  {}",
                    v["id"],
                    v["count"],
                    v["root"].as_str().unwrap_or("?")
                );
            }
        }
        DatanetCommand::Prove {
            version,
            contribution,
        } => {
            let proof = api
                .get(&format!("/api/versions/{version}/proofs/{contribution}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
        }
        DatanetCommand::Verify { proof } => {
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let proof: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", proof.display()))?;
            let answer = api.post("/api/proofs/verify", &proof).await?;
            let (here, on_chain) = (
                answer["here"] == json!(true),
                answer["on_chain"] == json!(true),
            );
            println!(
                "here: {}, registry contract: {}",
                verdict(here),
                verdict(on_chain)
            );
            if !(here && on_chain) {
                bail!("the proof does not verify");
            }
        }
        DatanetCommand::Export { version, out } => {
            let bytes = api
                .get_bytes(&format!("/api/versions/{version}/export"))
                .await?;
            let records = bytes.iter().filter(|b| **b == b'\n').count();
            match out {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
            }
            eprintln!("exported {records} records of version {version}");
        }
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "valid"
    } else {
        "INVALID"
    }
}

/// A contribution submitted (or found already submitted: no transaction) and its upload's
/// validation report.
pub struct Contributed {
    pub id: u64,
    pub transaction: Option<alloy_primitives::B256>,
    pub report: openledger_datanets::Report,
}

/// Uploads `file` to datanet `id` signed by the client's key, then submits it on chain.
pub async fn contribute(
    api: &Api,
    (client, info): (&ProtocolClient, &Value),
    id: u64,
    file: &Path,
    licence: &str,
    tags: &[String],
    format: Option<Format>,
) -> Result<Contributed> {
    let format = match format {
        Some(f) => f,
        None => Format::from_path(file)?,
    };
    // Asked first so that a missing datanet is named: refused mid-upload, the server may close
    // the connection before the client has read its answer.
    api.get(&format!("/api/datanets/{id}")).await?;
    let contributor = client.sender().expect("a signer");
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let bar = std::sync::Arc::new(Bar::new("uploading", size));
    let progress = bar.clone();
    let path = format!(
        "/api/datanets/{id}/uploads?contributor={contributor}&format={}&progress=true",
        serde_json::to_value(format)?
            .as_str()
            .expect("formats are strings")
    );
    // The upload is signed by the contributor, over the bytes sent, so that nobody else can
    // store files under its address.
    let registry: alloy_primitives::Address =
        serde_json::from_value(info["registry"].clone()).context("the API's registry address")?;
    let domain = metadata::domain(client.chain_id(), registry);
    let request = UploadRequest {
        datanetId: alloy_primitives::U256::from(id),
        contributor,
        fileHash: hash_file(file)?,
        size,
        deadline: unix_now() + UPLOAD_SIGNATURE_SECS,
    };
    let key = client.signer().expect("a signer").key().clone();
    let signature = request.sign(&domain, &key);
    let headers = [
        (
            "x-upload-signature",
            alloy_primitives::hex::encode(&signature),
        ),
        ("x-upload-deadline", request.deadline.to_string()),
    ];
    // The upload's bar, then the server's checking bar once its first progress line comes.
    let mut checking: Option<Bar> = None;
    let uploading = bar.clone();
    let uploaded = api
        .put_file(
            &path,
            &headers,
            file,
            move |sent| progress.set(sent),
            |line| {
                let done = line["done"].as_u64().unwrap_or(0);
                let total = line["total"].as_u64().unwrap_or(0);
                let checking = checking.get_or_insert_with(|| {
                    uploading.finish();
                    Bar::new("checking ", total)
                });
                checking.set(done);
            },
        )
        .await;
    match &checking {
        Some(checking) => checking.finish(),
        None => bar.finish(),
    }
    let uploaded: Uploaded =
        serde_json::from_value(uploaded?).context("the API's upload answer")?;
    if let Some(existing) = uploaded.existing {
        return Ok(Contributed {
            id: existing,
            transaction: None,
            report: uploaded.report,
        });
    }
    let signed = SignedMetadata::sign(uploaded.metadata(licence, tags), &domain, &key);
    let call = api
        .post(
            &format!(
                "/api/datanets/{id}/uploads/{}/metadata",
                uploaded.content_hash
            ),
            &serde_json::to_value(&signed)?,
        )
        .await?;
    let receipt = send(client, call, "contribute").await?;
    let e = event::<DatanetRegistry::ContributionSubmitted>(&receipt)?;
    Ok(Contributed {
        id: e
            .contributionId
            .try_into()
            .context("a contribution id past u64")?,
        transaction: Some(receipt.transaction_hash),
        report: uploaded.report,
    })
}

/// How long an upload's signature stays valid: the upload must start within it.
const UPLOAD_SIGNATURE_SECS: u64 = 600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// keccak256 of a file's bytes as they will be sent.
fn hash_file(file: &Path) -> Result<alloy_primitives::B256> {
    use std::io::Read;
    let mut reader =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let (mut hasher, mut buf) = (alloy_primitives::Keccak256::new(), vec![0u8; 1 << 20]);
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", file.display()))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Sends a call the API prepared, from `client`'s account.
pub async fn send(client: &ProtocolClient, call: Value, what: &str) -> Result<Receipt> {
    let call: Call =
        serde_json::from_value(call).with_context(|| format!("the API's {what} call"))?;
    Ok(call.send(client, what).await?)
}

pub fn event<E: SolEvent>(receipt: &Receipt) -> Result<E> {
    receipt
        .logs
        .iter()
        .find_map(|log| E::decode_raw_log(log.topics.iter().copied(), &log.data).ok())
        .with_context(|| format!("the transaction emitted no {}", E::SIGNATURE))
}
