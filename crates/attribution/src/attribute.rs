//! The combination rule: both engines' credit mixed into one weight per contribution, and
//! the amount split by those weights, written down as a receipt.
//!
//! The rule, in integers from the engines' outputs:
//! 1. The span engine's credit per contribution ([`payout::span_credit`]) and the gradient
//!    engine's (the sum of each contribution's examples' positive influence) are each turned
//!    into parts per billion by largest remainder.
//! 2. `coverage` is the share of answer tokens inside attributed spans, in parts per million:
//!    verbatim reuse is what spans see and gradients blur, so the more of the answer spans
//!    cover, the more they decide. An engine that credits no one cedes its part to the other.
//! 3. `weight = coverage · spanShare + (10⁶ − coverage) · gradientShare`, and the amount is
//!    split by largest remainder over the weights (ties to the lower contribution id), so the
//!    payouts sum exactly to it.

use crate::{
    corpus::UNCREDITED,
    gradient::{answer_sketch, influence, AnswerSketch},
    payout::{self, largest_remainder},
    published::Published,
    receipt::{
        AttributedSpan, AttributionReceipt, ContributionWeight, ExampleInfluence, Payout,
        SpanOccurrence, RECEIPT_VERSION,
    },
    span::{token_kinds, trace, Span, TraceConfig},
    AttributionError,
};
use alloy_primitives::{B256, U256};
use openledger_model::{train::Example, Model};
use std::collections::{BTreeMap, BTreeSet};

/// Shares are in parts per billion.
const SHARE: u128 = 1_000_000_000;
/// Coverage is in parts per million.
const COVERAGE: u128 = 1_000_000;

/// The knobs of an attribution; a receipt is reproducible only under the same ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub trace: TraceConfig,
    /// Examples listed in the receipt's gradient top.
    pub top_examples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trace: TraceConfig::default(),
            top_examples: 10,
        }
    }
}

/// What was asked and answered, and the amount the data's share of the fee comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
    pub amount: u128,
}

/// Attributes `query`'s answer to `adapter`'s training contributions and writes the receipt.
pub fn attribute(
    model: &Model,
    base_weights_hash: B256,
    adapter: &Published,
    query: &Query,
    settings: &Settings,
) -> Result<AttributionReceipt, AttributionError> {
    let example = Example {
        tokens: [&query.prompt[..], &query.answer[..]].concat(),
        prompt_len: query.prompt.len(),
    };
    let sketch = answer_sketch(
        &model.llama,
        &adapter.checkpoints,
        &adapter.sketches,
        &example,
        true,
    )?;
    attribute_sketched(model, base_weights_hash, adapter, query, settings, &sketch)
}

/// [`attribute`] with the answer's preconditioned sketch already computed.
pub fn attribute_sketched(
    model: &Model,
    base_weights_hash: B256,
    adapter: &Published,
    query: &Query,
    settings: &Settings,
    sketch: &AnswerSketch,
) -> Result<AttributionReceipt, AttributionError> {
    let kinds = token_kinds(&model.tokenizer, &query.answer);
    let spans = trace(&adapter.spans, &query.answer, &kinds, &settings.trace)?;
    let span_share = largest_remainder(&payout::span_credit(&spans), SHARE);
    if !sketch.preconditioned {
        return Err(AttributionError::Receipt(
            "receipts are made from the preconditioned sketch".into(),
        ));
    }
    let scores = influence(&adapter.sketches, sketch);
    let (gradient_credit, gradient_top) =
        gradient_credit(&adapter.sketches.examples, &scores, settings.top_examples);
    let gradient_share = largest_remainder(&gradient_credit, SHARE);

    let coverage = match (span_share.is_empty(), gradient_share.is_empty()) {
        (true, _) => 0,
        (false, true) => COVERAGE,
        (false, false) => covered(&spans) as u128 * COVERAGE / query.answer.len().max(1) as u128,
    };
    let ids: BTreeSet<u64> = span_share
        .keys()
        .chain(gradient_share.keys())
        .copied()
        .collect();
    let mut weights = Vec::new();
    let mut by_id = BTreeMap::new();
    for id in ids {
        let (s, g) = (
            span_share.get(&id).copied().unwrap_or(0),
            gradient_share.get(&id).copied().unwrap_or(0),
        );
        let weight = coverage * s + (COVERAGE - coverage) * g;
        if weight == 0 {
            continue;
        }
        by_id.insert(id, weight);
        weights.push(ContributionWeight {
            contribution: id,
            datanet: adapter.datanets.get(&id).copied().unwrap_or(u64::MAX),
            spanShare: s as u64,
            gradientShare: g as u64,
            weight,
        });
    }
    let payouts = largest_remainder(&by_id, query.amount)
        .into_iter()
        .map(|(contribution, amount)| Payout {
            contribution,
            amount: U256::from(amount),
        })
        .collect();
    Ok(AttributionReceipt {
        version: RECEIPT_VERSION,
        baseWeightsHash: base_weights_hash,
        adapterWeightsHash: adapter.manifest.weights_hash,
        manifestHash: adapter.manifest_hash,
        spanIndexRoot: adapter.spans.root(),
        sketchStoreRoot: adapter.sketches.root(),
        prompt: query.prompt.clone(),
        answer: query.answer.clone(),
        spans: spans.iter().map(receipt_span).collect(),
        gradientTop: gradient_top,
        coverage: coverage as u32,
        weights,
        amount: U256::from(query.amount),
        payouts,
    })
}

