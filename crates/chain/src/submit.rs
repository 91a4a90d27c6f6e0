//! The way into the pool: decoding and checking a signed transaction, the errors Ethereum
//! clients expect, and the group-committing writer that makes accepted transactions durable
//! before `eth_sendRawTransaction` answers.

use crate::{
    block::BlockTx,
    devkeys::DevKey,
    exec::{self, CallRequest},
    genesis::Genesis,
    mempool::PoolError,
    store::{Store, StoreError},
};
use alloy_consensus::{
    crypto::RecoveryError, SignableTransaction, Transaction, TxEip1559, TxEnvelope,
};
use alloy_eips::{
    eip2718::{Decodable2718, Encodable2718},
    Typed2718,
};
use alloy_primitives::{Address, Signature, TxKind, B256};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// The largest init code a creation may carry (EIP-3860).
const MAX_INITCODE_SIZE: usize = revm::primitives::eip3860::MAX_INITCODE_SIZE;
/// How many accepted transactions one durable commit may carry.
const MAX_GROUP: usize = 8192;

/// Why a transaction was refused. `Display` gives the message JSON-RPC returns.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("failed to decode signed transaction: {0}")]
    Decode(String),
    #[error("transaction type not supported: {0}")]
    UnsupportedType(u8),
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    NotReplayProtected,
    #[error("invalid chain id for signer: have {have} want {want}")]
    WrongChainId { have: u64, want: u64 },
    #[error("invalid sender: invalid signature: {0}")]
    InvalidSignature(String),
    #[error("intrinsic gas too low: have {have}, want {want}")]
    IntrinsicGas { have: u64, want: u64 },
    #[error("exceeds block gas limit: tx gas {have}, block gas limit {limit}")]
    GasLimit { have: u64, limit: u64 },
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    #[error("transaction underpriced: max fee per gas {have} below the minimum base fee {floor}")]
    Underpriced { have: u128, floor: u64 },
    #[error("max initcode size exceeded: code size {have}, limit {MAX_INITCODE_SIZE}")]
    InitCodeTooLarge { have: usize },
    #[error("sender not an eoa")]
    SenderHasCode,
    #[error(transparent)]
    Pool(PoolError),
    #[error("unknown account {0}")]
    UnknownAccount(Address),
    #[error("{0}")]
    Estimate(String),
    #[error("internal error: {0}")]
    Store(StoreError),
    #[error("internal error: could not persist the transaction: {0}")]
    Persist(String),
}

impl TxError {
    /// The JSON-RPC error code: invalid params for undecodable input, -32000 (geth's) for a
    /// transaction the pool refuses, internal error for the node's own failures.
    pub fn code(&self) -> i64 {
        match self {
            TxError::Decode(_) => -32602,
            TxError::Store(_) | TxError::Persist(_) => -32603,
            _ => -32000,
        }
    }
}

/// Decodes EIP-2718 bytes, checks type, chain id and signature, and recovers the sender.
pub fn decode(raw: &[u8], chain_id: u64) -> Result<BlockTx, TxError> {
    if raw.is_empty() {
        return Err(TxError::Decode("empty input".into()));
    }
    let tx = TxEnvelope::decode_2718_exact(raw).map_err(|e| TxError::Decode(e.to_string()))?;
    if tx.is_eip4844() || tx.is_eip7702() {
        return Err(TxError::UnsupportedType(tx.ty()));
    }
    match tx.chain_id() {
        None => return Err(TxError::NotReplayProtected),
        Some(have) if have != chain_id => {
            return Err(TxError::WrongChainId {
                have,
                want: chain_id,
            })
        }
        Some(_) => {}
    }
    let sender = alloy_consensus::transaction::SignerRecoverable::recover_signer(&tx)
        .map_err(|e: RecoveryError| TxError::InvalidSignature(e.to_string()))?;
    Ok(BlockTx { tx, sender })
}

