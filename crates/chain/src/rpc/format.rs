//! The JSON shapes of blocks, transactions, receipts and logs, as Ethereum clients read them.

use crate::block::{Block, BlockTx};
use alloy_consensus::{Transaction, TxReceipt};
use alloy_eips::Typed2718;
use alloy_primitives::{Log, B256};
use serde_json::{json, Value};

/// A hex quantity.
pub fn q(n: impl std::fmt::LowerHex) -> Value {
    Value::String(format!("{n:#x}"))
}

/// A transaction with its place in a block (or nulls while pending).
pub fn transaction(tx: &BlockTx, place: Option<(&Block, usize)>) -> Value {
    let mut value = serde_json::to_value(&tx.tx).unwrap_or(Value::Null);
    let Value::Object(obj) = &mut value else {
        return value;
    };
    obj.insert("hash".into(), json!(tx.hash()));
    obj.insert("from".into(), json!(tx.sender));
    match place {
        Some((block, index)) => {
            let base_fee = block.header.base_fee_per_gas.unwrap_or_default();
            obj.insert("blockHash".into(), json!(block.hash));
            obj.insert("blockNumber".into(), q(block.header.number));
            obj.insert("transactionIndex".into(), q(index as u64));
            obj.insert(
                "gasPrice".into(),
                q(tx.tx.effective_gas_price(Some(base_fee))),
            );
        }
        None => {
            obj.insert("blockHash".into(), Value::Null);
            obj.insert("blockNumber".into(), Value::Null);
            obj.insert("transactionIndex".into(), Value::Null);
            obj.insert("gasPrice".into(), q(tx.tx.max_fee_per_gas()));
        }
    }
    value
}

/// The index within the block of the first log of transaction `index`.
fn first_log_index(block: &Block, index: usize) -> usize {
    block.receipts[..index].iter().map(|r| r.logs().len()).sum()
}

/// One log with its position.
pub fn log(block: &Block, tx_index: usize, log_index: usize, log: &Log) -> Value {
    json!({
        "address": log.address,
        "topics": log.data.topics(),
        "data": log.data.data,
        "blockHash": block.hash,
        "blockNumber": q(block.header.number),
        "blockTimestamp": q(block.header.timestamp),
        "transactionHash": block.txs[tx_index].hash(),
        "transactionIndex": q(tx_index as u64),
        "logIndex": q(log_index as u64),
        "removed": false,
    })
}

/// A transaction receipt.
pub fn receipt(block: &Block, index: usize) -> Value {
    let tx = &block.txs[index];
    let r = &block.receipts[index];
    let base_fee = block.header.base_fee_per_gas.unwrap_or_default();
    let first = first_log_index(block, index);
    let logs: Vec<Value> = r
        .logs()
        .iter()
        .enumerate()
        .map(|(i, l)| log(block, index, first + i, l))
        .collect();
    json!({
        "type": q(tx.tx.ty()),
        "transactionHash": tx.hash(),
        "transactionIndex": q(index as u64),
        "blockHash": block.hash,
        "blockNumber": q(block.header.number),
        "from": tx.sender,
        "to": tx.tx.to(),
        "cumulativeGasUsed": q(r.cumulative_gas_used()),
        "gasUsed": q(block.gas_used_by(index)),
        "effectiveGasPrice": q(tx.tx.effective_gas_price(Some(base_fee))),
        "contractAddress": tx.created_address(),
        "logs": logs,
        "logsBloom": r.bloom(),
        "status": q(u8::from(r.status())),
    })
}

/// A block with transaction hashes or full transactions.
pub fn block(block: &Block, full: bool) -> Value {
    let mut value = serde_json::to_value(&block.header).unwrap_or(Value::Null);
    let txs: Vec<Value> = if full {
        block
            .txs
            .iter()
            .enumerate()
            .map(|(i, tx)| transaction(tx, Some((block, i))))
            .collect()
    } else {
        block.txs.iter().map(|tx| json!(tx.hash())).collect()
    };
    if let Value::Object(obj) = &mut value {
        obj.insert("hash".into(), json!(block.hash));
        obj.insert("size".into(), q(block.size() as u64));
        obj.insert("totalDifficulty".into(), q(0u8));
        obj.insert("uncles".into(), json!(Vec::<B256>::new()));
        obj.insert("withdrawals".into(), json!(Vec::<Value>::new()));
        obj.insert("transactions".into(), Value::Array(txs));
    }
    value
}

/// The header alone, as `newHeads` sends it.
pub fn header(block: &Block) -> Value {
    let mut value = serde_json::to_value(&block.header).unwrap_or(Value::Null);
    if let Value::Object(obj) = &mut value {
        obj.insert("hash".into(), json!(block.hash));
    }
    value
}
