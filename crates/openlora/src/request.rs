//! What a client asks of the engine and what it streams back.

use std::time::Instant;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// 0 picks the most likely token every time (greedy).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0: all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// The seed of this sequence's sampler: the same seed, prompt and adapters give the same
    /// tokens whatever else is being served.
    pub seed: u64,
    /// OpenAI's penalties: `logit −= count·frequency + (count > 0)·presence` over the tokens
    /// generated so far.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Report the chosen token's log-probability and this many alternatives (`None`: none).
    pub logprobs: Option<usize>,
    /// Constrain the answer to one JSON object.
    pub json: bool,
    /// Never pick an end-of-sequence token (answers run to `max_tokens`; load tests).
    pub ignore_eos: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logprobs: None,
            json: false,
            ignore_eos: false,
        }
    }
}

/// One sequence to generate.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    /// Adapters by name with their weights; empty for the base model, several for an
    /// ensemble.
    pub adapters: Vec<(String, f32)>,
    pub max_tokens: usize,
    pub params: Params,
    /// Answers past this instant end with [`Finish::Deadline`].
    pub deadline: Option<Instant>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer (or, in JSON mode, the object closed).
    Stop,
    /// `max_tokens` (or the model's context) was reached.
    Length,
    /// The deadline passed.
    Deadline,
}

/// A token's log-probability and the most likely alternatives at its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// What the engine streams for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        logprob: Option<Logprob>,
    },
    /// The last event of a sequence that ran.
    Done {
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Prompt positions served from the prefix cache.
        cached_tokens: usize,
    },
    /// The request failed (an adapter that would not load, the context overflowing).
    Failed(String),
    /// An adapter the request names does not exist at its source.
    UnknownAdapter(String),
}
