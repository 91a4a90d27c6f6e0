//! LoRA fine-tuning: the masked causal-LM loss over examples whose prompt tokens are not
//! learned, AdamW with decoupled weight decay, linear warmup then cosine decay, global gradient
//! clipping, gradient accumulation, seeded initialisation and batch order, evaluation on a
//! held-out split, and checkpoints that resume to exactly the same result.

use crate::{
    backprop::{self, Batch, Dropout, Workspace},
    llama::Llama,
    lora::{LoraAdapter, LoraConfig, LoraPair},
    ModelError,
};
use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, path::Path};

type Result<T> = std::result::Result<T, ModelError>;

/// One training example: tokens, of which the first `prompt_len` are context only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// Optimizer steps in the whole run (the cosine reaches zero there).
    pub total_steps: usize,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub grad_accum: usize,
    pub seed: u64,
    /// LoRA dropout on the adapters' inputs (0: none).
    #[serde(default)]
    pub dropout: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            learning_rate: 2e-3,
            warmup_steps: 5,
            total_steps: 100,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            batch_size: 4,
            grad_accum: 1,
            seed: 0,
            dropout: 0.0,
        }
    }
}

/// What the progress callback hears after each optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f32,
    pub learning_rate: f64,
    /// Tokens the step read (padding not counted).
    pub tokens: usize,
    pub tokens_per_second: f64,
}

/// One trainable projection: LoRA `a` `(r, in)` and `b` `(out, r)` with AdamW moments.
struct Param {
    module: String,
    a: Var,
    b: Var,
    moments: [(Tensor, Tensor); 2],
}

/// A LoRA fine-tuning run over a frozen base model.
pub struct Trainer<'m> {
    model: &'m Llama,
    config: TrainConfig,
    params: Vec<Param>,
    step: usize,
    /// The training and evaluation passes' buffers, kept from step to step.
    workspace: Workspace,
}

const BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

