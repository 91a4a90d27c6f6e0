//! Running a job: the [`Runner`] trait (one implementation trains here on the CPU; a GPU or
//! remote worker is another), and [`LocalRunner`].
//!
//! A run reads the job's prepared data, splits off the held-out examples by the job's seed,
//! and trains one optimizer step at a time, so that a cancel stops at the next step boundary.
//! It evaluates and checkpoints every `eval_interval` steps and at every epoch's end; the
//! latest checkpoint is replaced atomically (written beside, then renamed), so a `kill -9`
//! at any moment leaves a whole one to resume from, and a resumed run draws the same batches
//! and ends with the same adapter as one that was never interrupted.

use crate::{
    data::read_samples,
    eval,
    job::{Checkpoint, Comparison, Evaluation, EventKind, Job, JobError},
    spec::Plan,
};
use openledger_model::{
    generate::Sampling,
    lora::LoraAdapter,
    train::{Example, TrainConfig, Trainer},
    Model,
};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde_json::{json, Value};
use std::{path::Path, sync::Arc, time::Instant};

/// What a run tells the factory as it goes.
pub trait Reporter {
    /// Appends an event to the job's log.
    fn event(&self, level: &str, message: String, kind: EventKind, data: Value);
    /// The run's progress: steps done, tokens trained, and the expected end (unix seconds).
    fn progress(&self, step: usize, trained_tokens: u64, estimated_finish: Option<u64>);
    /// A checkpoint is on disk.
    fn checkpoint(&self, checkpoint: Checkpoint);
    /// Whether the job has been cancelled.
    fn cancelled(&self) -> bool;
}

/// How a run ended.
pub enum Outcome {
    Finished {
        evaluation: Evaluation,
        trained_tokens: u64,
    },
    Cancelled,
}

/// Trains a validated job. `dir` holds its prepared data (`data.bin`), its latest checkpoint
/// (`checkpoint/`), the adapters at each epoch's end (`epochs/<step>/`) and, at the end, the
/// adapter (`adapter/`).
pub trait Runner: Send + Sync {
    fn run(
        &self,
        job: &Job,
        model: &Model,
        dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Outcome, JobError>;
}

/// Trains on this machine's CPU with the model engine.
pub struct LocalRunner;

/// The most held-out examples evaluated at each interval (the final evaluation reads them
/// all).
const INTERVAL_EVAL_EXAMPLES: usize = 64;

/// How many held-out examples each interval's evaluation reads: a fixed subset (so that the
/// curve compares like with like), at least one, and at most a thirty-second of what the
/// interval trains on, so that evaluation (a forward pass, measured at about half of a
/// training example's work) costs under 2% of the run. The evaluations before and after
/// training read the whole held-out split (up to [`FULL_EVAL_EXAMPLES`]).
pub fn interval_eval_size(held: usize, plan: &Plan, per_step: usize) -> usize {
    let per_interval = plan.eval_interval * per_step;
    (per_interval / 32)
        .clamp(1, INTERVAL_EVAL_EXAMPLES)
        .min(held)
}

fn server(message: impl Into<String>) -> JobError {
    JobError::new("server_error", message, None)
}

/// The indices of the held-out and the training examples among `n`: a seeded shuffle, the
/// first `plan.eval_examples` held out; each list ascending.
pub fn split(n: usize, plan: &Plan, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5eed_e7a1));
    let (held, train) = order.split_at(plan.eval_examples.min(n));
    let (mut held, mut train) = (held.to_vec(), train.to_vec());
    held.sort_unstable();
    train.sort_unstable();
    (held, train)
}

/// The trainer's settings for a job.
pub fn train_config(job: &Job, plan: &Plan) -> TrainConfig {
    let h = &job.spec.hyperparameters;
    TrainConfig {
        rank: h.lora_rank,
        alpha: h.lora_alpha,
        targets: h.lora_target_modules.clone(),
        learning_rate: h.effective_learning_rate(),
        warmup_steps: plan.warmup_steps,
        total_steps: plan.total_steps,
        weight_decay: h.weight_decay,
        max_grad_norm: h.max_grad_norm,
        batch_size: h.batch_size,
        grad_accum: h.gradient_accumulation_steps,
        seed: h.seed,
        dropout: h.lora_dropout,
    }
}

