//! `model-bench`: the model engine's speed on the default model (SmolLM2-135M-Instruct, f32
//! weights dequantized from its GGUF, with 8-bit copies for decode steps, made during the
//! first of the two decode rounds, of which the faster counts): prefill tokens/s,
//! single-stream decode tokens/s, and aggregate decode tokens/s of a batch where every
//! sequence runs on its own LoRA adapter, against the same batch with no adapters; and LoRA
//! training tokens/s with its losses. The same serving figures for OpenLoRA's serving pass
//! (the GGUF file's own 4- and 8-bit blocks against 8-bit activations), the engine the node
//! serves with, under `openlora_*`. Prints one JSON object.
//!
//! The peers, on the same GGUF file, are measured by `scripts/bench-model`, which runs this
//! binary, `scripts/bench_model_peer.py` (llama.cpp through llama-cpp-python: prefill and
//! decode) and `scripts/bench_model_train_peer.py` (PyTorch + transformers + peft: the same
//! LoRA training) back to back.
//!
//! Usage: `model-bench [--model PATH] [--prompt-tokens 256] [--decode-tokens 128]
//! [--batch 16] [--batch-steps 32] [--rank 8] [--train-steps 3] [--train-only]`.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use openledger_model::{
    llama::{KvCache, Llama, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair},
    train::{Example, TrainConfig, Trainer},
    Model,
};
use serde_json::json;
use std::{collections::HashMap, path::PathBuf, time::Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 32)]
    batch_steps: usize,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Timed LoRA training steps (batch of 4 sequences of 128 tokens, rank 8 on q, k, v, o).
    #[arg(long, default_value_t = 3)]
    train_steps: usize,
    /// Measure LoRA training only (skips prefill, decode and the adapter batch).
    #[arg(long)]
    train_only: bool,
}

/// The text prompts are cut from: plain English, repeated as needed.
const TEXT: &str = "The history of written language begins with simple marks on clay and stone. \
Over thousands of years these marks became alphabets, and alphabets became books, newspapers \
and finally the web pages that people read every day. Each step made it cheaper to record what \
people knew and to share it with others who lived far away or were born much later. ";

fn prompt(model: &Model, n: usize) -> Vec<u32> {
    let text = TEXT.repeat(n / 40 + 2);
    let mut ids = model.tokenizer.encode(&text);
    ids.truncate(n);
    ids
}

fn row(ids: &[u32]) -> Result<Tensor> {
    Ok(Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?)
}

