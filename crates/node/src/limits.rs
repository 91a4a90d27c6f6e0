//! The node's bounds as command-line flags (geth's names where geth has the limit). Each flag
//! left out keeps the library's default, so the defaults live in one place.

use openledger_chain::{
    mempool::PoolLimits,
    rpc::{Cors, RpcLimits},
};
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest signed transaction accepted, bytes [default: 131072]
    #[arg(long, value_name = "BYTES")]
    txpool_max_tx_size: Option<usize>,
    /// Most pooled transactions per sender, and how far ahead of its nonce one may be
    /// [default: 4096]
    #[arg(long, value_name = "N")]
    txpool_account_slots: Option<usize>,
    /// Most transactions one sender may have waiting behind a nonce gap [default: 64]
    #[arg(long, value_name = "N")]
    txpool_queued_per_sender: Option<usize>,
    /// Most transactions in the pool [default: 65536]
    #[arg(long, value_name = "N")]
    txpool_global_slots: Option<usize>,
    /// Most bytes of transactions in the pool [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    txpool_global_bytes: Option<usize>,
    /// Seconds a transaction may wait behind a nonce gap [default: 10800]
    #[arg(long, value_name = "SECS")]
    txpool_lifetime: Option<u64>,
    /// Largest JSON-RPC request body, bytes [default: 5242880]
    #[arg(long, value_name = "BYTES")]
    rpc_max_body: Option<usize>,
    /// Most requests in one JSON-RPC batch [default: 1000]
    #[arg(long, value_name = "N")]
    rpc_batch_items: Option<usize>,
    /// Most bytes of answers one batch produces [default: 25000000]
    #[arg(long, value_name = "BYTES")]
    rpc_batch_response_bytes: Option<usize>,
    /// Most gas one eth_call or eth_estimateGas uses [default: 50000000]
    #[arg(long, value_name = "GAS")]
    rpc_gascap: Option<u64>,
    /// Milliseconds one eth_call or eth_estimateGas may run [default: 5000]
    #[arg(long, value_name = "MS")]
    rpc_evmtimeout: Option<u64>,
    /// Calls run at once (eth_call, eth_estimateGas, eth_getProof); more wait [default: 4]
    #[arg(long, value_name = "N")]
    rpc_max_concurrent_calls: Option<usize>,
    /// Most logs one eth_getLogs returns [default: 10000]
    #[arg(long, value_name = "N")]
    rpc_max_logs: Option<usize>,
    /// Most blocks one eth_getLogs scans [default: 10000]
    #[arg(long, value_name = "N")]
    rpc_max_log_range: Option<u64>,
    /// Most blocks one eth_feeHistory reports [default: 1024]
    #[arg(long, value_name = "N")]
    rpc_fee_history_blocks: Option<u64>,
    /// Most storage keys one eth_getProof proves [default: 1024]
    #[arg(long, value_name = "N")]
    rpc_max_proof_slots: Option<usize>,
    /// Most WebSocket connections at once [default: 256]
    #[arg(long, value_name = "N")]
    ws_max_connections: Option<usize>,
    /// Most subscriptions per WebSocket connection [default: 128]
    #[arg(long, value_name = "N")]
    ws_max_subscriptions: Option<usize>,
    /// Largest WebSocket message a client may send, bytes [default: 5242880]
    #[arg(long, value_name = "BYTES")]
    ws_max_message: Option<usize>,
    /// Outgoing messages that may wait for a WebSocket client before it is dropped
    /// [default: 1024]
    #[arg(long, value_name = "N")]
    ws_queue: Option<usize>,
    /// Origins browsers may call the RPC from: `*`, `none`, or a comma-separated list
    /// [default: `*` with --dev, else none]
    #[arg(long, value_name = "ORIGINS")]
    http_cors: Option<String>,
}

impl LimitArgs {
    /// The mempool's bounds.
    pub fn pool(&self) -> PoolLimits {
        let d = PoolLimits::default();
        PoolLimits {
            max_tx_bytes: self.txpool_max_tx_size.unwrap_or(d.max_tx_bytes),
            account_slots: self.txpool_account_slots.unwrap_or(d.account_slots),
            queued_per_sender: self.txpool_queued_per_sender.unwrap_or(d.queued_per_sender),
            max_txs: self.txpool_global_slots.unwrap_or(d.max_txs),
            max_bytes: self.txpool_global_bytes.unwrap_or(d.max_bytes),
            queued_lifetime: self
                .txpool_lifetime
                .map_or(d.queued_lifetime, Duration::from_secs),
        }
    }

    /// The JSON-RPC server's bounds; `dev` opens CORS to every origin unless told otherwise.
    pub fn rpc(&self, dev: bool) -> RpcLimits {
        let d = RpcLimits::default();
        RpcLimits {
            max_body_bytes: self.rpc_max_body.unwrap_or(d.max_body_bytes),
            batch_items: self.rpc_batch_items.unwrap_or(d.batch_items),
            batch_response_bytes: self
                .rpc_batch_response_bytes
                .unwrap_or(d.batch_response_bytes),
            gas_cap: self.rpc_gascap.unwrap_or(d.gas_cap),
            evm_timeout: self
                .rpc_evmtimeout
                .map_or(d.evm_timeout, Duration::from_millis),
            concurrent_calls: self.rpc_max_concurrent_calls.unwrap_or(d.concurrent_calls),
            max_logs: self.rpc_max_logs.unwrap_or(d.max_logs),
            max_log_range: self.rpc_max_log_range.unwrap_or(d.max_log_range),
            fee_history_blocks: self.rpc_fee_history_blocks.unwrap_or(d.fee_history_blocks),
            proof_slots: self.rpc_max_proof_slots.unwrap_or(d.proof_slots),
            ws_connections: self.ws_max_connections.unwrap_or(d.ws_connections),
            ws_subscriptions: self.ws_max_subscriptions.unwrap_or(d.ws_subscriptions),
            ws_message_bytes: self.ws_max_message.unwrap_or(d.ws_message_bytes),
            ws_queue: self.ws_queue.unwrap_or(d.ws_queue),
            cors: match &self.http_cors {
                Some(value) => Cors::parse(value),
                None if dev => Cors::Any,
                None => Cors::None,
            },
        }
    }
}
