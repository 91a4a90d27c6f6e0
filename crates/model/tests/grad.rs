//! Gradients for training, on a tiny seeded model: the differentiable forward pass gives the
//! same logits as the fast one, and the gradient of the masked causal-LM loss with respect to
//! LoRA weights (held in `Var`s) matches central finite differences.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{max_diff, random, tiny_config, tiny_weights};
use openledger_model::{
    llama::{KvCache, Llama, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair},
    loss::masked_cross_entropy,
};
use std::collections::HashMap;

const TOKENS: [u32; 8] = [3, 17, 42, 5, 60, 8, 21, 1];
/// The first three tokens are the "prompt": their next-token predictions are not learned.
const LEARNED: [f32; 7] = [0., 0., 1., 1., 1., 1., 1.];

fn adapter_from(a: &Tensor, b: &Tensor) -> LoraAdapter {
    let mut pairs = HashMap::new();
    pairs.insert(
        "model.layers.0.self_attn.q_proj".to_string(),
        LoraPair {
            a: a.clone(),
            b: b.clone(),
        },
    );
    LoraAdapter {
        config: LoraConfig::new(4, 8.0, &["q_proj"]),
        pairs,
    }
}

fn loss(model: &Llama, adapter: &LoraAdapter) -> Tensor {
    let batch = LoraBatch::new(vec![adapter], &[Some(0)]).unwrap();
    let input = Tensor::new(&TOKENS[..7], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = Tensor::new(&TOKENS[1..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mask = Tensor::new(&LEARNED, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward_train(&input, Some(&batch)).unwrap();
    masked_cross_entropy(&logits, &targets, &mask).unwrap()
}

#[test]
fn the_differentiable_pass_matches_the_fast_one() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let adapter = adapter_from(&random(70, &[4, 32], 0.6), &random(71, &[32, 4], 0.6));
    let batch = LoraBatch::new(vec![&adapter], &[Some(0)]).unwrap();
    let input = Tensor::new(&TOKENS, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let fast = model
        .forward_all_lora(&input, &mut KvCache::default(), Some(&batch))
        .unwrap();
    let train = model.forward_train(&input, Some(&batch)).unwrap();
    let diff = max_diff(&fast, &train);
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn lora_gradients_match_finite_differences() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let a = Var::from_tensor(&random(80, &[4, 32], 0.6)).unwrap();
    let b = Var::from_tensor(&random(81, &[32, 4], 0.6)).unwrap();
    let adapter = adapter_from(a.as_tensor(), b.as_tensor());
    let grads = loss(&model, &adapter).backward().unwrap();
    let (ga, gb) = (grads.get(&a).unwrap(), grads.get(&b).unwrap());

    let eps = 1e-2f32;
    let mut checked = 0;
    for (var, grad, is_a) in [(&a, ga, true), (&b, gb, false)] {
        let values: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let analytic: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let shape = var.as_tensor().shape().clone();
        for i in (0..values.len()).step_by(7) {
            let at = |delta: f32| {
                let mut v = values.clone();
                v[i] += delta;
                let t = Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap();
                let adapter = if is_a {
                    adapter_from(&t, b.as_tensor())
                } else {
                    adapter_from(a.as_tensor(), &t)
                };
                loss(&model, &adapter).to_scalar::<f32>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let g = analytic[i];
            // f32 losses: differences below ~1e-3 are rounding, so compare absolutely there.
            let err = (numeric - g).abs();
            assert!(
                err < 2e-3 || err / g.abs().max(numeric.abs()) < 2e-2,
                "{} [{i}]: analytic {g} numeric {numeric}",
                if is_a { "A" } else { "B" }
            );
            checked += 1;
        }
    }
    assert!(checked > 30);
    // The gradient is not trivially zero.
    let norm: f32 = ga.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(norm > 1e-6, "{norm}");
}

#[test]
fn masked_positions_do_not_count() {
    let logits = random(5, &[1, 3, 6], 4.0);
    let targets = Tensor::new(&[[1u32, 4, 2]], &Device::Cpu).unwrap();
    let all = masked_cross_entropy(
        &logits,
        &targets,
        &Tensor::new(&[[1f32, 1., 1.]], &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    let last = masked_cross_entropy(
        &logits,
        &targets,
        &Tensor::new(&[[0f32, 0., 1.]], &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    let only_last = masked_cross_entropy(
        &logits.narrow(1, 2, 1).unwrap(),
        &targets.narrow(1, 2, 1).unwrap(),
        &Tensor::new(&[[1f32]], &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert!((last - only_last).abs() < 1e-6);
    assert!((all - last).abs() > 1e-3);
    let none = masked_cross_entropy(
        &logits,
        &targets,
        &Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(none
        .err()
        .unwrap()
        .to_string()
        .contains("mask is all zeros"));
}
