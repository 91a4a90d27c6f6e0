//! Retrieval-augmented answers for agents with a knowledge datanet. Before a chat request is
//! answered, the consumer's last message is the query: the best passages of the datanet's
//! latest version go into the prompt (each numbered, so the answer can cite `[1]`), the
//! response lists them as `citations`, and the receipt records the [`Retrieval`]: the datanet,
//! the version, the query and each hit with its score. The retrieved contributions are credited
//! beside the trained-data attribution, and the retrieval is part of the hash the receipt
//! settles with, so a validator can search the same version and check it.

use alloy_primitives::{keccak256, B256, U256};
use alloy_sol_types::SolValue;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Passages retrieved per answer: settlement and validators search for as many.
pub const RETRIEVED: usize = 3;
/// Characters of the query kept (the rest of a long message is not searched).
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Characters of a passage shown in a citation's snippet.
const SNIPPET_CHARS: usize = 200;

/// One retrieved passage: a record of a contribution, and its BM25 score in millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub contribution: u64,
    /// Its place among its contribution's records in the version's export.
    pub record: u32,
    pub score: u64,
}

/// What an answer retrieved, as its receipt records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retrieval {
    pub datanet: u64,
    pub version: u64,
    pub query: String,
    /// Best first.
    pub hits: Vec<Hit>,
}

impl Retrieval {
    /// keccak256 of `abi.encode(datanet, version, query, contributions, records, scores)`.
    pub fn hash(&self) -> B256 {
        let contributions: Vec<u64> = self.hits.iter().map(|h| h.contribution).collect();
        let records: Vec<u32> = self.hits.iter().map(|h| h.record).collect();
        let scores: Vec<u64> = self.hits.iter().map(|h| h.score).collect();
        let encoded = (
            self.datanet,
            self.version,
            self.query.clone(),
            contributions,
            records,
            scores,
        )
            .abi_encode_params();
        keccak256(encoded)
    }

    /// Each retrieved contribution's summed score.
    pub fn weights(&self) -> Vec<(u64, U256)> {
        let mut summed: BTreeMap<u64, U256> = BTreeMap::new();
        for h in &self.hits {
            *summed.entry(h.contribution).or_default() += U256::from(h.score);
        }
        summed.into_iter().collect()
    }

    /// The retrieval as the API shows it.
    pub fn json(&self) -> Value {
        json!({
            "datanet": self.datanet,
            "version": self.version,
            "query": self.query,
            "hits": self.hits.iter().map(|h| json!({
                "contribution": h.contribution, "record": h.record, "score": h.score,
            })).collect::<Vec<_>>(),
        })
    }

    /// Reads what [`Self::json`] wrote.
    pub fn from_json(v: &Value) -> Option<Self> {
        let hits = v["hits"]
            .as_array()?
            .iter()
            .map(|h| {
                Some(Hit {
                    contribution: h["contribution"].as_u64()?,
                    record: u32::try_from(h["record"].as_u64()?).ok()?,
                    score: h["score"].as_u64()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            datanet: v["datanet"].as_u64()?,
            version: v["version"].as_u64()?,
            query: v["query"].as_str()?.to_string(),
            hits,
        })
    }
}

/// The hash an answer that retrieved settles with: its trained-data attribution's hash (the
/// attribution receipt's, or the served tokens' when nothing was attributed) and its
/// retrieval's, `keccak256(abi.encode(trained, retrieval.hash()))`.
pub fn combined_hash(trained: B256, retrieval: &Retrieval) -> B256 {
    keccak256((trained, retrieval.hash()).abi_encode_params())
}

/// A retrieved passage with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub hit: Hit,
    pub text: String,
}

/// What a search of a datanet's latest version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub version: u64,
    /// Best first.
    pub passages: Vec<Passage>,
}

