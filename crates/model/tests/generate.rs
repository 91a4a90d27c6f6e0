//! The transformer end to end: a tiny random model built in the test checks that cached,
//! step-by-step decoding gives the same logits as one pass over the whole sequence (with
//! grouped-query attention); the default model (SmolLM2-135M-Instruct, fetched by
//! `scripts/fetch-model`; `OPENLEDGER_MODEL` may name another file) answers simple prompts
//! correctly and samples deterministically for a seed.

use candle_core::{Device, Tensor};
use openledger_model::{
    config::Config,
    generate::{Finish, Sampling},
    llama::{KvCache, Llama},
    weights::Weights,
    Model,
};
use std::path::PathBuf;

fn tiny_config() -> Config {
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
fn tiny_weights(c: &Config) -> Weights {
    let dev = Device::Cpu;
    let mut seed = 0u64;
    let mut rand = |shape: &[usize], scale: f32| {
        seed += 1;
        let n: usize = shape.iter().product();
        // A splitmix-style stream so the test needs no RNG crate and is the same everywhere.
        let values: Vec<f32> = (0..n as u64)
            .map(|i| {
                let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z ^= z >> 31;
                z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect();
        Tensor::from_vec(values, shape, &dev).unwrap()
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

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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

fn default_model() -> Model {
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
