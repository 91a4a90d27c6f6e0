//! Shared test support: an in-process chain, JSON-RPC calls through the real dispatcher, and
//! transaction signing with real secp256k1 keys.
#![allow(dead_code)]

pub mod fuzz;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, U256};
use k256::ecdsa::SigningKey;
use openledger_chain::{
    devkeys::dev_accounts,
    mempool::PoolLimits,
    rpc::{self, Rpc, RpcLimits},
    Chain, Genesis,
};
use serde_json::{json, Value};
use std::sync::Arc;

pub const GWEI: u128 = 1_000_000_000;

/// A chain on a fresh data directory with the dev genesis.
pub struct TestChain {
    pub chain: Arc<Chain>,
    pub rpc: Arc<Rpc>,
    pub dir: tempfile::TempDir,
}

impl TestChain {
    pub fn new() -> Self {
        Self::with_limits(PoolLimits::default(), RpcLimits::default())
    }

    /// Serves an opened chain with default RPC bounds.
    pub fn from_parts(chain: Arc<Chain>, dir: tempfile::TempDir) -> Self {
        let rpc = Rpc::new(chain.clone(), RpcLimits::default());
        Self { chain, rpc, dir }
    }

    /// A dev chain whose pool and RPC have the given bounds.
    pub fn with_limits(pool: PoolLimits, limits: RpcLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open_with(dir.path(), Genesis::dev(), true, pool).unwrap();
        let rpc = Rpc::new(chain.clone(), limits);
        Self { chain, rpc, dir }
    }

    /// Calls a method through the JSON-RPC dispatcher; returns the whole response object.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        rpc::handle_body(&self.rpc, body.to_string().as_bytes())
            .await
            .expect("a request with an id gets a response")
    }

    /// The `result` of a call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// The `error` of a call that must fail.
    pub async fn err(&self, method: &str, params: Value) -> (i64, String) {
        let response = self.call(method, params).await;
        let error = response
            .get("error")
            .unwrap_or_else(|| panic!("{method} should fail: {response}"));
        (
            error["code"].as_i64().unwrap(),
            error["message"].as_str().unwrap().to_string(),
        )
    }

    pub async fn send_raw(&self, raw: &[u8]) -> Value {
        self.call(
            "eth_sendRawTransaction",
            json!([alloy_primitives::hex::encode_prefixed(raw)]),
        )
        .await
    }

    pub async fn balance(&self, address: Address) -> U256 {
        let v = self.ok("eth_getBalance", json!([address, "latest"])).await;
        v.as_str().unwrap().parse().unwrap()
    }

    pub async fn nonce(&self, address: Address) -> u64 {
        let v = self
            .ok("eth_getTransactionCount", json!([address, "pending"]))
            .await;
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    pub fn mine(&self) -> Arc<openledger_chain::block::Block> {
        self.chain.produce_block().unwrap()
    }
}

/// The dev keys.
pub fn keys() -> Vec<SigningKey> {
    dev_accounts().into_iter().map(|k| k.key).collect()
}

pub fn address(key: &SigningKey) -> Address {
    openledger_chain::devkeys::address_of(key)
}

fn sign<T: SignableTransaction<Signature>>(tx: T, key: &SigningKey) -> TxEnvelope
where
    TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    let (sig, recid) = key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .unwrap();
    TxEnvelope::from(tx.into_signed(Signature::from((sig, recid))))
}

/// An EIP-1559 transaction's fields with sensible defaults.
pub fn eip1559(
    chain_id: u64,
    nonce: u64,
    to: Option<Address>,
    value: U256,
    input: Bytes,
) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 1_000_000,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to: to.map_or(TxKind::Create, TxKind::Call),
        value,
        access_list: Default::default(),
        input,
    }
}

pub fn signed_1559(tx: TxEip1559, key: &SigningKey) -> Vec<u8> {
    sign(tx, key).encoded_2718()
}

pub fn signed_legacy(tx: TxLegacy, key: &SigningKey) -> Vec<u8> {
    sign(tx, key).encoded_2718()
}

pub fn signed_2930(tx: TxEip2930, key: &SigningKey) -> Vec<u8> {
    sign(tx, key).encoded_2718()
}

/// A plain transfer of `value` wei.
pub fn transfer(key: &SigningKey, nonce: u64, to: Address, value: u64) -> Vec<u8> {
    let mut tx = eip1559(1612, nonce, Some(to), U256::from(value), Bytes::new());
    tx.gas_limit = 21_000;
    signed_1559(tx, key)
}

/// Init code for a contract whose runtime stores calldata word 0 at slot `calldata word 1`
/// (or slot 0 when only one word is sent), emits LOG1(topic = slot) with the value as data,
/// and returns slot 0's value.
///
/// Runtime (hand-assembled):
/// ```text
/// 00 PUSH1 0x00 CALLDATALOAD      value = calldata[0..32]
/// 03 PUSH1 0x20 CALLDATALOAD      slot  = calldata[32..64] (zero if absent)
/// 06 DUP2 DUP2 SSTORE             sstore(slot, value)
/// 09 DUP2 PUSH1 0x00 MSTORE       mem[0] = value
/// 0d DUP1 PUSH1 0x20 PUSH1 0x00 LOG1   log1(mem[0..32], topic = slot)
/// 13 PUSH1 0x00 SLOAD PUSH1 0x00 MSTORE PUSH1 0x20 PUSH1 0x00 RETURN
/// ```
pub fn store_and_log_initcode() -> Bytes {
    let runtime: Vec<u8> = vec![
        0x60, 0x00, 0x35, 0x60, 0x20, 0x35, 0x81, 0x81, 0x55, 0x81, 0x60, 0x00, 0x52, 0x80, 0x60,
        0x20, 0x60, 0x00, 0xa1, 0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
    ];
    // Init: CODECOPY the runtime that follows this 12-byte prefix to memory 0 and return it.
    let mut init = vec![
        0x60,
        runtime.len() as u8, // PUSH1 len
        0x80,                // DUP1
        0x60,
        0x0c, // PUSH1 offset of runtime
        0x60,
        0x00, // PUSH1 0
        0x39, // CODECOPY(dest 0, offset 12, len)
        0x60,
        0x00, // PUSH1 0
        0xf3, // RETURN(0, len)
        0x00, // padding so the runtime starts at 12
    ];
    init.extend(runtime);
    init.into()
}
