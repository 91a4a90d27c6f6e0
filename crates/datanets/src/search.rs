//! Retrieval over a datanet version, for agents that answer from a knowledge datanet: every
//! record of the version is a passage, ranked against a query by BM25 (Robertson and
//! Zaragoza's Okapi BM25, k1 = 1.2, b = 0.75).
//!
//! The index is built from the version's export (`{"contribution", "record"}` lines), so the
//! host that retrieves and a validator that checks it build the same one. Scores are
//! computed in one fixed order and reported in millionths, rounded, so that both rank alike.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation.
const B: f64 = 0.75;
/// Characters of a record kept as its passage (longer ones are cut at a character boundary).
pub const MAX_PASSAGE_CHARS: usize = 2_000;
/// Words too common to say anything about a passage.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "he", "in", "is", "it",
    "its", "of", "on", "or", "that", "the", "to", "was", "were", "will", "with", "what", "which",
    "who", "how", "do", "does", "i", "you",
];

/// Why an export could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("reading the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("export line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// One record of the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub contribution: u64,
    /// Its place among its contribution's records.
    pub record: u32,
    pub text: String,
}

/// A passage found for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Its place in [`SearchIndex::passages`].
    pub passage: usize,
    pub contribution: u64,
    pub record: u32,
    /// BM25, in millionths.
    pub score: u64,
}

/// A version's passages and their inverted index.
pub struct SearchIndex {
    passages: Vec<Passage>,
    /// Term → (passage, occurrences), by passage.
    postings: BTreeMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    average_length: f64,
}

/// The text a record stands for: a chat's messages, a `text`, a prompt and its completion,
/// or else the record as JSON.
pub fn passage_text(record: &Value) -> String {
    let text = if let Some(messages) = record.get("messages").and_then(Value::as_array) {
        messages
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    } else if let Some(text) = record.get("text").and_then(Value::as_str) {
        text.to_string()
    } else if let (Some(p), Some(c)) = (
        record.get("prompt").and_then(Value::as_str),
        record.get("completion").and_then(Value::as_str),
    ) {
        format!("{p}\n{c}")
    } else {
        record.to_string()
    };
    match text.char_indices().nth(MAX_PASSAGE_CHARS) {
        Some((at, _)) => text[..at].to_string(),
        None => text,
    }
}

/// The words BM25 counts: lowercase runs of letters and digits, stopwords dropped.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// The natural logarithm of `x` (> 0) from IEEE-754 additions, multiplications and divisions
/// only, which round alike on every machine (the platform's `ln` need not): x = m·2^e with m in
/// [√½, √2), and ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …) with s = (m − 1)/(m + 1), |s| < 0.172,
/// so 24 terms are past f64's precision.
fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)); // in [1, 2)
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..24 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

