//! Each receipt's attribution, recorded by the host's attribution worker in receipt order:
//! the hash settlement commits to, the credits it pays by contribution, and the attribution
//! receipt's bytes (what a validator recomputes), kept by their hash.

use super::{decode, encode, Result, Store, META};
use alloy_primitives::B256;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Receipt id → its attribution.
const ATTRIBUTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("attributions");
/// The hash an answer that retrieved settles with → its receipt's id.
const RETRIEVED_ATTRIBUTIONS: TableDefinition<&[u8; 32], u64> =
    TableDefinition::new("retrieved_attributions");
/// keccak256 of an attribution receipt → its canonical bytes.
const ATTRIBUTION_RECEIPTS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("attribution_receipts");

/// What a receipt's attribution decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The attribution receipt's hash, or (when nothing could be attributed) the hash of the
    /// served tokens.
    pub hash: B256,
    /// (contribution, basis points), ascending by contribution, summing to 10,000 when any.
    pub credits: Vec<(u64, u16)>,
    /// Why nothing was attributed to the adapter's training data, when nothing was.
    pub unattributed: Option<String>,
    /// For an answer that retrieved: the trained attribution's own hash (`hash` combines it
    /// with the retrieval's).
    #[serde(default)]
    pub trained: Option<B256>,
}

impl Store {
    pub(super) fn create_attribution_tables(txn: &redb::WriteTransaction) -> Result<()> {
        txn.open_table(ATTRIBUTIONS)?;
        txn.open_table(ATTRIBUTION_RECEIPTS)?;
        txn.open_table(RETRIEVED_ATTRIBUTIONS)?;
        Ok(())
    }

    /// The first receipt not yet attributed: receipts are attributed in id order, so every
    /// receipt below it has its attribution.
    pub fn attribute_from(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(META)?
            .get("attribute_from")?
            .map_or(1, |v| v.value()))
    }

    /// Records receipt `id`'s attribution (and the attribution receipt's bytes), and moves the
    /// worker past it, in one transaction.
    pub fn record_attribution(
        &self,
        id: u64,
        attribution: &Attribution,
        bytes: Option<&[u8]>,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(ATTRIBUTIONS)?
                .insert(id, encode(attribution).as_slice())?;
            if let Some(bytes) = bytes {
                let hash = attribution.trained.unwrap_or(attribution.hash);
                txn.open_table(ATTRIBUTION_RECEIPTS)?
                    .insert(&hash.0, bytes)?;
            }
            if attribution.trained.is_some() {
                txn.open_table(RETRIEVED_ATTRIBUTIONS)?
                    .insert(&attribution.hash.0, id)?;
            }
            let mut meta = txn.open_table(META)?;
            let from = meta.get("attribute_from")?.map_or(1, |v| v.value());
            meta.insert("attribute_from", from.max(id + 1))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Receipt `id`'s attribution, once made.
    pub fn attribution(&self, id: u64) -> Result<Option<Attribution>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ATTRIBUTIONS)?;
        table
            .get(id)?
            .map(|v| decode("attribution", v.value()))
            .transpose()
    }

    /// The attribution receipt whose keccak256 is `hash`, if this host made it.
    pub fn attribution_receipt(&self, hash: B256) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ATTRIBUTION_RECEIPTS)?;
        Ok(table.get(&hash.0)?.map(|v| v.value().to_vec()))
    }

    /// The receipt whose answer retrieved and settles with `hash`, if this host served it.
    pub fn retrieved_attribution(&self, hash: B256) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RETRIEVED_ATTRIBUTIONS)?;
        Ok(table.get(&hash.0)?.map(|v| v.value()))
    }
}
