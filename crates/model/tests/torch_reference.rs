//! The engine against the reference implementation, PyTorch + transformers + peft, through the
//! fixtures `scripts/gen-fixtures` writes (see `scripts/gen_fixtures.py`):
//!
//! - SmolLM2-135M-Instruct, loaded by transformers from the same GGUF file, on fixed prompts
//!   (`fixtures/torch_logits.json`): identical token ids and logits within [`SMOLLM2_TOLERANCE`].
//! - A tiny random Llama saved by transformers (`fixtures/tiny_llama/`, untied, grouped-query
//!   attention, rotary base 1000 in transformers 5's `rope_parameters`): logits at every
//!   position within [`TINY_TOLERANCE`], without an adapter, with an adapter saved by PEFT
//!   (applied, and merged), and with an adapter our engine trained and wrote, as PEFT computes
//!   them after loading our files.
//!
//! None of this needs Python or the network; the SmolLM2 check needs the model file of
//! `scripts/fetch-model`, like `tests/reference.rs`.

mod common;

use candle_core::{DType, Device, Tensor};
use common::max_diff;
use openledger_model::{
    llama::{KvCache, Llama, LoraBatch},
    lora::LoraAdapter,
    weights::load_safetensors_dir,
};
use serde::Deserialize;
use std::{collections::HashMap, path::PathBuf};

/// SmolLM2: both sides hold the same dequantized weights in f32 and compute in f32, so only
/// the order of floating-point operations differs (candle's and PyTorch's GEMM blockings, the
/// softmax and RMSNorm reductions, rotary angles computed as `θ^(-2i/d)` each their own way).
/// Each such difference is a few ulps; over 30 layers they grow to 3.8e-5 at worst (measured
/// 2026-11-26 over the 6 prompts, on logits that span about 30 units; the test prints it).
/// 5e-4 leaves room for other CPUs' kernels while anything wrong in the transformer (the
/// rotary layout of q and k, the grouping of heads, a norm epsilon, a mis-mapped tensor)
/// moves logits by tenths to whole units: undoing the q/k permutation fix moves a top logit
/// by 1.5 at the second position of the first prompt.
const SMOLLM2_TOLERANCE: f32 = 5e-4;

/// The tiny model: two layers of width 64 in f32, logits of a few units; the two sides differ
/// by float rounding only (measured: 6e-6 without an adapter, 2.1e-5 at most with one). A
/// wrong LoRA scale, a transposed pair or a missed target moves logits by more than 0.1
/// (scaling by `alpha/√r` instead of `alpha/r` fails both adapter tests).
const TINY_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    ids: Vec<u32>,
    argmax: Vec<u32>,
    max_logit: Vec<f32>,
    top_ids: Vec<u32>,
    top_logits: Vec<f32>,
}

#[test]
fn smollm2_logits_agree_with_transformers() {
    let model = common::default_model();
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/torch_logits.json")).unwrap();
    assert!(fixture.cases.len() >= 6);
    let mut worst_overall = 0f32;
    for case in &fixture.cases {
        assert_eq!(
            model.tokenizer.encode(&case.prompt),
            case.ids,
            "token ids of {:?}",
            case.prompt
        );
        let logits = common::all_logits(&model, &case.ids); // (s, vocab)
        let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let mut worst = 0f32;
        // Every position: the reference's most likely token has the reference's logit here,
        // and it is still our most likely token unless a runner-up is within the tolerance.
        for (pos, row) in rows.iter().enumerate() {
            let id = case.argmax[pos] as usize;
            worst = worst.max((row[id] - case.max_logit[pos]).abs());
            let ours = row.iter().cloned().fold(f32::MIN, f32::max);
            assert!(
                ours - row[id] <= SMOLLM2_TOLERANCE,
                "{:?} position {pos}: our top logit {ours} beats the reference's token {id} ({})",
                case.prompt,
                row[id]
            );
        }
        // The last position: the 32 largest logits, one by one.
        let last = rows.last().unwrap();
        for (&id, &reference) in case.top_ids.iter().zip(&case.top_logits) {
            worst = worst.max((last[id as usize] - reference).abs());
        }
        println!("{:?}: worst logit difference {worst:.2e}", case.prompt);
        worst_overall = worst_overall.max(worst);
    }
    println!("SmolLM2 against transformers: worst logit difference {worst_overall:.2e}");
    assert!(
        worst_overall <= SMOLLM2_TOLERANCE,
        "logits differ from transformers' by {worst_overall} (tolerance {SMOLLM2_TOLERANCE})"
    );
}

fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama")
}

struct Tiny {
    llama: Llama,
    tokens: Tensor,
    logits: HashMap<String, Tensor>,
}

fn tiny() -> Tiny {
    let (config, weights) = load_safetensors_dir(&tiny_dir()).unwrap();
    // Read from transformers 5's `rope_parameters`, not the 10,000 default.
    assert_eq!(config.rope_theta, 1000.0);
    assert!(!config.tie_word_embeddings && config.kv_heads() == 2);
    let llama = Llama::new(config, &weights).unwrap();
    let logits =
        candle_core::safetensors::load(tiny_dir().join("logits.safetensors"), &Device::Cpu)
            .unwrap();
    let tokens = logits["tokens"].to_dtype(DType::U32).unwrap();
    Tiny {
        llama,
        tokens,
        logits,
    }
}

impl Tiny {
    fn forward(&self, adapter: Option<&LoraAdapter>) -> Tensor {
        let b = self.tokens.dim(0).unwrap();
        let lora = adapter.map(|a| LoraBatch::new(vec![a], &vec![Some(0); b]).unwrap());
        self.llama
            .forward_all_lora(&self.tokens, &mut KvCache::default(), lora.as_ref())
            .unwrap()
    }
}

#[test]
fn tiny_llama_logits_agree_with_transformers() {
    let t = tiny();
    let ours = t.forward(None);
    let reference = &t.logits["base"];
    assert_eq!(ours.dims(), reference.dims());
    let diff = max_diff(&ours, reference);
    println!("tiny model: max logit difference {diff:.2e}");
    assert!(diff <= TINY_TOLERANCE, "{diff}");
    // The logits are not all alike, so agreeing means something.
    let spread: f32 = reference
        .abs()
        .unwrap()
        .max_keepdim(2)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(spread > 1.0, "{spread}");
}

#[test]
fn a_peft_adapter_gives_peft_logits_applied_and_merged() {
    let mut t = tiny();
    let adapter = LoraAdapter::load(&tiny_dir().join("peft_adapter")).unwrap();
    assert_eq!((adapter.config.r, adapter.config.lora_alpha), (4, 8.0));
    assert_eq!(adapter.pairs.len(), 2 * 6);
    let reference = &t.logits["peft_adapter"];
    assert!(
        max_diff(reference, &t.logits["base"]) > 1.0,
        "the adapter changes the logits"
    );
    let applied = max_diff(&t.forward(Some(&adapter)), reference);
    t.llama.merge(&adapter, 1.0).unwrap();
    let merged = max_diff(&t.forward(None), reference);
    println!("PEFT adapter: max logit difference {applied:.2e} applied, {merged:.2e} merged");
    assert!(applied <= TINY_TOLERANCE, "applied: {applied}");
    assert!(merged <= TINY_TOLERANCE, "merged: {merged}");
}

#[test]
fn an_adapter_written_by_this_engine_gives_the_same_logits_in_peft() {
    let t = tiny();
    let dir = tiny_dir().join("engine_adapter");
    let adapter = LoraAdapter::load(&dir).unwrap();
    assert_eq!(adapter.pairs.len(), 2 * 7, "all seven projections");
    for (module, pair) in &adapter.pairs {
        let b: f32 = pair
            .b
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .max_keepdim(1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(b > 1e-3, "{module}: B is still zero");
    }
    // PEFT's logits after loading these files (scripts/gen_fixtures.py, step 3).
    let reference = &t.logits["engine_adapter_peft"];
    assert!(max_diff(reference, &t.logits["base"]) > 0.1);
    let diff = max_diff(&t.forward(Some(&adapter)), reference);
    println!("our adapter: max logit difference from PEFT's {diff:.2e}");
    assert!(diff <= TINY_TOLERANCE, "{diff}");
}
