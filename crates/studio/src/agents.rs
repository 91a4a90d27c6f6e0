//! Agents as the studio serves them: an adapter with a system prompt, sampling defaults and
//! prices, answered for a consumer who pays. Where they come from (the chain's
//! `ModelRegistry`, read by the node) is an [`AgentBook`]'s business.

use serde::Deserialize;

/// An agent this host serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Its `ModelRegistry` id.
    pub id: u64,
    /// What `model` may say besides `agent-<id>` (from its metadata; may be empty).
    pub name: String,
    /// The served adapter's name (its weights hash, `0x…`).
    pub adapter: String,
    /// Wei per 1,000 input tokens and per 1,000 output tokens.
    pub price_in: u128,
    pub price_out: u128,
    /// The datanet its answers retrieve from (0: none).
    pub knowledge: u64,
    pub metadata: Metadata,
}

impl Agent {
    /// Fills the sampling settings a request left unset with the agent's defaults.
    pub(crate) fn apply_defaults(&self, common: &mut crate::openai::Common) {
        if common.temperature.is_none() {
            common.temperature = self.metadata.temperature;
        }
        if common.max_tokens.is_none() && common.max_completion_tokens.is_none() {
            common.max_tokens = self.metadata.max_tokens;
        }
    }
}

/// What an agent's metadata URI holds: `data:application/json,{…}` (or `;base64,`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Put before the consumer's messages unless they begin with their own system message.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Sampling defaults, used when a request does not set them.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// Why an agent's metadata was not read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the metadata URI is not a `data:application/json` URI")]
    NotData,
    #[error("the metadata is not valid base64")]
    Base64,
    #[error("the metadata is not the agent JSON: {0}")]
    Json(String),
}

impl Metadata {
    /// Reads a `data:application/json[;base64],…` URI; an empty URI is empty metadata.
    pub fn from_uri(uri: &str) -> Result<Self, MetadataError> {
        if uri.is_empty() {
            return Ok(Self::default());
        }
        let rest = uri
            .strip_prefix("data:application/json")
            .ok_or(MetadataError::NotData)?;
        let bytes = if let Some(encoded) = rest.strip_prefix(";base64,") {
            base64(encoded).ok_or(MetadataError::Base64)?
        } else {
            rest.strip_prefix(',')
                .ok_or(MetadataError::NotData)?
                .as_bytes()
                .to_vec()
        };
        serde_json::from_slice(&bytes).map_err(|e| MetadataError::Json(e.to_string()))
    }
}

/// An agent's metadata (the JSON object of [`Metadata`]'s fields) as the URI `deployAgent`
/// takes: `data:application/json;base64,…`, which any reader of data URIs decodes alike
/// (plain JSON after the comma would have its `#` and `%` read as URI syntax).
pub fn metadata_uri(metadata: &serde_json::Value) -> String {
    format!(
        "data:application/json;base64,{}",
        base64_encode(metadata.to_string().as_bytes())
    )
}

/// Standard base64, padded.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (with or without padding).
fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// The agents a host serves.
pub trait AgentBook: Send + Sync {
    /// The agent `model` names: `agent-<id>`, or its metadata name.
    fn find(&self, model: &str) -> Option<Agent>;
    /// Every agent served, for `/v1/models`.
    fn list(&self) -> Vec<Agent>;
}

/// A consumer's standing with this host, on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// What it can still pay: the least of its authorisation of the host and its credit
    /// (receipts not yet settled are subtracted by the studio).
    pub available: u128,
    /// The sequence number of its last receipt this host settled: new receipts number past
    /// it, even if the studio store was lost.
    pub last_seq: u64,
}

/// What the chain says of consumers (the node reads it).
pub trait Funds: Send + Sync {
    fn standing(
        &self,
        consumer: alloy_primitives::Address,
    ) -> futures_util::future::BoxFuture<'_, Result<Standing, String>>;
}

/// The id in `agent-<id>`.
pub fn agent_id(model: &str) -> Option<u64> {
    model.strip_prefix("agent-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reads_from_data_uris_and_refuses_anything_else() {
        let raw =
            r#"data:application/json,{"name":"tutor","system_prompt":"Be brief.","temperature":0}"#;
        let m = Metadata::from_uri(raw).unwrap();
        assert_eq!(
            (m.name.as_str(), m.system_prompt.as_deref()),
            ("tutor", Some("Be brief."))
        );
        assert_eq!(m.temperature, Some(0.0));
        // {"name":"b64"} in base64.
        let b64 = "data:application/json;base64,eyJuYW1lIjoiYjY0In0=";
        assert_eq!(Metadata::from_uri(b64).unwrap().name, "b64");
        assert_eq!(Metadata::from_uri("").unwrap(), Metadata::default());
        assert!(matches!(
            Metadata::from_uri("ipfs://x"),
            Err(MetadataError::NotData)
        ));
        assert!(matches!(
            Metadata::from_uri("data:application/json;base64,*"),
            Err(MetadataError::Base64)
        ));
        assert!(matches!(
            Metadata::from_uri("data:application/json,[1]"),
            Err(MetadataError::Json(_))
        ));
        assert_eq!(agent_id("agent-12"), Some(12));
        assert_eq!(agent_id("agent-x"), None);
    }
}
