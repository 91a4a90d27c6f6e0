//! The bounds that keep one client from exhausting the node: every one is a node flag with
//! geth's name and default where geth has one (see the README's "Limits" table).

use std::time::Duration;

/// Which browser origins may call the RPC (CORS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No cross-origin access: browsers refuse pages from other origins.
    #[default]
    None,
    /// Any origin (anvil's default; the dev node's).
    Any,
    /// These origins exactly, e.g. `https://app.example`.
    Origins(Vec<String>),
}

impl Cors {
    /// Parses `--http-cors`: `*`, `none`, or a comma-separated list of origins.
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "*" => Cors::Any,
            "" | "none" => Cors::None,
            list => Cors::Origins(
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }

    /// Whether a page from `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Cors::None => false,
            Cors::Any => true,
            Cors::Origins(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// The JSON-RPC server's bounds.
#[derive(Debug, Clone)]
pub struct RpcLimits {
    /// The largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// The most requests in one batch (geth: `--rpc.batch-request-limit`, 1000).
    pub batch_items: usize,
    /// The most bytes of answers one batch may produce (geth: `--rpc.batch-response-max-size`,
    /// 25 MB); later entries get an error.
    pub batch_response_bytes: usize,
    /// The most gas an `eth_call` or `eth_estimateGas` may use (geth: `--rpc.gascap`, 50M).
    pub gas_cap: u64,
    /// How long an `eth_call` or `eth_estimateGas` may run (geth: `--rpc.evmtimeout`, 5 s).
    pub evm_timeout: Duration,
    /// How many calls may run at once; more wait their turn.
    pub concurrent_calls: usize,
    /// The most logs one `eth_getLogs` returns.
    pub max_logs: usize,
    /// The most blocks one `eth_getLogs` scans.
    pub max_log_range: u64,
    /// The most blocks one `eth_feeHistory` reports (larger counts are cut, as in geth).
    pub fee_history_blocks: u64,
    /// The most storage slots one `eth_getProof` proves.
    pub proof_slots: usize,
    /// The most WebSocket connections at once.
    pub ws_connections: usize,
    /// The most subscriptions one WebSocket connection holds.
    pub ws_subscriptions: usize,
    /// The largest WebSocket message a client may send, in bytes.
    pub ws_message_bytes: usize,
    /// How many outgoing messages may wait for a WebSocket client; a client that lets more
    /// pile up (it does not read) is disconnected.
    pub ws_queue: usize,
    /// Which browser origins may call.
    pub cors: Cors,
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            batch_items: 1000,
            batch_response_bytes: 25_000_000,
            gas_cap: 50_000_000,
            evm_timeout: Duration::from_secs(5),
            concurrent_calls: 4,
            max_logs: 10_000,
            max_log_range: 10_000,
            fee_history_blocks: 1024,
            proof_slots: 1024,
            ws_connections: 256,
            ws_subscriptions: 128,
            ws_message_bytes: 5 * 1024 * 1024,
            ws_queue: 1024,
            cors: Cors::None,
        }
    }
}

/// The most reward percentiles one `eth_feeHistory` takes.
pub const MAX_FEE_PERCENTILES: usize = 100;
