//! `openledger validator`: a staked validator's process. It follows the batches hosts settle,
//! and for a sample of their receipts reads the host's attribution receipt, checks that it is
//! the one the batch committed to, that the batch's credits are what it pays (kept to the
//! contributions the contract pays, as settlement does), and recomputes it here from the
//! adapter's published artifacts. A batch where any of this fails is challenged, with the
//! mismatch as evidence (written beside the cache; its hash goes on chain). Once governance
//! upholds a challenge of its, the validator returns the batch's fees to its consumers. A
//! knowledge agent's receipt also commits to what its answer retrieved: the validator searches
//! the same datanet version for the same query and compares (`validator/receipt.rs`).
//!
//! What it has done is kept in `<cache>/validator.json`, so a restart checks nothing twice.

mod receipt;

use crate::rest::Api;
use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use anyhow::{bail, Context, Result};
use openledger_protocol::{
    inference_settlement::{unpack_receipts, InferenceSettlement as IS},
    ClientError, ProtocolClient, ProtocolParams, Staking,
};
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// `BatchState.Escrowed` and `BatchState.Upheld`.
const ESCROWED: u8 = 1;
const UPHELD: u8 = 3;

#[derive(clap::Args)]
pub struct ValidatorArgs {
    /// The host whose batches are checked (its API serves their attribution receipts).
    #[arg(long)]
    pub host: Address,
    /// The host's REST API, where attribution receipts are read (signed in as this validator).
    #[arg(
        long,
        env = "OPENLEDGER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// A datanets API to read versions' exports and lineage proofs from [default: --api-url]:
    /// your own node's, so that nothing checked rests on what the host serves.
    #[arg(long)]
    pub data_api_url: Option<String>,
    /// Check one receipt in N, drawn at random (1: every receipt).
    #[arg(long, default_value_t = 1)]
    pub sample: u64,
    /// Where artifacts, indexes, evidence and the validator's progress are kept [default:
    /// $OPENLEDGER_HOME/validator].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The base model file [default: the default model].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Seconds between looks at the chain.
    #[arg(long, default_value_t = 5)]
    pub every: u64,
    /// Check the batches settled so far (and refund upheld ones), then stop.
    #[arg(long)]
    pub once: bool,
}

/// What the validator has done.
#[derive(Default)]
struct Progress {
    /// The first block not yet read completely.
    from_block: u64,
    /// The last batch checked (batches of `from_block` up to it are not checked again).
    last_batch: u64,
    /// Batches it challenged, not yet refunded or released.
    challenged: Vec<u64>,
}

impl Progress {
    fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let bad = || format!("{} is not the validator's progress", path.display());
        let v: Value = serde_json::from_slice(&bytes).with_context(bad)?;
        Ok(Self {
            from_block: v["from_block"].as_u64().with_context(bad)?,
            last_batch: v["last_batch"].as_u64().unwrap_or(0),
            challenged: v["challenged"]
                .as_array()
                .with_context(bad)?
                .iter()
                .map(|b| b.as_u64().with_context(bad))
                .collect::<Result<_>>()?,
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("part");
        let v = json!({"from_block": self.from_block, "last_batch": self.last_batch,
                       "challenged": self.challenged});
        std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Everything a check needs.
struct Validator<'a> {
    client: &'a ProtocolClient,
    api: Api,
    /// The API key this validator signed in for.
    key: String,
    cache: PathBuf,
    model: Option<PathBuf>,
    /// Where versions' exports and lineage proofs are read.
    data_api: Api,
    /// Knowledge datanet versions' indexes, to check retrievals.
    indexes: crate::knowledge::Indexes,
    /// Reads knowledge agents' queries back from prompts (loaded on first use).
    reader: tokio::sync::OnceCell<crate::knowledge::PromptReader>,
}

pub async fn run(client: &ProtocolClient, args: ValidatorArgs, home: &Path) -> Result<()> {
    let a = *client.addresses().context("the protocol's addresses")?;
    let me = client.sender().context("a validator signs: pass --key")?;
    let staked = client
        .call(a.staking, Staking::isStakedCall::new((me, 0, U256::ZERO)))
        .await?;
    if !staked {
        bail!(
            "{me} is not staked as a validator: `openledger stake add validator --amount N` first"
        );
    }
    let cache = args.cache.unwrap_or_else(|| home.join("validator"));
    std::fs::create_dir_all(cache.join("evidence"))
        .with_context(|| format!("creating {}", cache.display()))?;
    let api = Api::new(&args.api_url)?;
    let key = api_key(&api, client, &cache.join("api-key")).await?;
    let v = Validator {
        client,
        api,
        key,
        cache: cache.clone(),
        model: args.model,
        data_api: Api::new(args.data_api_url.as_deref().unwrap_or(&args.api_url))?,
        indexes: Default::default(),
        reader: Default::default(),
    };
    let state_file = cache.join("validator.json");
    let mut progress = Progress::load(&state_file)?;
    println!("validating as {me}, from block {}", progress.from_block);
    loop {
        let head = client.block_number().await?;
        if head >= progress.from_block {
            let batches = settled(client, args.host, progress.from_block, head).await?;
            for (batch, tx, block) in batches {
                if batch <= progress.last_batch {
                    continue;
                }
                if let Some(evidence) = v.check_batch(batch, tx, args.sample).await? {
                    if v.challenge(batch, &evidence).await? {
                        progress.challenged.push(batch);
                    }
                }
                // Saved batch by batch: a restart neither checks a batch twice nor skips one.
                (progress.from_block, progress.last_batch) = (block, batch);
                progress.save(&state_file)?;
            }
            progress.from_block = head + 1;
        }
        progress.challenged = v.refund_upheld(&progress.challenged).await?;
        progress.save(&state_file)?;
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.every.max(1))).await;
    }
}

