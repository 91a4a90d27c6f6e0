//! The client every service uses to read and write the protocol: a JSON-RPC endpoint, the
//! contracts' addresses and an optional signing key.
//!
//! Reads are `eth_call`s decoded through the `sol!` bindings; writes are EIP-1559 transactions
//! signed here, with nonces kept locally so concurrent writers never collide, and gas estimated
//! first so that a call the contract would refuse fails with its custom error, decoded, before
//! anything is sent. Works against the embedded node and any other EVM endpoint over HTTP.

mod logs;
mod revert;
mod rpc;

pub use revert::describe_revert;
pub use rpc::{Rpc, RpcError};

use crate::deploy::{self, Addresses, DeployConfig};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256, U64};
use alloy_sol_types::SolCall;
use k256::ecdsa::SigningKey;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long to wait for a sent transaction to be mined.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a protocol read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The contract refused: `reason` is its custom error, decoded.
    #[error("{what} reverted: {reason}")]
    Reverted {
        what: String,
        reason: String,
        data: Bytes,
    },
    #[error("transaction {hash} ({what}) was mined but failed")]
    Failed { what: String, hash: B256 },
    #[error("transaction {hash} ({what}) was not mined within {RECEIPT_TIMEOUT:?}")]
    NotMined { what: String, hash: B256 },
    #[error("this needs a signing key (pass --key or set OPENLEDGER_KEY)")]
    NoSigner,
    #[error("the protocol's contract addresses are not known on this chain")]
    NoAddresses,
    #[error("bad private key: {0}")]
    BadKey(String),
    #[error("the answer to {what} does not match the contract's ABI: {reason}")]
    Decode { what: String, reason: String },
    #[error("{account} holds {have} wei but deploying may cost up to {need} wei; fund it first")]
    InsufficientFunds {
        account: Address,
        have: U256,
        need: U256,
    },
    #[error(
        "the deployment planned from nonce {first} cannot go on: {account}'s next nonce is {pending}"
    )]
    PlanOutOfReach {
        account: Address,
        first: u64,
        pending: u64,
    },
    #[error(
        "the deployment is not wired as planned ({check} does not hold); the deployer keeps its \
         roles so that it can be fixed"
    )]
    MiswiredDeployment { check: String },
    #[error("no {name} contract at {address} (was the protocol deployed on this chain?)")]
    NotDeployed {
        name: &'static str,
        address: Address,
    },
}

/// A secp256k1 key that signs transactions.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.address)
    }
}

impl Signer {
    /// A signer from a hex private key (with or without `0x`).
    pub fn from_hex(hex: &str) -> Result<Self, ClientError> {
        let bytes: B256 = hex
            .trim()
            .parse()
            .map_err(|_| ClientError::BadKey("expected 32 bytes of hex".into()))?;
        let key = SigningKey::from_slice(bytes.as_slice())
            .map_err(|_| ClientError::BadKey("not a valid secp256k1 secret".into()))?;
        Ok(Self::from_key(key))
    }

    /// A signer from a key.
    pub fn from_key(key: SigningKey) -> Self {
        let address = Address::from_private_key(&key);
        Self { key, address }
    }

    /// The signer's account.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The key, for signing what is not a transaction (EIP-712 messages).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn sign(&self, tx: TxEip1559) -> Bytes {
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(tx.signature_hash().as_slice())
            .expect("signing a 32-byte prehash cannot fail");
        TxEnvelope::from(tx.into_signed(Signature::from((sig, recid))))
            .encoded_2718()
            .into()
    }
}

/// A log as a receipt reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    #[serde(rename = "blockNumber")]
    pub block_number: Option<U64>,
    #[serde(rename = "transactionHash", default)]
    pub transaction_hash: Option<B256>,
}

impl Log {
    /// This log as event `E`, or why it is not one.
    pub fn decode<E: alloy_sol_types::SolEvent>(&self) -> Result<E, ClientError> {
        E::decode_raw_log(self.topics.iter().copied(), &self.data).map_err(|e| {
            ClientError::Decode {
                what: E::SIGNATURE.to_string(),
                reason: e.to_string(),
            }
        })
    }

    /// The block it came in (0 for a pending log).
    pub fn block(&self) -> u64 {
        self.block_number.map_or(0, |n| n.to())
    }
}

/// The parts of a transaction receipt the protocol needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: U64,
    pub status: U64,
    pub gas_used: U64,
    pub contract_address: Option<Address>,
    pub logs: Vec<Log>,
}