/// Whether optimizer step `step` (1-based) reaches the end of an epoch of `n` examples.
pub fn ends_epoch(step: usize, per_step: usize, n: usize) -> bool {
    n > 0 && (step * per_step) / n > ((step - 1) * per_step) / n
}

/// Replaces `dir/checkpoint` with the trainer's state, atomically.
fn save_checkpoint(trainer: &Trainer, dir: &Path, trained_tokens: u64) -> Result<(), JobError> {
    let tmp = dir.join("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    trainer
        .save_checkpoint(&tmp)
        .map_err(|e| server(format!("writing a checkpoint: {e}")))?;
    let progress = json!({"trained_tokens": trained_tokens}).to_string();
    std::fs::write(tmp.join("factory.json"), progress)
        .map_err(|e| server(format!("writing a checkpoint: {e}")))?;
    let old = dir.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    let current = dir.join("checkpoint");
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| server(format!("checkpoint: {e}")))?;
    }
    std::fs::rename(&tmp, &current).map_err(|e| server(format!("checkpoint: {e}")))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The checkpoint to resume from: `checkpoint/`, or `checkpoint.old/` when a crash fell
/// between the two renames.
fn resumable(dir: &Path) -> Option<std::path::PathBuf> {
    ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.join("trainer_state.json").exists())
}

