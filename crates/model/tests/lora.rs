//! LoRA on a tiny seeded model: a batch where sequences use different adapters (or none)
//! gives each sequence exactly the logits it gets alone with its adapter, before and after
//! the KV cache; merging an adapter into the weights gives the same logits as applying it,
//! and unmerging restores the base; adapters round-trip through PEFT's file layout, and bad
//! adapter files are refused with errors naming the problem.

mod common;

use candle_core::{Device, Tensor};
use common::{max_diff, random, tiny_config, tiny_weights};
use openledger_model::{
    config::Config,
    llama::{KvCache, Llama, LoraBatch},
    lora::{LoraAdapter, LoraConfig, LoraPair, TARGETS},
};
use std::collections::HashMap;

/// An adapter of rank `r` on `targets` in every layer, with non-zero A and B.
fn adapter(c: &Config, seed: u64, r: usize, targets: &[&str]) -> LoraAdapter {
    let (e, m) = (c.hidden_size, c.intermediate_size);
    let kv = c.kv_heads() * c.head_dim();
    let mut pairs = HashMap::new();
    for layer in 0..c.num_hidden_layers {
        for (i, t) in targets.iter().enumerate() {
            let (module, out, inp) = match *t {
                "q_proj" | "o_proj" => (format!("self_attn.{t}"), e, e),
                "k_proj" | "v_proj" => (format!("self_attn.{t}"), kv, e),
                "gate_proj" | "up_proj" => (format!("mlp.{t}"), m, e),
                "down_proj" => (format!("mlp.{t}"), e, m),
                _ => unreachable!(),
            };
            let s = seed * 1000 + layer as u64 * 10 + i as u64;
            pairs.insert(
                format!("model.layers.{layer}.{module}"),
                LoraPair {
                    a: random(s, &[r, inp], 0.6),
                    b: random(s + 500, &[out, r], 0.6),
                },
            );
        }
    }
    LoraAdapter {
        config: LoraConfig::new(r, 2.0 * r as f64, targets),
        pairs,
    }
}

fn tokens(rows: &[Vec<u32>]) -> Tensor {
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
}

#[test]
fn each_sequence_of_a_mixed_batch_gets_the_logits_of_its_own_adapter() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let adapters = [
        adapter(&c, 1, 4, &["q_proj", "v_proj"]),
        adapter(&c, 2, 8, &TARGETS),
        adapter(&c, 3, 2, &["down_proj"]),
    ];
    let rows: Vec<Vec<u32>> = vec![
        vec![3, 17, 42, 5, 60, 8],
        vec![9, 9, 30, 2, 7, 44],
        vec![1, 2, 3, 4, 5, 6],
        vec![50, 40, 30, 20, 10, 0],
        vec![3, 17, 42, 5, 60, 8],
    ];
    let choice = [Some(0), None, Some(1), Some(2), Some(1)];
    let all: Vec<&LoraAdapter> = adapters.iter().collect();
    let batch = LoraBatch::new(all, &choice).unwrap();

    // Prefill five positions, then one more step, batched.
    let input = tokens(&rows);
    let mut cache = KvCache::default();
    let prefill = model
        .forward_all_lora(&input.narrow(1, 0, 5).unwrap(), &mut cache, Some(&batch))
        .unwrap();
    let step = model
        .forward_last_lora(&input.narrow(1, 5, 1).unwrap(), &mut cache, Some(&batch))
        .unwrap();

    for (i, row) in rows.iter().enumerate() {
        let alone_batch =
            choice[i].map(|k| LoraBatch::new(vec![&adapters[k]], &[Some(0)]).unwrap());
        let mut alone_cache = KvCache::default();
        let one = tokens(std::slice::from_ref(row));
        let alone_prefill = model
            .forward_all_lora(
                &one.narrow(1, 0, 5).unwrap(),
                &mut alone_cache,
                alone_batch.as_ref(),
            )
            .unwrap();
        let alone_step = model
            .forward_last_lora(
                &one.narrow(1, 5, 1).unwrap(),
                &mut alone_cache,
                alone_batch.as_ref(),
            )
            .unwrap();
        let d1 = max_diff(&prefill.narrow(0, i, 1).unwrap(), &alone_prefill);
        let d2 = max_diff(&step.narrow(0, i, 1).unwrap(), &alone_step);
        // f32 products over the same numbers in another grouping: ~1e-6 relative.
        assert!(d1 < 1e-4 && d2 < 1e-4, "sequence {i}: {d1} {d2}");
    }

    // The adapters really change the output: the same tokens on adapter 0 and adapter 1
    // (rows 0 and 4) give different logits, and both differ from the base model.
    let base = model
        .forward_all(&tokens(&rows[..1]), &mut KvCache::default())
        .unwrap();
    let d_base = max_diff(
        &prefill.narrow(0, 0, 1).unwrap(),
        &base.narrow(1, 0, 5).unwrap(),
    );
    let d_adapters = max_diff(
        &prefill.narrow(0, 0, 1).unwrap(),
        &prefill.narrow(0, 4, 1).unwrap(),
    );
    assert!(d_base > 1e-2 && d_adapters > 1e-2, "{d_base} {d_adapters}");
}