/// Answer tokens inside at least one span.
fn covered(spans: &[Span]) -> usize {
    let mut inside = BTreeSet::new();
    for s in spans {
        inside.extend(s.start..s.end);
    }
    inside.len()
}

fn receipt_span(span: &Span) -> AttributedSpan {
    AttributedSpan {
        start: span.start as u32,
        end: span.end as u32,
        count: span.count,
        rarity: ((-span.log_prob) * payout::CREDIT_PER_NAT).round().max(0.0) as u64,
        occurrences: span
            .occurrences
            .iter()
            .map(|o| SpanOccurrence {
                contribution: o.contribution,
                position: o.position,
            })
            .collect(),
    }
}

/// Each credited contribution's gradient credit (its examples' positive influence, scaled to
/// integers against the total) and the `top` most influential examples.
fn gradient_credit(
    examples: &[(u64, u64)],
    scores: &[f64],
    top: usize,
) -> (BTreeMap<u64, u128>, Vec<ExampleInfluence>) {
    let mut sums: BTreeMap<u64, f64> = BTreeMap::new();
    // In store order, so the float sums are the same everywhere.
    for (&(_, contribution), &score) in examples.iter().zip(scores) {
        if score > 0.0 && contribution != UNCREDITED {
            *sums.entry(contribution).or_insert(0.0) += score;
        }
    }
    let total: f64 = sums.values().sum();
    let credit = sums
        .into_iter()
        .map(|(c, s)| (c, (s / total * 1e12).round() as u128))
        .filter(|&(_, units)| units > 0)
        .collect();
    let mut ranked: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > 0.0).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let best = ranked.first().map(|&i| scores[i]).unwrap_or(1.0);
    let top = ranked
        .into_iter()
        .take(top)
        .map(|i| ExampleInfluence {
            example: examples[i].0,
            contribution: examples[i].1,
            score: (scores[i] / best * SHARE as f64).round() as u64,
        })
        .collect();
    (credit, top)
}

/// Recomputes `receipt` from `adapter`'s artifacts and lists how it differs from the
/// recomputation (`field: recomputed → receipt`), empty when identical.
pub fn verify(
    model: &Model,
    base_weights_hash: B256,
    adapter: &Published,
    receipt: &AttributionReceipt,
    settings: &Settings,
) -> Result<Vec<String>, AttributionError> {
    let query = Query {
        prompt: receipt.prompt.clone(),
        answer: receipt.answer.clone(),
        amount: receipt.amount.try_into().map_err(|_| {
            AttributionError::Receipt(format!("amount {} exceeds 2¹²⁸", receipt.amount))
        })?,
    };
    let again = attribute(model, base_weights_hash, adapter, &query, settings)?;
    Ok(crate::receipt::differences(&again, receipt))
}

/// Recomputes only the receipt's span part (the index root and the spans), which needs the
/// tokenizer and the span index but no model weights or gradients: milliseconds.
pub fn verify_spans(
    tokenizer: &openledger_model::tokenizer::Tokenizer,
    index: &crate::span::SpanIndex,
    receipt: &AttributionReceipt,
    settings: &Settings,
) -> Result<Vec<String>, AttributionError> {
    let mut out = Vec::new();
    if index.root() != receipt.spanIndexRoot {
        out.push(format!(
            "span index root: {} → {}",
            index.root(),
            receipt.spanIndexRoot
        ));
    }
    let kinds = token_kinds(tokenizer, &receipt.answer);
    let spans: Vec<AttributedSpan> = trace(index, &receipt.answer, &kinds, &settings.trace)?
        .iter()
        .map(receipt_span)
        .collect();
    if spans.len() != receipt.spans.len() {
        out.push(format!(
            "spans (count): {} → {}",
            spans.len(),
            receipt.spans.len()
        ));
    }
    for (i, (a, b)) in spans.iter().zip(&receipt.spans).enumerate() {
        if a != b {
            out.push(format!("spans[{i}]: {a:?} → {b:?}"));
        }
    }
    Ok(out)
}
