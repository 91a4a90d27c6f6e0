//! Chat templates: the Jinja template a model declares, applied to role/content messages.

use crate::ModelError;
use serde::{Deserialize, Serialize};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat template compiled once, for rendering many conversations.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `template` (kept for the life of the process: a model has one).
    pub fn new(template: &str) -> Result<Self, ModelError> {
        let source: &'static str = Box::leak(template.to_string().into_boxed_str());
        let mut env = environment();
        env.add_template("chat", source)
            .map_err(|e| ModelError::Template(e.to_string()))?;
        Ok(Self { env })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, ModelError> {
        render(
            &self.env,
            messages,
            add_generation_prompt,
            bos_token,
            eos_token,
        )
    }
}

/// Renders `messages` with a Hugging Face-style Jinja chat template; with
/// `add_generation_prompt` the text ends where the assistant's answer begins.
pub fn apply_chat_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    let mut env = environment();
    env.add_template("chat", template)
        .map_err(|e| ModelError::Template(e.to_string()))?;
    render(&env, messages, add_generation_prompt, bos_token, eos_token)
}

/// Renders the template named `chat` in `env`.
fn render(
    env: &minijinja::Environment<'_>,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    let bad = |e: minijinja::Error| ModelError::Template(e.to_string());
    env.get_template("chat")
        .map_err(bad)?
        .render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        })
        .map_err(bad)
}

fn environment<'s>() -> minijinja::Environment<'s> {
    let mut env = minijinja::Environment::new();
    // Templates call this to refuse conversations they cannot render.
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's own template, as its GGUF declares it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_the_default_system_prompt() {
        let text =
            apply_chat_template(SMOLLM2, &[Message::new("user", "Hi")], true, "", "").unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = apply_chat_template(
            SMOLLM2,
            &[
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
            ],
            false,
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            with_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn template_errors_name_the_problem() {
        let raising = "{{ raise_exception('roles must alternate') }}";
        let err = apply_chat_template(raising, &[], true, "", "").unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
        let broken = apply_chat_template("{% for %}", &[], true, "", "").unwrap_err();
        assert!(broken.to_string().contains("chat template"), "{broken}");
    }
}
