//! One settled receipt checked: the attribution the host serves for it is the one the batch
//! committed to, its credits are what that attribution pays (kept to what the contract pays),
//! the trained attribution recomputes from the adapter's published artifacts, and what a
//! knowledge agent's answer says it retrieved is what a search of the same version finds.

use super::Validator;
use crate::{
    attribution::recompute,
    knowledge::{mismatch, misplaced, PromptReader},
};
use alloy_primitives::{hex, keccak256, B256, U256};
use alloy_sol_types::SolCall;
use anyhow::{Context, Result};
use openledger_attribution::receipt::AttributionReceipt;
use openledger_protocol::{
    inference_settlement::{unpack_credits, InferenceSettlement as IS},
    DatanetRegistry, ModelRegistry,
};
use openledger_studio::{
    attribute::{credits, payouts, served_hash, weights, BASIS_POINTS},
    knowledge::{combined_hash, Retrieval},
};
use serde_json::Value;
use std::collections::BTreeMap;

/// What the host serves for a settled attribution hash.
struct Served {
    /// The trained attribution receipt's bytes, if there is one.
    receipt: Option<Vec<u8>>,
    /// Without one, for an answer that retrieved: the prompt and answer tokens.
    tokens: Option<(Vec<u32>, Vec<u32>)>,
    /// For an answer that retrieved: the trained attribution's hash and the retrieval.
    retrieval: Option<(B256, Retrieval)>,
}