/// A transaction to send: a call (`to` set) or a creation.
#[derive(Debug, Clone)]
struct Outgoing {
    what: String,
    to: Option<Address>,
    input: Bytes,
    value: U256,
    gas_limit: Option<u64>,
    /// Fee cap and tip; asked of the node when absent.
    fees: Option<(u128, u128)>,
}

/// The protocol client.
#[derive(Debug)]
pub struct ProtocolClient {
    rpc: Rpc,
    chain_id: u64,
    signer: Option<Signer>,
    addresses: Option<Addresses>,
    /// The signer's next nonce once known; held while a transaction is signed and sent.
    nonce: tokio::sync::Mutex<Option<u64>>,
    /// How many blocks one `eth_getLogs` asks for: shrinks when the node refuses a range.
    log_page: std::sync::atomic::AtomicU64,
}

impl ProtocolClient {
    /// Connects to the JSON-RPC endpoint at `url` (asking its chain id).
    pub async fn connect(url: &str, signer: Option<Signer>) -> Result<Self, ClientError> {
        let rpc = Rpc::new(url)?;
        let chain_id: U64 = rpc.request("eth_chainId", json!([])).await?;
        Ok(Self {
            rpc,
            chain_id: chain_id.to(),
            signer,
            addresses: None,
            nonce: tokio::sync::Mutex::new(None),
            log_page: std::sync::atomic::AtomicU64::new(logs::FIRST_PAGE),
        })
    }

    /// The same client, addressing the protocol deployed at `addresses`.
    pub fn with_addresses(mut self, addresses: Addresses) -> Self {
        self.addresses = Some(addresses);
        self
    }

    /// The protocol's addresses, if known.
    pub fn addresses(&self) -> Option<&Addresses> {
        self.addresses.as_ref()
    }

    /// The chain id the endpoint reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The signer, if any.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The signing account, if any.
    pub fn sender(&self) -> Option<Address> {
        self.signer.as_ref().map(Signer::address)
    }

