//! Training examples from JSONL: chat records (`{"messages": [{"role", "content"}, …]}`,
//! the last message the assistant's answer, rendered with the model's chat template),
//! prompt/completion pairs (raw text), or plain `{"text": …}` (every token learned).

use crate::{chat::Message, train::Example, Model, ModelError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Chat { messages: Vec<Message> },
    Pair { prompt: String, completion: String },
    Text { text: String },
}

/// A record as the model sees it: the context it reads and the answer it learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The context (the chat template's prompt, the raw prompt, or empty for plain text).
    pub prompt: String,
    /// The answer as written in the record.
    pub answer: String,
    /// Whether the answer is followed by the end-of-sequence token (chat records: the model
    /// learns to stop after answering).
    pub ends_turn: bool,
}

/// Renders one record, or says why it cannot be learned from.
pub fn render(model: &Model, record: &serde_json::Value) -> Result<Rendered, String> {
    let record = Record::deserialize(record).map_err(|_| {
        "expected {\"messages\": [...]}, {\"prompt\", \"completion\"} or {\"text\"}".to_string()
    })?;
    match record {
        Record::Chat { messages } => {
            let Some((last, context)) = messages.split_last() else {
                return Err("\"messages\" is empty".into());
            };
            if last.role != "assistant" {
                return Err(format!(
                    "the last message is from {:?}; it must be the assistant's answer",
                    last.role
                ));
            }
            let prompt = model.chat_prompt(context).map_err(|e| e.to_string())?;
            Ok(Rendered {
                prompt,
                answer: last.content.clone(),
                ends_turn: true,
            })
        }
        Record::Pair { prompt, completion } => Ok(Rendered {
            prompt,
            answer: completion,
            ends_turn: false,
        }),
        Record::Text { text } => Ok(Rendered {
            prompt: String::new(),
            answer: text,
            ends_turn: false,
        }),
    }
}

/// Tokenizes a rendered record: the prompt's tokens are context, the answer's (and the
/// end-of-sequence token after a chat answer) are learned.
pub fn tokenize(model: &Model, rendered: &Rendered) -> Result<Example, String> {
    let prompt_ids = model.tokenizer.encode(&rendered.prompt);
    let mut answer_ids = model.tokenizer.encode(&rendered.answer);
    if answer_ids.is_empty() {
        return Err("nothing to learn: the answer is empty".into());
    }
    if rendered.ends_turn {
        answer_ids.push(model.tokenizer.eos_id());
    }
    let tokens = [prompt_ids.clone(), answer_ids].concat();
    if tokens.len() < 2 {
        return Err("an example needs at least two tokens".into());
    }
    Ok(Example {
        prompt_len: prompt_ids.len(),
        tokens,
    })
}

/// Parses JSONL training data into examples, refusing the first bad line by its number.
pub fn examples_from_jsonl(model: &Model, jsonl: &str) -> Result<Vec<Example>, ModelError> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| ModelError::Data(format!("line {n}: {why}"));
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "{e}; expected {{\"messages\": [...]}}, {{\"prompt\", \"completion\"}} or {{\"text\"}}"
            ))
        })?;
        let example = tokenize(model, &render(model, &value).map_err(bad)?).map_err(bad)?;
        if example.tokens.len() > model.config().max_position_embeddings {
            return Err(bad(format!(
                "{} tokens exceed the model's context of {}",
                example.tokens.len(),
                model.config().max_position_embeddings
            )));
        }
        out.push(example);
    }
    if out.is_empty() {
        return Err(ModelError::Data("the file holds no examples".into()));
    }
    Ok(out)
}
