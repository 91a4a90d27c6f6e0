//! The serving pass on the default model: it agrees with the model crate's f32 pass (to the
//! rounding of 8-bit activations and the file's own 4- and 8-bit weights), a sequence's logits
//! are bit-for-bit the same whatever batch, chunking and neighbours' adapters it runs with,
//! and an ensemble of two adapters with weights w and 1 − w is their weighted merge.

mod common;

use candle_core::{Device, Tensor};
use common::{argmax, default_model, random_adapter, relative_diff, ALL};
use openledger_model::{
    llama::{KvCache, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair},
    Model,
};
use openledger_openlora::engine::{Base, Chunk, Mix, SeqCache, ServedAdapter};
use std::sync::Arc;

/// The candle pass's last-position logits for `tokens` on `adapter`.
fn reference(model: &Model, tokens: &[u32], adapter: Option<&LoraAdapter>) -> Vec<f32> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let lora = adapter.map(|a| LoraBatch::new(vec![a], &[Some(0)]).unwrap());
    model
        .llama
        .forward_last_lora(&input, &mut KvCache::default(), lora.as_ref())
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The serving pass's logits for `tokens` alone, prefilled in chunks of `chunk`.
fn alone(base: &Base, tokens: &[u32], mix: &Mix, chunk: usize) -> Vec<f32> {
    let mut cache = SeqCache::default();
    let mut logits = Vec::new();
    for part in tokens.chunks(chunk) {
        logits = base
            .forward(&mut [Chunk {
                tokens: part,
                cache: &mut cache,
                mix,
                logits: true,
            }])
            .unwrap()
            .remove(0);
    }
    logits
}

#[test]
fn the_serving_pass_agrees_with_the_f32_pass_and_is_batch_invariant() {
    let model = default_model();
    let base = common::served_base();
    let ad1 = random_adapter(&model, 1, 8, &ALL);
    let ad2 = random_adapter(&model, 2, 16, &["q_proj", "v_proj"]);
    let s1: Mix = vec![(Arc::new(ServedAdapter::new(&ad1, &base).unwrap()), 1.0)];
    let s2: Mix = vec![(Arc::new(ServedAdapter::new(&ad2, &base).unwrap()), 1.0)];
    let none: Mix = Vec::new();
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "Write a short poem about the sea and the wind that moves it",
        "2 + 2 =",
    ]
    .iter()
    .map(|p| model.tokenizer.encode(p))
    .collect();
    let mixes = [&none, &s1, &s2];
    let adapters = [None, Some(&ad1), Some(&ad2)];

    // Against the f32 pass, to 8-bit rounding; the adapter visibly moves the logits.
    let mut solo = Vec::new();
    for ((p, mix), adapter) in prompts.iter().zip(mixes).zip(adapters) {
        let ours = alone(&base, p, mix, p.len());
        let theirs = reference(&model, p, adapter);
        let diff = relative_diff(&ours, &theirs);
        // 8-bit activations move logits by a few per cent of their spread (llama.cpp too).
        assert!(diff < 0.05, "{diff} of the spread from the f32 pass");
        solo.push(ours);
    }
    let plain = reference(&model, &prompts[1], None);
    assert!(
        relative_diff(&solo[1], &plain) > 0.05,
        "the adapter changes nothing"
    );

    // Chunked prefill gives the same bits as one chunk.
    for ((p, mix), want) in prompts.iter().zip(mixes).zip(&solo) {
        assert_eq!(&alone(&base, p, mix, 3), want);
    }

    // All three in one step, then decode steps together: the same bits as alone.
    let mut caches = vec![SeqCache::default(); 3];
    let mut tokens: Vec<Vec<u32>> = prompts.clone();
    let mut fed: Vec<usize> = vec![0; 3];
    for step in 0..6 {
        let mut chunks: Vec<Chunk> = Vec::new();
        for (i, cache) in caches.iter_mut().enumerate() {
            chunks.push(Chunk {
                tokens: &tokens[i][fed[i]..],
                cache,
                mix: mixes[i],
                logits: true,
            });
        }
        let logits = base.forward(&mut chunks).unwrap();
        for i in 0..3 {
            let want = alone(&base, &tokens[i], mixes[i], 4);
            assert_eq!(logits[i], want, "sequence {i} at step {step}");
            fed[i] = tokens[i].len();
            tokens[i].push(argmax(&logits[i]));
        }
    }
}

