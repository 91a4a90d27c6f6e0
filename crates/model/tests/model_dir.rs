//! Hugging Face model directories: the default model written as one (safetensors weights,
//! `tokenizer.json` and `tokenizer_config.json` with its chat template, as `openledger model
//! merge` writes them) loads back through `tokenizers` and answers exactly as the GGUF file,
//! and the tokenizer read from `tokenizer.json` gives Hugging Face's ids on the fixture.

mod common;

use openledger_model::{generate::Sampling, tokenizer::Tokenizer, weights, Model};

#[test]
fn the_default_model_as_a_directory_loads_and_answers_like_the_gguf_file() {
    let gguf = common::default_model();
    let dir = tempfile::tempdir().unwrap();
    weights::save_safetensors_dir(dir.path(), gguf.config(), &gguf.llama.weights().unwrap())
        .unwrap();
    gguf.tokenizer
        .save_hf(dir.path(), gguf.chat_template.as_deref())
        .unwrap();

    let hf = Model::load(dir.path()).unwrap();
    assert_eq!(hf.chat_template, gguf.chat_template);
    assert_eq!(hf.tokenizer.eos_id(), gguf.tokenizer.eos_id());
    assert_eq!(hf.tokenizer.vocab_size(), gguf.tokenizer.vocab_size());

    // The fixture's ids (Hugging Face `tokenizers` on SmolLM2's pipeline), now encoded by
    // `tokenizers` itself from the written tokenizer.json, and decoded by our byte table.
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tokenizer_ids.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() > 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(hf.tokenizer.encode(text), ids, "{text:?}");
        assert_eq!(hf.tokenizer.decode(&ids), text);
    }

    let prompt = hf
        .chat_prompt(&[openledger_model::chat::Message {
            role: "user".into(),
            content: "What is the capital of France?".into(),
        }])
        .unwrap();
    let run = |m: &Model| m.complete(&prompt, 12, Sampling::default(), &[], |_| {});
    let (a, b) = (run(&gguf).unwrap(), run(&hf).unwrap());
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.text, b.text);
    assert!(!a.text.is_empty());
}

#[test]
fn a_directory_without_its_tokenizer_is_refused_by_name() {
    let gguf = common::default_model();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), gguf.config().to_hf_json()).unwrap();
    let err = Tokenizer::from_hf_dir(dir.path(), gguf.config()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
    let err = Tokenizer::from_hf_dir(dir.path(), gguf.config()).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}