/// The API key kept in `file` if the host still takes it, or a new one (signed in for and
/// kept): an account holds a bounded number of keys, so restarts must not each take one.
async fn api_key(api: &Api, client: &ProtocolClient, file: &Path) -> Result<String> {
    if let Ok(key) = std::fs::read_to_string(file) {
        let key = key.trim().to_string();
        let auth = [("authorization", format!("Bearer {key}"))];
        if api.get_with("/v1/keys", &auth).await?.0 == 200 {
            return Ok(key);
        }
    }
    let signer = client.signer().context("signing in needs --key")?;
    let key = api
        .sign_in(
            signer,
            "Read attribution receipts as a validator.",
            "validator",
        )
        .await?;
    std::fs::write(file, &key).with_context(|| format!("writing {}", file.display()))?;
    Ok(key)
}

/// The batches `host` settled in blocks `from..=to`: (batch, its transaction, its block).
async fn settled(
    client: &ProtocolClient,
    host: Address,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, B256, u64)>> {
    let a = client.addresses().context("addresses")?;
    let filter = json!({"address": a.inference_settlement,
                        "topics": [IS::BatchSettled::SIGNATURE_HASH, null, host.into_word()]});
    let mut out = Vec::new();
    let mut at = from;
    while at <= to {
        let (logs, end) = client.logs_page(&filter, at, to).await?;
        for log in logs {
            let e = IS::BatchSettled::decode_raw_log(log.topics.iter().copied(), &log.data)?;
            let tx = log
                .transaction_hash
                .context("a log without its transaction")?;
            let block = log.block_number.map_or(from, |b| b.to());
            out.push((e.batchId.saturating_to(), tx, block));
        }
        at = end + 1;
    }
    Ok(out)
}

