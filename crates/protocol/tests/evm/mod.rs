//! A minimal in-memory EVM for contract tests: deploy, call, move time, read balances and
//! custom errors, on revm with the same Prague rules as the chain. Every transaction gets a
//! block of its own, so checkpointed state (votes) sees time pass.
#![allow(dead_code)]

use alloy_primitives::{keccak256, Address, Bytes, Log, TxKind, U256};
use alloy_sol_types::SolCall;
use openledger_protocol::{
    deploy::{Addresses, DeployConfig, Step},
    governor::OpenGovernor,
    protocol_params::ProtocolParams::FeeSplit,
};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::result::{ExecutionResult, Output},
    database::{CacheDB, EmptyDB},
    primitives::hardfork::SpecId,
    state::AccountInfo,
    Context, DatabaseRef, ExecuteCommitEvm, MainBuilder, MainContext,
};

pub const OPEN: u128 = 1_000_000_000_000_000_000;

/// A fee split from its five shares: contributors, curators, model owner, host, treasury.
pub fn fee_split(parts: [u16; 5]) -> FeeSplit {
    FeeSplit {
        contributors: parts[0],
        curators: parts[1],
        modelOwner: parts[2],
        host: parts[3],
        treasury: parts[4],
    }
}

pub struct Evm {
    db: CacheDB<EmptyDB>,
    /// The next block's number and timestamp.
    pub number: u64,
    pub timestamp: u64,
    /// Gas used by the last transaction.
    pub last_gas: u64,
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
                    balance: U256::from(1000 * OPEN),
                    ..Default::default()
                },
            );
        }
        Self {
            db,
            number: 1,
            timestamp: 1_700_000_000,
            last_gas: 0,
        }
    }

    /// Lets `seconds` pass.
    pub fn advance(&mut self, seconds: u64) {
        self.timestamp += seconds;
    }

    /// An account's balance.
    pub fn balance(&self, who: Address) -> U256 {
        self.db
            .basic_ref(who)
            .unwrap()
            .map_or(U256::ZERO, |a| a.balance)
    }

    fn run(&mut self, from: Address, kind: TxKind, data: Bytes, value: U256) -> ExecutionResult {
        let nonce = self.db.basic_ref(from).unwrap().map_or(0, |a| a.nonce);
        let block = BlockEnv {
            number: U256::from(self.number),
            timestamp: U256::from(self.timestamp),
            gas_limit: 60_000_000,
            ..Default::default()
        };
        self.number += 1;
        self.timestamp += 1;
        let mut evm = Context::mainnet()
            .with_cfg(CfgEnv::new_with_spec(SpecId::PRAGUE))
            .with_block(block)
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
        let result = evm.transact_commit(tx).expect("transaction is valid");
        self.last_gas = result.tx_gas_used();
        result
    }

    /// The sum of every account's balance: total OPEN, which nothing may change.
    pub fn total_balance(&self) -> U256 {
        self.db
            .cache
            .accounts
            .values()
            .map(|a| a.info.balance)
            .sum()
    }

    /// Deploys and wires the whole protocol from `deployer` (a fresh account) as
    /// `openledger deploy` does, and returns where everything is.
    pub fn deploy_protocol(&mut self, deployer: Address, config: &DeployConfig) -> Addresses {
        let nonce = self.db.basic_ref(deployer).unwrap().map_or(0, |a| a.nonce);
        let (addresses, steps) = openledger_protocol::deploy::plan(1612, deployer, nonce, config);
        self.run_plan(deployer, &steps);
        addresses
    }

    /// Takes a one-call proposal (`target` called with `data` by the timelock) through
    /// propose, a vote by `voter` (who must pass it alone), queue and the timelock delay under
    /// `config`, and returns the calldata of the governor's `execute`, for the caller to send
    /// and check as it needs. The harness cannot send from the timelock itself (EIP-3607), so
    /// this is how tests act as governance. `description` must be unique per proposal.
    pub fn pass_proposal(
        &mut self,
        voter: Address,
        governor: Address,
        config: &DeployConfig,
        (target, data): (Address, Vec<u8>),
        description: String,
    ) -> Vec<u8> {
        let hash = keccak256(description.as_bytes());
        let operation = (vec![target], vec![U256::ZERO], vec![Bytes::from(data)]);
        let (t, v, c) = operation.clone();
        let id = self
            .sol(
                voter,
                governor,
                OpenGovernor::proposeCall::new((t, v, c, description)),
            )
            .expect("propose");
        self.advance(config.voting_delay_secs + 1);
        self.sol(voter, governor, OpenGovernor::castVoteCall::new((id, 1)))
            .expect("vote");
        self.advance(u64::from(config.voting_period_secs) + 1);
        let (t, v, c) = operation.clone();
        self.sol(
            voter,
            governor,
            OpenGovernor::queueCall::new((t, v, c, hash)),
        )
        .expect("queue");
        self.advance(config.timelock_delay_secs);
        let (t, v, c) = operation;
        OpenGovernor::executeCall::new((t, v, c, hash)).abi_encode()
    }

    /// Runs a deployment plan from `deployer` (whose nonce must be the plan's first) and
    /// returns the gas each step used.
    pub fn run_plan(&mut self, deployer: Address, steps: &[Step]) -> Vec<u64> {
        let mut used = Vec::new();
        for step in steps {
            let kind = step.to.map_or(TxKind::Create, TxKind::Call);
            match self.run(deployer, kind, step.input.clone(), U256::ZERO) {
                ExecutionResult::Success { .. } => used.push(self.last_gas),
                other => panic!("{} failed: {other:?}", step.label),
            }
        }
        used
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
        self.send(from, to, data, U256::ZERO)
    }

    /// Sends a transaction carrying `value` wei.
    pub fn send(&mut self, from: Address, to: Address, data: Bytes, value: U256) -> Outcome {
        match self.run(from, TxKind::Call(to), data, value) {
            ExecutionResult::Success { output, logs, .. } => Ok((output.into_data(), logs)),
            ExecutionResult::Revert { output, .. } => Err(output),
            other => panic!("call halted: {other:?}"),
        }
    }

    /// Sends a typed call and decodes what it returns; `Err` holds the revert data.
    pub fn sol<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: C,
    ) -> Result<C::Return, Bytes> {
        let (out, _) = self.call(from, to, call.abi_encode().into())?;
        Ok(C::abi_decode_returns(&out).expect("return data matches the ABI"))
    }
}
