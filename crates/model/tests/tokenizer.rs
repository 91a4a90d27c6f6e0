//! The tokenizer against Hugging Face `tokenizers` on the default model, SmolLM2-135M-Instruct.
//!
//! The ids in tests/fixtures/tokenizer_ids.json come from `scripts/gen-tokenizer-fixture.py`.
//! The model file must be there: `scripts/fetch-model` gets it (`OPENLEDGER_MODEL` may name
//! another path).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use openledger_model::tokenizer::{StreamDecoder, Tokenizer};

fn model_path() -> PathBuf {
    std::env::var_os("OPENLEDGER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(openledger_model::default_model_path)
}

fn load() -> Tokenizer {
    let path = model_path();
    let file = File::open(&path).unwrap_or_else(|e| {
        panic!(
            "cannot open the model {}: {e}; run scripts/fetch-model first (or point \
             OPENLEDGER_MODEL at the GGUF file)",
            path.display()
        )
    });
    let content = Content::read(&mut BufReader::new(file))
        .unwrap_or_else(|e| panic!("{} is not a readable GGUF file: {e}", path.display()));
    Tokenizer::from_gguf(&content.metadata).expect("tokenizer from the model's metadata")
}

struct Case {
    text: String,
    ids: Vec<u32>,
}

fn fixture() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer_ids.json"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| Case {
            text: case["text"].as_str().expect("text").to_owned(),
            ids: case["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_u64().expect("id") as u32)
                .collect(),
        })
        .collect()
}

#[test]
fn ids_match_hugging_face_and_decode_back() {
    let tokenizer = load();
    let cases = fixture();
    assert!(cases.len() >= 40, "the fixture has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let ids = tokenizer.encode(&case.text);
        if ids != case.ids {
            failures.push(format!(
                "{:?}\n  ours: {ids:?}\n  HF:   {:?}",
                case.text, case.ids
            ));
        }
        let decoded = tokenizer.decode(&case.ids);
        if decoded != case.text {
            failures.push(format!("{:?} decodes to {decoded:?}", case.text));
        }
        let mut stream = StreamDecoder::new();
        let mut streamed: String = case
            .ids
            .iter()
            .map(|&id| stream.push(&tokenizer, id))
            .collect();
        streamed.push_str(&stream.finish());
        if streamed != case.text {
            failures.push(format!("{:?} streams as {streamed:?}", case.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn knows_smollm2s_special_tokens() {
    let tokenizer = load();
    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!(tokenizer.bos_id(), 1);
    assert_eq!(tokenizer.eos_id(), 2);
    assert_eq!(tokenizer.token_id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.token_id("<|im_end|>"), Some(2));
    assert_eq!(tokenizer.token_id("<|endoftext|>"), Some(0));
    assert_eq!(tokenizer.token_id("Ġthe"), Some(260));
    assert!((0..=16).all(|id| tokenizer.is_special(id)));
    assert!(!tokenizer.is_special(17) && !tokenizer.is_special(49151));
    assert!(!tokenizer.is_special(49152));
    assert_eq!(tokenizer.decode_piece(216), Some(&b" "[..]));
    assert_eq!(tokenizer.decode_piece(49152), None);
}

/// Encoding throughput on a few MB of English-like text (release build):
/// `cargo test --release -p openledger-model --test tokenizer -- --ignored --nocapture`.
/// `OPENLEDGER_TOKENIZER_BENCH_FILE` may name a real text file to use instead.
#[test]
#[ignore = "a measurement, not a check"]
fn encoding_throughput() {
    let tokenizer = load();
    let text = match std::env::var_os("OPENLEDGER_TOKENIZER_BENCH_FILE") {
        Some(path) => String::from_utf8_lossy(&std::fs::read(path).expect("bench file")).into(),
        None => synthetic_text(&tokenizer, 8 << 20),
    };
    let mb = text.len() as f64 / 1e6;
    for pass in ["cold cache", "warm cache"] {
        let start = Instant::now();
        let ids = tokenizer.encode(&text);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{pass}: {mb:.1} MB -> {} tokens in {secs:.3} s: {:.1} MB/s",
            ids.len(),
            mb / secs
        );
    }
}

/// Sentences of vocabulary words drawn with Zipf-like frequencies, with punctuation, numbers
/// and paragraphs: a stand-in for English prose that needs no data set.
fn synthetic_text(tokenizer: &Tokenizer, bytes: usize) -> String {
    let words: Vec<String> = (0..tokenizer.vocab_size() as u32)
        .filter_map(|id| {
            let word = String::from_utf8(tokenizer.decode_piece(id)?.to_vec()).ok()?;
            let letters = word.strip_prefix(' ')?;
            (letters.len() >= 2 && letters.bytes().all(|b| b.is_ascii_lowercase()))
                .then(|| letters.to_owned())
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut text = String::with_capacity(bytes + 256);
    while text.len() < bytes {
        let len = 5 + next() % 20;
        for i in 0..len {
            // Zipf-like: rank r with probability ~ 1/r, by exponentiating a uniform draw.
            let u = (next() % 1_000_000) as f64 / 1_000_000.0;
            let rank = ((words.len() as f64).powf(u) as usize).min(words.len()) - 1;
            let word = &words[rank];
            if i == 0 {
                let mut chars = word.chars();
                let first = chars.next().unwrap_or('x').to_ascii_uppercase();
                text.push(first);
                text.push_str(chars.as_str());
            } else {
                text.push(' ');
                match next() % 40 {
                    0 => text.push_str(&(next() % 10_000).to_string()),
                    1 => text.push_str(&format!("{word},")),
                    2 => text.push_str(&format!("{word}'s")),
                    _ => text.push_str(word),
                }
            }
        }
        text.push_str(if next() % 8 == 0 { ".\n\n" } else { ". " });
    }
    text
}
