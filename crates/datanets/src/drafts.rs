//! Drafts: the blobs a prepared call refers to (a new datanet's schema and description, a
//! curator's written reason), stored before its transaction exists. Anyone may ask for them,
//! so they are bounded like uploads: each is marked under `drafts/` with its size, the service
//! refuses new ones past its policy's count and bytes, and `sweep_drafts` unmarks those the
//! chain came to refer to and deletes those that never landed.

use crate::{service::now, store::keys, Datanets, DatanetsError};
use alloy_primitives::{B256, U256};
use alloy_sol_types::SolEvent;
use openledger_protocol::datanet_registry::DatanetRegistry::Reviewed;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// What lands a draft on chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Anchor {
    /// A datanet whose metadata URI names this description key (the schema is kept while any
    /// datanet uses its hash).
    Datanet { description: String, schema: B256 },
    /// A review of the contribution with this reason hash.
    Review { contribution: u64, reason: B256 },
}

/// A draft's mark.
#[derive(Debug, Serialize, Deserialize)]
struct Draft {
    anchor: Anchor,
    /// The blobs it wrote.
    keys: Vec<String>,
    size: u64,
    created: u64,
}

impl Datanets {
    /// Marks the blobs at `keys` (`size` bytes in all) as a draft named by `id`, before they
    /// are written, or refuses when the drafts waiting would pass the policy's bounds.
    pub(crate) async fn draft(
        &self,
        id: B256,
        anchor: Anchor,
        keys: Vec<String>,
        size: u64,
    ) -> Result<(), DatanetsError> {
        let marks = self.store.list("drafts").await?;
        let mark = keys::draft(id);
        if marks.contains(&mark) {
            return Ok(()); // the same draft again: its blobs are the same bytes
        }
        let policy = &self.policy;
        if marks.len() >= policy.drafts_total {
            return Err(DatanetsError::DraftsFull {
                limit: format!("{} drafts", policy.drafts_total),
            });
        }
        let mut bytes = size;
        for key in &marks {
            if let Some(d) = self.store.get_json::<Draft>(key).await? {
                bytes += d.size;
            }
        }
        if bytes > policy.drafts_bytes_total {
            return Err(DatanetsError::DraftsFull {
                limit: format!("{} bytes of drafts", policy.drafts_bytes_total),
            });
        }
        let draft = Draft {
            anchor,
            keys,
            size,
            created: now(),
        };
        self.store.put_json(&mark, &draft).await?;
        Ok(())
    }

    /// Settles drafts: those the chain refers to lose their mark (their blobs stay); those
    /// older than `max_age` that never landed are deleted. Returns how many were deleted.
    pub async fn sweep_drafts(&self, max_age: Duration) -> Result<usize, DatanetsError> {
        self.sync().await?;
        let datanets = self.index.datanets()?;
        let mut removed = 0;
        for mark in self.store.list("drafts").await? {
            let Some(draft) = self.store.get_json::<Draft>(&mark).await? else {
                continue;
            };
            let landed = match &draft.anchor {
                Anchor::Datanet { description, .. } => {
                    let uri = format!("openledger:{description}");
                    datanets.iter().any(|d| d.metadata_uri == uri)
                }
                Anchor::Review {
                    contribution,
                    reason,
                } => self.reviewed_with(*contribution, *reason).await?,
            };
            if landed {
                self.store.delete(&mark).await?;
                continue;
            }
            if now().saturating_sub(draft.created) < max_age.as_secs() {
                continue;
            }
            for key in &draft.keys {
                // A schema is shared by hash: kept while any datanet (or another draft) uses it.
                if let Anchor::Datanet { schema, .. } = &draft.anchor {
                    if *key == keys::schema(*schema)
                        && (datanets.iter().any(|d| d.schema_hash == *schema)
                            || self.schema_drafted_elsewhere(*schema, &mark).await?)
                    {
                        continue;
                    }
                }
                self.store.delete(key).await?;
            }
            self.store.delete(&mark).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether a draft other than `mark` wrote this schema.
    async fn schema_drafted_elsewhere(
        &self,
        schema: B256,
        mark: &str,
    ) -> Result<bool, DatanetsError> {
        for other in self.store.list("drafts").await? {
            if other == mark {
                continue;
            }
            if let Some(Draft {
                anchor: Anchor::Datanet { schema: s, .. },
                ..
            }) = self.store.get_json::<Draft>(&other).await?
            {
                if s == schema {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether the chain holds a review of `contribution` with this reason hash.
    async fn reviewed_with(&self, contribution: u64, reason: B256) -> Result<bool, DatanetsError> {
        let Some(row) = self.index.contribution(contribution)? else {
            return Ok(false);
        };
        let filter = json!({"address": self.registry, "topics": [
            Reviewed::SIGNATURE_HASH, B256::from(U256::from(contribution)),
        ]});
        let head = self.client.block_number().await?;
        let logs = self.client.logs(&filter, row.block, head).await?;
        Ok(logs.iter().any(|l| {
            Reviewed::decode_raw_log(l.topics.iter().copied(), &l.data)
                .is_ok_and(|e| e.reasonHash == reason)
        }))
    }
}
