//! Log filters for `eth_getLogs` and `logs` subscriptions.

use super::{format, RpcError, RpcLimits};
use crate::{
    block::Block,
    chain::{BlockId, Chain},
};
use alloy_primitives::{Address, Bloom, BloomInput, B256};
use serde_json::Value;

/// The most addresses and topic alternatives, all together, a filter may list: each costs a
/// check per block scanned (and per block for every subscription).
pub const MAX_FILTER_ITEMS: usize = 256;

/// Which logs a caller wants: addresses (any of) and per-position topic alternatives.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub from: Option<BlockId>,
    pub to: Option<BlockId>,
    pub block_hash: Option<B256>,
    pub addresses: Vec<Address>,
    pub topics: Vec<Vec<B256>>,
    /// The blooms of `addresses` and `topics`, made once so that a block's bloom check is
    /// bit arithmetic instead of hashing.
    address_blooms: Vec<Bloom>,
    topic_blooms: Vec<Vec<Bloom>>,
}

fn one_or_many<T: serde::de::DeserializeOwned>(v: &Value, name: &str) -> Result<Vec<T>, RpcError> {
    let parse = |v: &Value| {
        serde_json::from_value::<T>(v.clone())
            .map_err(|e| RpcError::invalid_params(format!("invalid {name}: {e}")))
    };
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(items) if items.len() > MAX_FILTER_ITEMS => {
            Err(RpcError::invalid_params(format!(
                "too many {name}s: {}, at most {MAX_FILTER_ITEMS}",
                items.len()
            )))
        }
        Value::Array(items) => items.iter().map(parse).collect(),
        _ => Ok(vec![parse(v)?]),
    }
}

impl LogFilter {
    /// Parses the filter object.
    pub fn parse(v: &Value) -> Result<Self, RpcError> {
        let obj = v
            .as_object()
            .ok_or_else(|| RpcError::invalid_params("filter must be an object"))?;
        let mut filter = LogFilter::default();
        if let Some(from) = obj.get("fromBlock").filter(|v| !v.is_null()) {
            filter.from = Some(super::params::block_id(from)?);
        }
        if let Some(to) = obj.get("toBlock").filter(|v| !v.is_null()) {
            filter.to = Some(super::params::block_id(to)?);
        }
        if let Some(hash) = obj.get("blockHash").filter(|v| !v.is_null()) {
            if filter.from.is_some() || filter.to.is_some() {
                return Err(RpcError::invalid_params(
                    "blockHash cannot be combined with fromBlock/toBlock",
                ));
            }
            filter.block_hash = Some(
                serde_json::from_value(hash.clone())
                    .map_err(|e| RpcError::invalid_params(format!("invalid blockHash: {e}")))?,
            );
        }
        if let Some(address) = obj.get("address") {
            filter.addresses = one_or_many(address, "address")?;
        }
        if let Some(topics) = obj.get("topics") {
            let Value::Array(positions) = topics else {
                return Err(RpcError::invalid_params("topics must be an array"));
            };
            if positions.len() > 4 {
                return Err(RpcError::invalid_params("at most 4 topic positions"));
            }
            filter.topics = positions
                .iter()
                .map(|p| one_or_many(p, "topic"))
                .collect::<Result<_, _>>()?;
        }
        let items = filter.addresses.len() + filter.topics.iter().map(Vec::len).sum::<usize>();
        if items > MAX_FILTER_ITEMS {
            return Err(RpcError::invalid_params(format!(
                "the filter lists {items} addresses and topics, at most {MAX_FILTER_ITEMS}"
            )));
        }
        let bloom = |bytes: &[u8]| Bloom::from(BloomInput::Raw(bytes));
        filter.address_blooms = filter
            .addresses
            .iter()
            .map(|a| bloom(a.as_slice()))
            .collect();
        filter.topic_blooms = (filter.topics.iter())
            .map(|ts| ts.iter().map(|t| bloom(t.as_slice())).collect())
            .collect();
        Ok(filter)
    }

    fn matches(&self, address: &Address, topics: &[B256]) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(address) {
            return false;
        }
        self.topics.iter().enumerate().all(|(i, wanted)| {
            wanted.is_empty() || topics.get(i).is_some_and(|t| wanted.contains(t))
        })
    }

    /// Whether a block with this bloom may hold a match (false means certainly none).
    fn may_match(&self, bloom: &alloy_primitives::Bloom) -> bool {
        let addresses =
            self.address_blooms.is_empty() || self.address_blooms.iter().any(|a| bloom.contains(a));
        addresses
            && self
                .topic_blooms
                .iter()
                .all(|wanted| wanted.is_empty() || wanted.iter().any(|t| bloom.contains(t)))
    }

    /// The matching logs of one block, as JSON.
    pub fn block_logs(&self, block: &Block, out: &mut Vec<Value>) {
        if !self.may_match(&block.header.logs_bloom) {
            return;
        }
        let mut log_index = 0;
        for (tx_index, receipt) in block.receipts.iter().enumerate() {
            for log in receipt.logs() {
                if self.matches(&log.address, log.data.topics()) {
                    out.push(format::log(block, tx_index, log_index, log));
                }
                log_index += 1;
            }
        }
    }
}

/// `eth_getLogs`, refusing ranges wider and answers longer than `limits` allow.
pub fn get_logs(chain: &Chain, limits: &RpcLimits, v: &Value) -> Result<Value, RpcError> {
    let filter = LogFilter::parse(v)?;
    let mut out = Vec::new();
    if let Some(hash) = filter.block_hash {
        let block = chain
            .block(BlockId::Hash(hash))
            .map_err(RpcError::internal)?
            .ok_or_else(|| RpcError::server("unknown block"))?;
        filter.block_logs(&block, &mut out);
        return Ok(Value::Array(out));
    }
    let head = chain.head().header.number;
    let resolve = |id: Option<BlockId>| -> Result<u64, RpcError> {
        match id {
            None => Ok(head),
            Some(id) => Ok(chain
                .resolve(id)
                .map_err(RpcError::internal)?
                .unwrap_or(head)),
        }
    };
    let from = resolve(filter.from)?;
    let to = resolve(filter.to)?;
    if from > to {
        return Err(RpcError::invalid_params(format!(
            "invalid block range: fromBlock {from} is after toBlock {to}"
        )));
    }
    if to - from >= limits.max_log_range {
        return Err(RpcError::server(format!(
            "query exceeds max block range {} (--rpc-max-log-range)",
            limits.max_log_range
        )));
    }
    // The stored blooms first: a block whose bloom rules out a match is not read or decoded
    // (one without a stored bloom always is).
    let candidates = chain
        .blocks_maybe_matching(from, to, |bloom| filter.may_match(bloom))
        .map_err(RpcError::internal)?;
    for number in candidates {
        if let Some(block) = chain
            .block(BlockId::Number(number))
            .map_err(RpcError::internal)?
        {
            filter.block_logs(&block, &mut out);
        }
        if out.len() > limits.max_logs {
            return Err(RpcError::server(format!(
                "query returned more than {} results (--rpc-max-logs); ask for a narrower \
                 block range or filter",
                limits.max_logs
            )));
        }
    }
    Ok(Value::Array(out))
}
