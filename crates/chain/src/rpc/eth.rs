//! The `eth_*`, `net_*` and `web3_*` methods.

use super::{
    format::{self, q},
    limits::MAX_FEE_PERCENTILES,
    logs,
    params::{quantity, Params},
    Rpc, RpcError,
};
use crate::chain::{BlockId, Chain};
use alloy_consensus::Transaction;
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use serde_json::{json, Value};

/// The priority fee the node suggests (fees go to the fee vault; this only orders the pool).
const SUGGESTED_TIP: u64 = 1_000_000_000;
/// Transactions per page of `openledger_getTransactionsByAddress`, by default and at most.
const ADDRESS_PAGE: u64 = 25;
const MAX_ADDRESS_PAGE: u64 = 100;
/// Runs one method.
pub async fn dispatch(rpc: &Rpc, method: &str, params: &Value) -> Result<Value, RpcError> {
    let chain = &*rpc.chain;
    let p = Params::new(params)?;
    let store = RpcError::internal;
    Ok(match method {
        "web3_clientVersion" => json!(concat!("openledger/v", env!("CARGO_PKG_VERSION"), "/rust")),
        "web3_sha3" => json!(alloy_primitives::keccak256(p.required::<Bytes>(0, "data")?)),
        "net_version" => json!(chain.genesis.chain_id.to_string()),
        "net_listening" => json!(true),
        "net_peerCount" => q(0u8),
        "eth_chainId" => q(chain.genesis.chain_id),
        "eth_blockNumber" => q(chain.head().header.number),
        "eth_syncing" => json!(false),
        "eth_accounts" => json!(chain.dev_addresses()),
        "eth_gasPrice" => q(chain.next_base_fee() + SUGGESTED_TIP),
        "eth_maxPriorityFeePerGas" => q(SUGGESTED_TIP),
        "eth_getBalance" => {
            let address: Address = p.required(0, "address")?;
            q(chain.account(&address, p.block(1)?)?.balance)
        }
        "eth_getTransactionCount" => {
            let address: Address = p.required(0, "address")?;
            q(chain.nonce(&address, p.block(1)?)?)
        }
        "eth_getCode" => {
            let address: Address = p.required(0, "address")?;
            json!(chain.code(&address, p.block(1)?)?)
        }
        "eth_getStorageAt" => {
            let address: Address = p.required(0, "address")?;
            let slot: U256 = p.required(1, "slot")?;
            let value = chain.storage(&address, slot, p.block(2)?)?;
            json!(B256::from(value))
        }
        "eth_call" => {
            let (req, id) = (p.call(0)?, p.block(1)?);
            json!(
                rpc.off_runtime(move |chain, bounds| chain.call(&req, id, &bounds))
                    .await??
            )
        }
        "eth_estimateGas" => {
            let (req, id) = (p.call(0)?, p.block(1)?);
            q(rpc
                .off_runtime(move |chain, bounds| chain.estimate_gas(&req, id, &bounds))
                .await??)
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = p.required(0, "signed transaction")?;
            json!(chain.submit_raw(raw.to_vec()).await?)
        }
        // Dev-only clock and block control, as in other dev nodes, so that tests and people
        // can cross governance delays and challenge windows without waiting them out.
        "evm_increaseTime" | "evm_mine" | "openledger_totalSupply"
            if chain.dev_addresses().is_empty() =>
        {
            return Err(RpcError::server(format!(
                "{method} is only available on a dev node (--dev)"
            )))
        }
        "evm_increaseTime" => {
            let seconds: alloy_primitives::U64 = p.required(0, "seconds")?;
            q(chain.increase_time(seconds.to()))
        }
        // The sum of every balance at the head: OPEN's total supply, which never changes. It
        // reads every account, so only a dev node answers it.
        "openledger_totalSupply" => q(chain.total_balance()),
        "evm_mine" => {
            // Dev only, so holding this worker for one block's production is acceptable.
            let block = chain
                .produce_block()
                .map_err(|e| RpcError::server(format!("block production failed: {e}")))?;
            q(block.header.number)
        }
        "eth_sendTransaction" => {
            if chain.dev_addresses().is_empty() {
                return Err(RpcError::server(
                    "eth_sendTransaction needs the node's dev keys: start it with --dev, \
                     or sign the transaction and use eth_sendRawTransaction",
                ));
            }
            json!(chain.submit_dev(p.call(0)?, &rpc.bounds()).await?)
        }
        "eth_getTransactionByHash" => {
            let hash: B256 = p.required(0, "transaction hash")?;
            match chain.tx_location(&hash).map_err(store)? {
                Some((block, i)) => format::transaction(&block.txs[i], Some((&block, i))),
                None => match chain.pooled(&hash) {
                    Some(tx) => format::transaction(&tx, None),
                    None => Value::Null,
                },
            }
        }
        // An explorer's history of an address, newest first, a page at a time: the
        // transactions it sent, received or created a contract with. `next` is the position
        // to pass as `before` for the next page (absent on the last).
        "openledger_getTransactionsByAddress" => {
            let address: Address = p.required(0, "address")?;
            let before: Option<(U64, U64)> = p.optional(1, "before")?;
            let limit = match p.get(2) {
                None | Some(Value::Null) => ADDRESS_PAGE,
                Some(v) => quantity(v, "limit")?,
            };
            if limit == 0 || limit > MAX_ADDRESS_PAGE {
                return Err(RpcError::invalid_params(format!(
                    "limit {limit} is out of range: ask for 1 to {MAX_ADDRESS_PAGE} transactions"
                )));
            }
            let before = before
                .map(|(b, i)| u32::try_from(i.to::<u64>()).map(|i| (b.to::<u64>(), i)))
                .transpose()
                .map_err(|_| RpcError::invalid_params("before: the index is past u32"))?;
            let crate::chain::AddressPage { txs: found, full } = chain
                .address_transactions(&address, before, limit as usize)
                .map_err(store)?;
            let next = full
                .then(|| {
                    found
                        .last()
                        .map(|(b, i)| json!([q(b.header.number), q(*i)]))
                })
                .flatten();
            let txs: Vec<Value> = found
                .iter()
                .map(|(block, i)| format::transaction(&block.txs[*i], Some((block, *i))))
                .collect();
            json!({"transactions": txs, "next": next})
        }
        "eth_getTransactionReceipt" => {
            let hash: B256 = p.required(0, "transaction hash")?;
            match chain.tx_location(&hash).map_err(store)? {
                Some((block, i)) => format::receipt(&block, i),
                None => Value::Null,
            }
        }
        "eth_getBlockReceipts" => match chain.block(p.block(0)?).map_err(store)? {
            Some(block) => json!((0..block.txs.len())
                .map(|i| format::receipt(&block, i))
                .collect::<Vec<_>>()),
            None => Value::Null,
        },
        "eth_getBlockByNumber" | "eth_getBlockByHash" => {
            let id = if method == "eth_getBlockByHash" {
                BlockId::Hash(p.required(0, "block hash")?)
            } else {
                p.block(0)?
            };
            let full = p.optional::<bool>(1, "full transactions")?.unwrap_or(false);
            match chain.block(id).map_err(store)? {
                Some(block) => format::block(&block, full),
                None => Value::Null,
            }
        }
        "eth_getBlockTransactionCountByNumber" | "eth_getBlockTransactionCountByHash" => {
            let id = if method.ends_with("ByHash") {
                BlockId::Hash(p.required(0, "block hash")?)
            } else {
                p.block(0)?
            };
            match chain.block(id).map_err(store)? {
                Some(block) => q(block.txs.len() as u64),
                None => Value::Null,
            }
        }
        "eth_getTransactionByBlockNumberAndIndex" | "eth_getTransactionByBlockHashAndIndex" => {
            let id = if method.contains("Hash") {
                BlockId::Hash(p.required(0, "block hash")?)
            } else {
                p.block(0)?
            };
            let index = quantity(p.get(1).unwrap_or(&Value::Null), "index")? as usize;
            match chain.block(id).map_err(store)? {
                Some(block) if index < block.txs.len() => {
                    format::transaction(&block.txs[index], Some((&block, index)))
                }
                _ => Value::Null,
            }
        }
        "eth_getLogs" => {
            // Scanning thousands of blocks is blocking work: off the async runtime, in a slot.
            let (filter, limits) = (p.get(0).cloned().unwrap_or(Value::Null), rpc.limits.clone());
            rpc.off_runtime(move |chain, _| logs::get_logs(chain, &limits, &filter))
                .await??
        }
        "eth_getProof" => get_proof(rpc, &p).await?,
        "eth_feeHistory" => fee_history(chain, rpc.limits.fee_history_blocks, &p)?,
        "eth_subscribe" | "eth_unsubscribe" => {
            return Err(RpcError::server(format!(
                "{method} needs a WebSocket connection (ws:// on the same port)"
            )))
        }
        _ => return Err(RpcError::method_not_found(method)),
    })
}