/// Search over knowledge datanets (the node builds an index per version).
pub trait Knowledge: Send + Sync {
    /// The `k` best passages for `query` in `datanet`'s latest version; `None` when the
    /// datanet has no version yet.
    fn retrieve(
        &self,
        datanet: u64,
        query: String,
        k: usize,
    ) -> BoxFuture<'_, Result<Option<Found>, String>>;
}

/// The query of a conversation: its last user message, cut to [`MAX_QUERY_CHARS`].
pub fn query(last_user_message: &str) -> String {
    let text = last_user_message.trim();
    match text.char_indices().nth(MAX_QUERY_CHARS) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// The text that gives the model the passages, numbered for citation.
pub fn context(found: &Found) -> String {
    let mut text = String::from(
        "Answer from these passages where they help, and cite each one you use by its number, \
         like [1].",
    );
    for (i, p) in found.passages.iter().enumerate() {
        text.push_str(&format!("\n[{}] {}", i + 1, p.text));
    }
    text
}

/// The response's `citations`: each passage's number, contribution, record, score and the
/// beginning of its text.
pub fn citations(datanet: u64, found: &Found) -> Value {
    let list: Vec<Value> = found
        .passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let snippet = match p.text.char_indices().nth(SNIPPET_CHARS) {
                Some((at, _)) => format!("{}…", &p.text[..at]),
                None => p.text.clone(),
            };
            json!({
                "index": i + 1,
                "datanet": datanet,
                "version": found.version,
                "contribution": p.hit.contribution,
                "record": p.hit.record,
                "score": p.hit.score,
                "snippet": snippet,
            })
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrieval() -> Retrieval {
        Retrieval {
            datanet: 2,
            version: 5,
            query: "lighthouse keeper".into(),
            hits: vec![
                Hit {
                    contribution: 9,
                    record: 1,
                    score: 3_000_000,
                },
                Hit {
                    contribution: 4,
                    record: 0,
                    score: 1_000_000,
                },
                Hit {
                    contribution: 9,
                    record: 0,
                    score: 500_000,
                },
            ],
        }
    }

    #[test]
    fn the_hash_commits_to_every_part_and_weights_sum_per_contribution() {
        let r = retrieval();
        assert_eq!(
            r.weights(),
            [(4, U256::from(1_000_000)), (9, U256::from(3_500_000))]
        );
        let mut changed = Vec::new();
        for i in 0..6 {
            let mut other = r.clone();
            match i {
                0 => other.datanet += 1,
                1 => other.version += 1,
                2 => other.query.push('s'),
                3 => other.hits[0].contribution = 5,
                4 => other.hits[1].record = 1,
                _ => other.hits[2].score += 1,
            }
            changed.push(other.hash());
        }
        assert!(changed.iter().all(|h| *h != r.hash()));
        let trained = B256::repeat_byte(7);
        assert_ne!(combined_hash(trained, &r), combined_hash(B256::ZERO, &r));
        assert_eq!(Retrieval::from_json(&r.json()), Some(r));
    }

    #[test]
    fn the_query_is_cut_and_the_context_numbers_its_passages() {
        let long = "é".repeat(MAX_QUERY_CHARS + 10);
        assert_eq!(query(&long).chars().count(), MAX_QUERY_CHARS);
        assert_eq!(query("  where?  "), "where?");
        let found = Found {
            version: 5,
            passages: vec![
                Passage {
                    hit: retrieval().hits[0],
                    text: "The keeper is Ann.".into(),
                },
                Passage {
                    hit: retrieval().hits[1],
                    text: "x".repeat(300),
                },
            ],
        };
        let text = context(&found);
        assert!(text.contains("\n[1] The keeper is Ann.\n[2] xxx"), "{text}");
        let cited = citations(2, &found);
        assert_eq!(cited[0]["contribution"], 9);
        assert_eq!(cited[1]["index"], 2);
        assert_eq!(cited[1]["snippet"].as_str().unwrap().chars().count(), 201);
    }
}