impl<'m> Trainer<'m> {
    /// A fresh run: `A` uniform in ±1/√in (PEFT's Kaiming-uniform bound for a = √5), `B`
    /// zero, so training starts exactly at the base model.
    pub fn new(model: &'m Llama, config: TrainConfig) -> Result<Self> {
        let lora = LoraConfig::new(
            config.rank,
            config.alpha,
            &config
                .targets
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        lora.validate()?;
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(ModelError::Train(format!(
                "dropout {} must be in [0, 1)",
                config.dropout
            )));
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut params = Vec::new();
        for (module, inp, out) in model.projections() {
            if !config
                .targets
                .iter()
                .any(|t| module.ends_with(&format!(".{t}")))
            {
                continue;
            }
            let bound = 1.0 / (inp as f32).sqrt();
            let values: Vec<f32> = (0..config.rank * inp)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let a = Var::from_tensor(&Tensor::from_vec(values, (config.rank, inp), &Device::Cpu)?)?;
            let b = Var::zeros((out, config.rank), DType::F32, &Device::Cpu)?;
            params.push(Param {
                moments: zero_moments(&a, &b)?,
                module,
                a,
                b,
            });
        }
        Ok(Self {
            model,
            config,
            params,
            step: 0,
            workspace: Workspace::default(),
        })
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Optimizer steps in the whole run.
    pub fn total_steps(&self) -> usize {
        self.config.total_steps
    }

    /// The adapter as it stands (the `Var`s' current values).
    pub fn adapter(&self) -> LoraAdapter {
        let c = &self.config;
        let targets: Vec<&str> = c.targets.iter().map(String::as_str).collect();
        let mut config = LoraConfig::new(c.rank, c.alpha, &targets);
        config.lora_dropout = c.dropout;
        LoraAdapter {
            config,
            pairs: self
                .params
                .iter()
                .map(|p| {
                    let pair = LoraPair {
                        a: p.a.as_tensor().clone(),
                        b: p.b.as_tensor().clone(),
                    };
                    (p.module.clone(), pair)
                })
                .collect(),
        }
    }

    /// The learning rate at optimizer step `step` (0-based): linear warmup, then cosine
    /// decay to zero at `total_steps`.
    pub fn learning_rate(&self, step: usize) -> f64 {
        let c = &self.config;
        if step < c.warmup_steps {
            return c.learning_rate * (step + 1) as f64 / c.warmup_steps as f64;
        }
        let span = c.total_steps.saturating_sub(c.warmup_steps).max(1) as f64;
        let progress = ((step - c.warmup_steps) as f64 / span).min(1.0);
        c.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Mean loss of `examples` under the current adapter (no update). It reuses the training
    /// pass's buffers: fresh ones would be faulted in (tens of MB) at every evaluation.
    pub fn eval_loss(&mut self, examples: &[Example]) -> Result<f32> {
        let adapter = self.adapter();
        let mut total = 0.0;
        let mut weight = 0.0;
        for chunk in examples.chunks(self.config.batch_size.max(1)) {
            let (batch, learned) = micro_batch(chunk, None)?;
            let pass = backprop::run(
                self.model,
                &adapter,
                &batch,
                false,
                false,
                &mut self.workspace,
            )?;
            total += pass.loss as f32 * learned;
            weight += learned;
        }
        Ok(total / weight.max(1.0))
    }

    /// Trains until `total_steps`, drawing micro-batches from `examples` in a seeded order
    /// (reshuffled each epoch), and calls `on_step` after every optimizer step.
    pub fn train(&mut self, examples: &[Example], on_step: impl FnMut(&Progress)) -> Result<()> {
        self.train_steps(examples, usize::MAX, on_step)
    }

    /// Like [`Trainer::train`] but stops after at most `steps` more optimizer steps (to
    /// checkpoint, evaluate, or stop early).
    pub fn train_steps(
        &mut self,
        examples: &[Example],
        steps: usize,
        mut on_step: impl FnMut(&Progress),
    ) -> Result<()> {
        if examples.is_empty() {
            return Err(ModelError::Train("no training examples".into()));
        }
        let per_step = self.config.batch_size * self.config.grad_accum;
        let stop = self.step.saturating_add(steps).min(self.config.total_steps);
        while self.step < stop {
            let started = std::time::Instant::now();
            // The order depends only on the seed and the step, so a resumed run draws the same
            // batches as an uninterrupted one.
            let batch = self.batch_for(self.step, examples, per_step);
            let adapter = self.adapter();
            let mut sums: Vec<(Vec<f32>, Vec<f32>)> = self
                .params
                .iter()
                .map(|p| (vec![0.0; p.a.elem_count()], vec![0.0; p.b.elem_count()]))
                .collect();
            let mut loss_sum = 0.0;
            let mut tokens = 0usize;
            let accum = self.config.grad_accum as f32;
            for (j, micro) in batch.chunks(self.config.batch_size).enumerate() {
                let (input, _) = micro_batch(micro, self.dropout(j))?;
                let pass = backprop::run(
                    self.model,
                    &adapter,
                    &input,
                    true,
                    false,
                    &mut self.workspace,
                )?;
                loss_sum += pass.loss as f32;
                tokens += micro.iter().map(|e| e.tokens.len()).sum::<usize>();
                for ((sa, sb), p) in sums.iter_mut().zip(&self.params) {
                    if let Some((ga, gb)) = pass.grads.get(&p.module) {
                        sa.iter_mut().zip(ga).for_each(|(s, g)| *s += g / accum);
                        sb.iter_mut().zip(gb).for_each(|(s, g)| *s += g / accum);
                    }
                }
            }
            let grads: Vec<(Tensor, Tensor)> = sums
                .into_iter()
                .zip(&self.params)
                .map(|((ga, gb), p)| {
                    Ok((
                        Tensor::from_vec(ga, p.a.shape(), &Device::Cpu)?,
                        Tensor::from_vec(gb, p.b.shape(), &Device::Cpu)?,
                    ))
                })
                .collect::<Result<_>>()?;
            let lr = self.learning_rate(self.step);
            self.apply(&grads, lr)?;
            self.step += 1;
            on_step(&Progress {
                step: self.step,
                total_steps: self.config.total_steps,
                loss: loss_sum / self.config.grad_accum as f32,
                learning_rate: lr,
                tokens,
                tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64(),
            });
        }
        Ok(())
    }

    /// The dropout of micro-batch `j` of the current step: its mask depends only on the seed,
    /// the step and `j`, so a resumed run draws the same masks.
    fn dropout(&self, j: usize) -> Option<Dropout> {
        let c = &self.config;
        (c.dropout > 0.0).then(|| Dropout {
            p: c.dropout as f32,
            seed: c.seed
                ^ ((self.step as u64) << 20 | j as u64).wrapping_mul(0xd6e8_feb8_6659_fd93),
        })
    }

    /// The examples of optimizer step `step`: positions `step·n …` of an endless sequence of
    /// epochs, each a seeded shuffle of the examples.
    fn batch_for<'e>(&self, step: usize, examples: &'e [Example], n: usize) -> Vec<&'e Example> {
        let mut out = Vec::with_capacity(n);
        let mut order: Vec<usize> = Vec::new();
        let mut current_epoch = usize::MAX;
        for position in step * n..(step + 1) * n {
            let epoch = position / examples.len();
            if epoch != current_epoch {
                let seed =
                    self.config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                order = (0..examples.len()).collect();
                order.shuffle(&mut StdRng::seed_from_u64(seed));
                current_epoch = epoch;
            }
            out.push(&examples[order[position % examples.len()]]);
        }
        out
    }

    /// One AdamW update with global-norm clipping.
    fn apply(&mut self, grads: &[(Tensor, Tensor)], lr: f64) -> Result<()> {
        let c = &self.config;
        let mut scale = 1.0;
        if c.max_grad_norm > 0.0 {
            let mut sq = 0.0f64;
            for (ga, gb) in grads {
                sq += f64::from(ga.sqr()?.sum_all()?.to_scalar::<f32>()?);
                sq += f64::from(gb.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
            let norm = sq.sqrt();
            if norm > c.max_grad_norm {
                scale = c.max_grad_norm / (norm + 1e-6);
            }
        }
        let t = (self.step + 1) as i32;
        let (b1, b2) = BETAS;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (p, (ga, gb)) in self.params.iter_mut().zip(grads) {
            for (k, (var, g)) in [(&p.a, ga), (&p.b, gb)].into_iter().enumerate() {
                let g = (g * scale)?;
                let (m, v) = &p.moments[k];
                let m = ((m * b1)? + (&g * (1.0 - b1))?)?;
                let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + ADAM_EPS)?)?;
                let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
                var.set(&(decayed - (update * lr)?)?)?;
                p.moments[k] = (m, v);
            }
        }
        Ok(())
    }

    /// Writes the run's state to `dir`: the adapter (PEFT layout), the optimizer moments and
    /// the step, so that [`Trainer::resume`] continues exactly where this left off.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        self.adapter().save(dir)?;
        let mut tensors = HashMap::new();
        for p in &self.params {
            for (k, (m, v)) in p.moments.iter().enumerate() {
                tensors.insert(format!("{}.{k}.m", p.module), m.clone());
                tensors.insert(format!("{}.{k}.v", p.module), v.clone());
            }
        }
        candle_core::safetensors::save(&tensors, dir.join("optimizer.safetensors"))?;
        let state = serde_json::json!({"step": self.step, "config": self.config});
        std::fs::write(dir.join("trainer_state.json"), state.to_string())
            .map_err(|e| ModelError::Io(dir.display().to_string(), e))
    }