#[test]
fn merging_equals_applying_and_unmerging_restores_the_base() {
    let c = tiny_config();
    let mut model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let a = adapter(&c, 7, 4, &TARGETS);
    let input = tokens(&[vec![5, 6, 7, 8, 9, 10, 11]]);
    let base = model.forward_all(&input, &mut KvCache::default()).unwrap();
    let batch = LoraBatch::new(vec![&a], &[Some(0)]).unwrap();
    let applied = model
        .forward_all_lora(&input, &mut KvCache::default(), Some(&batch))
        .unwrap();
    model.merge(&a, 1.0).unwrap();
    let merged = model.forward_all(&input, &mut KvCache::default()).unwrap();
    assert!(max_diff(&applied, &merged) < 1e-4);
    assert!(max_diff(&applied, &base) > 1e-2);
    model.merge(&a, -1.0).unwrap();
    let unmerged = model.forward_all(&input, &mut KvCache::default()).unwrap();
    assert!(max_diff(&unmerged, &base) < 1e-4);
}

#[test]
fn adapters_round_trip_through_the_peft_layout() {
    let c = tiny_config();
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let a = adapter(&c, 9, 4, &["q_proj", "down_proj"]);
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    let names =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(names.contains_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    assert_eq!(names.len(), 2 * 2 * c.num_hidden_layers);

    let loaded = LoraAdapter::load(dir.path()).unwrap();
    assert_eq!(loaded.config, a.config);
    let input = tokens(&[vec![1, 2, 3, 4]]);
    let logits = |ad: &LoraAdapter| {
        let batch = LoraBatch::new(vec![ad], &[Some(0)]).unwrap();
        model
            .forward_all_lora(&input, &mut KvCache::default(), Some(&batch))
            .unwrap()
    };
    assert_eq!(max_diff(&logits(&a), &logits(&loaded)), 0.0);
}

#[test]
fn bad_adapters_are_refused_with_the_reason() {
    let c = tiny_config();
    let a = adapter(&c, 4, 4, &["q_proj"]);
    let write = |config: serde_json::Value, drop_b: bool| {
        let dir = tempfile::tempdir().unwrap();
        a.save(dir.path()).unwrap();
        std::fs::write(dir.path().join("adapter_config.json"), config.to_string()).unwrap();
        if drop_b {
            let mut t = candle_core::safetensors::load(
                dir.path().join("adapter_model.safetensors"),
                &Device::Cpu,
            )
            .unwrap();
            t.retain(|k, _| !k.ends_with("lora_B.weight"));
            candle_core::safetensors::save(&t, dir.path().join("adapter_model.safetensors"))
                .unwrap();
        }
        LoraAdapter::load(dir.path()).err().unwrap().to_string()
    };
    let good = serde_json::to_value(&a.config).unwrap();
    let mut unknown = good.clone();
    unknown["target_modules"] = serde_json::json!(["q_proj", "lm_head"]);
    assert!(write(unknown, false).contains("\"lm_head\""));
    let mut rank = good.clone();
    rank["r"] = serde_json::json!(8);
    assert!(write(rank, false).contains("rank 4/4"));
    let mut dora = good.clone();
    dora["use_dora"] = serde_json::json!(true);
    assert!(write(dora, false).contains("DoRA"));
    let mut pattern = good.clone();
    pattern["rank_pattern"] = serde_json::json!({"q_proj": 8});
    assert!(write(pattern, false).contains("rank_pattern"));
    assert!(write(good, true).contains("lacks lora_A or lora_B"));
    let missing = LoraAdapter::load(std::path::Path::new("/nonexistent/adapter"))
        .err()
        .unwrap();
    assert!(
        missing.to_string().contains("adapter_config.json"),
        "{missing}"
    );

    // An adapter for another model's shapes is refused before anything runs.
    let model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let mut wrong = a.clone();
    let pair = wrong.pairs.values_mut().next().unwrap();
    pair.a = random(1, &[4, 7], 1.0);
    let err = model.check_adapter(&wrong).err().unwrap().to_string();
    assert!(err.contains("but the adapter is for"), "{err}");
    let mut stray = a.clone();
    let any = stray.pairs.values().next().unwrap().clone();
    stray
        .pairs
        .insert("model.layers.9.self_attn.q_proj".into(), any);
    let err = model.check_adapter(&stray).err().unwrap().to_string();
    assert!(err.contains("no projection model.layers.9"), "{err}");
    model.check_adapter(&a).unwrap();

    let batch = LoraBatch::new(vec![&a], &[Some(1)]);
    assert!(batch.err().unwrap().to_string().contains("adapter 1"));
}

#[test]
fn a_merged_model_saved_as_safetensors_loads_back_with_the_adapter_in_it() {
    let c = tiny_config();
    let mut model = Llama::new(c.clone(), &tiny_weights(&c)).unwrap();
    let a = adapter(&c, 12, 4, &["q_proj", "up_proj"]);
    let input = tokens(&[vec![2, 4, 6, 8, 10]]);
    let batch = LoraBatch::new(vec![&a], &[Some(0)]).unwrap();
    let applied = model
        .forward_all_lora(&input, &mut KvCache::default(), Some(&batch))
        .unwrap();
    model.merge(&a, 1.0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    openledger_model::weights::save_safetensors_dir(
        dir.path(),
        model.config(),
        &model.weights().unwrap(),
    )
    .unwrap();
    let (config, weights) = openledger_model::weights::load_safetensors_dir(dir.path()).unwrap();
    assert_eq!(&config, model.config());
    let reloaded = Llama::new(config, &weights).unwrap();
    let logits = reloaded
        .forward_all(&input, &mut KvCache::default())
        .unwrap();
    assert!(max_diff(&applied, &logits) < 1e-4);
}
