//! The shape of a Llama-family model, from a GGUF file's metadata or a Hugging Face
//! `config.json`.

use crate::ModelError;
use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the transformer needs to know about a model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: key/value heads shared by groups of query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// The output projection is the embedding matrix (SmolLM2, Llama 3.2 1B).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

fn default_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    2048
}

impl Config {
    /// Key/value heads (all heads when the model does not group them).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// A Hugging Face `config.json` for this shape (Llama, SiLU).
    pub fn to_hf_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("the config serializes");
        value["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
        value["model_type"] = serde_json::json!("llama");
        value["hidden_act"] = serde_json::json!("silu");
        value["torch_dtype"] = serde_json::json!("float32");
        value["num_key_value_heads"] = serde_json::json!(self.kv_heads());
        serde_json::to_string_pretty(&value).expect("a JSON value prints")
    }

    /// Reads a Hugging Face `config.json`. Transformers 5 writes the rotary base inside
    /// `rope_parameters` (`{"rope_type": "default", "rope_theta": …}`) rather than as
    /// `rope_theta`; both are read. Rotary scaling (`rope_type` other than `default`, in
    /// `rope_parameters` or the older `rope_scaling`) changes every position's angles, so a
    /// config that asks for it is refused rather than run wrong.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        for key in ["rope_parameters", "rope_scaling"] {
            let Some(rope) = value.get(key).filter(|v| !v.is_null()).cloned() else {
                continue;
            };
            let kind = rope.get("rope_type").or_else(|| rope.get("type"));
            if let Some(kind) = kind.filter(|k| k.as_str() != Some("default")) {
                return Err(ModelError::Config(format!(
                    "rotary scaling {kind} ({key}) is not supported"
                )));
            }
            let theta = rope.get("rope_theta").cloned();
            if let (Some(theta), None) = (theta, value.get("rope_theta")) {
                value["rope_theta"] = theta;
            }
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| ModelError::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Reads the `llama.*` (or `qwen2.*`) keys of a GGUF file.
    pub fn from_gguf(metadata: &HashMap<String, gguf_file::Value>) -> Result<Self, ModelError> {
        let arch = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "llama".into());
        if arch != "llama" && arch != "qwen2" {
            return Err(ModelError::Config(format!(
                "architecture {arch:?} is not supported (llama and qwen2 are)"
            )));
        }
        let get = |key: &str| {
            metadata
                .get(&format!("{arch}.{key}"))
                .ok_or_else(|| ModelError::Config(format!("GGUF metadata lacks {arch}.{key}")))
        };
        let int = |key: &str| -> Result<usize, ModelError> {
            let v = get(key)?;
            v.to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .map(|n| n as usize)
                .map_err(|e| ModelError::Config(format!("{arch}.{key}: {e}")))
        };
        let float = |key: &str, default: f32| -> Result<f32, ModelError> {
            match get(key) {
                Ok(v) => v
                    .to_f32()
                    .map_err(|e| ModelError::Config(format!("{arch}.{key}: {e}"))),
                Err(_) => Ok(default),
            }
        };
        let vocab_size = match int("vocab_size") {
            Ok(n) => n,
            Err(_) => metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len())
                .ok_or_else(|| ModelError::Config("GGUF metadata has no vocabulary size".into()))?,
        };
        let token = |key: &str| metadata.get(key).and_then(|v| v.to_u32().ok());
        let config = Config {
            vocab_size,
            hidden_size: int("embedding_length")?,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: int("attention.head_count")?,
            num_key_value_heads: int("attention.head_count_kv").ok(),
            rope_theta: float("rope.freq_base", default_rope_theta())?,
            rms_norm_eps: f64::from(float("attention.layer_norm_rms_epsilon", 1e-6)?),
            max_position_embeddings: int("context_length").unwrap_or(default_max_positions()),
            // Decided from the tensors: GGUF files without `output.weight` tie it.
            tie_word_embeddings: false,
            attention_bias: arch == "qwen2",
            bos_token_id: token("tokenizer.ggml.bos_token_id"),
            eos_token_id: token("tokenizer.ggml.eos_token_id"),
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ModelError> {
        let bad = |why: String| Err(ModelError::Config(why));
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden size {} is not a multiple of {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return bad(format!(
                "{} attention heads cannot be grouped over {kv} key/value heads",
                self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head width {} is odd; rotary embeddings need pairs",
                self.head_dim()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    const SHAPE: &str = r#""vocab_size": 8, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2"#;

    #[test]
    fn the_rotary_base_is_read_from_either_place() {
        let flat = Config::from_hf_json(&format!(r#"{{{SHAPE}, "rope_theta": 500.0}}"#)).unwrap();
        assert_eq!(flat.rope_theta, 500.0);
        let nested = Config::from_hf_json(&format!(
            r#"{{{SHAPE}, "rope_parameters": {{"rope_type": "default", "rope_theta": 1000.0}}}}"#
        ))
        .unwrap();
        assert_eq!(nested.rope_theta, 1000.0);
        let neither = Config::from_hf_json(&format!("{{{SHAPE}}}")).unwrap();
        assert_eq!(neither.rope_theta, 10_000.0);
    }

    #[test]
    fn rotary_scaling_is_refused() {
        for key in ["rope_parameters", "rope_scaling"] {
            let text = format!(
                r#"{{{SHAPE}, "{key}": {{"rope_type": "llama3", "rope_theta": 1000.0, "factor": 8.0}}}}"#
            );
            let err = Config::from_hf_json(&text).unwrap_err().to_string();
            assert!(err.contains("llama3"), "{err}");
        }
    }
}
