//! The request bodies of the OpenAI-compatible API, and their checks.

use super::error::ApiError;
use serde::Deserialize;
use serde_json::Value;

/// Fields both completion endpoints share.
#[derive(Debug, Deserialize)]
pub struct Common {
    pub model: String,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// vLLM's extension.
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// OpenLoRA's extension: several adapters with weights, applied together.
    #[serde(default)]
    pub adapters: Option<Vec<AdapterWeight>>,
    /// vLLM's extension: never end at the end-of-sequence token.
    #[serde(default)]
    pub ignore_eos: bool,
    /// OpenLoRA's extension: the weight of the adapter `model` names (1.0 by default).
    #[serde(default)]
    pub adapter_scale: Option<f32>,
    #[serde(default)]
    pub tools: Option<Value>,
    #[serde(default)]
    pub functions: Option<Value>,
    #[serde(default)]
    pub logit_bias: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdapterWeight {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub logprobs: bool,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

impl ChatMessage {
    /// The text of a message: a string, or the text parts of an array of parts.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        match &self.content {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                &format!("messages[{index}].content"),
                                "only text parts are supported",
                            ))
                        }
                    }
                }
                Ok(text)
            }
            Some(_) => Err(ApiError::invalid(
                &format!("messages[{index}].content"),
                "content is a string or an array of text parts",
            )),
        }
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Value,
    #[serde(default)]
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

/// The checked sampling settings of a request.
#[derive(Debug, Clone)]
pub struct Checked {
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub n: usize,
    pub stops: Vec<String>,
    pub seed: Option<u64>,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub json: bool,
    pub ignore_eos: bool,
    pub include_usage: bool,
}

/// Choices per request at most.
pub const MAX_N: u32 = 8;
/// Stop strings at most, and their length in bytes.
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;

impl Common {
    pub fn check(&self) -> Result<Checked, ApiError> {
        for (field, present) in [
            ("tools", self.tools.as_ref().is_some_and(|v| !v.is_null())),
            (
                "functions",
                self.functions.as_ref().is_some_and(|v| !v.is_null()),
            ),
            (
                "logit_bias",
                self.logit_bias
                    .as_ref()
                    .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty())),
            ),
        ] {
            if present {
                return Err(ApiError::invalid(
                    field,
                    format!("{field} is not supported"),
                ));
            }
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(0) => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    "max_tokens must be at least 1",
                ))
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                "temperature",
                "temperature is between 0 and 2",
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", "top_p is in (0, 1]"));
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k as usize,
            Some(_) => return Err(ApiError::invalid("top_k", "top_k is -1 (off) or positive")),
        };
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::invalid(
                "n",
                format!("n is between 1 and {MAX_N}"),
            ));
        }
        let penalty = |v: Option<f32>, name: &str| -> Result<f32, ApiError> {
            let v = v.unwrap_or(0.0);
            if !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::invalid(
                    name,
                    format!("{name} is between -2 and 2"),
                ));
            }
            Ok(v)
        };
        let stops = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    ApiError::invalid("stop", "stop is a string or an array of strings")
                })?,
            Some(_) => {
                return Err(ApiError::invalid(
                    "stop",
                    "stop is a string or an array of strings",
                ))
            }
        };
        if stops.len() > MAX_STOPS
            || stops
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(ApiError::invalid(
                "stop",
                format!("up to {MAX_STOPS} stop strings of 1 to {MAX_STOP_BYTES} bytes"),
            ));
        }
        let json = match self.response_format.as_ref().map(|f| f.kind.as_str()) {
            None | Some("text") => false,
            Some("json_object") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format",
                    format!("response_format {other:?} is not supported (text or json_object)"),
                ))
            }
        };
        Ok(Checked {
            max_tokens,
            temperature,
            top_p,
            top_k,
            n: n as usize,
            stops,
            seed: self.seed.map(|s| s as u64),
            frequency_penalty: penalty(self.frequency_penalty, "frequency_penalty")?,
            presence_penalty: penalty(self.presence_penalty, "presence_penalty")?,
            json,
            ignore_eos: self.ignore_eos,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
        })
    }
}
