//! The default model and seeded adapters for the serving tests.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use openledger_model::{
    lora::{LoraAdapter, LoraConfig, LoraPair},
    Model,
};
use std::{collections::HashMap, path::PathBuf};

fn model_path() -> PathBuf {
    std::env::var_os("OPENLEDGER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(openledger_model::default_model_path)
}

/// The serving pass on the default model's own blocks, as the server loads it.
pub fn served_base() -> openledger_openlora::engine::Base {
    let raw = openledger_model::weights::read_gguf_raw(&model_path()).unwrap();
    openledger_openlora::engine::Base::from_gguf(&raw).unwrap()
}

/// The default model (scripts/fetch-model), or the GGUF file `OPENLEDGER_MODEL` names.
pub fn default_model() -> Model {
    let path = model_path();
    assert!(
        path.exists(),
        "no model at {}: run scripts/fetch-model first",
        path.display()
    );
    Model::load(&path).unwrap()
}

/// Seeded values in `[-scale/2, scale/2)`.
pub fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z =
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^= z >> 31;
            z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

/// A seeded adapter of rank `r` on `targets` of every layer of `model`.
pub fn random_adapter(model: &Model, seed: u64, r: usize, targets: &[&str]) -> LoraAdapter {
    let mut pairs = HashMap::new();
    for (k, (name, inp, out)) in model.llama.projections().into_iter().enumerate() {
        if !targets.iter().any(|t| name.ends_with(t)) {
            continue;
        }
        let s = seed * 1000 + k as u64 * 2;
        let a = Tensor::from_vec(random(s, r * inp, 0.2), (r, inp), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(random(s + 1, out * r, 0.2), (out, r), &Device::Cpu).unwrap();
        pairs.insert(name, LoraPair { a, b });
    }
    LoraAdapter {
        config: LoraConfig::new(r, 2.0 * r as f64, targets),
        pairs,
    }
}

/// Every projection an adapter may target.
pub const ALL: [&str; 7] = openledger_model::lora::TARGETS;

/// The largest difference between two rows of logits, as a share of `reference`'s spread.
pub fn relative_diff(got: &[f32], reference: &[f32]) -> f32 {
    let spread = reference.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
        - reference.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    got.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / spread
}

pub fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap()
}
