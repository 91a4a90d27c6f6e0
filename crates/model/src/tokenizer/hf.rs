//! Hugging Face model directories: a tokenizer from `tokenizer.json` (encoding through the
//! `tokenizers` crate, decoding through our own byte table), its BOS/EOS and chat template
//! from `tokenizer_config.json`, and the reverse: writing both files for a tokenizer read
//! from GGUF, so that a merged model directory loads here and in `transformers`.

use super::{bpe, Encoder, Tokenizer, TokenizerError};
use crate::config::Config;
use serde::Deserialize;
use serde_json::{json, Value};
use std::{collections::HashMap, path::Path};

type Result<T> = std::result::Result<T, TokenizerError>;

fn file_error(path: &Path, problem: impl ToString) -> TokenizerError {
    TokenizerError::File {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| file_error(path, format!("not JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, e)),
    }
}

/// A token named in `tokenizer_config.json`: a string, or `{"content": …}`.
fn named_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        v => v.get("content")?.as_str().map(str::to_owned),
    }
}

/// The chat template a model directory declares: `chat_template.jinja`, else
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates of
/// which `default` is taken).
pub fn chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| file_error(&jinja, e));
    }
    let Some(config) = read_json(&dir.join("tokenizer_config.json"))? else {
        return Ok(None);
    };
    Ok(match config.get("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    })
}

impl Tokenizer {
    /// The tokenizer of a Hugging Face model directory: `tokenizer.json`, with BOS and EOS from
    /// `config` (`config.json`'s ids) or else `tokenizer_config.json`'s token names.
    pub fn from_hf_dir(dir: &Path, config: &Config) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let Some(raw) = read_json(&path)? else {
            return Err(file_error(
                &path,
                "missing: a model directory needs its tokenizer",
            ));
        };
        // Read once: `tokenizers` takes the parsed JSON, whose decoder and added tokens are
        // needed here too.
        let tk = tokenizers::Tokenizer::deserialize(&raw).map_err(|e| file_error(&path, e))?;
        tk.encode("Hello, world 123", false)
            .map_err(|e| file_error(&path, format!("cannot encode: {e}")))?;

        let vocab = tk.get_vocab(true);
        let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let added: HashMap<u32, (String, bool)> = raw["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let id = u32::try_from(t.get("id")?.as_u64()?).ok()?;
                let content = t.get("content")?.as_str()?.to_owned();
                Some((id, (content, t["special"].as_bool().unwrap_or(false))))
            })
            .collect();
        // How a vocabulary entry spells its bytes: GPT-2's byte-level alphabet, or
        // SentencePiece's (`▁` for a space, `<0x0A>` for a raw byte).
        let byte_level = raw["decoder"].to_string().contains("ByteLevel");
        let char_to_byte = bpe::char_to_byte();
        let mut names = vec![String::new(); size];
        for (token, &id) in &vocab {
            names[id as usize] = token.clone();
        }
        let mut bytes = Vec::new();
        let mut offsets = vec![0];
        for (id, name) in names.iter().enumerate() {
            match added.get(&(id as u32)) {
                Some((content, _)) => bytes.extend_from_slice(content.as_bytes()),
                None if byte_level => bytes.extend(bpe::token_to_bytes(name, &char_to_byte)),
                None => bytes.extend(sentencepiece_bytes(name)),
            }
            offsets.push(bytes.len());
        }
        let special = (0..size as u32)
            .map(|id| added.get(&id).is_some_and(|(_, special)| *special))
            .collect();

        let token_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let by_name = |key| named_token(&token_config, key).and_then(|t| vocab.get(&t).copied());
        let eos = config
            .eos_token_id
            .or_else(|| by_name("eos_token"))
            .ok_or_else(|| {
                file_error(
                    dir,
                    "neither config.json nor tokenizer_config.json names an EOS",
                )
            })?;
        let bos = config
            .bos_token_id
            .or_else(|| by_name("bos_token"))
            .unwrap_or(eos);
        for (what, id) in [("BOS", bos), ("EOS", eos)] {
            if id as usize >= size {
                return Err(file_error(
                    dir,
                    format!("{what} {id} is outside the vocabulary"),
                ));
            }
        }
        Ok(Tokenizer {
            vocab,
            bytes,
            offsets,
            special,
            encoder: Encoder::Hf(Box::new(tk)),
            bos,
            eos,
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (BOS, EOS and `chat_template`) into
    /// `dir`. A tokenizer read from GGUF is written with the same vocabulary, merges and
    /// special tokens and SmolLM2's pipeline (single digits, then GPT-2's byte-level split);
    /// one read from `tokenizer.json` is written back as `tokenizers` holds it.
    pub fn save_hf(&self, dir: &Path, chat_template: Option<&str>) -> Result<()> {
        let path = dir.join("tokenizer.json");
        match &self.encoder {
            Encoder::Hf(tk) => tk.save(&path, false).map_err(|e| file_error(&path, e))?,
            Encoder::Own {
                literals, merges, ..
            } => {
                let value = self.own_tokenizer_json(literals, merges);
                std::fs::write(&path, value.to_string()).map_err(|e| file_error(&path, e))?;
            }
        }
        let name = |id: u32| String::from_utf8_lossy(self.decode_piece(id).unwrap_or_default());
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": false,
            "bos_token": name(self.bos),
            "eos_token": name(self.eos),
        });
        if let Some(template) = chat_template {
            config["chat_template"] = json!(template);
        }
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, config.to_string()).map_err(|e| file_error(&path, e))
    }

    fn own_tokenizer_json(&self, literals: &[(String, u32)], merges: &[String]) -> Value {
        let mut added: Vec<&(String, u32)> = literals.iter().collect();
        added.sort_by_key(|(_, id)| *id);
        let added: Vec<Value> = added
            .into_iter()
            .map(|(content, id)| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": self.is_special(*id)})
            })
            .collect();
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]},
            "post_processor": null,
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": self.vocab, "merges": merges},
        })
    }
}

/// The bytes of a SentencePiece vocabulary entry: `<0xNN>` is the raw byte, `▁` a space.
fn sentencepiece_bytes(token: &str) -> Vec<u8> {
    if let Some(hex) = token.strip_prefix("<0x").and_then(|t| t.strip_suffix('>')) {
        if let Ok(b) = u8::from_str_radix(hex, 16) {
            return vec![b];
        }
    }
    token.replace('\u{2581}', " ").into_bytes()
}
