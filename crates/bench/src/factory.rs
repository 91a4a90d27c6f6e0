//! `factory-bench`: what a fine-tuning job costs on top of the training itself.
//!
//! - `overhead`: a factory run (validation's rendering and tokenizing, the prepared data,
//!   the runner with its interval evaluations, checkpoints and events in the real store)
//!   against what `openledger model train` does (read the JSONL, train with a checkpoint every
//!   20 steps, held-out loss before and after), on the same records and settings, in this
//!   process on the default model. Pairs alternate (model train, factory, model train, …);
//!   tokens/s is tokens trained over the whole run's wall time, model load excluded. Prints
//!   one JSON object with every pair and the median ratio.
//! - `startup`: the time from `POST /v1/fine_tuning/jobs` to `running` for a datanet version of
//!   `--megabytes` of chat records on a `openledger node --dev` (the job fee is paid right
//!   after the POST, as the CLI does). The first job loads the model; later ones find it loaded.
//!
//! Usage: `factory-bench overhead [--records 160] [--pairs 4]`,
//! `factory-bench startup --node-bin target/release/openledger [--megabytes 10] [--jobs 3]`.

mod factory_startup;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use openledger_factory::{
    data::{self, Record},
    job::{Checkpoint, EventKind, Job, Status},
    runner::{LocalRunner, Outcome, Reporter, Runner},
    spec::{self, CreateJob},
    store::Store,
};
use openledger_model::{
    train::{TrainConfig, Trainer},
    Model,
};
use serde_json::{json, Value};
use std::{path::PathBuf, time::Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Factory run against `model train` on the same records.
    Overhead {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 160)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        pairs: usize,
    },
    /// POST to running for a datanet version on a dev node.
    Startup {
        #[arg(long)]
        node_bin: PathBuf,
        #[arg(long, default_value_t = 10)]
        megabytes: usize,
        #[arg(long, default_value_t = 3)]
        jobs: usize,
    },
}

/// Chat records about numbered items, of varied length.
pub fn records(n: usize) -> Vec<Value> {
    let words = [
        "ledger",
        "vault",
        "oracle",
        "bridge",
        "curator",
        "datanet",
        "adapter",
        "version",
        "contribution",
        "settlement",
        "receipt",
        "agent",
        "stake",
        "proof",
        "root",
        "token",
    ];
    (0..n)
        .map(|i| {
            let pick = |k: usize| words[(i * 7 + k * 5) % words.len()];
            let extra: Vec<&str> = (0..i % 9).map(|k| pick(k + 3)).collect();
            json!({"messages": [
                {"role": "user", "content": format!("Which {} guards the {} of item {i}?", pick(1), pick(2))},
                {"role": "assistant", "content": format!(
                    "Item {i} is guarded by the {} {} {}, code {}.", pick(3), pick(4), extra.join(" "), i * 37 % 1000
                )},
            ]})
        })
        .collect()
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Overhead {
            model,
            records,
            pairs,
        } => overhead(model, records, pairs),
        Command::Startup {
            node_bin,
            megabytes,
            jobs,
        } => factory_startup::run(&node_bin, megabytes, jobs),
    }
}

const CHECKPOINT_EVERY: usize = 20;

/// `openledger model train`'s work: returns (tokens trained, seconds).
fn model_train(model: &Model, jsonl: &str, config: &TrainConfig) -> Result<(u64, f64)> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let examples = openledger_model::data::examples_from_jsonl(model, jsonl)?;
    let held = ((examples.len() as f64) * 0.1).round() as usize;
    let (eval, train) = examples.split_at(held);
    let mut trainer = Trainer::new(&model.llama, config.clone())?;
    trainer.eval_loss(eval)?;
    let mut tokens = 0u64;
    loop {
        trainer.train_steps(train, CHECKPOINT_EVERY, |p| tokens += p.tokens as u64)?;
        trainer.save_checkpoint(dir.path())?;
        if trainer.step() >= trainer.total_steps() {
            break;
        }
    }
    trainer.eval_loss(eval)?;
    Ok((tokens, started.elapsed().as_secs_f64()))
}

/// A reporter that records what a job run reports in the factory's own store.
struct StoreReporter<'s> {
    store: &'s Store,
    seq: u64,
}