impl SearchIndex {
    /// Indexes a version's export.
    pub fn from_export(reader: impl std::io::BufRead) -> Result<Self, SearchError> {
        let mut passages = Vec::new();
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| SearchError::Line {
                line: i + 1,
                reason,
            };
            let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let contribution = v["contribution"]
                .as_u64()
                .ok_or_else(|| bad("no contribution id".into()))?;
            let record = counts.entry(contribution).or_default();
            passages.push(Passage {
                contribution,
                record: *record,
                text: passage_text(&v["record"]),
            });
            *record += 1;
        }
        Ok(Self::new(passages))
    }

    /// Indexes `passages`.
    pub fn new(passages: Vec<Passage>) -> Self {
        let mut postings: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
        let mut lengths = Vec::with_capacity(passages.len());
        for (i, p) in passages.iter().enumerate() {
            let words = terms(&p.text);
            lengths.push(words.len() as u32);
            let mut tf: BTreeMap<String, u32> = BTreeMap::new();
            for w in words {
                *tf.entry(w).or_default() += 1;
            }
            for (w, n) in tf {
                postings.entry(w).or_default().push((i as u32, n));
            }
        }
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        let average_length = total as f64 / passages.len().max(1) as f64;
        Self {
            passages,
            postings,
            lengths,
            average_length,
        }
    }

    pub fn passages(&self) -> &[Passage] {
        &self.passages
    }

    /// The `k` best passages for `query` with a positive score, best first; ties go to the
    /// lower contribution id, then the earlier record.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        let n = self.passages.len() as f64;
        let mut scores: BTreeMap<u32, f64> = BTreeMap::new();
        // Each distinct query term once, in sorted order: one summation order everywhere.
        for term in terms(query).into_iter().collect::<BTreeSet<_>>() {
            let Some(list) = self.postings.get(&term) else {
                continue;
            };
            let df = list.len() as f64;
            let idf = ln(1.0 + (n - df + 0.5) / (df + 0.5));
            for &(p, tf) in list {
                let tf = f64::from(tf);
                let length = f64::from(self.lengths[p as usize]) / self.average_length;
                let part = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length));
                *scores.entry(p).or_default() += part;
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .map(|(p, s)| {
                let passage = &self.passages[p as usize];
                Hit {
                    passage: p as usize,
                    contribution: passage.contribution,
                    record: passage.record,
                    score: (s * 1e6).round() as u64,
                }
            })
            .filter(|h| h.score > 0)
            .collect();
        hits.sort_by_key(|h| (std::cmp::Reverse(h.score), h.contribution, h.record));
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(lines: &[(u64, Value)]) -> String {
        lines
            .iter()
            .map(|(c, r)| serde_json::json!({"contribution": c, "record": r}).to_string() + "\n")
            .collect()
    }

    fn chat(q: &str, a: &str) -> Value {
        serde_json::json!({"messages": [{"role": "user", "content": q},
                                        {"role": "assistant", "content": a}]})
    }

    #[test]
    fn the_passage_sharing_the_rare_words_ranks_first_and_ties_are_fixed() {
        let text = export(&[
            (
                7,
                chat(
                    "Where is the lighthouse?",
                    "The lighthouse stands on Skerry Point.",
                ),
            ),
            (
                7,
                chat("What colour is the sea?", "The sea is grey in winter."),
            ),
            (
                3,
                serde_json::json!({"text": "Skerry Point has a lighthouse and a harbour."}),
            ),
            (
                5,
                serde_json::json!({"text": "Harbour fees are paid in spring by every boat owner."}),
            ),
        ]);
        let index = SearchIndex::from_export(text.as_bytes()).unwrap();
        assert_eq!(index.passages().len(), 4);
        assert_eq!(index.passages()[1].record, 1);
        let hits = index.search("Who keeps the lighthouse on Skerry Point?", 3);
        let found: Vec<(u64, u32)> = hits.iter().map(|h| (h.contribution, h.record)).collect();
        // Both lighthouse passages match "lighthouse", "skerry" and "point"; the sea does not.
        assert_eq!(found.len(), 2, "{hits:?}");
        assert!(found.contains(&(7, 0)) && found.contains(&(3, 0)));
        assert!(hits[0].score >= hits[1].score && hits[1].score > 0);
        // One "harbour" each: the shorter passage (4 words counted against 7) scores higher.
        let harbour = index.search("harbour", 2);
        assert_eq!(
            harbour.iter().map(|h| h.contribution).collect::<Vec<_>>(),
            [3, 5]
        );
        // Stopwords and words nowhere in the version find nothing.
        assert!(index.search("what is the", 3).is_empty());
        assert!(index.search("zeppelin", 3).is_empty());
        // Equal passages tie by contribution id, then record.
        let same = export(&[
            (9, serde_json::json!({"text": "amber"})),
            (2, serde_json::json!({"text": "amber"})),
            (2, serde_json::json!({"text": "amber"})),
        ]);
        let index = SearchIndex::from_export(same.as_bytes()).unwrap();
        let order: Vec<(u64, u32)> = index
            .search("amber", 3)
            .iter()
            .map(|h| (h.contribution, h.record))
            .collect();
        assert_eq!(order, [(2, 0), (2, 1), (9, 0)]);
    }

    #[test]
    fn passages_are_cut_to_size_and_bad_export_lines_are_named() {
        let long = serde_json::json!({"text": "é".repeat(MAX_PASSAGE_CHARS + 10)});
        assert_eq!(passage_text(&long).chars().count(), MAX_PASSAGE_CHARS);
        let other = serde_json::json!({"prompt": "Q", "completion": "A"});
        assert_eq!(passage_text(&other), "Q\nA");
        let e = SearchIndex::from_export(
            "{\"contribution\": 1, \"record\": {}}\nnot json\n".as_bytes(),
        );
        assert!(
            matches!(e, Err(SearchError::Line { line: 2, .. })),
            "{:?}",
            e.err()
        );
        let e = SearchIndex::from_export("{\"record\": {}}\n".as_bytes());
        assert!(matches!(e, Err(SearchError::Line { line: 1, .. })));
    }

    #[test]
    fn the_own_logarithm_agrees_with_the_platforms_to_a_few_ulps() {
        for x in [1.0, 1.5, 2.0, 3.3, 10.0, 1e-3, 123_456.789, 1e9] {
            let (own, platform) = (ln(x), x.ln());
            assert!(
                (own - platform).abs() <= 4.0 * f64::EPSILON * platform.abs().max(1.0),
                "{x}: {own} vs {platform}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
    }
}
