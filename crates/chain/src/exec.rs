//! Running transactions on revm: the environment a block gives, turning a signed transaction
//! into revm's input, and read-only calls for `eth_call` and `eth_estimateGas`.

use crate::block::BlockTx;
use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::Typed2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::{
        block::BlobExcessGasAndPrice,
        cfg::gas::calculate_initial_tx_gas,
        result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction},
    },
    database_interface::DatabaseRef,
    inspector::Inspector,
    interpreter::{InstructionResult, Interpreter, InterpreterTypes},
    primitives::hardfork::SpecId,
    state::EvmState,
    Context, ExecuteEvm, InspectEvm, MainBuilder, MainContext,
};
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// The hard fork the chain runs.
pub const SPEC: SpecId = SpecId::PRAGUE;

/// The fields of a block that execution sees.
#[derive(Debug, Clone, Copy)]
pub struct BlockParams {
    pub number: u64,
    pub timestamp: u64,
    pub gas_limit: u64,
    pub base_fee: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
}

impl BlockParams {
    fn env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(self.prevrandao),
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(
                0,
                revm::primitives::eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
            )),
            ..Default::default()
        }
    }
}

/// The gas a transaction needs before any code runs (EIP-2028 calldata, EIP-2930 access
/// list, EIP-3860 init code, and EIP-7623's calldata floor).
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let (accounts, slots) = tx.access_list().map_or((0, 0), |list| {
        (
            list.0.len() as u64,
            list.0.iter().map(|i| i.storage_keys.len() as u64).sum(),
        )
    });
    let gas = calculate_initial_tx_gas(
        SPEC,
        tx.input(),
        tx.kind().is_create(),
        accounts,
        slots,
        0,
        None,
    );
    gas.initial_total_gas().max(gas.floor_gas())
}

/// revm's view of a signed transaction.
pub fn tx_env(tx: &BlockTx) -> TxEnv {
    let t = &tx.tx;
    TxEnv {
        tx_type: t.ty(),
        caller: tx.sender,
        gas_limit: t.gas_limit(),
        gas_price: t.max_fee_per_gas(),
        kind: t.kind(),
        value: t.value(),
        data: t.input().clone(),
        nonce: t.nonce(),
        chain_id: t.chain_id(),
        access_list: t.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: t.max_priority_fee_per_gas(),
        ..Default::default()
    }
}

fn cfg(chain_id: u64) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = chain_id;
    cfg
}

/// The outcome of one transaction in a block.
pub struct Executed {
    pub result: ExecutionResult<HaltReason>,
    pub state: EvmState,
}

/// Why a transaction could not be executed at all (it stays out of the block).
#[derive(Debug)]
pub enum Rejected {
    Invalid(InvalidTransaction),
    Other(String),
}

/// Executes one transaction on top of `db` without committing.
pub fn execute<DB: DatabaseRef>(
    db: &DB,
    chain_id: u64,
    block: &BlockParams,
    tx: TxEnv,
) -> Result<Executed, Rejected>
where
    DB::Error: std::fmt::Display,
{
    let mut evm = Context::mainnet()
        .with_cfg(cfg(chain_id))
        .with_block(block.env())
        .with_ref_db(db)
        .build_mainnet();
    match evm.transact(tx) {
        Ok(out) => Ok(Executed {
            result: out.result,
            state: out.state,
        }),
        Err(EVMError::Transaction(e)) => Err(Rejected::Invalid(e)),
        Err(e) => Err(Rejected::Other(e.to_string())),
    }
}

/// A read-only call as `eth_call` and `eth_estimateGas` describe it.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    pub from: Option<Address>,
    pub to: Option<Address>,
    pub gas: Option<u64>,
    pub gas_price: Option<u128>,
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
    pub value: Option<U256>,
    pub input: Bytes,
    pub nonce: Option<u64>,
    pub access_list: Option<alloy_eips::eip2930::AccessList>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("execution reverted")]
    Reverted { output: Bytes, gas_used: u64 },
    #[error("execution halted: {0:?}")]
    Halted(HaltReason),
    #[error("execution aborted (timeout = {0:?})")]
    Timeout(Duration),
    #[error("{0}")]
    Invalid(String),
}

/// Stops a call once its time is up: every frame halts at its next instruction.
struct Deadline<'a> {
    at: Instant,
    steps: u32,
    expired: &'a Cell<bool>,
}

impl<CTX, INTR: InterpreterTypes> Inspector<CTX, INTR> for Deadline<'_> {
    fn step(&mut self, interp: &mut Interpreter<INTR>, _context: &mut CTX) {
        // Reading the clock costs more than most instructions, so look every few thousand.
        self.steps = self.steps.wrapping_add(1);
        if !self.expired.get() && self.steps.is_multiple_of(4096) && Instant::now() >= self.at {
            self.expired.set(true);
        }
        if self.expired.get() {
            interp.halt(InstructionResult::OutOfGas);
        }
    }
}

