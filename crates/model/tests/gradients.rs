//! Per-example gradients for attribution, on a tiny seeded model: the one-pass per-example
//! gradients equal the gradients of each example run alone (different lengths, prompts masked,
//! padding in the batch), and the seeded projection is deterministic and keeps norms.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{random, tiny_config, tiny_weights};
use openledger_model::{
    config::Config,
    gradients::{per_example_gradients, Sketch},
    llama::{Llama, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair, TARGETS},
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
fn two_modules() -> Vec<(String, usize, usize)> {
    vec![
        ("model.layers.0.self_attn.q_proj".into(), 32, 32),
        ("model.layers.1.mlp.down_proj".into(), 48, 32),
    ]
}

/// Every projection of every layer, sorted by module name.
fn every_module(model: &Llama) -> Vec<(String, usize, usize)> {
    let mut all = model.projections();
    all.sort();
    all
}

fn adapter_with(shapes: &[(String, usize, usize)], tensors: &[(Tensor, Tensor)]) -> LoraAdapter {
    let pairs: HashMap<String, LoraPair> = shapes
        .iter()
        .zip(tensors)
        .map(|((m, _, _), (a, b))| {
            (
                m.clone(),
                LoraPair {
                    a: a.clone(),
                    b: b.clone(),
                },
            )
        })
        .collect();
    LoraAdapter {
        config: LoraConfig::new(4, 6.0, &TARGETS),
        pairs,
    }
}

#[test]
fn one_pass_per_example_gradients_equal_single_example_gradients() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    check_against_autograd(&model, &two_modules());
}

/// The same on every projection of a model with attention biases (Qwen2's layout): every
/// kernel of the hand-written pass against candle's autograd.
#[test]
fn per_example_gradients_of_every_projection_with_biases_match_autograd() {
    let c = Config {
        attention_bias: true,
        ..tiny_config()
    };
    let mut weights = tiny_weights(&c);
    let kv = c.kv_heads() * c.head_dim();
    for i in 0..c.num_hidden_layers {
        for (k, (name, width)) in [("q_proj", c.hidden_size), ("k_proj", kv), ("v_proj", kv)]
            .into_iter()
            .enumerate()
        {
            let bias = random(200 + (i * 3 + k) as u64, &[width], 0.4);
            weights.insert(format!("model.layers.{i}.self_attn.{name}.bias"), bias);
        }
    }
    let model = Llama::new(c, &weights).unwrap();
    check_against_autograd(&model, &every_module(&model));
}

/// Compares [`per_example_gradients`] on `examples()` with the gradient of each example
/// alone through candle's autograd, for a seeded rank-4 adapter on `shapes`.
fn check_against_autograd(model: &Llama, shapes: &[(String, usize, usize)]) {
    let tensors: Vec<(Tensor, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(i, (_, inp, out))| {
            (
                random(90 + i as u64, &[4, *inp], 0.6),
                random(950 + i as u64, &[*out, 4], 0.6),
            )
        })
        .collect();
    let adapter = adapter_with(shapes, &tensors);
    let batched = per_example_gradients(model, &adapter, &examples()).unwrap();
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
        let single = adapter_with(shapes, &live);
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
        // `shapes` is in module-name order, as the gradients are.
        for (a, b) in &vars {
            for v in [a, b] {
                let g = grads.get(v).expect("every adapted weight has a gradient");
                expected.extend(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
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
