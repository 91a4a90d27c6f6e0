//! Per-example gradients for attribution, on a tiny seeded model: the one-pass per-example
//! gradients equal the gradients of each example run alone (different lengths, prompts masked,
//! padding in the batch), and the seeded projection is deterministic and keeps norms.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{random, tiny_config, tiny_weights};
use openledger_model::{
    gradients::{per_example_gradients, Sketch},
    llama::{Llama, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair},
    loss::masked_cross_entropy,
    train::Example,
};
use std::collections::HashMap;

fn examples() -> Vec<Example> {
    vec![
        Example {
            tokens: vec![3, 17, 42, 5, 60, 8, 21, 1],
            prompt_len: 3,
        },
        Example {
            tokens: vec![9, 9, 30, 2, 7],
            prompt_len: 1,
        },
        Example {
            tokens: vec![50, 40, 30, 20, 10, 0],
            prompt_len: 4,
        },
    ]
}

/// Rank 4 on layer 0's q_proj and layer 1's down_proj (the tiny model: e = 32, mlp = 48).
fn shapes() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("model.layers.0.self_attn.q_proj", 32, 32),
        ("model.layers.1.mlp.down_proj", 48, 32),
    ]
}

fn adapter_with(tensors: &[(Tensor, Tensor)]) -> LoraAdapter {
    let pairs: HashMap<String, LoraPair> = shapes()
        .iter()
        .zip(tensors)
        .map(|((m, _, _), (a, b))| {
            (
                m.to_string(),
                LoraPair {
                    a: a.clone(),
                    b: b.clone(),
                },
            )
        })
        .collect();
    LoraAdapter {
        config: LoraConfig::new(4, 6.0, &["q_proj", "down_proj"]),
        pairs,
    }
}

#[test]
fn one_pass_per_example_gradients_equal_single_example_gradients() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let tensors: Vec<(Tensor, Tensor)> = shapes()
        .iter()
        .enumerate()
        .map(|(i, (_, inp, out))| {
            (
                random(90 + i as u64, &[4, *inp], 0.6),
                random(95 + i as u64, &[*out, 4], 0.6),
            )
        })
        .collect();
    let adapter = adapter_with(&tensors);
    let batched = per_example_gradients(&model, &adapter, &examples()).unwrap();
    assert_eq!(batched.len(), 3);

    for (e, got) in examples().iter().zip(&batched) {
        // The same gradient from a batch of one, through shared Vars and backward.
        let vars: Vec<(Var, Var)> = tensors
            .iter()
            .map(|(a, b)| (Var::from_tensor(a).unwrap(), Var::from_tensor(b).unwrap()))
            .collect();
        let live: Vec<(Tensor, Tensor)> = vars
            .iter()
            .map(|(a, b)| (a.as_tensor().clone(), b.as_tensor().clone()))
            .collect();
        let single = adapter_with(&live);
        let lora = LoraBatch::new(vec![&single], &[Some(0)]).unwrap();
        let n = e.tokens.len();
        let input = Tensor::new(&e.tokens[..n - 1], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let target = Tensor::new(&e.tokens[1..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mask: Vec<f32> = (1..n)
            .map(|i| if i >= e.prompt_len { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::new(mask.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model.forward_train(&input, Some(&lora)).unwrap();
        let grads = masked_cross_entropy(&logits, &target, &mask)
            .unwrap()
            .backward()
            .unwrap();
        let mut expected = Vec::new();
        // shapes() is already in module-name order.
        for (a, b) in &vars {
            expected.extend(
                grads
                    .get(a)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            expected.extend(
                grads
                    .get(b)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
        assert_eq!(got.len(), expected.len());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let size = expected.iter().map(|x| x.abs()).fold(0f32, f32::max);
        assert!(size > 1e-4, "the gradient is not trivially zero");
        assert!(
            worst <= 1e-4 * size.max(1.0),
            "per-example gradient differs by {worst} (size {size})"
        );
    }
    // Different examples really have different gradients.
    let d: f32 = batched[0]
        .iter()
        .zip(&batched[1])
        .map(|(x, y)| (x - y).abs())
        .sum();
    assert!(d > 1e-3);
}

#[test]
fn the_projection_is_seeded_and_keeps_norms() {
    let g: Vec<f32> = random(7, &[50_000], 2.0).to_vec1().unwrap();
    let sketch = Sketch { k: 1024, seed: 42 };
    let p = sketch.project(&g);
    assert_eq!(p.len(), 1024);
    assert_eq!(p, sketch.project(&g));
    assert_ne!(p, Sketch { k: 1024, seed: 43 }.project(&g));
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
    // CountSketch keeps squared norms in expectation, with a relative spread of about
    // sqrt(2/k) ≈ 4% here.
    let ratio = norm(&p) / norm(&g);
    assert!((0.8..1.2).contains(&ratio), "{ratio}");
}
