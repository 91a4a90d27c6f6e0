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
    /// For an agent with a knowledge datanet: searches its latest version for the last user
    /// message and puts the passages found in the system message. Nothing is retrieved for an
    /// agent without one, a conversation without a user message, or a datanet without a
    /// version; a search that fails refuses the request (503) rather than answer without it.
    pub(super) async fn retrieve(
        &self,
        agent: &Agent,
        messages: &mut Vec<Message>,
    ) -> Result<Option<Retrieved>, ApiError> {
        let Some(search) = self.paid.get().and_then(|p| p.knowledge.as_ref()) else {
            return Ok(None);
        };
        let last_user = messages.iter().rev().find(|m| m.role == "user");
        let query = knowledge::query(last_user.map_or("", |m| m.content.as_str()));
        if agent.knowledge == 0 || query.is_empty() {
            return Ok(None);
        }
        let found = search
            .retrieve(agent.knowledge, query.clone(), knowledge::RETRIEVED)
            .await
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "searching the agent's knowledge datanet {} failed: {e}",
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