#[test]
fn an_ensemble_is_the_weighted_merge_of_its_adapters() {
    let model = default_model();
    let base = common::served_base();
    let ad1 = random_adapter(&model, 3, 8, &ALL);
    let ad2 = random_adapter(&model, 4, 4, &["q_proj", "o_proj", "down_proj"]);
    let w = 0.5f32;
    // The merge as one adapter: A = [A1; A2], B = [w·s1·B1, (1 − w)·s2·B2], scale 1.
    let mut pairs = std::collections::HashMap::new();
    for (name, _, _) in model.llama.projections() {
        let parts: Vec<(&LoraPair, f64)> = [(&ad1, w as f64), (&ad2, 1.0 - w as f64)]
            .iter()
            .filter_map(|(a, wt)| a.pairs.get(&name).map(|p| (p, wt * a.config.scale())))
            .collect();
        if parts.is_empty() {
            continue;
        }
        let a = Tensor::cat(
            &parts.iter().map(|(p, _)| p.a.clone()).collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let b = Tensor::cat(
            &parts
                .iter()
                .map(|(p, s)| (&p.b * *s).unwrap())
                .collect::<Vec<_>>(),
            1,
        )
        .unwrap();
        pairs.insert(name, LoraPair { a, b });
    }
    // Modules adapted by one adapter only carry rank 8 or 4; pad to one rank of 12.
    for pair in pairs.values_mut() {
        let r = pair.a.dim(0).unwrap();
        pair.a = pair.a.pad_with_zeros(0, 0, 12 - r).unwrap();
        pair.b = pair.b.pad_with_zeros(1, 0, 12 - r).unwrap();
    }
    let merged = LoraAdapter {
        config: LoraConfig::new(12, 12.0, &ALL),
        pairs,
    };
    let ensemble: Mix = vec![
        (Arc::new(ServedAdapter::new(&ad1, &base).unwrap()), w),
        (Arc::new(ServedAdapter::new(&ad2, &base).unwrap()), 1.0 - w),
    ];
    let one: Mix = vec![(Arc::new(ServedAdapter::new(&merged, &base).unwrap()), 1.0)];
    let prompt = model.tokenizer.encode("Tell me about the moon landing");
    let got = alone(&base, &prompt, &ensemble, prompt.len());
    let want = alone(&base, &prompt, &one, prompt.len());
    let f32_merge = reference(&model, &prompt, Some(&merged));
    let diffs = (relative_diff(&got, &want), relative_diff(&got, &f32_merge));
    let singles: Vec<f32> = [&ad1, &ad2]
        .iter()
        .map(|single| {
            let mix: Mix = vec![(Arc::new(ServedAdapter::new(single, &base).unwrap()), 1.0)];
            relative_diff(&alone(&base, &prompt, &mix, prompt.len()), &want)
        })
        .collect();
    // Activations are rounded to 8 bits per block, so the two orders of summation (two
    // adapters' terms, or one merged term) differ by that rounding, not more; each adapter
    // alone is far further away. (`adapter.rs` checks the terms themselves are linear.)
    eprintln!("ensemble vs merge {diffs:?}, singles vs merge {singles:?}");
    assert!(diffs.0 < 0.03 && diffs.1 < 0.05, "{diffs:?}");
    assert!(
        singles.iter().all(|&d| d > 3.0 * diffs.0),
        "{singles:?} vs {diffs:?}"
    );
}

#[test]
fn adapters_that_do_not_fit_are_refused_without_harm() {
    let model = default_model();
    let base = common::served_base();
    let good = random_adapter(&model, 5, 4, &["q_proj"]);
    // A pair whose A is the wrong width for its projection.
    let mut wrong = good.clone();
    let pair = wrong.pairs.values_mut().next().unwrap();
    pair.a = Tensor::zeros((4, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = ServedAdapter::new(&wrong, &base).err().expect("refused");
    assert!(e.to_string().contains("do not fit"), "{e}");
    // A rank no server should hold.
    let mut huge = good.clone();
    huge.config.r = 1 << 40;
    let e = ServedAdapter::new(&huge, &base).err().expect("refused");
    assert!(e.to_string().contains("rank"), "{e}");
    // A weight no half holds: it would turn the adapter's rows to infinities.
    let mut wild = good.clone();
    let pair = wild.pairs.values_mut().next().unwrap();
    pair.a = (pair.a.clone() * 1e9).unwrap();
    let e = ServedAdapter::new(&wild, &base).err().expect("refused");
    assert!(
        e.to_string().contains("beyond what the server holds"),
        "{e}"
    );
    // And in B, checked after the adapter's scale.
    let mut wild = good.clone();
    let pair = wild.pairs.values_mut().next().unwrap();
    pair.b = (pair.b.ones_like().unwrap() * 1e5).unwrap();
    let e = ServedAdapter::new(&wild, &base).err().expect("refused");
    assert!(
        e.to_string().contains("beyond what the server holds"),
        "{e}"
    );
    // A module the model does not have.
    let mut stray = good;
    let pair = stray.pairs.values().next().unwrap().clone();
    stray
        .pairs
        .insert("model.layers.99.self_attn.q_proj".into(), pair);
    assert!(ServedAdapter::new(&stray, &base).is_err());
}
