//! An attribution explained for people: the answer with its spans marked, and for each
//! contribution credited its datanet, contributor, share and the text that earned it. The
//! REST API returns it as JSON and the CLI prints it.

use crate::{published::Published, receipt::AttributionReceipt};
use alloy_primitives::Address;
use openledger_model::tokenizer::Tokenizer;
use serde::Serialize;

/// Tokens of context shown on each side of a span's occurrence.
const CONTEXT: usize = 12;
/// The longest snippet shown, in characters.
const SNIPPET_CHARS: usize = 240;

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub adapter: String,
    pub prompt: String,
    pub answer: String,
    /// The answer cut into pieces, each inside a span (its index) or not.
    pub segments: Vec<Segment>,
    pub spans: Vec<SpanView>,
    pub contributions: Vec<ContributionView>,
    /// The contributions' shares summed per datanet (an adapter may train on several).
    pub datanets: Vec<DatanetView>,
    pub gradient_top: Vec<ExampleView>,
    /// The share of answer tokens inside spans, 0 to 1.
    pub coverage: f64,
    pub amount: String,
    /// The receipt's canonical bytes, hex.
    pub receipt: String,
    pub receipt_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub text: String,
    pub span: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanView {
    pub text: String,
    pub count: u64,
    /// −ln of its unigram probability.
    pub rarity: f64,
    pub documents: Vec<DocumentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocumentView {
    pub contribution: Option<u64>,
    pub snippet: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContributionView {
    pub contribution: u64,
    pub datanet: Option<u64>,
    pub contributor: Option<Address>,
    /// Its share of the payout, 0 to 1.
    pub share: f64,
    pub span_share: f64,
    pub gradient_share: f64,
    pub payout: String,
    /// The text that earned the credit: a span's occurrence, else its most influential
    /// training example.
    pub snippet: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatanetView {
    pub datanet: Option<u64>,
    pub share: f64,
    pub payout: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExampleView {
    pub example: u64,
    pub contribution: Option<u64>,
    /// Relative to the most influential example (1.0).
    pub score: f64,
    pub snippet: String,
}

fn contribution(id: u64) -> Option<u64> {
    (id != crate::corpus::UNCREDITED).then_some(id)
}

fn shorten(text: String) -> String {
    if text.chars().count() <= SNIPPET_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SNIPPET_CHARS).collect();
    cut.push('…');
    cut
}

/// Explains `receipt` (made on `adapter`); `contributor` looks a contribution's contributor up.
pub fn explain(
    tokenizer: &Tokenizer,
    adapter: &Published,
    receipt: &AttributionReceipt,
    contributor: impl Fn(u64) -> Option<Address>,
) -> Explanation {
    let answer = &receipt.answer;
    let text = |tokens: &[u32]| tokenizer.decode(tokens);
    let mut segments = Vec::new();
    let mut at = 0usize;
    for (i, s) in receipt.spans.iter().enumerate() {
        let (start, end) = (s.start as usize, s.end as usize);
        if start < at {
            continue; // spans overlap rarely; show each token once
        }
        if start > at {
            segments.push(Segment {
                text: text(&answer[at..start]),
                span: None,
            });
        }
        segments.push(Segment {
            text: text(&answer[start..end]),
            span: Some(i),
        });
        at = end;
    }
    if at < answer.len() {
        segments.push(Segment {
            text: text(&answer[at..]),
            span: None,
        });
    }
    let snippet_at = |position: u64, len: usize| -> String {
        let Some((document, offset)) = adapter.spans.locate(position) else {
            return String::new();
        };
        let Some(example) = adapter.examples.get(document) else {
            return String::new();
        };
        let tokens = &example.example.tokens;
        let to = (offset + len + CONTEXT).min(tokens.len());
        let from = offset.saturating_sub(CONTEXT).min(to);
        shorten(text(&tokens[from..to]))
    };
    let spans: Vec<SpanView> = receipt
        .spans
        .iter()
        .map(|s| SpanView {
            text: text(&answer[s.start as usize..s.end as usize]),
            count: s.count,
            rarity: s.rarity as f64 / crate::payout::CREDIT_PER_NAT,
            documents: s
                .occurrences
                .iter()
                .map(|o| DocumentView {
                    contribution: contribution(o.contribution),
                    snippet: snippet_at(o.position, (s.end - s.start) as usize),
                })
                .collect(),
        })
        .collect();
    let example_text = |index: u64| {
        adapter
            .examples
            .iter()
            .find(|e| e.index == index)
            .map(|e| shorten(text(&e.example.tokens)))
            .unwrap_or_default()
    };
    let total: f64 = receipt.weights.iter().map(|w| w.weight as f64).sum();
    let contributions: Vec<ContributionView> = receipt
        .weights
        .iter()
        .map(|w| {
            let from_span = receipt.spans.iter().find_map(|s| {
                s.occurrences
                    .iter()
                    .find(|o| o.contribution == w.contribution)
                    .map(|o| snippet_at(o.position, (s.end - s.start) as usize))
            });
            let snippet = from_span.unwrap_or_else(|| {
                receipt
                    .gradientTop
                    .iter()
                    .find(|g| g.contribution == w.contribution)
                    .map(|g| example_text(g.example))
                    .unwrap_or_default()
            });
            ContributionView {
                contribution: w.contribution,
                datanet: (w.datanet != u64::MAX).then_some(w.datanet),
                contributor: contributor(w.contribution),
                share: w.weight as f64 / total.max(1.0),
                span_share: w.spanShare as f64 / 1e9,
                gradient_share: w.gradientShare as f64 / 1e9,
                payout: receipt
                    .payouts
                    .iter()
                    .find(|p| p.contribution == w.contribution)
                    .map(|p| p.amount.to_string())
                    .unwrap_or_else(|| "0".into()),
                snippet,
            }
        })
        .collect();
    let mut datanets: std::collections::BTreeMap<Option<u64>, (f64, alloy_primitives::U256)> =
        Default::default();
    for c in &contributions {
        let entry = datanets.entry(c.datanet).or_default();
        entry.0 += c.share;
        entry.1 += c
            .payout
            .parse::<alloy_primitives::U256>()
            .unwrap_or_default();
    }
    let datanets = datanets
        .into_iter()
        .map(|(datanet, (share, payout))| DatanetView {
            datanet,
            share,
            payout: payout.to_string(),
        })
        .collect();
    let gradient_top = receipt
        .gradientTop
        .iter()
        .map(|g| ExampleView {
            example: g.example,
            contribution: contribution(g.contribution),
            score: g.score as f64 / 1e9,
            snippet: example_text(g.example),
        })
        .collect();
    Explanation {
        adapter: receipt.adapterWeightsHash.to_string(),
        prompt: text(&receipt.prompt),
        answer: text(answer),
        segments,
        spans,
        contributions,
        datanets,
        gradient_top,
        coverage: receipt.coverage as f64 / 1e6,
        amount: receipt.amount.to_string(),
        receipt: alloy_primitives::hex::encode_prefixed(receipt.encode()),
        receipt_hash: receipt.hash().to_string(),
    }
}
