//! A minimal in-memory EVM for contract tests: deploy, call, and read custom errors, on revm
//! with the same Prague rules as the chain.
#![allow(dead_code)]

use alloy_primitives::{Address, Bytes, Log, TxKind, U256};
use revm::{
    context::{CfgEnv, TxEnv},
    context_interface::result::{ExecutionResult, Output},
    database::{CacheDB, EmptyDB},
    primitives::hardfork::SpecId,
    state::AccountInfo,
    Context, DatabaseRef, ExecuteCommitEvm, MainBuilder, MainContext,
};

pub struct Evm {
    db: CacheDB<EmptyDB>,
}

/// A call's outcome: output and logs, or the revert data.
pub type Outcome = Result<(Bytes, Vec<Log>), Bytes>;

impl Evm {
    /// An empty chain where `accounts` hold 1,000 OPEN each.
    pub fn new(accounts: &[Address]) -> Self {
        let mut db = CacheDB::new(EmptyDB::default());
        for a in accounts {
            db.insert_account_info(
                *a,
                AccountInfo {
                    balance: U256::from(10u128.pow(21)),
                    ..Default::default()
                },
            );
        }
        Self { db }
    }

    fn run(&mut self, from: Address, kind: TxKind, data: Bytes, value: U256) -> ExecutionResult {
        let nonce = self.db.basic_ref(from).unwrap().map_or(0, |a| a.nonce);
        let mut evm = Context::mainnet()
            .with_cfg(CfgEnv::new_with_spec(SpecId::PRAGUE))
            .with_db(&mut self.db)
            .build_mainnet();
        let tx = TxEnv {
            caller: from,
            kind,
            data,
            value,
            nonce,
            gas_limit: 30_000_000,
            gas_price: 0,
            ..Default::default()
        };
        evm.transact_commit(tx).expect("transaction is valid")
    }

    /// Deploys `code` (creation bytecode with constructor arguments) and returns its address.
    pub fn deploy(&mut self, from: Address, code: Bytes) -> Result<Address, Bytes> {
        match self.run(from, TxKind::Create, code, U256::ZERO) {
            ExecutionResult::Success {
                output: Output::Create(_, Some(address)),
                ..
            } => Ok(address),
            ExecutionResult::Revert { output, .. } => Err(output),
            other => panic!("deployment failed: {other:?}"),
        }
    }

    /// Sends a transaction to `to`; `Err` holds the revert data.
    pub fn call(&mut self, from: Address, to: Address, data: Bytes) -> Outcome {
        match self.run(from, TxKind::Call(to), data, U256::ZERO) {
            ExecutionResult::Success { output, logs, .. } => Ok((output.into_data(), logs)),
            ExecutionResult::Revert { output, .. } => Err(output),
            other => panic!("call halted: {other:?}"),
        }
    }
}
