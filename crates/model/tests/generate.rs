//! The transformer end to end: a tiny random model built in the test checks that cached,
//! step-by-step decoding gives the same logits as one pass over the whole sequence (with
//! grouped-query attention); the default model (SmolLM2-135M-Instruct, fetched by
//! `scripts/fetch-model`; `OPENLEDGER_MODEL` may name another file) answers simple prompts
//! correctly and samples deterministically for a seed.

mod common;

use candle_core::{Device, Tensor};
use common::{default_model, max_diff, tiny_config, tiny_weights};
use openledger_model::{
    generate::{Finish, Sampling},
    llama::{KvCache, Llama},
};

#[test]
fn cached_decoding_matches_one_full_pass() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let tokens: Vec<u32> = vec![3, 17, 42, 5, 60, 8, 8, 21, 1];
    let all = Tensor::new(tokens.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = model
        .forward_all(&all, &mut KvCache::default())
        .unwrap()
        .squeeze(0)
        .unwrap(); // (s, vocab)

    // A prefill of four positions, then one position at a time.
    let mut cache = KvCache::default();
    let prefill = all.narrow(1, 0, 4).unwrap();
    let mut rows = vec![model
        .forward_all(&prefill, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()];
    for i in 4..tokens.len() {
        let one = all.narrow(1, i, 1).unwrap();
        rows.push(
            model
                .forward_all(&one, &mut cache)
                .unwrap()
                .squeeze(0)
                .unwrap(),
        );
    }
    assert_eq!(cache.len(), tokens.len());
    let stepped = Tensor::cat(&rows, 0).unwrap();
    // f32 sums in a different order: agreement to ~1e-5 of logits of size ~1.
    let diff = max_diff(&full, &stepped);
    assert!(diff < 1e-4, "cached and full logits differ by {diff}");

    // A batch of two sequences gives each the logits it gets alone.
    let other: Vec<u32> = vec![9, 9, 30, 2, 7, 44, 13, 0, 59];
    let flat: Vec<u32> = tokens.iter().chain(&other).copied().collect();
    let batch = Tensor::from_vec(flat, (2, tokens.len()), &Device::Cpu).unwrap();
    let both = model.forward_all(&batch, &mut KvCache::default()).unwrap();
    let alone = model
        .forward_all(
            &Tensor::new(other.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &mut KvCache::default(),
        )
        .unwrap();
    let diff = max_diff(&both.narrow(0, 1, 1).unwrap(), &alone);
    assert!(diff < 1e-4, "batched and single logits differ by {diff}");
}

#[test]
fn a_full_context_is_refused() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let long = Tensor::zeros((1, 65), candle_core::DType::U32, &Device::Cpu).unwrap();
    let err = model
        .forward_last(&long, &mut KvCache::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("64 positions"), "{err}");
}

#[test]
fn the_default_model_answers_and_samples_deterministically() {
    let model = default_model();
    let greedy = Sampling::default();
    let paris = model
        .complete("The capital of France is", 8, greedy.clone(), &[], |_| {})
        .unwrap();
    assert!(paris.text.contains("Paris"), "{:?}", paris.text);

    let chat = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    let four = model.complete(chat, 16, greedy, &[], |_| {}).unwrap();
    assert!(four.text.contains('4'), "{:?}", four.text);
    assert_eq!(four.finish, Finish::Eos, "the answer ends with <|im_end|>");

    let sampled = Sampling {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        repetition_penalty: 1.1,
        seed: 11,
    };
    let run = |s: Sampling| {
        let mut streamed = String::new();
        let c = model
            .complete("Once upon a time", 24, s, &[], |t| streamed.push_str(t))
            .unwrap();
        assert_eq!(streamed, c.text, "the stream carries exactly the text");
        c
    };
    let a = run(sampled.clone());
    assert_eq!(a, run(sampled.clone()));
    let b = run(Sampling {
        seed: 12,
        ..sampled
    });
    assert_ne!(a.tokens, b.tokens);

    // A stop string ends the text before it.
    let stopped = model
        .complete(
            "Count: one, two, three, four",
            24,
            Sampling::default(),
            &[", six".into()],
            |_| {},
        )
        .unwrap();
    assert_eq!(stopped.finish, Finish::Stop, "{:?}", stopped.text);
    assert!(!stopped.text.contains("six"), "{:?}", stopped.text);
}

/// Decode steps on the 8-bit weight copies (`Model::load` turns them on) against the same
/// steps on f32 weights: the logits agree to within a small fraction of their spread, and
/// greedy decoding picks the same tokens.
#[test]
fn quantized_decode_steps_agree_with_f32_ones() {
    let mut model = default_model();
    assert!(model.llama.quantized_decode());
    let prompt = model
        .tokenizer
        .encode("The three primary colours are red, yellow and");
    let steps = |llama: &Llama| {
        let mut cache = KvCache::default();
        let row = |ids: &[u32]| {
            Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
        };
        let mut logits = llama.forward_last(&row(&prompt), &mut cache).unwrap();
        let mut out = Vec::new();
        for _ in 0..12 {
            let next = openledger_model::llama::argmax(&logits.squeeze(0).unwrap()).unwrap();
            logits = llama.forward_last(&row(&[next]), &mut cache).unwrap();
            out.push((next, logits.squeeze(0).unwrap()));
        }
        out
    };
    let quantized = steps(&model.llama);
    model.llama.set_quantized_decode(false);
    assert!(!model.llama.quantized_decode());
    let exact = steps(&model.llama);
    let mut worst = 0f32;
    for ((qt, ql), (et, el)) in quantized.iter().zip(&exact) {
        assert_eq!(qt, et, "greedy decoding picked different tokens");
        let spread = (el.max(0).unwrap() - el.min(0).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        worst = worst.max(max_diff(ql, el) / spread);
    }
    println!("worst logit difference: {worst:.5} of the logits' spread");
    assert!(worst > 0.0, "the decode steps did run on the 8-bit copies");
    // Measured 2026-11-27: 0.019 over these 12 steps (rounding 134M weights to 8 bits through
    // 30 layers); the bar leaves room without admitting a wrong product, which moves logits
    // by a large part of their spread.
    assert!(
        worst < 0.04,
        "8-bit decode moved logits by {worst} of their spread"
    );
}

/// The cache grows in place past its first buffer (256 positions): steps across the boundary
/// give the logits of one full pass.
#[test]
fn the_cache_grows_past_its_first_buffer() {
    let mut model = default_model();
    model.llama.set_quantized_decode(false);
    let text = "Rivers carry water from the hills down to the sea, and along the way they ";
    let ids: Vec<u32> = model.tokenizer.encode(&text.repeat(20))[..264].to_vec();
    let row = |ids: &[u32]| {
        Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
    };
    let full = model
        .llama
        .forward_all(&row(&ids), &mut KvCache::default())
        .unwrap()
        .squeeze(0)
        .unwrap(); // (264, vocab)
    let mut cache = KvCache::default();
    model
        .llama
        .forward_all(&row(&ids[..250]), &mut cache)
        .unwrap();
    for (i, &id) in ids.iter().enumerate().skip(250) {
        let step = model.llama.forward_all(&row(&[id]), &mut cache).unwrap();
        let diff = max_diff(&step.squeeze(0).unwrap(), &full.narrow(0, i, 1).unwrap());
        assert!(diff < 2e-3, "position {i}: cached step differs by {diff}");
    }
    assert_eq!(cache.len(), 264);
}