impl Served {
    /// Reads the host's answer; `Err` names what is malformed.
    fn read(body: &Value) -> Result<Self, String> {
        let receipt = match body["receipt"].as_str() {
            Some(text) => Some(
                hex::decode(text).map_err(|_| "the attribution receipt is not hex".to_string())?,
            ),
            None => None,
        };
        let retrieval = match body.get("retrieval").filter(|v| !v.is_null()) {
            None => None,
            Some(v) => {
                let r = Retrieval::from_json(v).ok_or("the retrieval is malformed")?;
                let trained: B256 = body["trained"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .ok_or("a retrieval without the trained attribution's hash")?;
                Some((trained, r))
            }
        };
        let tokens = match body.get("served").filter(|v| !v.is_null()) {
            None => None,
            Some(v) => {
                let ids = |k: &str| serde_json::from_value::<Vec<u32>>(v[k].clone()).ok();
                Some((ids("prompt"), ids("answer")))
                    .and_then(|(p, a)| Some((p?, a?)))
                    .map(Some)
                    .ok_or("the served tokens are malformed")?
            }
        };
        match (&receipt, &tokens, &retrieval) {
            (None, _, None) => Err("neither an attribution receipt nor a retrieval".into()),
            (None, None, Some(_)) => {
                Err("a retrieval with neither an attribution receipt nor the served tokens".into())
            }
            _ => Ok(Self {
                receipt,
                tokens,
                retrieval,
            }),
        }
    }
}

impl Validator<'_> {
    /// What is wrong with one settled receipt (nothing: empty).
    pub(super) async fn check_receipt(
        &self,
        r: &IS::Receipt,
        listed: &[u64],
    ) -> Result<Vec<String>> {
        let settled: Vec<(u64, u16)> = unpack_credits(&r.credits)
            .into_iter()
            .map(|(at, w)| (listed.get(usize::from(at)).copied().unwrap_or(u64::MAX), w))
            .collect();
        let path = format!("/v1/attributions/{}", r.attributionHash);
        let auth = [("authorization", format!("Bearer {}", self.key))];
        let (status, body) = self.api.get_with(&path, &auth).await?;
        match status {
            200 => {}
            // Nothing to read: acceptable only for a receipt that credits no one.
            404 if settled.is_empty() => return Ok(Vec::new()),
            404 => {
                return Ok(vec![format!(
                "the host withholds attribution receipt {}, which the receipt's credits rest on",
                r.attributionHash
            )])
            }
            _ => {
                return Ok(vec![format!(
                    "the host's API does not serve attribution receipt {} ({status} {body})",
                    r.attributionHash
                )])
            }
        }
        let served = match Served::read(&body) {
            Ok(served) => served,
            Err(e) => return Ok(vec![format!("the host's attribution is malformed: {e}")]),
        };
        let a = *self.client.addresses().context("addresses")?;
        let route = self
            .client
            .call(
                a.model_registry,
                ModelRegistry::agentRouteCall::new((U256::from(r.agentId),)),
            )
            .await?;
        let knowledge: u64 = route.knowledgeDatanetId.saturating_to();
        let mut problems = Vec::new();
        let trained_hash = match &served.retrieval {
            None => r.attributionHash,
            Some((trained, retrieval)) => {
                if combined_hash(*trained, retrieval) != r.attributionHash {
                    return Ok(vec![format!(
                        "the host's trained attribution {trained} and retrieval hash to {}, \
                         not {}",
                        combined_hash(*trained, retrieval),
                        r.attributionHash
                    )]);
                }
                *trained
            }
        };
        let mut trained = Vec::new();
        let prompt = if let Some(bytes) = &served.receipt {
            if keccak256(bytes) != trained_hash {
                return Ok(vec![format!(
                    "the host's attribution receipt hashes to {}, not {trained_hash}",
                    keccak256(bytes)
                )]);
            }
            let receipt = match AttributionReceipt::decode(bytes) {
                Ok(receipt) => receipt,
                Err(e) => {
                    return Ok(vec![format!(
                        "the attribution receipt does not decode: {e}"
                    )])
                }
            };
            trained = payouts(&receipt);
            let prompt = receipt.prompt.clone();
            problems.extend(self.check_trained(r, route.adapterId, receipt).await?);
            prompt
        } else if let Some((prompt, answer)) = served.tokens {
            // Nothing attributed: `trained` must be the served tokens' hash, and no more
            // tokens than were billed.
            if served_hash(&prompt, &answer) != trained_hash {
                return Ok(vec![format!(
                    "the served tokens hash to {}, not {trained_hash}",
                    served_hash(&prompt, &answer)
                )]);
            }
            if prompt.len() > r.inputTokens as usize || answer.len() > r.outputTokens as usize {
                problems.push(format!(
                    "serves {} prompt and {} answer tokens, more than the {} and {} billed",
                    prompt.len(),
                    answer.len(),
                    r.inputTokens,
                    r.outputTokens
                ));
            }
            prompt
        } else {
            Vec::new()
        };
        if let Some((_, retrieval)) = &served.retrieval {
            problems.extend(self.check_retrieval(retrieval, knowledge, &prompt).await?);
        }
        let paid = weights(&trained, served.retrieval.as_ref().map(|(_, r)| r));
        let payable = Payable {
            v: self,
            adapter: route.adapterId.saturating_to(),
            knowledge,
            listed,
        };
        let mut ok = BTreeMap::new();
        for (c, _) in &paid {
            ok.insert(*c, payable.check(*c).await?);
        }
        let expected = credits(&paid, |c| ok.get(&c).copied().unwrap_or(false));
        if expected != settled {
            problems.push(format!("credits {settled:?} settled, but its attribution pays {expected:?} (contribution, basis points)"));
        }
        Ok(problems)
    }

    /// Checks a trained attribution receipt against the receipt it is for, and recomputes it.
    async fn check_trained(
        &self,
        r: &IS::Receipt,
        adapter: U256,
        receipt: AttributionReceipt,
    ) -> Result<Vec<String>> {
        let a = *self.client.addresses().context("addresses")?;
        let mut problems = Vec::new();
        let call = ModelRegistry::adapterCall::new((adapter,));
        let weights = self
            .client
            .call(a.model_registry, call)
            .await?
            ._0
            .weightsHash;
        if weights != receipt.adapterWeightsHash {
            problems.push(format!(
                "attributed to adapter {}, but agent {} runs {weights}",
                receipt.adapterWeightsHash, r.agentId
            ));
        }
        if receipt.amount != U256::from(BASIS_POINTS) {
            problems.push(format!(
                "splits {} instead of {BASIS_POINTS} basis points",
                receipt.amount
            ));
        }
        if receipt.prompt.len() > r.inputTokens as usize
            || receipt.answer.len() > r.outputTokens as usize
        {
            problems.push(format!(
                "attributes {} prompt and {} answer tokens, more than the {} and {} billed",
                receipt.prompt.len(),
                receipt.answer.len(),
                r.inputTokens,
                r.outputTokens
            ));
        }
        let recomputed = recompute(
            &self.api,
            Some(self.client),
            receipt,
            false,
            self.model.clone(),
            &self.cache,
        )
        .await;
        match recomputed {
            Ok(differences) => {
                for d in differences {
                    problems.push(format!("recomputed attribution differs: {d}"));
                }
            }
            // The published artifacts could not be had or do not match the registry.
            Err(e) => problems.push(format!("could not be recomputed: {e:#}")),
        }
        Ok(problems)
    }