/// The checks that need no state: gas, fee caps, init code size.
pub fn check_static(tx: &BlockTx, genesis: &Genesis) -> Result<(), TxError> {
    let t = &tx.tx;
    let want = exec::intrinsic_gas(t);
    if t.gas_limit() < want {
        return Err(TxError::IntrinsicGas {
            have: t.gas_limit(),
            want,
        });
    }
    if t.gas_limit() > genesis.gas_limit {
        return Err(TxError::GasLimit {
            have: t.gas_limit(),
            limit: genesis.gas_limit,
        });
    }
    if t.max_priority_fee_per_gas()
        .is_some_and(|tip| tip > t.max_fee_per_gas())
    {
        return Err(TxError::TipAboveFeeCap);
    }
    if t.max_fee_per_gas() < genesis.min_base_fee_per_gas as u128 {
        return Err(TxError::Underpriced {
            have: t.max_fee_per_gas(),
            floor: genesis.min_base_fee_per_gas,
        });
    }
    if t.kind().is_create() && t.input().len() > MAX_INITCODE_SIZE {
        return Err(TxError::InitCodeTooLarge {
            have: t.input().len(),
        });
    }
    Ok(())
}

/// Signs a dev-account transaction (EIP-1559) and returns its EIP-2718 bytes.
pub fn sign_dev(
    key: &DevKey,
    req: &CallRequest,
    chain_id: u64,
    nonce: u64,
    gas: u64,
    max_fee: u128,
    tip: u128,
) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip.min(max_fee),
        to: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value.unwrap_or_default(),
        access_list: req.access_list.clone().unwrap_or_default(),
        input: req.input.clone(),
    };
    let (sig, recid) = key
        .key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .expect("signing a 32-byte prehash cannot fail");
    let signed = tx.into_signed(Signature::from((sig, recid)));
    TxEnvelope::from(signed).encoded_2718()
}

enum Request {
    Insert {
        hash: B256,
        raw: Vec<u8>,
        forget: Vec<B256>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Forget(Vec<B256>),
}

/// Makes accepted transactions durable. Callers queue up while a commit is in flight and the
/// next commit carries all of them, so one fsync serves many transactions.
pub struct PoolWriter {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PoolWriter {
    /// Finishes pending writes and releases the store, so the database can be reopened.
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl PoolWriter {
    /// Starts the writer thread.
    pub fn start(store: Arc<Store>) -> Self {
        let (requests, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("pool-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let mut inserts = Vec::new();
                    let mut forget = Vec::new();
                    let mut acks = Vec::new();
                    for request in batch {
                        match request {
                            Request::Insert {
                                hash,
                                raw,
                                forget: dropped,
                                ack,
                            } => {
                                inserts.push((hash, raw));
                                forget.extend(dropped);
                                acks.push(ack);
                            }
                            Request::Forget(hashes) => forget.extend(hashes),
                        }
                    }
                    let result = store
                        .persist_pool(&inserts, &forget)
                        .map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "persisting the mempool failed");
                    }
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                }
            })
            .expect("spawning the pool writer thread");
        Self {
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    /// Persists one accepted transaction and forgets the ones it replaced or evicted; returns
    /// when durable.
    pub async fn persist(
        &self,
        hash: B256,
        raw: Vec<u8>,
        forget: Vec<B256>,
    ) -> Result<(), TxError> {
        let (ack, done) = oneshot::channel();
        self.sender()?
            .send(Request::Insert {
                hash,
                raw,
                forget,
                ack,
            })
            .map_err(|_| TxError::Persist("writer stopped".into()))?;
        done.await
            .map_err(|_| TxError::Persist("writer stopped".into()))?
            .map_err(TxError::Persist)
    }

    fn sender(&self) -> Result<&mpsc::Sender<Request>, TxError> {
        self.requests
            .as_ref()
            .ok_or_else(|| TxError::Persist("writer stopped".into()))
    }

    /// Drops transactions from the persisted pool, without waiting.
    pub fn forget(&self, hashes: Vec<B256>) {
        if let Ok(sender) = self.sender() {
            let _ = sender.send(Request::Forget(hashes));
        }
    }
}
