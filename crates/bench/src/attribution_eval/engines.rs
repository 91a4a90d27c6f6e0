//! Each engine's scores for one query, per contribution and per training example, from the
//! attribution crate's public parts (the same code the node runs).

use openledger_attribution::{
    attribute::{attribute_sketched, Query, Settings},
    gradient::{influence_with, raw_sketch, AnswerSketch},
    payout::span_credit,
    published::Published,
    span::{token_kinds, trace},
};
use openledger_model::{train::Example, Model};
use std::collections::{BTreeMap, BTreeSet};

/// Engines and baselines compared.
pub const ENGINES: usize = 7;

/// One engine's view of a query.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub contributions: BTreeMap<u64, f64>,
    /// In the store's (training) order.
    pub examples: Vec<f64>,
}

/// Every engine's view of a query, and the combined rule's share of span credit.
pub struct AllScores {
    pub span: Scores,
    pub gradient: Scores,
    /// The gradient engine with unit-length training sketches (LESS-style).
    pub unit_length: Scores,
    pub plain: Scores,
    pub plain_normalized: Scores,
    pub combined: Scores,
    pub bm25: Scores,
    /// Seconds spent on the answer's gradient (preconditioned), the query's main cost.
    pub gradient_seconds: f64,
}

fn normalise(values: &[f64]) -> Vec<f64> {
    let total: f64 = values.iter().filter(|v| **v > 0.0).sum();
    values
        .iter()
        .map(|&v| {
            if total > 0.0 && v > 0.0 {
                v / total
            } else {
                0.0
            }
        })
        .collect()
}

fn by_contribution(published: &Published, examples: &[f64]) -> BTreeMap<u64, f64> {
    let mut out = BTreeMap::new();
    for (&(_, c), &s) in published.sketches.examples.iter().zip(examples) {
        if s > 0.0 {
            *out.entry(c).or_insert(0.0) += s;
        }
    }
    out
}

fn gradient(published: &Published, sketch: &AnswerSketch, normalize: bool) -> Scores {
    let examples = influence_with(&published.sketches, sketch, normalize);
    Scores {
        contributions: by_contribution(published, &examples),
        examples,
    }
}

/// All engines on the query `prompt` → `answer`; `bm25` gives the baseline's scores for the
/// query's words over the training examples and over the contributions.
pub fn score(
    model: &Model,
    published: &Published,
    prompt: &[u32],
    answer: &[u32],
    bm25: (Vec<f64>, BTreeMap<u64, f64>),
) -> AllScores {
    let kinds = token_kinds(&model.tokenizer, answer);
    let spans = trace(&published.spans, answer, &kinds, &Settings::default().trace)
        .expect("tracing the answer");
    // Per example: each span's credit split equally among the distinct documents retrieved.
    let mut span_examples = vec![0.0; published.examples.len()];
    for s in &spans {
        let documents: BTreeSet<u64> = s.occurrences.iter().map(|o| o.document).collect();
        for &d in &documents {
            span_examples[d as usize] += -s.log_prob / documents.len() as f64;
        }
    }
    let span = Scores {
        contributions: span_credit(&spans)
            .into_iter()
            .map(|(c, u)| (c, u as f64))
            .collect(),
        examples: span_examples,
    };
    let example = Example {
        tokens: [prompt, answer].concat(),
        prompt_len: prompt.len(),
    };
    let started = std::time::Instant::now();
    let raw = raw_sketch(
        &model.llama,
        &published.checkpoints,
        &published.sketches,
        &example,
    )
    .expect("the answer's gradient");
    let preconditioned = raw.prepare(&published.sketches, true);
    let gradient_seconds = started.elapsed().as_secs_f64();
    let gradient_scores = gradient(published, &preconditioned, false);
    let unit_length = gradient(published, &preconditioned, true);
    let plain_sketch = raw.prepare(&published.sketches, false);
    let plain = gradient(published, &plain_sketch, false);
    let plain_normalized = gradient(published, &plain_sketch, true);

    let receipt = attribute_sketched(
        model,
        Default::default(),
        published,
        &Query {
            prompt: prompt.to_vec(),
            answer: answer.to_vec(),
            amount: 1_000_000_000_000,
        },
        &Settings::default(),
        &preconditioned,
    )
    .expect("attributing");
    let rho = receipt.coverage as f64 / 1e6;
    let (s, g) = (
        normalise(&span.examples),
        normalise(&gradient_scores.examples),
    );
    let combined = Scores {
        contributions: receipt
            .weights
            .iter()
            .map(|w| (w.contribution, w.weight as f64))
            .collect(),
        examples: s
            .iter()
            .zip(&g)
            .map(|(s, g)| rho * s + (1.0 - rho) * g)
            .collect(),
    };
    let bm25 = Scores {
        contributions: bm25.1,
        examples: bm25.0,
    };
    AllScores {
        span,
        gradient: gradient_scores,
        unit_length,
        plain,
        plain_normalized,
        combined,
        bm25,
        gradient_seconds,
    }
}

impl AllScores {
    /// (name, scores) for each engine, in report order.
    pub fn engines(&self) -> [(&'static str, &Scores); ENGINES] {
        [
            ("span", &self.span),
            (
                "gradient (TracIn over checkpoints, TRAK-preconditioned)",
                &self.gradient,
            ),
            (
                "variant: gradient, unit-length training sketches",
                &self.unit_length,
            ),
            ("combined", &self.combined),
            ("baseline: plain gradient dot products", &self.plain),
            (
                "variant: plain dot products, unit-length training sketches",
                &self.plain_normalized,
            ),
            ("baseline: BM25", &self.bm25),
        ]
    }
}
