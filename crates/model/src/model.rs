//! A model ready for use: the transformer, its tokenizer and its chat template, loaded from
//! one file.

use crate::{
    chat::{ChatTemplate, Message},
    config::Config,
    generate::{generate, Finish, Sampling},
    llama::{Llama, LoraBatch},
    lora::LoraAdapter,
    tokenizer::{StreamDecoder, Tokenizer},
    weights::load_gguf,
    ModelError,
};
use std::path::Path;

/// A loaded model.
pub struct Model {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    /// The Jinja chat template the model declares, if any.
    pub chat_template: Option<String>,
    /// The LoRA adapter completions run on, if any ([`Model::set_adapter`]).
    adapter: Option<LoraAdapter>,
    /// The chat template, compiled on first use.
    compiled: std::sync::OnceLock<Result<ChatTemplate, String>>,
}

/// A completion and why it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish: Finish,
}

impl Model {
    /// Loads a GGUF file (weights dequantized to f32, the tokenizer and chat template from its
    /// metadata) or a Hugging Face model directory (`config.json`, `*.safetensors`,
    /// `tokenizer.json`, and the chat template from `tokenizer_config.json` or
    /// `chat_template.jinja`). Decode steps run on 8-bit copies of the weights
    /// ([`Llama::set_quantized_decode`]).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::Format(format!(
                "no model at {} (run scripts/fetch-model for the default one, or pass --model PATH)",
                path.display()
            )));
        }
        let (config, weights, tokenizer, chat_template) = if path.is_dir() {
            let (config, weights) = crate::weights::load_safetensors_dir(path)?;
            let tokenizer = Tokenizer::from_hf_dir(path, &config)
                .map_err(|e| ModelError::Format(format!("tokenizer: {e}")))?;
            let chat_template = crate::tokenizer::chat_template(path)
                .map_err(|e| ModelError::Format(format!("chat template: {e}")))?;
            (config, weights, tokenizer, chat_template)
        } else {
            let gguf = load_gguf(path)?;
            let tokenizer = Tokenizer::from_gguf(&gguf.metadata)
                .map_err(|e| ModelError::Format(format!("tokenizer: {e}")))?;
            let chat_template = gguf
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned();
            (gguf.config, gguf.weights, tokenizer, chat_template)
        };
        let mut llama = Llama::new(config, &weights)?;
        llama.set_quantized_decode(true);
        Ok(Self {
            llama,
            tokenizer,
            chat_template,
            adapter: None,
            compiled: std::sync::OnceLock::new(),
        })
    }

    /// Runs later completions on `adapter` (checked against the model), or on the base model.
    pub fn set_adapter(&mut self, adapter: Option<LoraAdapter>) -> Result<(), ModelError> {
        if let Some(a) = &adapter {
            self.llama.check_adapter(a)?;
        }
        self.adapter = adapter;
        Ok(())
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        self.llama.config()
    }

    /// The prompt for `messages` under the model's chat template, ending where the
    /// assistant's answer begins.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String, ModelError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| ModelError::Template("the model declares no chat template".into()))?;
        let compiled = self
            .compiled
            .get_or_init(|| ChatTemplate::new(template).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ModelError::Template(e.clone()))?;
        let piece = |id: u32| {
            String::from_utf8_lossy(self.tokenizer.decode_piece(id).unwrap_or_default())
                .into_owned()
        };
        compiled.render(
            messages,
            true,
            &piece(self.tokenizer.bos_id()),
            &piece(self.tokenizer.eos_id()),
        )
    }

    /// Answers the last message of a conversation, streaming the text.
    pub fn chat(
        &self,
        messages: &[Message],
        max_tokens: usize,
        sampling: Sampling,
        on_text: impl FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let prompt = self.chat_prompt(messages)?;
        self.complete(&prompt, max_tokens, sampling, &[], on_text)
    }

    /// Completes `prompt` (raw text, no template), streaming each piece of text to `on_text`
    /// as soon as it is whole UTF-8; stops at the end-of-sequence token, at any of `stops`
    /// (which is left out of the text), or after `max_tokens`.
    pub fn complete(
        &self,
        prompt: &str,
        max_tokens: usize,
        sampling: Sampling,
        stops: &[String],
        on_text: impl FnMut(&str),
    ) -> Result<Completion, ModelError> {
        self.complete_with(
            self.adapter.as_ref(),
            prompt,
            max_tokens,
            sampling,
            stops,
            on_text,
        )
    }

    /// [`Model::complete`] on `adapter` (checked against the model) or the base model,
    /// whatever adapter is set: one loaded model answers for many adapters.
    pub fn complete_with(
        &self,
        adapter: Option<&LoraAdapter>,
        prompt: &str,
        max_tokens: usize,
        sampling: Sampling,
        stops: &[String],
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, ModelError> {
        if let Some(a) = adapter {
            self.llama.check_adapter(a)?;
        }
        let ids = self.tokenizer.encode(prompt);
        let mut decoder = StreamDecoder::new();
        let mut text = String::new();
        let mut emitted = 0;
        let tokenizer = &self.tokenizer;
        let stop_at = std::cell::Cell::new(None);
        let lora = match adapter {
            Some(adapter) => Some(LoraBatch::new(vec![adapter], &[Some(0)])?),
            None => None,
        };
        let generation = generate(
            &self.llama,
            lora.as_ref(),
            &ids,
            max_tokens,
            sampling,
            &[tokenizer.eos_id()],
            |_| stop_at.get().is_some(),
            |id| {
                text.push_str(&decoder.push(tokenizer, id));
                if let Some(at) = stops.iter().filter_map(|s| text.find(s.as_str())).min() {
                    stop_at.set(Some(at));
                    text.truncate(at);
                }
                // Hold back text that could still turn into a stop string.
                let hold = stops
                    .iter()
                    .map(|s| partial_suffix(&text, s))
                    .max()
                    .unwrap_or(0);
                let ready = text.len() - hold;
                if ready > emitted && text.is_char_boundary(ready) {
                    on_text(&text[emitted..ready]);
                    emitted = ready;
                }
            },
        )?;
        if stop_at.get().is_none() {
            text.push_str(&decoder.finish());
        }
        if text.len() > emitted {
            on_text(&text[emitted..]);
        }
        Ok(Completion {
            text,
            tokens: generation.tokens,
            finish: generation.finish,
        })
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
pub fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::partial_suffix;

    #[test]
    fn a_partial_stop_string_is_held_back() {
        assert_eq!(partial_suffix("hello wo", "world"), 2);
        assert_eq!(partial_suffix("hello", "world"), 0);
        assert_eq!(partial_suffix("abc###", "###END"), 3);
    }
}
