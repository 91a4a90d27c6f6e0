//! The job fee on chain: the operator's side of the `ModelFactory` escrow, and the datanet
//! access checks that the job's payer must pass.
//!
//! Each job has a key, `keccak256(salt ‖ job number)`, where the salt is drawn once per
//! factory directory: a factory whose data was wiped never reuses a key that was funded
//! before. The payer funds the key; the operator starts the job when it begins training,
//! completes it when it ends (the fee is the operator's) and refunds it when validation or
//! the access check fails, or the job is cancelled before it starts.

use alloy_primitives::{keccak256, Address, B256, U256};
use openledger_protocol::{
    client::ClientError, datanet_registry::DatanetRegistry, model_factory::ModelFactory,
    ProtocolClient,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a job is paid for, as the job records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The `ModelFactory` contract.
    pub escrow: Address,
    pub operator: Address,
    pub job_key: B256,
    /// The fee to send with `fund(operator, job_key)`, in wei.
    pub fee: u128,
    /// Who paid, once funded.
    pub payer: Option<Address>,
}

/// Where a job's fee stands on chain (`ModelFactory.JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChain {
    Unfunded,
    Funded,
    Running,
    Completed,
    Refunded,
}

/// The operator's account and the escrow it is paid through.
pub struct Escrow {
    client: ProtocolClient,
    address: Address,
    registry: Address,
    fee: u128,
    salt: B256,
}

impl Escrow {
    /// The operator signing with `client` (which must know the protocol's addresses), charging
    /// `fee` per job; the salt lives in `dir/job-key-salt`.
    pub fn open(client: ProtocolClient, fee: u128, dir: &Path) -> Result<Self, String> {
        let addresses = client
            .addresses()
            .ok_or("the factory's chain client has no protocol addresses")?;
        let (address, registry) = (addresses.model_factory, addresses.datanet_registry);
        if client.sender().is_none() {
            return Err("the factory operator needs a key".into());
        }
        let path = dir.join("job-key-salt");
        let salt = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("{} is not 32 bytes of hex", path.display()))?,
            Err(_) => {
                let salt = B256::from(rand::random::<[u8; 32]>());
                std::fs::write(&path, salt.to_string())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                salt
            }
        };
        Ok(Self {
            client,
            address,
            registry,
            fee,
            salt,
        })
    }

    /// The operator's client (it signs).
    pub(crate) fn client(&self) -> &ProtocolClient {
        &self.client
    }

    pub fn operator(&self) -> Address {
        self.client.sender().expect("checked in open")
    }

    /// The payment a new job `seq` asks for.
    pub fn payment(&self, seq: u64) -> Payment {
        let mut bytes = self.salt.to_vec();
        bytes.extend_from_slice(&seq.to_be_bytes());
        Payment {
            escrow: self.address,
            operator: self.operator(),
            job_key: keccak256(bytes),
            fee: self.fee,
            payer: None,
        }
    }

    /// Sets the operator's fee on chain if it differs from the configured one.
    pub async fn ensure_fee(&self) -> Result<(), ClientError> {
        let operator = self.operator();
        let current = self
            .client
            .call(self.address, ModelFactory::feeOfCall { operator })
            .await?;
        if current != self.fee {
            self.client
                .send(
                    self.address,
                    ModelFactory::setFeeCall { fee: self.fee },
                    U256::ZERO,
                )
                .await?;
        }
        Ok(())
    }

    /// The job's escrow on chain: its status and payer.
    pub async fn status(&self, key: B256) -> Result<(OnChain, Address), ClientError> {
        let job = self
            .client
            .call(
                self.address,
                ModelFactory::jobCall {
                    operator: self.operator(),
                    jobKey: key,
                },
            )
            .await?;
        let status = match job.status {
            1 => OnChain::Funded,
            2 => OnChain::Running,
            3 => OnChain::Completed,
            4 => OnChain::Refunded,
            _ => OnChain::Unfunded,
        };
        Ok((status, job.payer))
    }

    /// Starts the job on chain (the payer can no longer cancel); returns the transaction.
    pub async fn start(&self, key: B256) -> Result<B256, ClientError> {
        let call = ModelFactory::startCall { jobKey: key };
        let receipt = self.client.send(self.address, call, U256::ZERO).await?;
        Ok(receipt.transaction_hash)
    }

    /// Completes the job on chain (the fee is the operator's).
    pub async fn complete(&self, key: B256) -> Result<B256, ClientError> {
        let call = ModelFactory::completeCall { jobKey: key };
        let receipt = self.client.send(self.address, call, U256::ZERO).await?;
        Ok(receipt.transaction_hash)
    }

    /// Refunds the job's fee to its payer.
    pub async fn refund(&self, key: B256) -> Result<B256, ClientError> {
        let call = ModelFactory::refundCall { jobKey: key };
        let receipt = self.client.send(self.address, call, U256::ZERO).await?;
        Ok(receipt.transaction_hash)
    }

    /// Whether `account` may train on `datanet` (open, owned, or granted).
    pub async fn has_access(&self, datanet: u64, account: Address) -> Result<bool, ClientError> {
        self.client
            .call(
                self.registry,
                DatanetRegistry::hasAccessCall {
                    datanetId: U256::from(datanet),
                    account,
                },
            )
            .await
    }
}
