//! Reading logs in pages. Nodes bound how many blocks (and logs) one `eth_getLogs` covers, and
//! each names its own bound, so the client starts with a common one and halves the range
//! whenever the node refuses a page as too large, remembering what worked.

use super::{rpc::RpcError, ClientError, Log, ProtocolClient};
use alloy_primitives::{Address, U64};
use alloy_sol_types::SolEvent;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

/// The first page tried: the default bound of this node and of many providers.
pub(super) const FIRST_PAGE: u64 = 10_000;

/// Whether a node's refusal says the range or the answer was too large.
fn too_large(message: &str) -> bool {
    let m = message.to_lowercase();
    ["range", "more than", "too many", "too large", "limit"]
        .iter()
        .any(|word| m.contains(word))
}

impl ProtocolClient {
    /// Logs matching `filter` (its address and topics) from block `from` on, and the last
    /// block the answer covers (at most `to`): one page, as large as the node accepts.
    pub async fn logs_page(
        &self,
        filter: &Value,
        from: u64,
        to: u64,
    ) -> Result<(Vec<Log>, u64), ClientError> {
        let mut span = self.log_page.load(Relaxed).max(1);
        loop {
            let end = to.min(from.saturating_add(span - 1));
            let mut page = filter.clone();
            page["fromBlock"] = json!(U64::from(from));
            page["toBlock"] = json!(U64::from(end));
            match self.rpc.request("eth_getLogs", json!([page])).await {
                Ok(logs) => return Ok((logs, end)),
                Err(RpcError::Node { ref message, .. }) if span > 1 && too_large(message) => {
                    span = (end - from).div_ceil(2).max(1);
                    self.log_page.store(span, Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every log matching `filter` from block `from` to the latest, read page by page.
    pub async fn logs_from(&self, filter: &Value, from: u64) -> Result<Vec<Log>, ClientError> {
        let head = self.block_number().await?;
        self.logs(filter, from, head).await
    }

    /// Every log matching `filter` in blocks `from..=to`, read page by page: one pass over
    /// the chain for a filter that lists several contracts or events.
    pub async fn logs(&self, filter: &Value, from: u64, to: u64) -> Result<Vec<Log>, ClientError> {
        let (mut out, mut from) = (Vec::new(), from);
        while from <= to {
            let (logs, end) = self.logs_page(filter, from, to).await?;
            out.extend(logs);
            from = end + 1;
        }
        Ok(out)
    }

    /// Every `E` event the contract at `address` emitted in blocks `from..=to` (`None`: the
    /// latest), decoded, with the block number each came in; read page by page.
    pub async fn events<E: SolEvent>(
        &self,
        address: Address,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<(u64, E)>, ClientError> {
        let to = match to {
            Some(to) => to,
            None => self.block_number().await?,
        };
        let filter = json!({"address": address, "topics": [E::SIGNATURE_HASH]});
        let mut events = Vec::new();
        for log in self.logs(&filter, from, to).await? {
            events.push((log.block(), log.decode::<E>()?));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn range_refusals_are_recognised() {
        assert!(super::too_large(
            "query exceeds max block range 10000 (--rpc-max-log-range)"
        ));
        assert!(super::too_large("query returned more than 10000 results"));
        assert!(!super::too_large("header not found"));
    }
}
