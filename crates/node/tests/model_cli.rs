//! `openledger model` end to end through the binary: train an adapter on a few chat records,
//! merge it into the base model as a Hugging Face directory, and generate from that directory
//! with `--model`: the merged model answers exactly as the base model with `--adapter`.

use std::{path::Path, process::Command};

fn openledger(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_openledger"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "openledger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn a_trained_adapter_merged_into_a_directory_answers_as_the_adapter_does() {
    let model = openledger_model::default_model_path();
    assert!(
        model.exists(),
        "no model at {}: run scripts/fetch-model first",
        model.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let record = |q: &str, a: &str| {
        format!(
            r#"{{"messages": [{{"role": "user", "content": "{q}"}}, {{"role": "assistant", "content": "{a}"}}]}}"#
        )
    };
    let lines: Vec<String> = (0..6)
        .map(|i| record(&format!("Say the word number {i}."), "plinth"))
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let (adapter, merged) = (dir.path().join("adapter"), dir.path().join("merged"));

    openledger(&[
        "model",
        "train",
        "--data",
        path(&data),
        "--out",
        path(&adapter),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--eval-fraction",
        "0",
    ]);
    assert!(adapter.join("adapter_model.safetensors").exists());
    openledger(&[
        "model",
        "merge",
        "--adapter",
        path(&adapter),
        "--out",
        path(&merged),
    ]);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(merged.join(file).exists(), "merge wrote no {file}");
    }

    // Greedy generation of the same prompt, on the base model plus `extra`.
    let generate = |extra: &[&str]| {
        let mut args = vec!["model", "generate", "--prompt", "The word of the day is"];
        args.extend(["--max-tokens", "8", "--temperature", "0"]);
        args.extend(extra);
        openledger(&args)
    };
    let with_adapter = generate(&["--adapter", path(&adapter)]);
    let from_directory = generate(&["--model", path(&merged)]);
    assert!(!with_adapter.trim().is_empty());
    assert_eq!(with_adapter, from_directory);
}