async fn get_proof(rpc: &Rpc, p: &Params<'_>) -> Result<Value, RpcError> {
    let address: Address = p.required(0, "address")?;
    let slots: Vec<U256> = p.optional(1, "storage keys")?.unwrap_or_default();
    if slots.len() > rpc.limits.proof_slots {
        return Err(RpcError::invalid_params(format!(
            "too many storage keys: {}, at most {} (--rpc-max-proof-slots)",
            slots.len(),
            rpc.limits.proof_slots
        )));
    }
    let id = p.block(2)?;
    let proof = rpc
        .off_runtime(move |chain, _| chain.proof(address, &slots, id))
        .await?
        .map_err(RpcError::server)?;
    let storage: Vec<Value> = proof
        .storage
        .iter()
        .map(|(key, value, nodes)| json!({"key": B256::from(*key), "value": q(*value), "proof": nodes}))
        .collect();
    Ok(json!({
        "address": proof.address,
        "balance": q(proof.account.balance),
        "nonce": q(proof.account.nonce),
        "codeHash": proof.account.code_hash,
        "storageHash": proof.storage_hash,
        "accountProof": proof.account_proof,
        "storageProof": storage,
    }))
}

fn fee_history(chain: &Chain, max_blocks: u64, p: &Params<'_>) -> Result<Value, RpcError> {
    let count = quantity(
        p.get(0)
            .ok_or_else(|| RpcError::invalid_params("missing blockCount"))?,
        "blockCount",
    )?
    .min(max_blocks);
    let newest = chain
        .resolve(p.block(1)?)
        .map_err(RpcError::internal)?
        .ok_or_else(|| RpcError::server("header not found"))?;
    let percentiles: Vec<f64> = p.optional(2, "reward percentiles")?.unwrap_or_default();
    if percentiles.len() > MAX_FEE_PERCENTILES {
        return Err(RpcError::invalid_params(format!(
            "too many reward percentiles: {}, at most {MAX_FEE_PERCENTILES}",
            percentiles.len()
        )));
    }
    if percentiles.windows(2).any(|w| w[0] >= w[1])
        || percentiles.iter().any(|x| !(0.0..=100.0).contains(x))
    {
        return Err(RpcError::invalid_params(
            "reward percentiles must be strictly ascending and within 0..=100",
        ));
    }
    let oldest = (newest + 1).saturating_sub(count);
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    let mut last = None;
    for number in oldest..=newest {
        let Some(block) = chain
            .block(BlockId::Number(number))
            .map_err(RpcError::internal)?
        else {
            break;
        };
        let base_fee = block.header.base_fee_per_gas.unwrap_or_default();
        base_fees.push(q(base_fee));
        ratios.push(json!(
            block.header.gas_used as f64 / block.header.gas_limit as f64
        ));
        if !percentiles.is_empty() {
            rewards.push(block_rewards(&block, base_fee, &percentiles));
        }
        last = Some(block);
    }
    if let Some(block) = &last {
        base_fees.push(q(crate::chain::next_base_fee(
            &chain.genesis,
            &block.header,
        )));
    }
    let (fee_count, ratio_count) = (base_fees.len(), ratios.len());
    let mut out = json!({
        "oldestBlock": q(oldest),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
        // No blobs on this chain: zero blob fees and usage, one entry per reported block.
        "baseFeePerBlobGas": vec![q(0u8); fee_count],
        "blobGasUsedRatio": vec![json!(0.0); ratio_count],
    });
    if !percentiles.is_empty() {
        out["reward"] = json!(rewards);
    }
    Ok(out)
}

/// The tips paid at each percentile of the block's gas, as `eth_feeHistory` defines.
fn block_rewards(block: &crate::block::Block, base_fee: u64, percentiles: &[f64]) -> Vec<Value> {
    let mut tips: Vec<(u128, u64)> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            (
                tx.tx.effective_tip_per_gas(base_fee).unwrap_or_default(),
                block.gas_used_by(i),
            )
        })
        .collect();
    tips.sort_unstable();
    let total: u64 = tips.iter().map(|t| t.1).sum();
    percentiles
        .iter()
        .map(|pct| {
            if tips.is_empty() {
                return q(0u8);
            }
            let threshold = (total as f64 * pct / 100.0) as u64;
            let mut sum = 0;
            for (tip, gas) in &tips {
                sum += gas;
                if sum >= threshold {
                    return q(*tip);
                }
            }
            q(tips.last().map_or(0, |t| t.0))
        })
        .collect()
}
