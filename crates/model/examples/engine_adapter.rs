//! Step 2 of `scripts/gen-fixtures`: trains a LoRA adapter for the tiny reference model with
//! this engine, writes it in PEFT's layout (`tests/fixtures/tiny_llama/engine_adapter/`) and the
//! logits this engine gives with it (`tests/fixtures/tiny_llama/engine_logits.safetensors`), so
//! that the script can check that PEFT, loading the same files, gives the same logits.
//!
//! `cargo run --release -p openledger-model --example engine_adapter [FIXTURE_DIR]`

use candle_core::{DType, Device};
use openledger_model::{
    llama::{KvCache, Llama, LoraBatch},
    lora::{LoraAdapter, TARGETS},
    train::{Example, TrainConfig, Trainer},
    weights::load_safetensors_dir,
};
use std::{collections::HashMap, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama")
        });
    let (config, weights) = load_safetensors_dir(&dir)?;
    let llama = Llama::new(config, &weights)?;
    let fixture = candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu)?;
    let tokens = fixture["tokens"].to_dtype(DType::U32)?; // (2, 16)
    let rows: Vec<Vec<u32>> = tokens.to_vec2()?;

    // Learn each fixture row after its first four tokens: enough steps at a high rate that
    // every B moves well away from zero, on all seven projections.
    let examples: Vec<Example> = rows
        .iter()
        .map(|tokens| Example {
            tokens: tokens.clone(),
            prompt_len: 4,
        })
        .collect();
    let config = TrainConfig {
        rank: 4,
        alpha: 12.0,
        targets: TARGETS.map(String::from).to_vec(),
        learning_rate: 0.05,
        warmup_steps: 1,
        total_steps: 12,
        max_grad_norm: 1.0,
        batch_size: 2,
        seed: 4,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&llama, config)?;
    let before = trainer.eval_loss(&examples)?;
    trainer.train(&examples, |_| {})?;
    let after = trainer.eval_loss(&examples)?;
    let out = dir.join("engine_adapter");
    trainer.adapter().save(&out)?;

    // The logits of what is on disk, as anyone loading the files gets them.
    let adapter = LoraAdapter::load(&out)?;
    let lora = LoraBatch::new(vec![&adapter], &vec![Some(0); rows.len()])?;
    let logits = llama.forward_all_lora(&tokens, &mut KvCache::default(), Some(&lora))?;
    let logits_path = dir.join("engine_logits.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([("engine_adapter".to_string(), logits)]),
        &logits_path,
    )?;
    println!(
        "engine adapter: loss {before:.3} -> {after:.3} in 12 steps; wrote {} and {}",
        out.display(),
        logits_path.display()
    );
    Ok(())
}
