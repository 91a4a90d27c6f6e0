//! Drafts: the blobs a prepared call refers to (a new datanet's schema and description, a
//! curator's written reason), stored before its transaction exists. Anyone may ask for them,
//! so they are bounded like uploads: each is marked under `drafts/` with its size before its
//! blobs are written, the service refuses new ones past its policy's count and bytes, and
//! `sweep_drafts` deletes those that never landed and unmarks those the chain refers to.
//!
//! One lock orders drafting and sweeping, and holds the running count and bytes, so a sweep
//! never deletes blobs a prepare is writing and the bound holds under concurrent prepares.

use crate::{service::now, store::keys, Datanets, DatanetsError};
use alloy_primitives::{B256, U256};
use alloy_sol_types::SolEvent;
use openledger_protocol::datanet_registry::DatanetRegistry::Reviewed;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::{collections::HashMap, time::Duration};

/// The drafts waiting: how many, and their bytes (read from the marks on first use).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    count: usize,
    bytes: u64,
}

/// The lock drafting and sweeping share; `None` until the marks were first counted.
pub(crate) type DraftLock = tokio::sync::Mutex<Option<Tally>>;

/// What lands a draft on chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Anchor {
    /// A datanet whose metadata URI names this description key (the schema is kept while any
    /// datanet or other draft uses its hash).
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
    /// Marks blobs as the draft `id` and writes them, `blobs` being (key, bytes), or refuses
    /// when the drafts waiting would pass the policy's bounds. The same draft again refreshes
    /// its mark (its call may be sent later than the first one's).
    pub(crate) async fn draft(
        &self,
        id: B256,
        anchor: Anchor,
        blobs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), DatanetsError> {
        let mut lock = self.drafting.lock().await;
        let tally = match &mut *lock {
            Some(tally) => tally,
            empty => empty.insert(self.count_drafts().await?),
        };
        let mark = keys::draft(id);
        let size: u64 = blobs.iter().map(|(_, b)| b.len() as u64).sum();
        let again = self.store.get_json::<Draft>(&mark).await?;
        if again.is_none() {
            let policy = &self.policy;
            if tally.count >= policy.drafts_total {
                return Err(DatanetsError::DraftsFull {
                    limit: format!("{} drafts", policy.drafts_total),
                });
            }
            if tally.bytes + size > policy.drafts_bytes_total {
                return Err(DatanetsError::DraftsFull {
                    limit: format!("{} bytes of drafts", policy.drafts_bytes_total),
                });
            }
        }
        let draft = Draft {
            anchor,
            keys: blobs.iter().map(|(k, _)| k.clone()).collect(),
            size,
            created: now(),
        };
        // Marked first, so that a crash part-way leaves something the sweep finds.
        self.store.put_json(&mark, &draft).await?;
        if again.is_none() {
            tally.count += 1;
            tally.bytes += size;
        }
        for (key, bytes) in blobs {
            self.store.put(&key, bytes).await?;
        }
        Ok(())
    }

    async fn count_drafts(&self) -> Result<Tally, DatanetsError> {
        let mut tally = Tally::default();
        for mark in self.store.list("drafts").await? {
            if let Some(d) = self.store.get_json::<Draft>(&mark).await? {
                tally.count += 1;
                tally.bytes += d.size;
            }
        }
        Ok(tally)
    }

    /// Settles drafts: those older than `max_age` that never landed are deleted, blobs and
    /// all; those the chain refers to lose their mark and keep their blobs. Returns how many
    /// were deleted.
    pub async fn sweep_drafts(&self, max_age: Duration) -> Result<usize, DatanetsError> {
        self.sync().await?;
        let mut lock = self.drafting.lock().await;
        let datanets = self.index.datanets()?;
        let mut drafts = Vec::new();
        for mark in self.store.list("drafts").await? {
            if let Some(d) = self.store.get_json::<Draft>(&mark).await? {
                drafts.push((mark, d));
            }
        }
        // Schemas are shared by hash: how many drafts wrote each.
        let mut schemas: HashMap<B256, usize> = HashMap::new();
        for (_, d) in &drafts {
            if let Anchor::Datanet { schema, .. } = d.anchor {
                *schemas.entry(schema).or_default() += 1;
            }
        }
        let mut removed = 0;
        for (mark, draft) in drafts {
            let expired = now().saturating_sub(draft.created) >= max_age.as_secs();
            let landed = match &draft.anchor {
                Anchor::Datanet { description, .. } => {
                    let uri = format!("openledger:{description}");
                    datanets.iter().any(|d| d.metadata_uri == uri)
                }
                // A log query each: asked only once the draft is old enough to go.
                Anchor::Review {
                    contribution,
                    reason,
                } if expired => self.reason_landed(*contribution, *reason).await?,
                Anchor::Review { .. } => continue,
            };
            if !landed && !expired {
                continue;
            }
            if !landed {
                for key in &draft.keys {
                    if let Anchor::Datanet { schema, .. } = draft.anchor {
                        let shared = schemas.get(&schema).copied().unwrap_or(0) > 1
                            || datanets.iter().any(|d| d.schema_hash == schema);
                        if *key == keys::schema(schema) && shared {
                            continue;
                        }
                    }
                    self.store.delete(key).await?;
                }
                removed += 1;
            }
            if let Anchor::Datanet { schema, .. } = draft.anchor {
                schemas.entry(schema).and_modify(|n| *n -= 1);
            }
            self.store.delete(&mark).await?;
            if let Some(tally) = lock.as_mut() {
                tally.count = tally.count.saturating_sub(1);
                tally.bytes = tally.bytes.saturating_sub(draft.size);
            }
        }
        Ok(removed)
    }

    /// Whether a review on chain gave this reason to `contribution` or to another
    /// contribution of the same bytes to the same datanet (they share the reason's blob).
    async fn reason_landed(&self, contribution: u64, reason: B256) -> Result<bool, DatanetsError> {
        let Some(row) = self.index.contribution(contribution)? else {
            return Ok(false);
        };
        let same_bytes = self
            .index
            .contributions(row.datanet)?
            .into_iter()
            .filter(|c| c.content_hash == row.content_hash);
        for c in same_bytes {
            let filter = json!({"address": self.registry, "topics": [
                Reviewed::SIGNATURE_HASH, B256::from(U256::from(c.id)),
            ]});
            let logs = self.client.logs_from(&filter, c.block).await?;
            let found = logs
                .iter()
                .any(|l| l.decode::<Reviewed>().is_ok_and(|e| e.reasonHash == reason));
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
