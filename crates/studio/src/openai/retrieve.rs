//! Retrieval for agents with a knowledge datanet, before their chat requests are answered.

use super::ApiError;
use crate::{
    agents::Agent,
    knowledge::{self, Retrieval},
    Studio,
};
use openledger_model::chat::Message;
use serde_json::Value;

/// What a knowledge agent's request retrieved: the receipt's record and the response's
/// citations.
pub(super) struct Retrieved {
    pub retrieval: Retrieval,
    pub citations: Value,
}

impl Studio {
    /// For an agent with a knowledge datanet: searches its latest version for the
    /// conversation's last message, when that is the consumer's, and puts the passages found
    /// in the system message. Nothing is retrieved for an agent without one, a conversation
    /// that ends otherwise, or a datanet without a version; a search that fails refuses the
    /// request (503) rather than answer without it.
    pub(super) async fn retrieve(
        &self,
        agent: &Agent,
        messages: &mut Vec<Message>,
    ) -> Result<Option<Retrieved>, ApiError> {
        let Some(search) = self.paid.get().and_then(|p| p.knowledge.as_ref()) else {
            return Ok(None);
        };
        let Some(markers) = &self.markers else {
            return Ok(None);
        };
        if agent.knowledge == 0 || messages.last().is_none_or(|m| m.role != "user") {
            return Ok(None);
        }
        // Read from the prompt's tokens, as a validator reads it from the receipt's.
        let rendered = self
            .chat_prompt(messages)
            .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
        let query = markers.query(&self.tokenizer.decode(&self.tokenizer.encode(&rendered)));
        if query.is_empty() {
            return Ok(None);
        }
        let found = search
            .retrieve(agent.knowledge, query.clone(), knowledge::RETRIEVED)
            .await
            .map_err(|e| {
                tracing::warn!(datanet = agent.knowledge, error = %e, "knowledge search failed");
                ApiError::unavailable(format!(
                    "searching the agent's knowledge datanet {} failed; retry shortly",
                    agent.knowledge
                ))
            })?;
        let Some(found) = found else {
            return Ok(None);
        };
        if !found.passages.is_empty() {
            let context = knowledge::context(&found);
            match messages.first_mut() {
                Some(first) if first.role == "system" => {
                    first.content = format!("{}\n\n{context}", first.content)
                }
                _ => messages.insert(0, Message::new("system", &context)),
            }
        }
        Ok(Some(Retrieved {
            retrieval: Retrieval {
                datanet: agent.knowledge,
                version: found.version,
                query,
                hits: found.passages.iter().map(|p| p.hit).collect(),
            },
            citations: knowledge::citations(agent.knowledge, &found),
        }))
    }
}