    /// Checks what an answer says it retrieved: searched where it should, for the query its
    /// prompt ends with, finding what a search of the same version finds.
    async fn check_retrieval(
        &self,
        retrieval: &Retrieval,
        knowledge: u64,
        prompt: &[u32],
    ) -> Result<Vec<String>> {
        let a = *self.client.addresses().context("addresses")?;
        let call = DatanetRegistry::versionCall {
            versionId: U256::from(retrieval.version),
        };
        let of = u64::from(self.client.call(a.datanet_registry, call).await?.datanetId);
        if let Some(problem) = misplaced(retrieval, knowledge, of) {
            return Ok(vec![problem]);
        }
        let asked = self.prompt_reader().await?.query(prompt);
        if asked != retrieval.query {
            return Ok(vec![format!(
                "searched for {:?}, but the prompt asks {asked:?}",
                retrieval.query
            )]);
        }
        let v = retrieval.version;
        let unreachable = std::sync::atomic::AtomicBool::new(false);
        let index =
            self.indexes
                .get(v, || async {
                    let path = format!("/api/versions/{v}/export");
                    match self.data_api.get_raw(&path).await {
                        Ok((200, bytes)) => Ok(Box::new(std::io::Cursor::new(bytes))
                            as Box<dyn std::io::BufRead + Send>),
                        Ok((status, body)) => Err(format!(
                            "its export answers {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        )),
                        Err(e) => {
                            unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
                            Err(e.to_string())
                        }
                    }
                })
                .await;
        let index = match index {
            Ok(index) => index,
            // Not reached: try again later rather than challenge an honest host.
            Err(e) if unreachable.into_inner() => anyhow::bail!("{e}"),
            Err(e) => return Ok(vec![format!("version {v} cannot be searched: {e}")]),
        };
        Ok(mismatch(retrieval, &index).into_iter().collect())
    }

    /// The tokenizer and chat template queries are read with (loaded once).
    async fn prompt_reader(&self) -> Result<&PromptReader> {
        self.reader
            .get_or_try_init(|| async {
                let path = self
                    .model
                    .clone()
                    .unwrap_or_else(openledger_model::default_model_path);
                tokio::task::spawn_blocking(move || PromptReader::load(&path)).await?
            })
            .await
    }
}

/// The contributions the contract would have paid for a receipt of an agent on adapter
/// `adapter` retrieving from datanet `knowledge`: accepted (a contribution the batch listed
/// was, when it settled: acceptance only ever ends) and in the knowledge datanet or in the
/// adapter's lineage (proven on chain, or provable: then the host should have proven it).
struct Payable<'v, 'a> {
    v: &'v Validator<'a>,
    adapter: u64,
    knowledge: u64,
    listed: &'v [u64],
}

impl Payable<'_, '_> {
    async fn check(&self, contribution: u64) -> Result<bool> {
        let a = *self.v.client.addresses().context("addresses")?;
        let call = DatanetRegistry::standingCall::new((U256::from(contribution),));
        let standing = self.v.client.call(a.datanet_registry, call).await?;
        let listed = self.listed.binary_search(&contribution).is_ok();
        if standing.status != 2 && !listed {
            return Ok(false); // not accepted (rejected, poisoned, withdrawn): never paid
        }
        if self.knowledge != 0 && u64::from(standing.datanetId) == self.knowledge {
            return Ok(true);
        }
        let (id, c) = (U256::from(self.adapter), U256::from(contribution));
        let call = IS::inLineageCall::new((id, c));
        if self.v.client.call(a.inference_settlement, call).await? {
            return Ok(true);
        }
        let call = ModelRegistry::adapterCall::new((U256::from(self.adapter),));
        for version in self
            .v
            .client
            .call(a.model_registry, call)
            .await?
            .datanetVersions
        {
            let path = format!("/api/versions/{version}/proofs/{contribution}");
            if self.v.data_api.get_with(&path, &[]).await?.0 == 200 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
