//! The two completion endpoints' answers: one JSON body, or server-sent events in OpenAI's
//! chunk format ending `data: [DONE]`.

use super::{
    error::ApiError,
    generate::{Out, TokenLogprob},
};
use axum::{
    body::{Body, Bytes},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Chat completions or plain completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

/// What every chunk and body repeats.
pub struct Header {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub choices: usize,
    pub include_usage: bool,
    /// A knowledge agent's retrieved passages (`citations`, in the body or the first chunk).
    pub citations: Option<Value>,
}

#[derive(Default)]
struct Usage {
    prompt: usize,
    completion: usize,
    cached: usize,
    prompts_seen: Vec<bool>,
}

impl Usage {
    fn add(&mut self, prompt_index: usize, prompt: usize, completion: usize, cached: usize) {
        if self.prompts_seen.len() <= prompt_index {
            self.prompts_seen.resize(prompt_index + 1, false);
        }
        // A prompt answered n times counts once.
        if !self.prompts_seen[prompt_index] {
            self.prompts_seen[prompt_index] = true;
            self.prompt += prompt;
            self.cached += cached;
        }
        self.completion += completion;
    }

    fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|t| {
            json!({
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.bytes,
                "top_logprobs": t.top.iter().map(|(tok, bytes, lp)| json!({"token": tok, "logprob": lp, "bytes": bytes})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "content": content })
}

fn text_logprobs(lps: &[TokenLogprob], offset: usize) -> Value {
    let mut offsets = Vec::new();
    let mut at = offset;
    for t in lps {
        offsets.push(at);
        at += t.token.len();
    }
    json!({
        "tokens": lps.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|t| t.top.iter().map(|(tok, _, lp)| (tok.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// Collects every choice and answers one body.
pub async fn body(
    header: Header,
    mut rx: mpsc::Receiver<Out>,
    n: usize,
    logprobs: bool,
) -> Response {
    let mut texts = vec![String::new(); header.choices];
    let mut lps: Vec<Vec<TokenLogprob>> = vec![Vec::new(); header.choices];
    let mut reasons: Vec<Option<&str>> = vec![None; header.choices];
    let mut usage = Usage::default();
    while let Some(out) = rx.recv().await {
        match out {
            Out::Text {
                index,
                text,
                logprobs,
                ..
            } => {
                texts[index].push_str(&text);
                lps[index].extend(logprobs);
            }
            Out::Finish {
                index,
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
                ..
            } => {
                reasons[index] = Some(reason);
                usage.add(index / n, prompt_tokens, completion_tokens, cached_tokens);
                if reasons.iter().all(Option::is_some) {
                    break;
                }
            }
            Out::Failed(e) => return ApiError::internal(e).into_response(),
            Out::UnknownModel(name) => return ApiError::unknown_model(&name).into_response(),
        }
    }
    let choices: Vec<Value> = (0..header.choices)
        .map(|i| {
            let reason = reasons[i].unwrap_or("stop");
            match header.kind {
                Kind::Chat => json!({
                    "index": i,
                    "message": {"role": "assistant", "content": texts[i]},
                    "logprobs": if logprobs { chat_logprobs(&lps[i]) } else { Value::Null },
                    "finish_reason": reason,
                }),
                Kind::Text => json!({
                    "index": i,
                    "text": texts[i],
                    "logprobs": if logprobs { text_logprobs(&lps[i], 0) } else { Value::Null },
                    "finish_reason": reason,
                }),
            }
        })
        .collect();
    let object = match header.kind {
        Kind::Chat => "chat.completion",
        Kind::Text => "text_completion",
    };
    let mut body = json!({
        "id": header.id,
        "object": object,
        "created": header.created,
        "model": header.model,
        "choices": choices,
        "usage": usage.json(),
    });
    if let Some(citations) = header.citations {
        body["citations"] = citations;
    }
    Json(body).into_response()
}

/// Streams every choice as server-sent events.
pub fn stream(header: Header, rx: mpsc::Receiver<Out>, n: usize, logprobs: bool) -> Response {
    let object = match header.kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Text => "text_completion",
    };
    let state = Stream {
        header,
        rx,
        n,
        logprobs,
        object,
        usage: Usage::default(),
        offsets: Vec::new(),
        started: Vec::new(),
        finished: 0,
        done: false,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let bytes = s.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(bytes), s))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

struct Stream {
    header: Header,
    rx: mpsc::Receiver<Out>,
    n: usize,
    logprobs: bool,
    object: &'static str,
    usage: Usage,
    offsets: Vec<usize>,
    started: Vec<bool>,
    finished: usize,
    done: bool,
}

impl Stream {
    fn chunk(&mut self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let mut body = json!({
            "id": self.header.id,
            "object": self.object,
            "created": self.header.created,
            "model": self.header.model,
            "choices": choices,
        });
        if let Some(citations) = self.header.citations.take() {
            body["citations"] = citations;
        }
        if self.header.include_usage {
            body["usage"] = usage.unwrap_or(Value::Null);
        }
        Bytes::from(format!("data: {body}\n\n"))
    }

    fn choice(
        &mut self,
        index: usize,
        text: &str,
        lps: &[TokenLogprob],
        reason: Option<&str>,
    ) -> Value {
        if self.offsets.len() <= index {
            self.offsets.resize(index + 1, 0);
            self.started.resize(index + 1, false);
        }
        let logprobs = match (self.logprobs, self.header.kind) {
            (false, _) => Value::Null,
            (true, Kind::Chat) => chat_logprobs(lps),
            (true, Kind::Text) => text_logprobs(lps, self.offsets[index]),
        };
        self.offsets[index] += text.len();
        match self.header.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if !self.started[index] {
                    delta["role"] = json!("assistant");
                }
                if reason.is_none() || !text.is_empty() {
                    delta["content"] = json!(text);
                }
                self.started[index] = true;
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason})
            }
            Kind::Text => {
                json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason})
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let Some(out) = self.rx.recv().await else {
                self.done = true;
                return Some(Bytes::from_static(b"data: [DONE]\n\n"));
            };
            match out {
                Out::Text {
                    index,
                    text,
                    logprobs,
                    ..
                } => {
                    if text.is_empty() && logprobs.is_empty() {
                        continue;
                    }
                    let choice = self.choice(index, &text, &logprobs, None);
                    return Some(self.chunk(vec![choice], None));
                }
                Out::Finish {
                    index,
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                    ..
                } => {
                    self.usage.add(
                        index / self.n,
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                    );
                    self.finished += 1;
                    let choice = self.choice(index, "", &[], Some(reason));
                    let mut bytes = self.chunk(vec![choice], None).to_vec();
                    if self.finished == self.header.choices {
                        if self.header.include_usage {
                            bytes.extend_from_slice(
                                &self.chunk(Vec::new(), Some(self.usage.json())),
                            );
                        }
                        bytes.extend_from_slice(b"data: [DONE]\n\n");
                        self.done = true;
                    }
                    return Some(Bytes::from(bytes));
                }
                Out::Failed(_) | Out::UnknownModel(_) => {
                    self.done = true;
                    let (e, code) = match out {
                        Out::UnknownModel(name) => (
                            format!("The model `{name}` does not exist."),
                            json!("model_not_found"),
                        ),
                        Out::Failed(e) => (e, Value::Null),
                        _ => unreachable!("matched above"),
                    };
                    let error = json!({"error": {"message": e, "type": "server_error", "param": null, "code": code}});
                    return Some(Bytes::from(format!("data: {error}\n\ndata: [DONE]\n\n")));
                }
            }
        }
    }
}