/// Seconds of the fastest of `runs` runs of `f`, after one warm-up.
fn fastest(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// A rank-`r` adapter on q, k, v and o of every layer, with small random weights.
fn adapter(llama: &Llama, r: usize) -> Result<LoraAdapter> {
    let c = llama.config();
    let (e, kv) = (c.hidden_size, c.kv_heads() * c.head_dim());
    let mut pairs = HashMap::new();
    for layer in 0..c.num_hidden_layers {
        for (t, out) in [("q_proj", e), ("k_proj", kv), ("v_proj", kv), ("o_proj", e)] {
            pairs.insert(
                format!("model.layers.{layer}.self_attn.{t}"),
                LoraPair {
                    a: Tensor::randn(0f32, 0.02, (r, e), &Device::Cpu)?,
                    b: Tensor::randn(0f32, 0.02, (out, r), &Device::Cpu)?,
                },
            );
        }
    }
    Ok(LoraAdapter {
        config: LoraConfig::new(r, 2.0 * r as f64, &["q_proj", "k_proj", "v_proj", "o_proj"]),
        pairs,
    })
}

/// Aggregate tokens/s of `steps` decode steps of a batch after an (untimed) 32-token
/// prefill; the best of two runs.
fn batch_decode(
    llama: &Llama,
    ids: &[u32],
    batch: usize,
    steps: usize,
    lora: Option<&LoraBatch>,
) -> Result<f64> {
    let rows: Vec<u32> = (0..batch).flat_map(|i| ids[i..i + 32].to_vec()).collect();
    let prefill = Tensor::from_vec(rows, (batch, 32), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..2 {
        let mut cache = KvCache::default();
        let mut logits = llama.forward_last_lora(&prefill, &mut cache, lora)?;
        let t = Instant::now();
        for _ in 0..steps {
            let next = logits.argmax(1)?.to_dtype(DType::U32)?.unsqueeze(1)?; // (batch, 1)
            logits = llama.forward_last_lora(&next, &mut cache, lora)?;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((batch * steps) as f64 / best)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let path = args
        .model
        .clone()
        .unwrap_or_else(openledger_model::default_model_path);
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let llama = &model.llama;
    let ids = prompt(&model, args.prompt_tokens.max(32 + args.batch).max(160));
    ensure!(
        ids.len() >= args.prompt_tokens,
        "the prompt text is too short"
    );

    let mut out = json!({
        "engine": "openledger-model (candle, f32; 8-bit weights in decode steps)",
        "model": path.display().to_string(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    let fields = out.as_object_mut().expect("an object");
    if !args.train_only {
        fields.extend(serving(llama, &ids, &args)?);
        fields.extend(serving_pass(&path, llama, &ids, &args)?);
    }
    let (train_tps, losses) = training(llama, &ids, args.train_steps)?;
    fields.insert("train_losses".into(), losses.into());
    fields.insert("lora_train_tokens_per_s".into(), train_tps.into());
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Prefill, single-stream decode, and a batch decode with and without adapters.
fn serving(
    llama: &Llama,
    ids: &[u32],
    args: &Args,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let prompt_ids = &ids[..args.prompt_tokens];
    let prefill = fastest(3, || {
        llama.forward_last(&row(prompt_ids)?, &mut KvCache::default())?;
        Ok(())
    })?;

    // Single-stream decode after a 32-token prefill: only the steps are timed.
    let mut decode = f64::MAX;
    for _ in 0..2 {
        let mut cache = KvCache::default();
        let mut logits = llama.forward_last(&row(&ids[..32])?, &mut cache)?;
        let t = Instant::now();
        for _ in 0..args.decode_tokens {
            let next = logits.argmax(1)?.to_dtype(DType::U32)?.unsqueeze(1)?;
            logits = llama.forward_last(&next, &mut cache)?;
        }
        decode = decode.min(t.elapsed().as_secs_f64());
    }
    let decode_tps = args.decode_tokens as f64 / decode;

    let adapters: Vec<LoraAdapter> = (0..args.batch)
        .map(|_| adapter(llama, args.rank))
        .collect::<Result<_>>()?;
    let refs: Vec<&LoraAdapter> = adapters.iter().collect();
    let choice: Vec<Option<usize>> = (0..args.batch).map(Some).collect();
    let lora = LoraBatch::new(refs, &choice)?;
    // Alternate the two so neither gains from running second (warm caches, settled clocks).
    let mut base_batch: f64 = 0.0;
    let mut lora_batch: f64 = 0.0;
    for _ in 0..2 {
        base_batch = base_batch.max(batch_decode(
            llama,
            ids,
            args.batch,
            args.batch_steps,
            None,
        )?);
        lora_batch = lora_batch.max(batch_decode(
            llama,
            ids,
            args.batch,
            args.batch_steps,
            Some(&lora),
        )?);
    }

    let out = json!({
        "prefill_tokens": args.prompt_tokens,
        "prefill_tokens_per_s": args.prompt_tokens as f64 / prefill,
        "decode_tokens": args.decode_tokens,
        "decode_tokens_per_s": decode_tps,
        "batch": args.batch,
        "batch_steps": args.batch_steps,
        "lora_rank": args.rank,
        "batch_decode_no_adapters_tokens_per_s": base_batch,
        "batch_decode_each_own_adapter_tokens_per_s": lora_batch,
        "adapter_batch_ratio": lora_batch / base_batch,
    });
    Ok(out.as_object().expect("an object").clone())
}

/// OpenLoRA's serving pass: prefill, single-stream decode, and a batch decode with and
/// without an adapter per sequence, timed as [`serving`] times the candle pass.
fn serving_pass(
    path: &std::path::Path,
    llama: &Llama,
    ids: &[u32],
    args: &Args,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    use openledger_openlora::engine::{Base, Chunk, Mix, SeqCache, ServedAdapter};
    let raw = openledger_model::weights::read_gguf_raw(path)?;
    let base = Base::from_gguf(&raw)?;
    let none: Mix = Vec::new();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    let prefill = fastest(3, || {
        let mut cache = SeqCache::default();
        base.forward(&mut [Chunk {
            tokens: &ids[..args.prompt_tokens],
            cache: &mut cache,
            mix: &none,
            logits: true,
        }])?;
        Ok(())
    })?;
    // Steps of `batch` sequences after untimed 32-token prefills; the best of two runs.
    let steps = |mixes: &[&Mix], n: usize| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..2 {
            let mut caches = vec![SeqCache::default(); mixes.len()];
            let mut next: Vec<u32> = Vec::new();
            for (i, (cache, mix)) in caches.iter_mut().zip(mixes).enumerate() {
                let logits = base.forward(&mut [Chunk {
                    tokens: &ids[i..i + 32],
                    cache,
                    mix,
                    logits: true,
                }])?;
                next.push(argmax(&logits[0]));
            }
            let t = Instant::now();
            for _ in 0..n {
                let tokens: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
                let mut chunks: Vec<Chunk> = caches
                    .iter_mut()
                    .zip(mixes)
                    .zip(&tokens)
                    .map(|((cache, mix), t)| Chunk {
                        tokens: t,
                        cache,
                        mix,
                        logits: true,
                    })
                    .collect();
                next = base
                    .forward(&mut chunks)?
                    .iter()
                    .map(|l| argmax(l))
                    .collect();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok((mixes.len() * n) as f64 / best)
    };
    let decode_tps = steps(&[&none], args.decode_tokens)?;
    let mixes: Vec<Mix> = (0..args.batch)
        .map(|_| -> Result<Mix> {
            let a = adapter(llama, args.rank)?;
            Ok(vec![(
                std::sync::Arc::new(ServedAdapter::new(&a, &base)?),
                1.0,
            )])
        })
        .collect::<Result<_>>()?;
    let plain: Vec<&Mix> = (0..args.batch).map(|_| &none).collect();
    let own: Vec<&Mix> = mixes.iter().collect();
    let (mut base_batch, mut lora_batch) = (0f64, 0f64);
    for _ in 0..2 {
        base_batch = base_batch.max(steps(&plain, args.batch_steps)?);
        lora_batch = lora_batch.max(steps(&own, args.batch_steps)?);
    }
    let out = json!({
        "openlora_prefill_tokens_per_s": args.prompt_tokens as f64 / prefill,
        "openlora_decode_tokens_per_s": decode_tps,
        "openlora_batch_decode_no_adapters_tokens_per_s": base_batch,
        "openlora_batch_decode_each_own_adapter_tokens_per_s": lora_batch,
        "openlora_adapter_batch_ratio": lora_batch / base_batch,
    });
    Ok(out.as_object().expect("an object").clone())
}

/// LoRA training tokens/s and the timed steps' losses (to compare with the peer's).
fn training(llama: &Llama, ids: &[u32], steps: usize) -> Result<(f64, Vec<f32>)> {
    // LoRA training: every token of four 128-token sequences learned, one optimizer step per
    // batch, after one untimed warm-up step.
    let train_examples: Vec<Example> = (0..4)
        .map(|i| Example {
            tokens: ids[i * 8..i * 8 + 128].to_vec(),
            prompt_len: 0,
        })
        .collect();
    let config = TrainConfig {
        total_steps: steps + 1,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(llama, config)?;
    trainer.train_steps(&train_examples, 1, |_| {})?;
    let t = Instant::now();
    let mut losses = Vec::new();
    trainer.train(&train_examples, |p| losses.push(p.loss))?;
    let train_tps = (steps * 4 * 128) as f64 / t.elapsed().as_secs_f64();
    Ok((train_tps, losses))
}
