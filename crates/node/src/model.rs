//! `openledger model generate|chat|train|merge|inspect`: the model engine without the rest of the system.

use anyhow::{Context, Result};
use openledger_model::{
    chat::Message,
    generate::Sampling,
    lora::LoraAdapter,
    train::{TrainConfig, Trainer},
    Completion, Model,
};
use std::{io::Write, path::PathBuf, time::Instant};

/// `openledger model generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The prompt, used as raw text (no chat template).
    #[arg(long)]
    pub prompt: String,
    /// Stop when the text contains this (repeatable); the stop string is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `openledger model chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Ask one question and exit; without it, chat line by line on standard input.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Talk to a running inference server (`openledger node` or `openledger serve`) at this
    /// URL instead of loading the model here; --adapter is then the adapter's name there.
    #[arg(long, env = "OPENLEDGER_SERVE_URL")]
    pub server: Option<String>,
    /// With --server and no --adapter: the served base model's name.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    pub served_model: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `openledger model train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data, JSONL: chat records {"messages": [...]}, {"prompt", "completion"} or
    /// {"text"}.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the adapter (PEFT layout) and its checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run checkpointed in --out.
    #[arg(long)]
    pub resume: bool,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Projections to adapt, comma-separated (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
    pub targets: String,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of the examples held out to measure evaluation loss.
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    /// Write a checkpoint every this many steps (0: only at the end).
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: usize,
    /// The model file (.gguf) [default: SmolLM2-135M-Instruct in the models directory].
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Which model file and how to sample.
#[derive(clap::Args)]
pub struct SamplingArgs {
    /// The most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Penalize tokens already present (1.0: off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The model file (.gguf) [default: SmolLM2-135M-Instruct in the models directory].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A LoRA adapter directory (PEFT layout) to run on.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

fn load(path: Option<PathBuf>, adapter: Option<PathBuf>) -> Result<Model> {
    let path = path.unwrap_or_else(openledger_model::default_model_path);
    let started = Instant::now();
    let mut model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    if let Some(dir) = adapter {
        let adapter = LoraAdapter::load(&dir)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
        model
            .set_adapter(Some(adapter))
            .with_context(|| format!("adapter {}", dir.display()))?;
    }
    eprintln!(
        "model: loaded {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(model)
}

impl SamplingArgs {
    fn sampling(&self) -> Result<Sampling> {
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            anyhow::bail!("--top-p {} must be in (0, 1]", self.top_p);
        }
        if self.temperature < 0.0 {
            anyhow::bail!("--temperature {} must not be negative", self.temperature);
        }
        if self.repetition_penalty <= 0.0 {
            anyhow::bail!(
                "--repetition-penalty {} must be positive",
                self.repetition_penalty
            );
        }
        Ok(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        })
    }
}

pub(crate) fn print_text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn report(completion: &Completion, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "model: {} tokens in {seconds:.2} s ({:.1} tokens/s), finished by {:?}",
        completion.tokens.len(),
        completion.tokens.len() as f64 / seconds,
        completion.finish
    );
}

/// Prints the completion of `--prompt` as it is generated.
pub fn generate(args: GenerateArgs) -> Result<()> {
    let sampling = args.sampling.sampling()?;
    let model = load(args.sampling.model, args.sampling.adapter)?;
    let started = Instant::now();
    let completion = model.complete(
        &args.prompt,
        args.sampling.max_tokens,
        sampling,
        &args.stop,
        print_text,
    )?;
    println!();
    report(&completion, started);
    Ok(())
}

/// Answers `--prompt`, or holds a conversation on standard input, under the model's chat
/// template.
pub fn chat(args: ChatArgs) -> Result<()> {
    if let Some(server) = args.server.clone() {
        return chat_remote(args, &server);
    }
    let sampling = args.sampling.sampling()?;
    let model = load(args.sampling.model, args.sampling.adapter)?;
    let mut messages: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new("system", s))
        .collect();
    let turn = |messages: &mut Vec<Message>, question: &str| -> Result<()> {
        messages.push(Message::new("user", question));
        let started = Instant::now();
        let answer = model.chat(
            messages,
            args.sampling.max_tokens,
            sampling.clone(),
            print_text,
        )?;
        println!();
        report(&answer, started);
        messages.push(Message::new("assistant", &answer.text));
        Ok(())
    };
    if let Some(prompt) = &args.prompt {
        return turn(&mut messages, prompt);
    }
    eprintln!("model: chatting; end with Ctrl-D");
    for line in std::io::stdin().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            turn(&mut messages, &line)?;
        }
    }
    Ok(())
}