/// How far a read-only call may go.
#[derive(Debug, Clone, Copy)]
pub struct CallBounds {
    /// The most gas it may use, whatever it asks for.
    pub gas_cap: u64,
    /// When it is stopped.
    pub deadline: Instant,
    /// The time it was given (for the error message).
    pub timeout: Duration,
}

/// Runs a call against `db` and returns its output and gas used; nothing is committed. The
/// call is stopped at `bounds.deadline`.
pub fn call<DB: DatabaseRef>(
    db: &DB,
    chain_id: u64,
    block: &BlockParams,
    req: &CallRequest,
    gas: u64,
    bounds: &CallBounds,
) -> Result<(Bytes, u64), CallError>
where
    DB::Error: std::fmt::Display,
{
    let from = req.from.unwrap_or_default();
    let priced = req.gas_price.or(req.max_fee_per_gas).unwrap_or(0);
    let mut cfg = cfg(chain_id);
    // Calls are simulations: the nonce is whatever it needs to be, and an unpriced call pays
    // nothing, as in geth and anvil.
    cfg.disable_nonce_check = true;
    if priced == 0 {
        cfg.disable_base_fee = true;
        cfg.disable_fee_charge = true;
    }
    let tx = TxEnv {
        tx_type: if req.max_fee_per_gas.is_some() { 2 } else { 0 },
        caller: from,
        gas_limit: gas,
        gas_price: priced,
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value.unwrap_or_default(),
        data: req.input.clone(),
        nonce: 0,
        chain_id: Some(chain_id),
        access_list: req.access_list.clone().unwrap_or_default(),
        gas_priority_fee: req.max_priority_fee_per_gas,
        ..Default::default()
    };
    let mut block_env = block.env();
    if priced == 0 {
        block_env.basefee = 0;
    }
    let expired = Cell::new(false);
    let deadline = Deadline {
        at: bounds.deadline,
        steps: 0,
        expired: &expired,
    };
    let mut evm = Context::mainnet()
        .with_cfg(cfg)
        .with_block(block_env)
        .with_ref_db(db)
        .build_mainnet_with_inspector(deadline);
    let outcome = evm.inspect_tx(tx);
    if expired.get() {
        return Err(CallError::Timeout(bounds.timeout));
    }
    match outcome {
        Ok(out) => match out.result {
            ExecutionResult::Success { output, gas, .. } => {
                Ok((output.into_data(), gas.tx_gas_used()))
            }
            ExecutionResult::Revert { output, gas, .. } => Err(CallError::Reverted {
                output,
                gas_used: gas.tx_gas_used(),
            }),
            ExecutionResult::Halt { reason, .. } => Err(CallError::Halted(reason)),
        },
        Err(EVMError::Transaction(e)) => Err(CallError::Invalid(invalid_tx_message(&e))),
        Err(e) => Err(CallError::Invalid(e.to_string())),
    }
}

/// Finds the least gas limit with which the call succeeds, by binary search.
pub fn estimate_gas<DB: DatabaseRef>(
    db: &DB,
    chain_id: u64,
    block: &BlockParams,
    req: &CallRequest,
    bounds: &CallBounds,
) -> Result<u64, CallError>
where
    DB::Error: std::fmt::Display,
{
    let cap = call_gas(req, block, bounds);
    let run = |gas| call(db, chain_id, block, req, gas, bounds);
    let (_, used) = run(cap)?;
    // The gas used is a lower bound; the 63/64 rule and refunds can make the limit needed
    // higher, so try a little above first and search only if that fails.
    let mut lo = used.saturating_sub(1);
    let guess = (used + used / 63 + 2_300).min(cap);
    let fits = |gas| match run(gas) {
        Err(CallError::Timeout(t)) => Err(CallError::Timeout(t)),
        other => Ok(other.is_ok()),
    };
    let mut hi = if fits(guess)? { guess } else { cap };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// The gas a call runs with: what it asks for, at most the block's gas limit and the cap.
pub fn call_gas(req: &CallRequest, block: &BlockParams, bounds: &CallBounds) -> u64 {
    let cap = block.gas_limit.min(bounds.gas_cap);
    req.gas.unwrap_or(cap).min(cap)
}

/// The texts Ethereum clients expect for a transaction that cannot execute.
pub fn invalid_tx_message(e: &InvalidTransaction) -> String {
    match e {
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => {
            format!("insufficient funds for gas * price + value: have {balance} want {fee}")
        }
        InvalidTransaction::NonceTooLow { tx, state } => {
            format!("nonce too low: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::NonceTooHigh { tx, state } => {
            format!("nonce too high: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => "intrinsic gas too low".into(),
        InvalidTransaction::CallerGasLimitMoreThanBlock => "exceeds block gas limit".into(),
        InvalidTransaction::GasPriceLessThanBasefee => {
            "max fee per gas less than block base fee".into()
        }
        other => other.to_string(),
    }
}
