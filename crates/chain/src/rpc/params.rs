//! Parsing JSON-RPC parameters into the node's types, with errors that name the parameter.

use super::RpcError;
use crate::{chain::BlockId, exec::CallRequest};
use alloy_primitives::{Address, Bytes, B256, U256};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Positional parameters of one call.
pub struct Params<'a> {
    items: &'a [Value],
}

impl<'a> Params<'a> {
    /// Wraps the `params` member (absent means none).
    pub fn new(value: &'a Value) -> Result<Self, RpcError> {
        match value {
            Value::Array(items) => Ok(Self { items }),
            Value::Null => Ok(Self { items: &[] }),
            _ => Err(RpcError::invalid_params("params must be an array")),
        }
    }

    /// The parameter at `index`, if present and not null.
    pub fn get(&self, index: usize) -> Option<&'a Value> {
        self.items.get(index).filter(|v| !v.is_null())
    }

    /// A required parameter parsed with serde.
    pub fn required<T: DeserializeOwned>(&self, index: usize, name: &str) -> Result<T, RpcError> {
        let value = self.get(index).ok_or_else(|| {
            RpcError::invalid_params(format!("missing parameter {index} ({name})"))
        })?;
        serde_json::from_value(value.clone()).map_err(|e| {
            RpcError::invalid_params(format!("invalid parameter {index} ({name}): {e}"))
        })
    }

    /// An optional parameter parsed with serde.
    pub fn optional<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<T>, RpcError> {
        match self.get(index) {
            None => Ok(None),
            Some(_) => self.required(index, name).map(Some),
        }
    }

    /// A block parameter; absent means `latest`.
    pub fn block(&self, index: usize) -> Result<BlockId, RpcError> {
        match self.get(index) {
            None => Ok(BlockId::Latest),
            Some(v) => block_id(v),
        }
    }

    /// A call or transaction object.
    pub fn call(&self, index: usize) -> Result<CallRequest, RpcError> {
        let value = self
            .get(index)
            .ok_or_else(|| RpcError::invalid_params("missing transaction object"))?;
        call_request(value)
    }
}

/// Parses a hex quantity (`0x1a`).
pub fn quantity(v: &Value, name: &str) -> Result<u64, RpcError> {
    let bad = || RpcError::invalid_params(format!("{name} must be a hex quantity, got {v}"));
    match v {
        Value::String(s) => {
            let hex = s.strip_prefix("0x").ok_or_else(bad)?;
            u64::from_str_radix(hex, 16).map_err(|_| bad())
        }
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Parses a block tag, number, or EIP-1898 object.
pub fn block_id(v: &Value) -> Result<BlockId, RpcError> {
    match v {
        Value::String(s) => match s.as_str() {
            // One sequencer and durable blocks: nothing is ever reorganised, so the newest
            // block is also safe and finalized.
            "latest" | "safe" | "finalized" => Ok(BlockId::Latest),
            "pending" => Ok(BlockId::Pending),
            "earliest" => Ok(BlockId::Earliest),
            _ if s.len() == 66 => s
                .parse::<B256>()
                .map(BlockId::Hash)
                .map_err(|_| RpcError::invalid_params(format!("invalid block hash {s}"))),
            _ => quantity(v, "block number").map(BlockId::Number),
        },
        Value::Object(map) => {
            if let Some(hash) = map.get("blockHash") {
                let hash: B256 = serde_json::from_value(hash.clone())
                    .map_err(|e| RpcError::invalid_params(format!("invalid blockHash: {e}")))?;
                Ok(BlockId::Hash(hash))
            } else if let Some(n) = map.get("blockNumber") {
                block_id(n)
            } else {
                Err(RpcError::invalid_params(
                    "block object needs blockHash or blockNumber",
                ))
            }
        }
        Value::Number(_) => quantity(v, "block number").map(BlockId::Number),
        _ => Err(RpcError::invalid_params(format!(
            "invalid block parameter {v}"
        ))),
    }
}

fn field<T: DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<T>, RpcError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| RpcError::invalid_params(format!("invalid field {name}: {e}"))),
    }
}

fn quantity_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<U256>, RpcError> {
    field::<U256>(obj, name)
}

fn small(v: Option<U256>, name: &str) -> Result<Option<u128>, RpcError> {
    v.map(|v| {
        u128::try_from(v).map_err(|_| RpcError::invalid_params(format!("{name} is too large")))
    })
    .transpose()
}

/// Parses the transaction object of `eth_call`, `eth_estimateGas` and `eth_sendTransaction`.
pub fn call_request(v: &Value) -> Result<CallRequest, RpcError> {
    let obj = v
        .as_object()
        .ok_or_else(|| RpcError::invalid_params("transaction must be an object"))?;
    let input: Option<Bytes> = match field(obj, "input")? {
        Some(i) => Some(i),
        None => field(obj, "data")?,
    };
    let gas = small(quantity_field(obj, "gas")?, "gas")?;
    Ok(CallRequest {
        from: field::<Address>(obj, "from")?,
        to: field::<Address>(obj, "to")?,
        gas: gas
            .map(|g| u64::try_from(g).map_err(|_| RpcError::invalid_params("gas is too large")))
            .transpose()?,
        gas_price: small(quantity_field(obj, "gasPrice")?, "gasPrice")?,
        max_fee_per_gas: small(quantity_field(obj, "maxFeePerGas")?, "maxFeePerGas")?,
        max_priority_fee_per_gas: small(
            quantity_field(obj, "maxPriorityFeePerGas")?,
            "maxPriorityFeePerGas",
        )?,
        value: quantity_field(obj, "value")?,
        input: input.unwrap_or_default(),
        nonce: small(quantity_field(obj, "nonce")?, "nonce")?.map(|n| n as u64),
        access_list: field(obj, "accessList")?,
    })
}