impl Runner for LocalRunner {
    fn run(
        &self,
        job: &Job,
        model: &Model,
        dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Outcome, JobError> {
        let plan = job.plan.ok_or_else(|| server("the job has no plan"))?;
        let samples = read_samples(&dir.join("data.bin"))
            .map_err(|e| server(format!("reading the prepared data: {e}")))?;
        let seed = job.spec.hyperparameters.seed;
        let (held, train) = split(samples.len(), &plan, seed);
        let pick = |ids: Vec<usize>| -> Vec<Example> {
            ids.into_iter()
                .map(|i| samples[i].example.clone())
                .collect()
        };
        let (held, train) = (pick(held), pick(train));
        let config = train_config(job, &plan);
        let per_step = config.batch_size * config.grad_accum;
        let batch = config.batch_size;
        let interval_eval = &held[..interval_eval_size(held.len(), &plan, per_step)];
        let full_eval = &held[..held.len().min(FULL_EVAL_EXAMPLES)];
        let run_file = dir.join("run.json");
        let mut trained_tokens = 0;
        let mut trainer = match resumable(dir) {
            Some(checkpoint) => {
                trained_tokens = std::fs::read_to_string(checkpoint.join("factory.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v["trained_tokens"].as_u64())
                    .unwrap_or(0);
                let trainer = Trainer::resume(&model.llama, &checkpoint)
                    .map_err(|e| server(format!("resuming from {}: {e}", checkpoint.display())))?;
                reporter.event(
                    "info",
                    format!("Resumed from the checkpoint at step {}", trainer.step()),
                    EventKind::Message,
                    json!({"step": trainer.step()}),
                );
                trainer
            }
            None => {
                let mut trainer = Trainer::new(&model.llama, config)
                    .map_err(|e| JobError::new("invalid_hyperparameters", e.to_string(), None))?;
                let before = if full_eval.is_empty() {
                    None
                } else {
                    match eval_loss(&mut trainer, full_eval, batch, reporter)? {
                        Some(loss) => Some(loss),
                        None => return Ok(Outcome::Cancelled),
                    }
                };
                std::fs::write(&run_file, json!({"eval_loss_before": before}).to_string())
                    .map_err(|e| server(format!("{}: {e}", run_file.display())))?;
                if let Some(loss) = before {
                    reporter.event(
                        "info",
                        format!("Held-out loss before training: {loss:.4}"),
                        EventKind::Metrics,
                        json!({"step": 0, "valid_loss": loss}),
                    );
                }
                trainer
            }
        };
        let before: Option<f64> = std::fs::read_to_string(&run_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["eval_loss_before"].as_f64());
        let started = Instant::now();
        let first_step = trainer.step();
        while trainer.step() < plan.total_steps {
            if reporter.cancelled() {
                return Ok(Outcome::Cancelled);
            }
            let mut progress = None;
            trainer
                .train_steps(&train, 1, |p| progress = Some(p.clone()))
                .map_err(|e| server(format!("training step {}: {e}", trainer.step() + 1)))?;
            let p = progress.ok_or_else(|| server("a training step reported nothing"))?;
            trained_tokens += p.tokens as u64;
            let done = p.step - first_step;
            let per_step_secs = started.elapsed().as_secs_f64() / done as f64;
            let eta = per_step_secs * (plan.total_steps - p.step) as f64;
            let last = p.step == plan.total_steps;
            let eval_now = p.step % plan.eval_interval == 0 || last;
            let epoch_end = ends_epoch(p.step, per_step, train.len());
            // The last step's held-out loss comes from the final evaluation, on the whole split.
            let valid_loss = if eval_now && !last && !interval_eval.is_empty() {
                match eval_loss(&mut trainer, interval_eval, batch, reporter)? {
                    Some(loss) => Some(loss),
                    None => return Ok(Outcome::Cancelled),
                }
            } else {
                None
            };
            reporter.event(
                "info",
                format!(
                    "Step {}/{}: training loss={:.4}{}",
                    p.step,
                    p.total_steps,
                    p.loss,
                    valid_loss.map_or(String::new(), |l| format!(", validation loss={l:.4}"))
                ),
                EventKind::Metrics,
                json!({
                    "step": p.step,
                    "total_steps": p.total_steps,
                    "train_loss": p.loss,
                    "valid_loss": valid_loss,
                    "learning_rate": p.learning_rate,
                    "tokens_per_second": p.tokens_per_second,
                    "eta_seconds": eta,
                }),
            );
            let finish = crate::job::now() + eta.round() as u64;
            reporter.progress(p.step, trained_tokens, Some(finish));
            if eval_now || epoch_end {
                save_checkpoint(&trainer, dir, trained_tokens)?;
                if epoch_end {
                    let keep = dir.join("epochs").join(p.step.to_string());
                    trainer
                        .adapter()
                        .save(&keep)
                        .map_err(|e| server(format!("writing {}: {e}", keep.display())))?;
                }
                reporter.checkpoint(Checkpoint {
                    step: p.step,
                    created_at: crate::job::now(),
                    train_loss: f64::from(p.loss),
                    eval_loss: valid_loss,
                    epoch_end,
                    learning_rate: p.learning_rate,
                });
            }
        }
        let adapter = trainer.adapter();
        let out = dir.join("adapter");
        adapter
            .save(&out)
            .map_err(|e| server(format!("writing {}: {e}", out.display())))?;
        match evaluate(
            job,
            model,
            &mut trainer,
            &adapter,
            full_eval,
            before,
            reporter,
        )? {
            Some(evaluation) => Ok(Outcome::Finished {
                evaluation,
                trained_tokens,
            }),
            None => Ok(Outcome::Cancelled),
        }
    }
}

/// The most held-out examples the evaluations before and after training read (the first of
/// the held-out split): enough for a steady figure, few enough that a large split does not
/// hold a run up.
pub const FULL_EVAL_EXAMPLES: usize = 512;

/// The mean loss over `examples`' learned positions, a batch at a time so that a cancel is
/// heard within one batch; `None` if it was.
fn eval_loss(
    trainer: &mut Trainer,
    examples: &[Example],
    batch: usize,
    reporter: &dyn Reporter,
) -> Result<Option<f64>, JobError> {
    let (mut total, mut weight) = (0.0, 0.0);
    for chunk in examples.chunks(batch.max(1)) {
        if reporter.cancelled() {
            return Ok(None);
        }
        // Position i predicts token i + 1, learned from the prompt's end on.
        let learned: f64 = chunk
            .iter()
            .map(|e| e.tokens.len().saturating_sub(e.prompt_len.max(1)) as f64)
            .sum();
        let loss = trainer
            .eval_loss(chunk)
            .map_err(|e| server(format!("evaluating: {e}")))?;
        total += f64::from(loss) * learned;
        weight += learned;
    }
    Ok(Some(total / weight.max(1.0)))
}

/// The prompt and reference answer of a held-out example, as text.
fn prompt_and_reference(model: &Model, example: &Example) -> (String, String) {
    let answer: Vec<u32> = example.tokens[example.prompt_len..]
        .iter()
        .copied()
        .filter(|&t| t != model.tokenizer.eos_id())
        .collect();
    (
        model
            .tokenizer
            .decode(&example.tokens[..example.prompt_len]),
        model.tokenizer.decode(&answer),
    )
}

/// The final evaluation: held-out loss and perplexity, ROUGE-L of greedy answers, and base
/// and tuned answers side by side; `None` if the job was cancelled meanwhile.
fn evaluate(
    job: &Job,
    model: &Model,
    trainer: &mut Trainer,
    adapter: &LoraAdapter,
    held: &[Example],
    before: Option<f64>,
    reporter: &dyn Reporter,
) -> Result<Option<Evaluation>, JobError> {
    let h = &job.spec.hyperparameters;
    let eval_loss = if held.is_empty() {
        None
    } else {
        match eval_loss(trainer, held, h.batch_size, reporter)? {
            Some(loss) => Some(loss),
            None => return Ok(None),
        }
    };
    // Only examples with a prompt can be asked; plain text has nothing to answer.
    let askable: Vec<&Example> = held.iter().filter(|e| e.prompt_len > 0).collect();
    let answer = |adapter: Option<&LoraAdapter>, prompt: &str| -> Result<String, JobError> {
        model
            .complete_with(
                adapter,
                prompt,
                h.eval_max_tokens,
                Sampling::default(),
                &[],
                |_| {},
            )
            .map(|c| c.text)
            .map_err(|e| server(format!("answering a held-out prompt: {e}")))
    };
    let mut scored = Vec::new();
    for example in askable.iter().take(h.eval_samples) {
        if reporter.cancelled() {
            return Ok(None);
        }
        let (prompt, reference) = prompt_and_reference(model, example);
        scored.push((answer(Some(adapter), &prompt)?, reference, prompt));
    }
    let rouge_l = eval::mean_rouge_l(scored.iter().map(|(c, r, _)| (c.as_str(), r.as_str())));
    let mut comparisons = Vec::new();
    for (i, example) in askable.iter().take(h.compare_samples).enumerate() {
        let (prompt, reference) = prompt_and_reference(model, example);
        let tuned = match scored.get(i) {
            Some((answer, _, _)) => answer.clone(),
            None => answer(Some(adapter), &prompt)?,
        };
        comparisons.push(Comparison {
            base: answer(None, &prompt)?,
            tuned,
            prompt,
            reference,
        });
    }
    let evaluation = Evaluation {
        eval_loss_before: before,
        eval_loss,
        perplexity: eval_loss.map(eval::perplexity),
        rouge_l,
        rouge_l_samples: scored.len(),
        comparisons,
    };
    reporter.event(
        "info",
        format!(
            "Evaluation: held-out loss {}, perplexity {}, ROUGE-L {} over {} answers",
            fmt(evaluation.eval_loss),
            fmt(evaluation.perplexity),
            fmt(evaluation.rouge_l),
            evaluation.rouge_l_samples
        ),
        EventKind::Metrics,
        json!({
            // The last point of the held-out curve: the whole split at the last step.
            "step": job.plan.map(|p| p.total_steps),
            "valid_loss": evaluation.eval_loss,
            "eval_loss": evaluation.eval_loss,
            "perplexity": evaluation.perplexity,
            "rouge_l": evaluation.rouge_l,
        }),
    );
    Ok(Some(evaluation))
}

fn fmt(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// A loaded model shared by validation (its tokenizer and template) and the runner.
pub type SharedModel = Arc<Model>;

#[cfg(test)]
mod tests {
    use super::ends_epoch;

    #[test]
    fn epoch_ends_fall_on_the_step_that_crosses_them() {
        // 10 examples, 4 per step: positions 0-3, 4-7, 8-11 (crosses 10), 12-15, 16-19 (ends
        // at 20: the second epoch's end), 20-23 …
        let ends: Vec<usize> = (1..=8).filter(|&s| ends_epoch(s, 4, 10)).collect();
        assert_eq!(ends, vec![3, 5, 8]);
        assert!((1..=5).all(|s| ends_epoch(s, 2, 2)));
    }
}