    /// The underlying endpoint, for requests this client has no method for.
    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    /// An account's OPEN balance in wei.
    pub async fn balance(&self, account: Address) -> Result<U256, ClientError> {
        Ok(self
            .rpc
            .request("eth_getBalance", json!([account, "latest"]))
            .await?)
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64, ClientError> {
        let n: U64 = self.rpc.request("eth_blockNumber", json!([])).await?;
        Ok(n.to())
    }

    /// The latest block's timestamp (unix seconds): the chain's clock.
    pub async fn latest_timestamp(&self) -> Result<u64, ClientError> {
        #[derive(Deserialize)]
        struct Header {
            timestamp: U64,
        }
        let header: Header = self
            .rpc
            .request("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        Ok(header.timestamp.to())
    }

    /// The runtime code at `address` (empty where there is none).
    pub async fn code(&self, address: Address) -> Result<Bytes, ClientError> {
        Ok(self
            .rpc
            .request("eth_getCode", json!([address, "latest"]))
            .await?)
    }

    /// Reads a view of the contract at `to`.
    pub async fn call<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, ClientError> {
        let what = C::SIGNATURE;
        let mut request = json!({"to": to, "input": Bytes::from(call.abi_encode())});
        if let Some(from) = self.sender() {
            request["from"] = json!(from);
        }
        let out: Bytes = self
            .rpc
            .request("eth_call", json!([request, "latest"]))
            .await
            .map_err(|e| reverted(what, e))?;
        C::abi_decode_returns(&out).map_err(|e| ClientError::Decode {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Sends `call` to `to` with `value` wei and waits for it to be mined. A call the contract
    /// refuses fails with its decoded error before anything is sent.
    pub async fn send<C: SolCall>(
        &self,
        to: Address,
        call: C,
        value: U256,
    ) -> Result<Receipt, ClientError> {
        let hash = self
            .submit(Outgoing {
                what: C::SIGNATURE.to_string(),
                to: Some(to),
                input: call.abi_encode().into(),
                value,
                gas_limit: None,
                fees: None,
            })
            .await?;
        self.wait(C::SIGNATURE, hash).await
    }

    /// Sends prepared calldata `input` to `to` with `value` wei and waits for it to be mined
    /// (`what` names it in errors). For calls built elsewhere, such as by a service's REST API.
    pub async fn send_raw(
        &self,
        what: &str,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<Receipt, ClientError> {
        let hash = self
            .submit(Outgoing {
                what: what.to_string(),
                to: Some(to),
                input,
                value,
                gas_limit: None,
                fees: None,
            })
            .await?;
        self.wait(what, hash).await
    }

    /// Signs and sends prepared calldata `input` to `to` with `value` wei, returning the hash
    /// once the node has accepted it, without waiting for it to be mined. A call the contract
    /// refuses fails with its decoded error before anything is sent.
    pub async fn submit_raw(
        &self,
        what: &str,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<B256, ClientError> {
        self.submit(Outgoing {
            what: what.to_string(),
            to: Some(to),
            input,
            value,
            gas_limit: None,
            fees: None,
        })
        .await
    }

    /// Sends `value` wei of OPEN to `to` and waits for it to be mined.
    pub async fn transfer(&self, to: Address, value: U256) -> Result<Receipt, ClientError> {
        let hash = self
            .submit(Outgoing {
                what: "transfer".into(),
                to: Some(to),
                input: Bytes::new(),
                value,
                gas_limit: None,
                fees: None,
            })
            .await?;
        self.wait("transfer", hash).await
    }

    /// Signs and sends a transaction, returning its hash once the node has accepted it.
    async fn submit(&self, tx: Outgoing) -> Result<B256, ClientError> {
        let signer = self.signer.as_ref().ok_or(ClientError::NoSigner)?;
        let gas_limit = match tx.gas_limit {
            Some(gas) => gas,
            None => {
                let mut request = json!({
                    "from": signer.address,
                    "input": tx.input,
                    "value": tx.value,
                });
                if let Some(to) = tx.to {
                    request["to"] = json!(to);
                }
                let gas: U64 = self
                    .rpc
                    .request("eth_estimateGas", json!([request]))
                    .await
                    .map_err(|e| reverted(&tx.what, e))?;
                // Headroom for state that changes between estimate and inclusion.
                gas.to::<u64>() * 6 / 5 + 10_000
            }
        };
        let (max_fee, tip) = match tx.fees {
            Some(fees) => fees,
            None => self.fees().await?,
        };
        let mut nonce = self.nonce.lock().await;
        let next = match *nonce {
            Some(n) => n,
            None => self.nonce_of(signer.address, "pending").await?,
        };
        let raw = signer.sign(TxEip1559 {
            chain_id: self.chain_id,
            nonce: next,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: tx.to.map_or(TxKind::Create, TxKind::Call),
            value: tx.value,
            access_list: Default::default(),
            input: tx.input,
        });
        match self
            .rpc
            .request::<B256>("eth_sendRawTransaction", json!([raw]))
            .await
        {
            Ok(hash) => {
                *nonce = Some(next + 1);
                Ok(hash)
            }
            Err(e) => {
                // Someone else may have used the key: ask the node again next time.
                *nonce = None;
                Err(e.into())
            }
        }
    }

    /// A fee cap of twice the current gas price (room for base-fee rises) and the node's
    /// suggested tip.
    async fn fees(&self) -> Result<(u128, u128), ClientError> {
        let price: U256 = self.rpc.request("eth_gasPrice", json!([])).await?;
        let tip: U256 = self
            .rpc
            .request("eth_maxPriorityFeePerGas", json!([]))
            .await
            .unwrap_or(U256::from(1_000_000u64));
        let price = price.saturating_to::<u128>();
        let tip = tip.saturating_to::<u128>().min(price);
        Ok((price * 2, tip))
    }

    /// Waits for `hash` to be mined and checks that it succeeded.
    pub async fn wait(&self, what: &str, hash: B256) -> Result<Receipt, ClientError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let receipt: Option<Receipt> = self
                .rpc
                .request("eth_getTransactionReceipt", json!([hash]))
                .await?;
            if let Some(receipt) = receipt {
                if receipt.status.is_zero() {
                    return Err(ClientError::Failed {
                        what: what.to_string(),
                        hash,
                    });
                }
                return Ok(receipt);
            }
            if start.elapsed() > RECEIPT_TIMEOUT {
                return Err(ClientError::NotMined {
                    what: what.to_string(),
                    hash,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Deploys and wires the whole protocol from the signer's account (see [`deploy::plan`]):
    /// every transaction is sent at once, then each receipt is checked. `progress` hears of
    /// each step as it is confirmed (index, total, label).
    ///
    /// `first_nonce` pins the plan to start at that nonce, which makes the deployment
    /// resumable: steps the account has already sent are skipped, and the rest are sent. With
    /// `None` the plan starts at the account's next nonce.
    pub async fn deploy(
        &self,
        config: &DeployConfig,
        first_nonce: Option<u64>,
        mut progress: impl FnMut(usize, usize, &str),
    ) -> Result<Addresses, ClientError> {
        let signer = self.signer.as_ref().ok_or(ClientError::NoSigner)?;
        let pending = self.nonce_of(signer.address, "pending").await?;
        let first = first_nonce.unwrap_or(pending);
        let (addresses, steps) = deploy::plan(self.chain_id, signer.address, first, config);
        let sent = pending.saturating_sub(first) as usize;
        if first > pending || sent > steps.len() {
            return Err(ClientError::PlanOutOfReach {
                account: signer.address,
                first,
                pending,
            });
        }
        let remaining = &steps[sent..];
        // One fee quote for the whole deployment instead of one per step.
        let fees = self.fees().await?;
        let max_fee = fees.0;
        let need = U256::from(deploy::total_gas(remaining)) * U256::from(max_fee);
        let have = self.balance(signer.address).await?;
        if have < need {
            return Err(ClientError::InsufficientFunds {
                account: signer.address,
                have,
                need,
            });
        }
        *self.nonce.lock().await = Some(pending);
        // Everything but the renouncing first; the deployer gives up its roles only once the
        // deployment checks out.
        let split = remaining
            .iter()
            .position(deploy::is_renounce)
            .unwrap_or(remaining.len());
        let (build, renounce) = remaining.split_at(split);
        self.run_steps(build, fees, sent, steps.len(), &mut progress)
            .await?;
        self.await_nonce(signer.address, first + (sent + build.len()) as u64)
            .await?;
        self.check_deployment(&addresses).await?;
        self.run_steps(
            renounce,
            fees,
            sent + build.len(),
            steps.len(),
            &mut progress,
        )
        .await?;
        self.await_nonce(signer.address, first + steps.len() as u64)
            .await?;
        Ok(addresses)
    }

    /// Sends `steps` at once with consecutive nonces, then waits for each.
    async fn run_steps(
        &self,
        steps: &[deploy::Step],
        fees: (u128, u128),
        done: usize,
        total: usize,
        progress: &mut impl FnMut(usize, usize, &str),
    ) -> Result<(), ClientError> {
        let mut hashes = Vec::with_capacity(steps.len());
        for step in steps {
            hashes.push(
                self.submit(Outgoing {
                    what: step.label.to_string(),
                    to: step.to,
                    input: step.input.clone(),
                    value: U256::ZERO,
                    gas_limit: Some(step.gas_limit),
                    fees: Some(fees),
                })
                .await?,
            );
        }
        for (i, (step, hash)) in steps.iter().zip(hashes).enumerate() {
            self.wait(step.label, hash).await?;
            progress(done + i + 1, total, step.label);
        }
        Ok(())
    }

    /// Waits until `account` has sent `nonce` transactions (steps sent before a resume may
    /// still be waiting in the pool).
    async fn await_nonce(&self, account: Address, nonce: u64) -> Result<(), ClientError> {
        let start = Instant::now();
        while self.nonce_of(account, "latest").await? < nonce {
            if start.elapsed() > RECEIPT_TIMEOUT {
                return Err(ClientError::NotMined {
                    what: "the deployment's earlier steps".into(),
                    hash: B256::ZERO,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Checks a deployment before the deployer renounces its roles: code at every address,
    /// and every wiring read answering as the plan meant.
    pub async fn check_deployment(&self, addresses: &Addresses) -> Result<(), ClientError> {
        for (name, address) in addresses.contracts() {
            if self.code(address).await?.is_empty() {
                return Err(ClientError::NotDeployed { name, address });
            }
        }
        for check in deploy::wiring_checks(addresses) {
            let request = json!({"to": check.to, "input": Bytes::from(check.input.clone())});
            let out: Bytes = self
                .rpc
                .request("eth_call", json!([request, "latest"]))
                .await
                .map_err(|e| reverted(&check.label, e))?;
            if out.as_ref() != check.expect.as_slice() {
                return Err(ClientError::MiswiredDeployment { check: check.label });
            }
        }
        Ok(())
    }

    async fn nonce_of(&self, account: Address, block: &str) -> Result<u64, ClientError> {
        let n: U64 = self
            .rpc
            .request("eth_getTransactionCount", json!([account, block]))
            .await?;
        Ok(n.to())
    }
}

/// Turns a node's refusal into the contract's decoded error where it carries revert data.
fn reverted(what: &str, e: RpcError) -> ClientError {
    match e {
        RpcError::Node {
            data: Some(data), ..
        } => ClientError::Reverted {
            what: what.to_string(),
            reason: describe_revert(&data),
            data,
        },
        other => other.into(),
    }
}