/// Fine-tunes a LoRA adapter on JSONL data, with a progress line, held-out evaluation and
/// checkpoints in `--out`.
pub fn train(args: TrainArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.eval_fraction) {
        anyhow::bail!("--eval-fraction {} must be in [0, 1)", args.eval_fraction);
    }
    let model = load(args.model.clone(), None)?;
    let text = std::fs::read_to_string(&args.data)
        .with_context(|| format!("reading {}", args.data.display()))?;
    let examples = openledger_model::data::examples_from_jsonl(&model, &text)
        .with_context(|| format!("in {}", args.data.display()))?;
    let held = ((examples.len() as f64) * args.eval_fraction).round() as usize;
    let (eval, train) = examples.split_at(held.min(examples.len().saturating_sub(1)));
    eprintln!(
        "model: {} training and {} held-out examples from {}",
        train.len(),
        eval.len(),
        args.data.display()
    );
    let mut trainer = if args.resume {
        Trainer::resume(&model.llama, &args.out)
            .with_context(|| format!("resuming from {}", args.out.display()))?
    } else {
        let config = TrainConfig {
            rank: args.rank,
            alpha: args.alpha,
            targets: args
                .targets
                .split(',')
                .map(|t| t.trim().to_string())
                .collect(),
            learning_rate: args.learning_rate,
            warmup_steps: args.warmup_steps,
            total_steps: args.steps,
            batch_size: args.batch_size,
            grad_accum: args.grad_accum,
            seed: args.seed,
            ..TrainConfig::default()
        };
        Trainer::new(&model.llama, config)?
    };
    if !eval.is_empty() {
        eprintln!(
            "model: held-out loss {:.4} before",
            trainer.eval_loss(eval)?
        );
    }
    let every = if args.checkpoint_every == 0 {
        usize::MAX
    } else {
        args.checkpoint_every
    };
    loop {
        trainer.train_steps(train, every, |p| {
            eprint!(
                "\rstep {}/{}  loss {:.4}  lr {:.2e}  {:.0} tokens/s   ",
                p.step, p.total_steps, p.loss, p.learning_rate, p.tokens_per_second
            );
        })?;
        trainer
            .save_checkpoint(&args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
        if trainer.step() >= trainer.total_steps() {
            break;
        }
    }
    eprintln!();
    if !eval.is_empty() {
        eprintln!("model: held-out loss {:.4} after", trainer.eval_loss(eval)?);
    }
    eprintln!("model: adapter written to {}", args.out.display());
    Ok(())
}

/// Folds an adapter into the base weights and writes the result as a Hugging Face directory
/// (`config.json`, `model.safetensors` in f32, `tokenizer.json`, `tokenizer_config.json` with
/// the chat template) that `--model` and `transformers` load.
pub fn merge(model: Option<PathBuf>, adapter: PathBuf, out: PathBuf) -> Result<()> {
    let mut model = load(model, None)?;
    let adapter = LoraAdapter::load(&adapter)
        .with_context(|| format!("loading adapter {}", adapter.display()))?;
    model.llama.merge(&adapter, 1.0)?;
    openledger_model::weights::save_safetensors_dir(&out, model.config(), &model.llama.weights()?)
        .with_context(|| format!("writing {}", out.display()))?;
    model
        .tokenizer
        .save_hf(&out, model.chat_template.as_deref())
        .with_context(|| format!("writing the tokenizer to {}", out.display()))?;
    eprintln!("model: merged model written to {}", out.display());
    Ok(())
}

/// Prints a model's shape and tokenizer.
pub fn inspect(model: Option<PathBuf>) -> Result<()> {
    let model = load(model, None)?;
    let c = model.config();
    println!("vocabulary        {}", c.vocab_size);
    println!("hidden size       {}", c.hidden_size);
    println!("MLP size          {}", c.intermediate_size);
    println!("layers            {}", c.num_hidden_layers);
    println!(
        "attention heads   {} (key/value heads {}, width {})",
        c.num_attention_heads,
        c.kv_heads(),
        c.head_dim()
    );
    println!("rope theta        {}", c.rope_theta);
    println!("context           {}", c.max_position_embeddings);
    println!("tied embeddings   {}", c.tie_word_embeddings);
    println!(
        "special tokens    bos {} eos {}",
        model.tokenizer.bos_id(),
        model.tokenizer.eos_id()
    );
    println!(
        "chat template     {}",
        if model.chat_template.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    Ok(())
}

/// `model chat --server`: the same conversation against a running server.
fn chat_remote(args: ChatArgs, server: &str) -> Result<()> {
    let model = match &args.sampling.adapter {
        Some(name) => name.display().to_string(),
        None => args.served_model.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut messages: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new("system", s))
        .collect();
    let mut turn = |question: &str| -> Result<()> {
        messages.push(Message::new("user", question));
        let answer = runtime.block_on(crate::serve::chat_turn(
            server,
            &model,
            &messages,
            &args.sampling,
        ))?;
        println!();
        messages.push(Message::new("assistant", &answer));
        Ok(())
    };
    if let Some(prompt) = &args.prompt {
        return turn(prompt);
    }
    eprintln!("model: chatting with {model} at {server}; end with Ctrl-D");
    for line in std::io::stdin().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            turn(&line)?;
        }
    }
    Ok(())
}
