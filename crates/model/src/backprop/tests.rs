//! The pass's own consistency: its loss is candle's masked cross-entropy, and the gradients
//! summed over the batch are the per-sequence gradients added up. (That the per-sequence
//! gradients equal candle's autograd is `tests/gradients.rs`.)

use super::*;
use crate::{
    config::Config,
    llama::LoraBatch,
    lora::{LoraConfig, LoraPair},
    loss::masked_cross_entropy,
    weights::Weights,
};
use candle_core::Device;

/// Deterministic values in ±scale/2 (no random generator, so the same on every machine).
fn values(seed: usize, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) as f32 * 0.618_034).fract() - 0.5)
        .map(|x| x * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn tiny() -> Llama {
    let c = Config {
        vocab_size: 40,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 32,
        tie_word_embeddings: false,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    };
    let mut w = Weights::new();
    let mut seed = 0;
    let mut put = |name: String, shape: &[usize], scale: f32, offset: f32| {
        seed += 1;
        w.insert(
            name,
            (values(seed, shape, scale) + f64::from(offset)).unwrap(),
        );
    };
    put("model.embed_tokens.weight".into(), &[40, 16], 2.0, 0.0);
    put("lm_head.weight".into(), &[40, 16], 1.0, 0.0);
    put("model.norm.weight".into(), &[16], 0.2, 1.0);
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), &[16], 0.2, 1.0);
        put(
            format!("{p}.post_attention_layernorm.weight"),
            &[16],
            0.2,
            1.0,
        );
        for (name, out, inp) in [
            ("self_attn.q_proj", 16, 16),
            ("self_attn.k_proj", 8, 16),
            ("self_attn.v_proj", 8, 16),
            ("self_attn.o_proj", 16, 16),
            ("mlp.gate_proj", 24, 16),
            ("mlp.up_proj", 24, 16),
            ("mlp.down_proj", 16, 24),
        ] {
            put(format!("{p}.{name}.weight"), &[out, inp], 0.8, 0.0);
        }
    }
    Llama::new(c, &w).unwrap()
}

fn adapter(model: &Llama) -> LoraAdapter {
    let pairs = model
        .projections()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1) // leave some projections without an adapter
        .map(|(i, (name, inp, out))| {
            let pair = LoraPair {
                a: values(100 + i, &[2, inp], 0.8),
                b: values(200 + i, &[out, 2], 0.8),
            };
            (name, pair)
        })
        .collect();
    LoraAdapter {
        config: LoraConfig::new(2, 3.0, &["q_proj"]),
        pairs,
    }
}

#[test]
fn loss_is_candles_and_summed_gradients_add_up_per_sequence() {
    let model = tiny();
    let adapter = adapter(&model);
    let (b, s) = (3, 6);
    let tokens: Vec<u32> = (0..b * s).map(|i| (i * 11 % 40) as u32).collect();
    let targets: Vec<u32> = (0..b * s).map(|i| (i * 7 % 40) as u32).collect();
    // Some positions not learned, as prompt tokens are not.
    let mask: Vec<f32> = (0..b * s).map(|i| f32::from(i % 4 != 0)).collect();
    let learned: f32 = mask.iter().sum();
    let batch = Batch {
        b,
        s,
        tokens: tokens.clone(),
        targets: targets.clone(),
        weights: mask.iter().map(|m| m / learned).collect(),
        dropout: None,
    };
    let mut ws = Workspace::default();
    let whole = run(&model, &adapter, &batch, true, false, &mut ws).unwrap();
    let split = run(&model, &adapter, &batch, true, true, &mut ws).unwrap();
    let forward = run(&model, &adapter, &batch, false, false, &mut ws).unwrap();

    let dev = &Device::Cpu;
    let lora = LoraBatch::new(vec![&adapter], &[Some(0); 3]).unwrap();
    let input = Tensor::from_vec(tokens, (b, s), dev).unwrap();
    let logits = model.forward_train(&input, Some(&lora)).unwrap();
    let target = Tensor::from_vec(targets, (b, s), dev).unwrap();
    let mask = Tensor::from_vec(mask, (b, s), dev).unwrap();
    let expected: f32 = masked_cross_entropy(&logits, &target, &mask)
        .unwrap()
        .to_scalar()
        .unwrap();
    for loss in [whole.loss, split.loss, forward.loss] {
        assert!(
            (loss as f32 - expected).abs() < 1e-4,
            "{loss} vs {expected}"
        );
    }
    assert!(forward.grads.is_empty());

    assert_eq!(whole.grads.len(), adapter.pairs.len());
    for (module, (ga, gb)) in &whole.grads {
        let (sa, sb) = &split.grads[module];
        for (summed, per) in [(ga, sa), (gb, sb)] {
            assert_eq!(per.len(), b * summed.len());
            let size = summed.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(size > 1e-4, "{module}: the gradient is not trivially zero");
            for (i, &g) in summed.iter().enumerate() {
                let added: f32 = (0..b).map(|k| per[k * summed.len() + i]).sum();
                assert!((g - added).abs() <= 1e-5 * size.max(1.0), "{module}[{i}]");
            }
        }
    }
}

/// With LoRA dropout the gradients are still those of the loss the pass computes: each
/// checked against a central finite difference under the same (seeded) masks.
#[test]
fn dropout_gradients_match_finite_differences() {
    let model = tiny();
    let adapter = adapter(&model);
    let (b, s) = (2, 5);
    let batch = |dropout| Batch {
        b,
        s,
        tokens: (0..b * s).map(|i| (i * 13 % 40) as u32).collect(),
        targets: (0..b * s).map(|i| (i * 5 % 40) as u32).collect(),
        weights: vec![1.0 / (b * s) as f32; b * s],
        dropout,
    };
    let dropout = Some(Dropout { p: 0.3, seed: 9 });
    let mut ws = Workspace::default();
    let plain = run(&model, &adapter, &batch(None), false, false, &mut ws).unwrap();
    let zero = Some(Dropout { p: 0.0, seed: 9 });
    let same = run(&model, &adapter, &batch(zero), false, false, &mut ws).unwrap();
    assert_eq!(plain.loss, same.loss, "p = 0 is no dropout");
    let pass = run(&model, &adapter, &batch(dropout), true, false, &mut ws).unwrap();
    assert_ne!(
        pass.loss, plain.loss,
        "the mask changes what the adapters read"
    );
    let again = run(&model, &adapter, &batch(dropout), false, false, &mut ws).unwrap();
    assert_eq!(pass.loss, again.loss, "the same seed draws the same masks");

    let loss_with = |module: &str, which: usize, i: usize, delta: f32| {
        let mut changed = adapter.clone();
        let pair = changed.pairs.get_mut(module).unwrap();
        let t = if which == 0 { &mut pair.a } else { &mut pair.b };
        let mut v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v[i] += delta;
        *t = Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap();
        let mut ws = Workspace::default();
        run(&model, &changed, &batch(dropout), false, false, &mut ws)
            .unwrap()
            .loss
    };
    let eps = 1e-2f32;
    let mut checked = 0;
    for module in [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.gate_proj",
    ] {
        let (ga, gb) = &pass.grads[module];
        for (which, grad) in [(0, ga), (1, gb)] {
            for i in [0, 3, grad.len() - 1] {
                let numeric = (loss_with(module, which, i, eps)
                    - loss_with(module, which, i, -eps))
                    / (2.0 * f64::from(eps));
                let analytic = f64::from(grad[i]);
                assert!(
                    (numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(),
                    "{module} {} [{i}]: analytic {analytic} vs numeric {numeric}",
                    ["A", "B"][which]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12);
}
