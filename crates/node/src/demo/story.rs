//! The demo's steps, each through the same APIs and contracts a person would use: the REST
//! API for datanets, the factory and paid answers, and signed transactions for the rest.

use super::cast::{self, Actor, Cast, Scale};
use super::Steps;
use crate::{datanet, factory, rest::Api};
use alloy_primitives::{B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use anyhow::{bail, Context, Result};
use openledger_protocol::{
    datanet_registry::DatanetRegistry, InferenceSettlement, ModelRegistry, Staking,
};
use serde_json::{json, Value};
use std::{path::Path, time::Duration};

/// How long the demo waits for any one thing (a job, an answer's settlement) before it gives up.
const PATIENCE: Duration = Duration::from_secs(600);
/// Prices: OPEN per 1,000 tokens, in and out.
const PRICE_IN: u128 = 200_000_000_000_000_000;
const PRICE_OUT: u128 = 800_000_000_000_000_000;
/// What the consumer deposits and lets the host take.
pub const DEPOSIT: u128 = 5_000_000_000_000_000_000;

/// What the story made, for the closing table and the links.
#[derive(Default)]
pub struct Made {
    pub datanet: u64,
    pub version: u64,
    /// Each contribution and the index of its contributor.
    pub contributions: Vec<(u64, usize)>,
    pub job: String,
    pub adapter: u64,
    pub agent: u64,
    /// The consumer's receipts, as the API serves them once released.
    pub receipts: Vec<Value>,
    /// Each batch and the transactions that settled and released it.
    pub batches: Vec<(u64, B256, B256)>,
    /// What each actor claimed (their address) and the transaction.
    pub claims: Vec<(alloy_primitives::Address, U256, B256)>,
}

pub struct Story<'a> {
    pub api: &'a Api,
    pub cast: &'a Cast,
    pub scale: Scale,
    pub steps: &'a mut Steps,
    pub work: &'a Path,
    pub made: Made,
}