    /// Continues the run saved in `dir` (with the same config it was saved with).
    pub fn resume(model: &'m Llama, dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join("trainer_state.json"))
            .map_err(|e| ModelError::Io(dir.display().to_string(), e))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Train(e.to_string()))?;
        let config: TrainConfig = serde_json::from_value(state["config"].clone())
            .map_err(|e| ModelError::Train(e.to_string()))?;
        let mut trainer = Self::new(model, config)?;
        trainer.step = state["step"].as_u64().unwrap_or(0) as usize;
        let adapter = LoraAdapter::load(dir)?;
        let moments =
            candle_core::safetensors::load(dir.join("optimizer.safetensors"), &Device::Cpu)?;
        for p in &mut trainer.params {
            let pair = adapter
                .pair(&p.module)
                .ok_or_else(|| ModelError::Train(format!("the checkpoint lacks {}", p.module)))?;
            p.a.set(&pair.a)?;
            p.b.set(&pair.b)?;
            for k in 0..2 {
                let get = |kind: &str| {
                    moments
                        .get(&format!("{}.{k}.{kind}", p.module))
                        .cloned()
                        .ok_or_else(|| {
                            ModelError::Train(format!("the checkpoint lacks {} moments", p.module))
                        })
                };
                p.moments[k] = (get("m")?, get("v")?);
            }
        }
        Ok(trainer)
    }
}

/// Input, target and loss mask, `(b, len - 1)` row-major, for examples padded to `len` tokens:
/// position `i` predicts token `i + 1`, learned only where that token is part of the answer
/// (not the prompt, not padding).
pub(crate) fn pad_rows<'e>(
    examples: impl Iterator<Item = &'e Example>,
    len: usize,
) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let (mut input, mut target, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for e in examples {
        for i in 0..len - 1 {
            let (x, y) = (e.tokens.get(i), e.tokens.get(i + 1));
            input.push(*x.unwrap_or(&0));
            target.push(*y.unwrap_or(&0));
            mask.push(if y.is_some() && i + 1 >= e.prompt_len {
                1f32
            } else {
                0.0
            });
        }
    }
    (input, target, mask)
}

/// The longest example's length, refusing batches that cannot predict anything.
pub(crate) fn longest(examples: &[impl AsRef<Example>]) -> Result<usize> {
    let len = examples
        .iter()
        .map(|e| e.as_ref().tokens.len())
        .max()
        .unwrap_or(0);
    if len < 2 {
        return Err(ModelError::Train(
            "every example needs at least two tokens".into(),
        ));
    }
    Ok(len)
}

/// A micro-batch padded to its longest example whose loss is the mean over its learned
/// positions, and how many positions it learns from.
fn micro_batch(examples: &[impl AsRef<Example>], dropout: Option<Dropout>) -> Result<(Batch, f32)> {
    let len = longest(examples)?;
    let (tokens, targets, mask) = pad_rows(examples.iter().map(AsRef::as_ref), len);
    let learned: f32 = mask.iter().sum();
    if learned == 0.0 {
        return Err(ModelError::Train(
            "no position is learned: every target is prompt or padding".into(),
        ));
    }
    let weights = mask.iter().map(|m| m / learned).collect();
    let batch = Batch {
        b: examples.len(),
        s: len - 1,
        tokens,
        targets,
        weights,
        dropout,
    };
    Ok((batch, learned))
}

impl AsRef<Example> for Example {
    fn as_ref(&self) -> &Example {
        self
    }
}

fn zero_moments(a: &Var, b: &Var) -> Result<[(Tensor, Tensor); 2]> {
    Ok([
        (a.zeros_like()?, a.zeros_like()?),
        (b.zeros_like()?, b.zeros_like()?),
    ])
}