impl Validator<'_> {
    /// Checks a sample of batch `batch`'s receipts: the evidence against it, if any.
    async fn check_batch(&self, batch: u64, tx: B256, sample: u64) -> Result<Option<String>> {
        let a = *self.client.addresses().context("addresses")?;
        let state = self
            .client
            .call(
                a.inference_settlement,
                IS::batchCall::new((U256::from(batch),)),
            )
            .await?;
        if state.state != ESCROWED {
            return Ok(None); // released, refunded or upheld already: nothing to challenge
        }
        let window = self
            .client
            .call(a.protocol_params, ProtocolParams::challengeWindowCall {})
            .await?;
        if self.client.latest_timestamp().await? > state.settledAt + window {
            println!("batch {batch}: its challenge window has closed; not checked");
            return Ok(None);
        }
        let found: Value = self
            .client
            .rpc()
            .request("eth_getTransactionByHash", json!([tx]))
            .await?;
        let input: alloy_primitives::Bytes = serde_json::from_value(found["input"].clone())
            .context("the settlement transaction has no input")?;
        let Ok(call) = IS::settleCall::abi_decode(&input) else {
            return Ok(Some(format!(
                "batch {batch} (settled in {tx}): not settled by a direct `settle` call, so its \
                 receipts cannot be read and checked\n"
            )));
        };
        let receipts = unpack_receipts(&call.receipts).map_err(anyhow::Error::msg)?;
        let listed: Vec<u64> = call.contributions.clone();
        let mut problems = Vec::new();
        // Seeded at random per process: a host cannot tell which receipts will be checked.
        let draw = std::collections::hash_map::RandomState::new();
        for (i, r) in receipts.iter().enumerate() {
            if sample > 1 && std::hash::BuildHasher::hash_one(&draw, (batch, i)) % sample != 0 {
                continue;
            }
            for p in self.check_receipt(r, &listed).await? {
                problems.push(format!(
                    "receipt {i} (consumer {}, seq {}): {p}",
                    r.consumer, r.seq
                ));
            }
        }
        println!(
            "batch {batch}: {} receipts, {}",
            receipts.len(),
            if problems.is_empty() {
                "every check holds".to_string()
            } else {
                format!("{} problems", problems.len())
            }
        );
        Ok((!problems.is_empty()).then(|| {
            format!(
                "batch {batch} (settled in {tx}):\n{}\n",
                problems.join("\n")
            )
        }))
    }

    /// Challenges `batch`, posting the bond, with `evidence` kept beside the cache: true if
    /// this validator's challenge of it is open (now, or from before a restart).
    async fn challenge(&self, batch: u64, evidence: &str) -> Result<bool> {
        let a = *self.client.addresses().context("addresses")?;
        let file = self
            .cache
            .join("evidence")
            .join(format!("batch-{batch}.txt"));
        std::fs::write(&file, evidence).with_context(|| format!("writing {}", file.display()))?;
        let bond = self
            .client
            .call(a.inference_settlement, IS::challengeBondCall {})
            .await?;
        let hash = keccak256(evidence.as_bytes());
        let call = IS::challengeCall::new((U256::from(batch), hash));
        let sent = match self.client.send(a.inference_settlement, call, bond).await {
            Ok(sent) => sent,
            Err(ClientError::Reverted { reason, .. }) if reason.contains("AlreadyChallenged") => {
                println!("batch {batch}: challenged already (before a restart)");
                return Ok(true);
            }
            Err(ClientError::Reverted { reason, .. })
                if reason.contains("ChallengeWindowClosed") =>
            {
                println!("batch {batch}: its window closed before the challenge:\n{evidence}");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        println!(
            "challenged batch {batch} in {} (evidence {hash}, {}):\n{evidence}",
            sent.transaction_hash,
            file.display()
        );
        Ok(true)
    }

    /// Refunds the challenged batches governance upheld; returns those still undecided.
    async fn refund_upheld(&self, challenged: &[u64]) -> Result<Vec<u64>> {
        let a = *self.client.addresses().context("addresses")?;
        let mut waiting = Vec::new();
        for &batch in challenged {
            let id = U256::from(batch);
            let state = self
                .client
                .call(a.inference_settlement, IS::batchCall::new((id,)))
                .await?
                .state;
            if state == ESCROWED {
                waiting.push(batch);
                continue;
            }
            if state != UPHELD {
                continue; // released (the challenge failed) or refunded by someone else
            }
            let debits: Vec<IS::Debit> = self
                .client
                .events::<IS::Debited>(a.inference_settlement, 0, None)
                .await?
                .into_iter()
                .filter(|(_, e)| e.batchId == id)
                .map(|(_, e)| IS::Debit {
                    consumer: e.consumer,
                    amount: e.amount.saturating_to(),
                })
                .collect();
            let total: u128 = debits.iter().map(|d| d.amount).sum();
            let consumers: Vec<Address> = debits.iter().map(|d| d.consumer).collect();
            let call = IS::refundBatchCall::new((id, debits));
            self.client
                .send(a.inference_settlement, call, U256::ZERO)
                .await?;
            println!("refunded batch {batch}: {total} wei back to {consumers:?}");
        }
        Ok(waiting)
    }
}