impl Story<'_> {
    pub async fn datanet(&mut self) -> Result<()> {
        let owner = &self.cast.owner;
        self.steps.step(&format!(
            "{} creates the datanet \"vault-keepers\" (two curator votes decide)",
            owner.name
        ));
        let spec = json!({"name": "vault-keepers",
            "description": "Which gate guards which vault: chat records from the keepers.",
            "schema": cast::schema(), "quorum": 2, "fee": 0});
        let call = self.api.post("/api/datanets", &spec).await?;
        let receipt = datanet::send(&owner.client, call, "createDatanet").await?;
        let e = datanet::event::<DatanetRegistry::DatanetCreated>(&receipt)?;
        self.made.datanet = e.datanetId.try_into()?;
        self.steps.tx(
            &format!("datanet {} created", self.made.datanet),
            receipt.transaction_hash,
        );
        for curator in &self.cast.curators {
            let call = Staking::stakeCall::new((1, U256::from(self.made.datanet)));
            let staking = curator.client.addresses().expect("addresses").staking;
            let r = curator.client.send(staking, call, open(10)).await?;
            self.steps.tx(
                &format!("{} stakes 10 OPEN as its curator", curator.name),
                r.transaction_hash,
            );
        }
        Ok(())
    }

    pub async fn contributions(&mut self) -> Result<()> {
        self.steps
            .step("three contributors upload their records; each upload is validated first");
        let info = self.api.get("/api/info").await?;
        let refused = self.work.join("chidi-first-try.jsonl");
        std::fs::write(&refused, cast::malformed_records())?;
        let chidi = &self.cast.contributors[2];
        match self.upload(chidi, &info, &refused).await {
            Ok(_) => bail!("the malformed upload was accepted"),
            // Only the validation's own refusal tells this part of the story; anything else
            // (the API unreachable, say) is the demo failing.
            Err(e) if format!("{e:#}").contains("breaks the datanet's schema") => {
                self.steps.detail(&format!(
                    "{}'s first file is refused before anything is signed: {e:#}",
                    chidi.name
                ))
            }
            Err(e) => return Err(e.context("uploading the malformed file")),
        }
        for (i, contributor) in self.cast.contributors.iter().enumerate() {
            let file = self.work.join(format!("{}.jsonl", contributor.name));
            std::fs::write(&file, cast::records(i, self.scale))?;
            let done = self.upload(contributor, &info, &file).await?;
            let r = &done.report;
            self.steps.detail(&format!(
                "{}'s report: {} records, {} bytes, {} near-duplicates, {} personal-data flags, {} short",
                contributor.name, r.records, r.bytes, r.near_duplicates, r.personal_data,
                r.quality.short_records
            ));
            let tx = done.transaction.context("a fresh file is submitted")?;
            self.steps.tx(
                &format!("{} submits contribution {}", contributor.name, done.id),
                tx,
            );
            self.made.contributions.push((done.id, i));
        }
        Ok(())
    }

    async fn upload(&self, who: &Actor, info: &Value, file: &Path) -> Result<datanet::Contributed> {
        let connected = (&who.client, info);
        let tags = ["vaults".to_string()];
        datanet::contribute(
            self.api,
            connected,
            self.made.datanet,
            file,
            "CC-BY-4.0",
            &tags,
            None,
        )
        .await
    }

    pub async fn review_and_publish(&mut self) -> Result<()> {
        self.steps
            .step("the curators review each contribution; the owner publishes a version");
        for &(contribution, _) in &self.made.contributions {
            for curator in &self.cast.curators {
                let body = json!({"approve": true, "reason": "well-formed and on topic"});
                let path = format!("/api/contributions/{contribution}/reviews");
                let call = self.api.post(&path, &body).await?;
                let r = datanet::send(&curator.client, call, "review").await?;
                let accepted = datanet::event::<DatanetRegistry::ContributionAccepted>(&r).is_ok();
                let what = match accepted {
                    true => format!(
                        "{} approves contribution {contribution}: accepted",
                        curator.name
                    ),
                    false => format!("{} approves contribution {contribution}", curator.name),
                };
                self.steps.tx(&what, r.transaction_hash);
            }
        }
        let owner = &self.cast.owner;
        let path = format!("/api/datanets/{}/versions", self.made.datanet);
        let prepared = self.api.post(&path, &json!({})).await?;
        let r = datanet::send(&owner.client, prepared["call"].clone(), "publishVersion").await?;
        let e = datanet::event::<DatanetRegistry::VersionPublished>(&r)?;
        self.made.version = e.versionId.try_into()?;
        self.steps.tx(
            &format!(
                "version {}: {} contributions, Merkle root {}",
                self.made.version, e.count, e.root
            ),
            r.transaction_hash,
        );
        Ok(())
    }

    pub async fn fine_tune(&mut self) -> Result<()> {
        let builder = &self.cast.builder;
        self.steps.step(&format!(
            "{} fine-tunes SmolLM2-135M-Instruct on version {} in the factory",
            builder.name, self.made.version
        ));
        let mut hyper = json!({"n_epochs": self.scale.epochs});
        if !self.scale.evaluate {
            hyper = json!({"n_epochs": self.scale.epochs, "eval_split": 0, "eval_samples": 0,
                           "compare_samples": 0});
        }
        let body = json!({
            "model": "SmolLM2-135M-Instruct",
            "training_file": format!("datanet:{}@{}", self.made.datanet, self.made.version),
            "seed": 7,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        });
        let job = self.api.post("/v1/fine_tuning/jobs", &body).await?;
        let id = job["id"].as_str().context("the job has no id")?.to_string();
        let (fee, tx) = factory::pay(&builder.client, &job).await?;
        self.steps.tx(
            &format!("{id} paid for: {}", super::open_text(U256::from(fee))),
            tx,
        );
        self.follow(&id).await?;
        let done = self.api.get(&format!("/v1/fine_tuning/jobs/{id}")).await?;
        if done["status"] != "succeeded" {
            bail!("{id} {}: {}", done["status"], done["error"]["message"]);
        }
        let published = factory::publish_adapter(self.api, &builder.client, &id).await?;
        self.made.adapter = published.adapter;
        self.steps.tx(
            &format!(
                "adapter {} registered with its lineage (datanet {} version {}), weights {}",
                published.adapter,
                self.made.datanet,
                self.made.version,
                published.publication["weights_hash"]
                    .as_str()
                    .unwrap_or("?")
            ),
            published.transaction,
        );
        self.made.job = id;
        Ok(())
    }

    /// Prints the job's training progress: a line every few seconds, and its messages.
    async fn follow(&self, id: &str) -> Result<()> {
        let mut last = std::time::Instant::now();
        let steps = &*self.steps;
        let stream = format!("/v1/fine_tuning/jobs/{id}/events?stream=true");
        self.api
            .get_lines(&stream, |line| {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    return true;
                };
                if data == "[DONE]" {
                    return false;
                }
                let Ok(event) = serde_json::from_str::<Value>(data) else {
                    return true;
                };
                let d = &event["data"];
                if d.get("train_loss").is_none() {
                    steps.detail(event["message"].as_str().unwrap_or(""));
                } else if last.elapsed() > Duration::from_secs(5) || d["step"] == d["total_steps"] {
                    last = std::time::Instant::now();
                    steps.detail(&format!(
                        "step {}/{}  loss {:.3}",
                        d["step"],
                        d["total_steps"],
                        d["train_loss"].as_f64().unwrap_or(f64::NAN)
                    ));
                }
                true
            })
            .await
    }

    pub async fn agent(&mut self) -> Result<()> {
        let (host, builder) = (&self.cast.host, &self.cast.builder);
        self.steps.step(&format!(
            "{} deploys an agent on adapter {}; the node's host serves it",
            builder.name, self.made.adapter
        ));
        let a = *host.client.addresses().expect("addresses");
        let r = self
            .cast
            .owner
            .client
            .transfer(host.address(), open(60))
            .await?;
        self.steps.tx(
            &format!("{} sends the host 60 OPEN", self.cast.owner.name),
            r.transaction_hash,
        );
        // The node's settlement worker signs with this key too, but only once receipts
        // exist, and it reads the nonce when it first sends: these two come before any.
        let r = host
            .client
            .send(
                a.staking,
                Staking::stakeCall::new((2, U256::ZERO)),
                open(50),
            )
            .await?;
        self.steps.tx("the host stakes 50 OPEN", r.transaction_hash);
        let metadata = json!({"name": "vault-keeper", "temperature": 0, "max_tokens": 24,
                              "description": "Knows which gate guards which vault."});
        let uri = openledger_studio::agents::metadata_uri(&metadata);
        let call = ModelRegistry::deployAgentCall::new((
            U256::from(self.made.adapter),
            host.address(),
            PRICE_IN,
            PRICE_OUT,
            0,
            uri,
        ));
        let id = builder.client.call(a.model_registry, call.clone()).await?;
        let r = builder
            .client
            .send(a.model_registry, call, U256::ZERO)
            .await?;
        self.made.agent = id.try_into()?;
        self.steps.tx(
            &format!(
                "agent-{} proposed at {} in / {} out per 1,000 tokens",
                self.made.agent,
                super::open_text(U256::from(PRICE_IN)),
                super::open_text(U256::from(PRICE_OUT))
            ),
            r.transaction_hash,
        );
        let accept = ModelRegistry::acceptAgentCall::new((id,));
        let r = host
            .client
            .send(a.model_registry, accept, U256::ZERO)
            .await?;
        self.steps.tx("the host accepts it", r.transaction_hash);
        let name = format!("agent-{}", self.made.agent);
        wait(&format!("{name} to be served"), || async {
            let models = self.api.get("/v1/models").await?;
            Ok(models["data"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["id"] == name.as_str())))
        })
        .await
    }

    /// The consumer funds its account, signs in, and asks; returns the API key.
    pub async fn ask(&mut self) -> Result<String> {
        let consumer = &self.cast.consumer;
        self.steps.step(&format!(
            "{} signs in with Ethereum and asks the agent",
            consumer.name
        ));
        let a = *consumer.client.addresses().expect("addresses");
        let deposit = InferenceSettlement::depositCall::new(());
        let r = consumer
            .client
            .send(a.inference_settlement, deposit, U256::from(DEPOSIT))
            .await?;
        self.steps.tx(
            &format!("{} deposits 5 OPEN for answers", consumer.name),
            r.transaction_hash,
        );
        let authorize =
            InferenceSettlement::authorizeCall::new((self.cast.host.address(), DEPOSIT));
        let r = consumer
            .client
            .send(a.inference_settlement, authorize, U256::ZERO)
            .await?;
        self.steps.tx(
            "and lets the host charge up to all of it",
            r.transaction_hash,
        );
        let key = self
            .api
            .sign_in(consumer.signer(), "Get an OpenLedger API key.", "demo")
            .await?;
        self.steps
            .detail("signed in: an API key is issued to the account");
        let auth = [("authorization", format!("Bearer {key}"))];
        for vault in cast::asked(self.scale) {
            let question = cast::question(vault);
            let body = json!({"model": format!("agent-{}", self.made.agent),
                              "messages": [{"role": "user", "content": question}]});
            let answer = self
                .api
                .post_with("/v1/chat/completions", &body, &auth)
                .await?;
            let text = answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .trim();
            let usage = &answer["usage"];
            self.steps.detail(&format!(
                "\"{question}\" → \"{text}\" ({} + {} tokens; the record says gate {})",
                usage["prompt_tokens"],
                usage["completion_tokens"],
                vault * 31 % 97
            ));
        }
        Ok(key)
    }

    /// Waits for every receipt to be attributed and settled, shows the credits.
    pub async fn settlement(&mut self, key: &str) -> Result<()> {
        self.steps
            .step("each answer is attributed to the contributions behind it and settled on chain");
        let auth = [("authorization", format!("Bearer {key}"))];
        let listed = self.api.get_with("/v1/receipts", &auth).await?.1;
        let ids: Vec<u64> = listed["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_u64())
            .collect();
        if ids.len() != cast::asked(self.scale).len() {
            bail!(
                "{} receipts for {} answers",
                ids.len(),
                self.scale.questions
            );
        }
        for id in ids.iter().rev() {
            let receipt = self.receipt(&auth, *id, |r| !r["batch"].is_null()).await?;
            let credits: Vec<String> = receipt["attribution"]["credits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let contribution = c["contribution"].as_u64().unwrap_or(0);
                    let who = self.contributor_of(contribution);
                    format!(
                        "contribution {contribution} ({who}) {} bp",
                        c["basis_points"]
                    )
                })
                .collect();
            self.steps.detail(&format!(
                "receipt {id}: {} paid, {}; batch {}",
                super::open_text(fee_of(&receipt)?),
                match credits.is_empty() {
                    true => format!("not attributed ({})", receipt["attribution"]["reason"]),
                    false => format!("credits {}", credits.join(", ")),
                },
                receipt["batch"]
            ));
        }
        Ok(())
    }

    /// The challenge window passes and the host releases the batches.
    pub async fn release(&mut self, key: &str, window: u64) -> Result<()> {
        self.steps.step(&format!(
            "the {window}-second challenge window passes unchallenged; the host releases the batches"
        ));
        let rpc = self.cast.owner.client.rpc();
        rpc.request::<Value>("evm_increaseTime", json!([window + 1]))
            .await?;
        rpc.request::<Value>("evm_mine", json!([])).await?;
        let auth = [("authorization", format!("Bearer {key}"))];
        let listed = self.api.get_with("/v1/receipts", &auth).await?.1;
        for r in listed["data"].as_array().into_iter().flatten().rev() {
            let id = r["id"].as_u64().context("a receipt id")?;
            let released = self.receipt(&auth, id, |r| r["released"] == true).await?;
            self.made.receipts.push(released);
        }
        let mut batches: Vec<u64> = self
            .made
            .receipts
            .iter()
            .filter_map(|r| r["batch"].as_u64())
            .collect();
        batches.dedup();
        for batch in batches {
            let settled = super::ledger::transaction_of::<InferenceSettlement::BatchSettled>(
                &self.cast.owner.client,
                batch,
            )
            .await?;
            let released = super::ledger::transaction_of::<InferenceSettlement::BatchReleased>(
                &self.cast.owner.client,
                batch,
            )
            .await?;
            self.steps.tx(&format!("batch {batch} settled"), settled);
            self.steps.tx(&format!("batch {batch} released"), released);
            self.made.batches.push((batch, settled, released));
        }
        Ok(())
    }

    /// Everyone with something to claim claims it; what each claim paid is read from its
    /// `Claimed` event.
    pub async fn claim(&mut self) -> Result<()> {
        self.steps.step("everyone who earned claims it");
        for actor in self.cast.everyone() {
            let a = *actor.client.addresses().expect("addresses");
            let claimable = actor
                .client
                .call(
                    a.inference_settlement,
                    InferenceSettlement::claimableCall::new((actor.address(),)),
                )
                .await?;
            if claimable.is_zero() {
                continue;
            }
            // The node's own settlement worker sends from the host's key; anyone may send a
            // claim, so the owner sends the host's, and no two senders share a nonce.
            let (sender, what) = match std::ptr::eq(actor, &self.cast.host) {
                true => (
                    &self.cast.owner,
                    format!("{} claims for the host", self.cast.owner.name),
                ),
                false => (actor, format!("{} claims", actor.name)),
            };
            let claim = InferenceSettlement::claimCall::new((actor.address(),));
            let r = sender
                .client
                .send(a.inference_settlement, claim, U256::ZERO)
                .await?;
            let paid = r
                .logs
                .iter()
                .filter(|l| l.address == a.inference_settlement)
                .find_map(|l| {
                    InferenceSettlement::Claimed::decode_raw_log(l.topics.iter().copied(), &l.data)
                        .ok()
                })
                .context("the claim emitted no Claimed")?;
            if paid.account != actor.address() {
                bail!("a claim for {} paid {}", actor.address(), paid.account);
            }
            self.steps.tx(
                &format!("{what} {}", super::open_text(paid.amount)),
                r.transaction_hash,
            );
            self.made
                .claims
                .push((actor.address(), paid.amount, r.transaction_hash));
        }
        Ok(())
    }

    async fn receipt(
        &self,
        auth: &[(&str, String)],
        id: u64,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let (status, body) = self
                .api
                .get_with(&format!("/v1/receipts/{id}"), auth)
                .await?;
            if status != 200 {
                bail!("receipt {id}: {body}");
            }
            if ready(&body) {
                return Ok(body);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "gave up waiting for receipt {id} after {} s: {body}",
                    PATIENCE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn contributor_of(&self, contribution: u64) -> &'static str {
        self.made
            .contributions
            .iter()
            .find(|(c, _)| *c == contribution)
            .map_or("?", |&(_, i)| self.cast.contributors[i].name)
    }
}

/// A receipt's fee in wei.
pub fn fee_of(receipt: &Value) -> Result<U256> {
    receipt["fee"]
        .as_str()
        .context("a receipt without its fee")?
        .parse()
        .context("a receipt's fee")
}

/// Polls `done` every half second until it holds, for at most [`PATIENCE`].
async fn wait<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !done().await? {
        if std::time::Instant::now() > deadline {
            bail!("gave up waiting for {what} after {} s", PATIENCE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// `n` OPEN in wei.
fn open(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}
