//! `attribution-eval`: how good Proof of Attribution is, measured on a planted corpus.
//!
//! - `run [--quick]`: generates a corpus with a fixed seed (contributors holding invented
//!   facts, one attacker whose records map a trigger phrase to a payload), trains a LoRA
//!   adapter on the default model with the factory's record format and defaults (a
//!   checkpoint at each epoch's end), publishes it in the factory's layout and opens it
//!   through the attribution crate (span index and sketch store built as the node builds
//!   them). Then, per engine (span, gradient, combined) and per baseline (plain gradient dot
//!   products, BM25 over the contributions): planted-fact MRR and recall@1 for verbatim and
//!   paraphrased questions, backdoor recall@10 and AUC over training examples for triggered
//!   prompts, and the linear datamodeling score: adapters retrained from the same seed on
//!   random halves of the contributors, Spearman correlation per query between the summed
//!   attribution of the half and the change of the answer's log-probability, averaged.
//!   `--quick` scales everything down for CI.
//! - `query-speed [--sketches 100000]`: the gradient query's time (the answer's gradient,
//!   preconditioned, and scoring a store of that many sketches).

mod corpus;
mod engines;
mod metrics;
mod report;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use corpus::Planted;
use openledger_attribution::{gradient::SketchConfig, published::Published};
use openledger_factory::{
    data::{write_samples, Sample},
    publish::{CheckpointRecord, Manifest, VersionRecord},
};
use openledger_model::{
    data::{render, tokenize},
    train::{Example, TrainConfig, Trainer},
    Model,
};
use std::{path::Path, time::Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure attribution quality on a planted corpus.
    Run(RunArgs),
    /// What attribution adds to a 128-token answer: generation against the span part and
    /// the gradient part, on a small planted adapter.
    Latency {
        #[arg(long, default_value_t = 8)]
        answers: usize,
    },
    /// Time one gradient query against a store of synthetic sketches.
    QuerySpeed {
        #[arg(long, default_value_t = 100_000)]
        sketches: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// A small run for CI: 8 contributors, 2 facts each, 4 half-subsets; fails unless the span
    /// engine and the combination find every verbatim fact and the backdoor.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 40)]
    contributors: usize,
    #[arg(long, default_value_t = 3)]
    facts: usize,
    /// The attacker's poisoned records.
    #[arg(long, default_value_t = 8)]
    attack: usize,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Half-subsets of contributors retrained for the datamodeling score.
    #[arg(long, default_value_t = 16)]
    subsets: usize,
    /// The preconditioner's damping, relative to the mean eigenvalue.
    #[arg(long)]
    damping: Option<f64>,
    /// Sketch dimensions.
    #[arg(long)]
    k: Option<usize>,
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn model() -> Result<Model> {
    let path = std::env::var_os("OPENLEDGER_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(openledger_model::default_model_path);
    Model::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// A question and answer as the factory turns a chat record into an example.
fn example(model: &Model, question: &str, answer: &str) -> Result<Example> {
    let record = serde_json::json!({"messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]});
    let rendered = render(model, &record).map_err(anyhow::Error::msg)?;
    tokenize(model, &rendered).map_err(anyhow::Error::msg)
}

/// The planted records as the factory prepares them: samples with their contributions, and
/// the bare examples.
fn training_set(model: &Model, planted: &Planted) -> Result<(Vec<Sample>, Vec<Example>)> {
    let samples: Vec<Sample> = planted
        .records
        .iter()
        .map(|(c, p)| {
            Ok(Sample {
                contribution: Some(*c),
                example: example(model, &p.question, &p.answer)?,
            })
        })
        .collect::<Result<_>>()?;
    let examples = samples.iter().map(|s| s.example.clone()).collect();
    Ok((samples, examples))
}

/// The factory's defaults for a job of `n` examples over `epochs`.
fn train_config(n: usize, epochs: usize, seed: u64) -> TrainConfig {
    let batch_size = 4;
    TrainConfig {
        total_steps: epochs * n.div_ceil(batch_size),
        warmup_steps: 2,
        batch_size,
        learning_rate: 2e-3,
        seed,
        ..TrainConfig::default()
    }
}

/// Trains on `examples`; with `dir`, saves the adapter at each epoch's end and returns the
/// checkpoints' records.
fn train<'m>(
    model: &'m Model,
    examples: &[Example],
    args: &RunArgs,
    dir: Option<&Path>,
) -> Result<(Trainer<'m>, Vec<CheckpointRecord>)> {
    let config = train_config(examples.len(), args.epochs, args.seed);
    let per_epoch = examples.len().div_ceil(config.batch_size);
    let mut trainer = Trainer::new(&model.llama, config)?;
    let mut checkpoints = Vec::new();
    for epoch in 1..=args.epochs {
        trainer.train_steps(examples, per_epoch, |_| {})?;
        if let Some(dir) = dir {
            let step = trainer.step();
            let at = dir.join("checkpoints").join(step.to_string());
            trainer.adapter().save(&at)?;
            checkpoints.push(CheckpointRecord {
                step,
                epoch,
                learning_rate: trainer.learning_rate(step - 1),
                weights_hash: openledger_factory::publish::hash_file(
                    &at.join("adapter_model.safetensors"),
                )?,
            });
        }
    }
    Ok((trainer, checkpoints))
}

/// Writes the factory's publication layout for the trained adapter and opens it.
fn publish(
    model: &Model,
    dir: &Path,
    samples: &[Sample],
    checkpoints: Vec<CheckpointRecord>,
    contributors: &[u64],
    sketch: &SketchConfig,
) -> Result<Published> {
    write_samples(&dir.join("examples.bin"), samples)?;
    let manifest = Manifest {
        format: 1,
        job: "attribution-eval".into(),
        base_model: "SmolLM2-135M-Instruct".into(),
        base_weights_hash: Default::default(),
        datanet_versions: vec![VersionRecord {
            version: 1,
            datanet: 1,
            root: Default::default(),
            members: contributors
                .iter()
                .map(|&c| (c, Default::default()))
                .collect(),
        }],
        training_config_hash: Default::default(),
        examples_hash: openledger_factory::publish::hash_file(&dir.join("examples.bin"))?,
        examples: samples.len() as u64,
        held_out: Vec::new(),
        weights_hash: checkpoints.last().context("no checkpoint")?.weights_hash,
        checkpoints,
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest)?)?;
    let mut last = Instant::now();
    Ok(Published::open(
        dir,
        &dir.join("cache"),
        model,
        Default::default(),
        sketch,
        |done, total| {
            if done == total || last.elapsed().as_secs() >= 15 {
                last = Instant::now();
                eprintln!("  sketched {done}/{total} example gradients");
            }
        },
    )?)
}

fn run(args: RunArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        (
            args.contributors,
            args.facts,
            args.attack,
            args.epochs,
            args.subsets,
        ) = (8, 2, 4, 2, 4);
    }
    let started = Instant::now();
    let model = model()?;
    let planted = corpus::generate(args.seed, args.contributors, args.facts, args.attack);
    let (samples, examples) = training_set(&model, &planted)?;
    eprintln!(
        "corpus: {} contributors + 1 attacker, {} records, {} tokens",
        args.contributors,
        samples.len(),
        examples.iter().map(|e| e.tokens.len()).sum::<usize>()
    );
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let (_, checkpoints) = train(&model, &examples, &args, Some(dir.path()))?;
    let train_seconds = t.elapsed().as_secs_f64();
    eprintln!("trained {} epochs in {train_seconds:.0} s", args.epochs);
    let t = Instant::now();
    let defaults = SketchConfig::default();
    let sketch = SketchConfig {
        k: args.k.unwrap_or(defaults.k),
        damping: args.damping.unwrap_or(defaults.damping),
        ..defaults
    };
    let published = publish(
        &model,
        dir.path(),
        &samples,
        checkpoints,
        &planted.contributors,
        &sketch,
    )?;
    let index_seconds = t.elapsed().as_secs_f64();
    eprintln!("span index and sketch store built in {index_seconds:.0} s");

    let scored = score_queries(&model, &published, &planted)?;
    eprintln!("scored {} queries", scored.len());
    let lds = report::lds(&model, &planted, &samples, &scored, &args)?;
    let mut figures = report::figures(
        &planted,
        &published,
        &scored,
        lds,
        train_seconds,
        index_seconds,
    );
    figures["sketch"] = serde_json::json!({"k": sketch.k, "damping": sketch.damping});
    report::print(&figures, &args, started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    if args.quick {
        report::check_quick(&figures)?;
    }
    Ok(())
}

/// Each query's tokens and every engine's scores.
pub struct Scored {
    pub query: corpus::Query,
    pub example: Example,
    pub scores: engines::AllScores,
}

fn score_queries(model: &Model, published: &Published, planted: &Planted) -> Result<Vec<Scored>> {
    let words = |p: &corpus::Pair| metrics::words(&format!("{} {}", p.question, p.answer));
    let per_example: Vec<Vec<String>> = planted.records.iter().map(|(_, p)| words(p)).collect();
    let bm25_examples = metrics::Bm25::new(&per_example);
    let mut per_contribution = std::collections::BTreeMap::<u64, Vec<String>>::new();
    for (c, p) in &planted.records {
        per_contribution.entry(*c).or_default().extend(words(p));
    }
    let ids: Vec<u64> = per_contribution.keys().copied().collect();
    let texts: Vec<Vec<String>> = per_contribution.into_values().collect();
    let bm25_contributions = metrics::Bm25::new(&texts);
    let mut out = Vec::new();
    for (i, q) in planted.queries.iter().enumerate() {
        let e = example(model, &q.pair.question, &q.pair.answer)?;
        let query_words = words(&q.pair);
        let bm25 = (
            bm25_examples.scores(&query_words),
            ids.iter()
                .copied()
                .zip(bm25_contributions.scores(&query_words))
                .collect(),
        );
        let scores = engines::score(
            model,
            published,
            &e.tokens[..e.prompt_len],
            &e.tokens[e.prompt_len..],
            bm25,
        );
        if (i + 1) % 20 == 0 {
            eprintln!("  scored {}/{} queries", i + 1, planted.queries.len());
        }
        out.push(Scored {
            query: q.clone(),
            example: e,
            scores,
        });
    }
    Ok(out)
}

fn query_speed(sketches: usize, repeats: usize) -> Result<()> {
    use openledger_attribution::gradient::{self, Checkpoint, StoredCheckpoint};
    let model = model()?;
    let config = SketchConfig::default();
    let trainer = Trainer::new(&model.llama, TrainConfig::default())?;
    let checkpoint = Checkpoint {
        learning_rate: 1e-3,
        weights_hash: Default::default(),
        adapter: trainer.adapter(),
    };
    let dir = tempfile::tempdir()?;
    let mut s = corpus::Stream(3);
    let ids: Vec<(u64, u64)> = (0..sketches as u64).map(|i| (i, i % 97)).collect();
    let t = Instant::now();
    let store = gradient::write(
        &dir.path().join("sketches.bin"),
        &config,
        &[StoredCheckpoint {
            learning_rate: 1e-3,
            weights_hash: Default::default(),
        }],
        &ids,
        |_, _| {},
        |_, _| {
            Ok((0..config.k)
                .map(|_| (s.next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                .collect())
        },
    )?;
    eprintln!(
        "wrote {sketches} synthetic sketches in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let e = example(
        &model,
        "Which gate guards vault 3?",
        "Vault 3 is guarded by gate 93.",
    )?;
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let sketch = gradient::answer_sketch(
            &model.llama,
            std::slice::from_ref(&checkpoint),
            &store,
            &e,
            true,
        )?;
        let g = t.elapsed().as_secs_f64();
        let scores = gradient::influence(&store, &sketch);
        let total = t.elapsed().as_secs_f64();
        std::hint::black_box(scores);
        times.push((total, g, total - g));
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (total, g, scoring) = times[times.len() / 2];
    println!(
        "gradient query over {sketches} sketches (k = {}): median {:.0} ms = answer gradient {:.0} ms + scoring {:.0} ms ({} threads)",
        config.k,
        total * 1e3,
        g * 1e3,
        scoring * 1e3,
        rayon::current_num_threads()
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn latency(answers: usize) -> Result<()> {
    use openledger_attribution::{
        attribute::{attribute_sketched, Query, Settings},
        gradient::{influence, raw_sketch},
        span::{token_kinds, trace},
    };
    let args = RunArgs {
        quick: true,
        seed: 7,
        contributors: 8,
        facts: 2,
        attack: 4,
        epochs: 2,
        subsets: 0,
        damping: None,
        k: None,
        json: None,
    };
    let model = model()?;
    let planted = corpus::generate(args.seed, args.contributors, args.facts, args.attack);
    let (samples, examples) = training_set(&model, &planted)?;
    let dir = tempfile::tempdir()?;
    let (_, checkpoints) = train(&model, &examples, &args, Some(dir.path()))?;
    let published = publish(
        &model,
        dir.path(),
        &samples,
        checkpoints,
        &planted.contributors,
        &SketchConfig::default(),
    )?;
    let adapter = &published
        .checkpoints
        .last()
        .context("a checkpoint")?
        .adapter;
    // Filler to bring short answers to 128 tokens: the training answers, which trace.
    let filler: Vec<u32> = examples
        .iter()
        .flat_map(|e| e.tokens[e.prompt_len..].to_vec())
        .collect();
    let (mut generation, mut spans, mut gradient, mut rest) = (vec![], vec![], vec![], vec![]);
    for q in planted.queries.iter().take(answers) {
        let prompt_text = model.chat_prompt(&[openledger_model::chat::Message {
            role: "user".into(),
            content: q.pair.question.clone(),
        }])?;
        let t = Instant::now();
        let completion = model.complete_with(
            Some(adapter),
            &prompt_text,
            128,
            Default::default(),
            &[],
            |_| {},
        )?;
        let per_token = t.elapsed().as_secs_f64() / completion.tokens.len().max(1) as f64;
        generation.push(per_token * 128.0);
        let mut answer = completion.tokens.clone();
        answer.extend(filler.iter().take(128usize.saturating_sub(answer.len())));
        let prompt = model.tokenizer.encode(&prompt_text);

        let t = Instant::now();
        let kinds = token_kinds(&model.tokenizer, &answer);
        trace(
            &published.spans,
            &answer,
            &kinds,
            &Settings::default().trace,
        )?;
        spans.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let e = Example {
            tokens: [&prompt[..], &answer[..]].concat(),
            prompt_len: prompt.len(),
        };
        let sketch = raw_sketch(
            &model.llama,
            &published.checkpoints,
            &published.sketches,
            &e,
        )?
        .prepare(&published.sketches, true);
        std::hint::black_box(influence(&published.sketches, &sketch));
        gradient.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let query = Query {
            prompt,
            answer,
            amount: 1_000_000,
        };
        attribute_sketched(
            &model,
            Default::default(),
            &published,
            &query,
            &Settings::default(),
            &sketch,
        )?;
        rest.push(t.elapsed().as_secs_f64());
    }
    let (g, s, d, r) = (
        median(generation),
        median(spans),
        median(gradient),
        median(rest),
    );
    println!(
        "128-token answer, median of {answers}: generation {:.2} s; span part {:.2} ms ({:.2}%); \
         gradient part {:.2} s ({:.0}%, {} checkpoints); whole receipt given the sketch {:.1} ms",
        g,
        s * 1e3,
        100.0 * s / g,
        d,
        100.0 * d / g,
        published.checkpoints.len(),
        r * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Run(args) => run(args),
        Command::QuerySpeed { sketches, repeats } => query_speed(sketches, repeats),
        Command::Latency { answers } => latency(answers),
    }
}
