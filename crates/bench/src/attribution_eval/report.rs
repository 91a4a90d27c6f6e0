//! The figures: retrieval metrics per engine, the linear datamodeling score, and the table.

use crate::{
    corpus::{Kind, Planted, Stream},
    metrics, train, RunArgs, Scored,
};
use anyhow::Result;
use openledger_attribution::published::Published;
use openledger_factory::data::Sample;
use openledger_model::{train::Example, Model};
use serde_json::{json, Value};
use std::collections::BTreeSet;

use crate::engines::ENGINES;

/// The linear datamodeling score per engine (in `AllScores::engines` order): adapters
/// retrained on random halves of the contributors; per query, Spearman's correlation over
/// the halves between the engine's summed attribution to the half and the answer's
/// log-probability under the half's adapter; the mean over queries.
pub fn lds(
    model: &Model,
    planted: &Planted,
    samples: &[Sample],
    scored: &[Scored],
    args: &RunArgs,
) -> Result<Vec<f64>> {
    let probed: Vec<&Scored> = scored
        .iter()
        .filter(|s| s.query.kind != Kind::Generic)
        .collect();
    let mut stream = Stream(args.seed ^ 0x05ee_d1d5);
    let mut predicted = vec![vec![Vec::new(); probed.len()]; ENGINES];
    let mut actual = vec![Vec::new(); probed.len()];
    for j in 0..args.subsets {
        let mut pool = planted.contributors.clone();
        for i in (1..pool.len()).rev() {
            pool.swap(i, stream.below(i + 1));
        }
        let half: BTreeSet<u64> = pool[..pool.len() / 2].iter().copied().collect();
        let examples: Vec<Example> = samples
            .iter()
            .filter(|s| s.contribution.is_some_and(|c| half.contains(&c)))
            .map(|s| s.example.clone())
            .collect();
        let (mut trainer, _) = train(model, &examples, args, None)?;
        for (q, s) in probed.iter().enumerate() {
            let learned = (s.example.tokens.len() - s.example.prompt_len) as f64;
            let loss = trainer.eval_loss(std::slice::from_ref(&s.example))? as f64;
            actual[q].push(-loss * learned);
            for (e, (_, engine)) in s.scores.engines().iter().enumerate() {
                let total: f64 = engine.contributions.values().sum();
                let mine: f64 = half
                    .iter()
                    .filter_map(|c| engine.contributions.get(c))
                    .sum();
                predicted[e][q].push(if total > 0.0 { mine / total } else { 0.0 });
            }
        }
        eprintln!(
            "  datamodel {}/{} retrained on {} examples",
            j + 1,
            args.subsets,
            examples.len()
        );
    }
    Ok((0..ENGINES)
        .map(|e| {
            let per_query: Vec<f64> = (0..probed.len())
                .map(|q| metrics::spearman(&predicted[e][q], &actual[q]))
                .collect();
            per_query.iter().sum::<f64>() / per_query.len().max(1) as f64
        })
        .collect())
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Every figure, as JSON.
pub fn figures(
    planted: &Planted,
    published: &Published,
    scored: &[Scored],
    lds: Vec<f64>,
    train_seconds: f64,
    index_seconds: f64,
) -> Value {
    let attacker_examples: Vec<bool> = published
        .sketches
        .examples
        .iter()
        .map(|&(_, c)| c == planted.attacker)
        .collect();
    let of = |kind: Kind| scored.iter().filter(move |s| s.query.kind == kind);
    let mut engines = Vec::new();
    for (e, lds) in lds.iter().enumerate() {
        let name = scored[0].scores.engines()[e].0;
        let ranks = |kind: Kind| -> Vec<usize> {
            of(kind)
                .map(|s| {
                    let owner = s.query.owner.expect("a fact has an owner");
                    metrics::rank(
                        &s.scores.engines()[e].1.contributions,
                        &planted.contributors,
                        owner,
                    )
                })
                .collect()
        };
        let mrr = |r: &[usize]| mean(r.iter().map(|&r| 1.0 / r as f64));
        let r1 = |r: &[usize]| mean(r.iter().map(|&r| (r == 1) as u8 as f64));
        let (verbatim, paraphrased) = (ranks(Kind::Verbatim), ranks(Kind::Paraphrased));
        let backdoor = |f: &dyn Fn(&[f64], &[bool]) -> f64| {
            mean(
                of(Kind::Triggered)
                    .map(|s| f(&s.scores.engines()[e].1.examples, &attacker_examples)),
            )
        };
        engines.push(json!({
            "engine": name,
            "verbatim_mrr": mrr(&verbatim),
            "verbatim_recall_at_1": r1(&verbatim),
            "paraphrased_mrr": mrr(&paraphrased),
            "paraphrased_recall_at_1": r1(&paraphrased),
            "backdoor_recall_at_10": backdoor(&|s, p| metrics::recall_at(s, p, 10)),
            "backdoor_auc": backdoor(&metrics::auc),
            "lds": lds,
        }));
    }
    let attacker_share_generic = mean(of(Kind::Generic).map(|s| {
        let c = &s.scores.combined.contributions;
        let total: f64 = c.values().sum();
        c.get(&planted.attacker).copied().unwrap_or(0.0) / total.max(1e-300)
    }));
    json!({
        "contributors": planted.contributors.len() - 1,
        "records": planted.records.len(),
        "queries": scored.len(),
        "engines": engines,
        "attacker_share_on_generic_prompts": attacker_share_generic,
        "train_seconds": train_seconds,
        "index_seconds": index_seconds,
        "mean_gradient_query_seconds": mean(scored.iter().map(|s| s.scores.gradient_seconds)),
    })
}

pub fn print(figures: &Value, args: &RunArgs, seconds: f64) {
    println!(
        "attribution-eval: {} contributors + 1 attacker, {} records, {} queries, {} epochs, {} datamodels, seed {}, sketch k = {}, damping {}",
        figures["contributors"], figures["records"], figures["queries"], args.epochs, args.subsets, args.seed,
        figures["sketch"]["k"], figures["sketch"]["damping"]
    );
    println!();
    println!("| engine | verbatim MRR | verbatim R@1 | paraphrased MRR | paraphrased R@1 | backdoor R@10 | backdoor AUC | LDS |");
    println!("|---|---|---|---|---|---|---|---|");
    for e in figures["engines"].as_array().into_iter().flatten() {
        let f = |k: &str| e[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            e["engine"].as_str().unwrap_or_default(),
            f("verbatim_mrr"),
            f("verbatim_recall_at_1"),
            f("paraphrased_mrr"),
            f("paraphrased_recall_at_1"),
            f("backdoor_recall_at_10"),
            f("backdoor_auc"),
            f("lds")
        );
    }
    println!();
    println!(
        "attacker's share of the combined payout on generic prompts: {:.4}",
        figures["attacker_share_on_generic_prompts"]
            .as_f64()
            .unwrap_or(f64::NAN)
    );
    println!(
        "training {:.0} s, span index + sketch store {:.0} s, gradient per query {:.2} s, total {:.0} s",
        figures["train_seconds"].as_f64().unwrap_or(0.0),
        figures["index_seconds"].as_f64().unwrap_or(0.0),
        figures["mean_gradient_query_seconds"].as_f64().unwrap_or(0.0),
        seconds
    );
}

/// The floor a `--quick` run must clear (CI): verbatim facts found first by the span engine
/// and the combination, the backdoor's records among the combination's top 10, and the
/// combination's datamodeling score positive.
pub fn check_quick(figures: &Value) -> Result<()> {
    let engine = |name: &str| {
        figures["engines"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["engine"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let (span, combined) = (engine("span"), engine("combined"));
    let f = |e: &Value, k: &str| e[k].as_f64().unwrap_or(f64::NAN);
    let checks = [
        ("span verbatim MRR", f(&span, "verbatim_mrr"), 0.95),
        ("combined verbatim MRR", f(&combined, "verbatim_mrr"), 0.95),
        (
            "combined backdoor recall@10",
            f(&combined, "backdoor_recall_at_10"),
            0.9,
        ),
        ("combined LDS", f(&combined, "lds"), 0.0),
    ];
    for (what, value, floor) in checks {
        anyhow::ensure!(
            value > floor || (floor > 0.0 && value >= floor),
            "{what} is {value:.3}, below {floor}"
        );
    }
    Ok(())
}
