//! A tiny seeded Llama for tests that need no model file.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use openledger_model::{config::Config, weights::Weights, Model};
use std::path::PathBuf;

/// The model's logits `(s, vocab)` at every position of `ids`, in one pass without a cache.
pub fn all_logits(model: &Model, ids: &[u32]) -> Tensor {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .llama
        .forward_all(&input, &mut openledger_model::llama::KvCache::default())
        .unwrap()
        .squeeze(0)
        .unwrap()
}

/// The default model (SmolLM2-135M-Instruct from scripts/fetch-model), or the GGUF file that
/// `OPENLEDGER_MODEL` names.
pub fn default_model() -> Model {
    let path = std::env::var_os("OPENLEDGER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(openledger_model::default_model_path);
    assert!(
        path.exists(),
        "no model at {}: run scripts/fetch-model first (or point OPENLEDGER_MODEL at a GGUF file)",
        path.display()
    );
    Model::load(&path).unwrap()
}

/// A seeded pseudo-random tensor with values in `[-scale/2, scale/2)`, the same everywhere.
pub fn random(seed: u64, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z =
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^= z >> 31;
            z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

pub fn tiny_config() -> Config {
    Config {
        vocab_size: 61,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    }
}

/// Seeded random weights under Hugging Face's names.
pub fn tiny_weights(c: &Config) -> Weights {
    let mut seed = 0u64;
    let mut rand = |shape: &[usize], scale: f32| {
        seed += 1;
        random(seed, shape, scale)
    };
    let (e, m, d) = (c.hidden_size, c.intermediate_size, c.head_dim());
    let kv = c.kv_heads() * d;
    let mut w = Weights::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        rand(&[c.vocab_size, e], 2.0),
    );
    w.insert("model.norm.weight".into(), (rand(&[e], 0.2) + 1.0).unwrap());
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut put = |name: &str, t: Tensor| {
            w.insert(format!("{p}.{name}"), t);
        };
        put("input_layernorm.weight", (rand(&[e], 0.2) + 1.0).unwrap());
        put(
            "post_attention_layernorm.weight",
            (rand(&[e], 0.2) + 1.0).unwrap(),
        );
        put("self_attn.q_proj.weight", rand(&[e, e], 0.5));
        put("self_attn.k_proj.weight", rand(&[kv, e], 0.5));
        put("self_attn.v_proj.weight", rand(&[kv, e], 0.5));
        put("self_attn.o_proj.weight", rand(&[e, e], 0.5));
        put("mlp.gate_proj.weight", rand(&[m, e], 0.5));
        put("mlp.up_proj.weight", rand(&[m, e], 0.5));
        put("mlp.down_proj.weight", rand(&[e, m], 0.5));
    }
    w
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}