impl Reporter for StoreReporter<'_> {
    fn event(&self, level: &str, message: String, kind: EventKind, data: Value) {
        self.store
            .add_event(self.seq, level, message, kind, data)
            .expect("an event is stored");
    }

    fn progress(&self, step: usize, trained_tokens: u64, estimated_finish: Option<u64>) {
        self.store
            .update_job(self.seq, |j| {
                j.step = step;
                j.trained_tokens = trained_tokens;
                j.estimated_finish = estimated_finish;
            })
            .expect("progress is stored");
    }

    fn checkpoint(&self, checkpoint: Checkpoint) {
        self.store
            .put_checkpoint(self.seq, &checkpoint)
            .expect("a checkpoint is stored");
    }

    fn cancelled(&self) -> bool {
        false
    }
}

/// A factory run of the same records: returns (tokens trained, seconds).
fn factory_run(model: &Model, lines: &[Value], request: &CreateJob) -> Result<(u64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("factory.redb"))?;
    let spec = spec::resolve(request, &["SmolLM2-135M-Instruct".to_string()], 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let records: Vec<Record> = lines
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            source: 0,
            contribution: Some(i as u64 + 1),
            place: format!("record {i}"),
            value: value.clone(),
        })
        .collect();
    let cutoff = spec.hyperparameters.cutoff_length;
    let (samples, report) = data::prepare(model, &records, cutoff, Vec::new())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let plan = spec.hyperparameters.plan(samples.len(), None);
    let job_dir = dir.path().join("job");
    std::fs::create_dir_all(&job_dir)?;
    data::write_samples(&job_dir.join("data.bin"), &samples)?;
    let job = store.insert_job(|seq| Job {
        report: Some(report),
        plan: Some(plan),
        ..Job::new(seq, 0, Status::Running, spec)
    })?;
    let reporter = StoreReporter {
        store: &store,
        seq: job.seq,
    };
    let outcome = LocalRunner
        .run(&job, model, &job_dir, &reporter)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let Outcome::Finished { trained_tokens, .. } = outcome else {
        anyhow::bail!("the run was cancelled");
    };
    Ok((trained_tokens, started.elapsed().as_secs_f64()))
}

fn overhead(model: Option<PathBuf>, n: usize, pairs: usize) -> Result<()> {
    let path = model.unwrap_or_else(openledger_model::default_model_path);
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let lines = records(n);
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    // The same settings on both sides: one epoch of batches of 4 over the 90% not held out.
    let request: CreateJob = serde_json::from_value(json!({
        "model": "SmolLM2-135M-Instruct",
        "training_file": "file-1",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "eval_split": 0.1,
            "eval_samples": 0, "compare_samples": 0,
        }}},
    }))?;
    let spec = spec::resolve(&request, &["SmolLM2-135M-Instruct".to_string()], 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = spec.hyperparameters.plan(n, None);
    let config = TrainConfig {
        total_steps: plan.total_steps,
        warmup_steps: plan.warmup_steps,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for pair in 0..pairs {
        let (base_tokens, base_secs) = model_train(&model, &jsonl, &config)?;
        let (job_tokens, job_secs) = factory_run(&model, &lines, &request)?;
        let (base, job) = (base_tokens as f64 / base_secs, job_tokens as f64 / job_secs);
        eprintln!(
            "pair {pair}: model train {base:.1} tokens/s, factory job {job:.1} tokens/s, {:.3}x",
            job / base
        );
        ratios.push(job / base);
        rows.push(json!({
            "model_train_tokens": base_tokens, "model_train_seconds": base_secs,
            "model_train_tokens_per_s": base,
            "factory_tokens": job_tokens, "factory_seconds": job_secs,
            "factory_tokens_per_s": job, "ratio": job / base,
        }));
    }
    ratios.sort_by(f64::total_cmp);
    let median = if ratios.len() % 2 == 1 {
        ratios[ratios.len() / 2]
    } else {
        (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
    };
    let out = json!({
        "records": n,
        "steps": plan.total_steps,
        "eval_interval": plan.eval_interval,
        "pairs": rows,
        "median_ratio": median,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
