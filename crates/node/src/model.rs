//! `openledger model generate|chat|inspect`: the model engine without the rest of the system.

use anyhow::{Context, Result};
use openledger_model::{chat::Message, generate::Sampling, lora::LoraAdapter, Completion, Model};
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
    #[command(flatten)]
    pub sampling: SamplingArgs,
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

fn print_text(text: &str) {
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
