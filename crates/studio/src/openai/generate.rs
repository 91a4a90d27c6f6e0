//! From engine events to what a client sees: text assembled from tokens (whole UTF-8 only),
//! stop strings held back until they can no longer begin a stop and never sent, log-
//! probabilities per token, and every choice of a request merged into one stream.

use super::{error::ApiError, types::Checked};
use crate::Studio;
use openledger_model::{model::partial_suffix, tokenizer::StreamDecoder};
use openledger_openlora::{Event, Finish, Params, Request};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One token's log-probability, with its text and bytes.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What a choice produces, in order.
#[derive(Debug)]
pub enum Out {
    Text {
        index: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
        /// The tokens generated since the choice's last output (metering counts them).
        ids: Vec<u32>,
    },
    Finish {
        index: usize,
        reason: &'static str,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
        /// The tokens generated since the choice's last output.
        ids: Vec<u32>,
    },
    Failed(String),
    UnknownModel(String),
}

/// One generation job: prompts (each answered `n` times), the adapter mix, the settings.
pub struct Job {
    pub prompts: Vec<Vec<u32>>,
    pub adapters: Vec<(String, f32)>,
    pub checked: Checked,
    /// Alternatives per token to report (`None`: no log-probabilities).
    pub logprobs: Option<usize>,
}

/// Default answer length when the request names none.
pub(crate) const DEFAULT_MAX_TOKENS: usize = 1024;

/// Submits every choice of `job`; their outputs arrive on the returned channel. Dropping it
/// cancels every choice still running.
pub fn start(studio: &Arc<Studio>, job: Job) -> Result<mpsc::Receiver<Out>, ApiError> {
    let c = &job.checked;
    let base_seed = c.seed.unwrap_or_else(rand::random);
    let mut streams = Vec::new(); // (choice index, prompt length, events)
    for (p, prompt) in job.prompts.iter().enumerate() {
        for k in 0..c.n {
            let index = p * c.n + k;
            let request = Request {
                prompt: prompt.clone(),
                adapters: job.adapters.clone(),
                max_tokens: c.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                params: Params {
                    temperature: c.temperature,
                    top_p: c.top_p,
                    top_k: c.top_k,
                    seed: base_seed.wrapping_add(index as u64),
                    frequency_penalty: c.frequency_penalty,
                    presence_penalty: c.presence_penalty,
                    logprobs: job.logprobs,
                    json: c.json,
                    ignore_eos: c.ignore_eos,
                },
                deadline: None,
            };
            // A refusal of any choice refuses the request; choices already queued are
            // cancelled as their receivers drop here.
            streams.push((index, prompt.len(), studio.engine.submit(request)?));
        }
    }
    let (tx, rx) = mpsc::channel(64);
    for (index, prompt_len, events) in streams {
        let tx = tx.clone();
        let studio = studio.clone();
        let stops = c.stops.clone();
        tokio::spawn(async move { follow(studio, (index, prompt_len), events, stops, tx).await });
    }
    Ok(rx)
}

/// Turns one choice's events into text; returns (dropping its events, which cancels the
/// sequence) when a stop string appears or the client is gone.
async fn follow(
    studio: Arc<Studio>,
    (index, prompt_len): (usize, usize),
    mut events: mpsc::UnboundedReceiver<Event>,
    stops: Vec<String>,
    tx: mpsc::Sender<Out>,
) {
    let tokenizer = &studio.tokenizer;
    let mut decoder = StreamDecoder::new();
    let mut text = String::new();
    let mut emitted: usize = 0;
    let mut pending: Vec<TokenLogprob> = Vec::new();
    let mut generated = 0;
    let mut ids: Vec<u32> = Vec::new();
    let longest = stops.iter().map(String::len).max().unwrap_or(0);
    while let Some(event) = events.recv().await {
        match event {
            Event::Token { id, logprob } => {
                generated += 1;
                ids.push(id);
                if let Some(lp) = logprob {
                    pending.push(studio.token_logprob(id, lp.logprob, &lp.top));
                }
                text.push_str(&decoder.push(tokenizer, id));
                // Only the text not yet sent (and a stop's length before it) can hold a new
                // stop: searching from there keeps a long answer linear.
                let mut from = emitted.saturating_sub(longest);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let stop_at = stops
                    .iter()
                    .filter_map(|s| text[from..].find(s.as_str()).map(|at| from + at))
                    .min();
                if let Some(at) = stop_at {
                    text.truncate(at);
                }
                let hold = if stop_at.is_some() {
                    0
                } else {
                    stops
                        .iter()
                        .map(|s| partial_suffix(&text, s))
                        .max()
                        .unwrap_or(0)
                };
                let ready = text.len() - hold;
                if ready > emitted || !pending.is_empty() && stop_at.is_some() {
                    let piece = text[emitted..ready].to_string();
                    emitted = ready;
                    let out = Out::Text {
                        index,
                        text: piece,
                        logprobs: std::mem::take(&mut pending),
                        ids: std::mem::take(&mut ids),
                    };
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
                if stop_at.is_some() {
                    let _ = tx
                        .send(Out::Finish {
                            index,
                            reason: "stop",
                            prompt_tokens: prompt_len,
                            completion_tokens: generated,
                            cached_tokens: 0,
                            ids,
                        })
                        .await;
                    return;
                }
            }
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                text.push_str(&decoder.finish());
                if text.len() > emitted || !pending.is_empty() {
                    let out = Out::Text {
                        index,
                        text: text[emitted..].to_string(),
                        logprobs: std::mem::take(&mut pending),
                        ids: std::mem::take(&mut ids),
                    };
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
                let reason = match finish {
                    Finish::Stop => "stop",
                    Finish::Length | Finish::Deadline => "length",
                };
                let _ = tx
                    .send(Out::Finish {
                        index,
                        reason,
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                        ids,
                    })
                    .await;
                return;
            }
            Event::Failed(e) => {
                let _ = tx.send(Out::Failed(e)).await;
                return;
            }
            Event::UnknownAdapter(name) => {
                let _ = tx.send(Out::UnknownModel(name)).await;
                return;
            }
        }
    }
    // The engine let go of the request without ending it: say so rather than answer an
    // empty completion.
    let _ = tx
        .send(Out::Failed("the request ended without an answer".into()))
        .await;
}
