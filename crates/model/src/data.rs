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

/// Parses JSONL training data into examples, refusing the first bad line by its number.
pub fn examples_from_jsonl(model: &Model, jsonl: &str) -> Result<Vec<Example>, ModelError> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| ModelError::Data(format!("line {n}: {why}"));
        let record: Record = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "{e}; expected {{\"messages\": [...]}}, {{\"prompt\", \"completion\"}} or {{\"text\"}}"
            ))
        })?;
        let (prompt, answer) = match record {
            Record::Chat { messages } => {
                let Some((last, context)) = messages.split_last() else {
                    return Err(bad("\"messages\" is empty".into()));
                };
                if last.role != "assistant" {
                    return Err(bad(format!(
                        "the last message is from {:?}; it must be the assistant's answer",
                        last.role
                    )));
                }
                let eos = String::from_utf8_lossy(
                    model
                        .tokenizer
                        .decode_piece(model.tokenizer.eos_id())
                        .unwrap_or_default(),
                )
                .into_owned();
                (
                    model.chat_prompt(context)?,
                    format!("{}{eos}", last.content),
                )
            }
            Record::Pair { prompt, completion } => (prompt, completion),
            Record::Text { text } => (String::new(), text),
        };
        let prompt_ids = model.tokenizer.encode(&prompt);
        let answer_ids = model.tokenizer.encode(&answer);
        if answer_ids.is_empty() {
            return Err(bad("nothing to learn: the answer is empty".into()));
        }
        let tokens = [prompt_ids.clone(), answer_ids].concat();
        if tokens.len() < 2 {
            return Err(bad("an example needs at least two tokens".into()));
        }
        if tokens.len() > model.config().max_position_embeddings {
            return Err(bad(format!(
                "{} tokens exceed the model's context of {}",
                tokens.len(),
                model.config().max_position_embeddings
            )));
        }
        out.push(Example {
            prompt_len: prompt_ids.len(),
            tokens,
        });
    }
    if out.is_empty() {
        return Err(ModelError::Data("the file holds no examples".into()));
    }
    Ok(out)
}
