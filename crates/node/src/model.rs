//! `openledger model generate|inspect`: the model engine without the rest of the system.

use anyhow::{Context, Result};
use openledger_model::{generate::Sampling, Model};
use std::{io::Write, path::PathBuf, time::Instant};

/// Which model file and how to sample.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The prompt, used as raw text (no chat template).
    #[arg(long)]
    pub prompt: String,
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
    /// Stop when the text contains this (repeatable); the stop string is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    /// The model file (.gguf) [default: SmolLM2-135M-Instruct in the models directory].
    #[arg(long)]
    pub model: Option<PathBuf>,
}

fn load(path: Option<PathBuf>) -> Result<Model> {
    let path = path.unwrap_or_else(openledger_model::default_model_path);
    let started = Instant::now();
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    eprintln!(
        "model: loaded {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(model)
}

/// Prints the completion of `--prompt` as it is generated.
pub fn generate(args: GenerateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.top_p) || args.top_p == 0.0 {
        anyhow::bail!("--top-p {} must be in (0, 1]", args.top_p);
    }
    if args.temperature < 0.0 {
        anyhow::bail!("--temperature {} must not be negative", args.temperature);
    }
    let model = load(args.model)?;
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    let completion = model.complete(
        &args.prompt,
        args.max_tokens,
        sampling,
        &args.stop,
        |text| {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        },
    )?;
    writeln!(stdout)?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "model: {} tokens in {seconds:.2} s ({:.1} tokens/s), finished by {:?}",
        completion.tokens.len(),
        completion.tokens.len() as f64 / seconds,
        completion.finish
    );
    Ok(())
}

/// Prints a model's shape and tokenizer.
pub fn inspect(model: Option<PathBuf>) -> Result<()> {
    let model = load(model)?;
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
