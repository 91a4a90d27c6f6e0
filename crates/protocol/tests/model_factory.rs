//! ModelFactory on revm: job fees held between payer and operator, every transition and who
//! may make it, timeouts that protect the payer, and claims.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolError, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    model_factory::ModelFactory::{self as F, ModelFactoryErrors as E},
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const OPERATOR: Address = Address::repeat_byte(0x0f);
const PAYER: Address = Address::repeat_byte(0xbe);
const OUTSIDER: Address = Address::repeat_byte(0xee);
const NONE: u8 = 0;
const FUNDED: u8 = 1;
const RUNNING: u8 = 2;
const COMPLETED: u8 = 3;
const REFUNDED: u8 = 4;

macro_rules! err {
    ($name:ident($($field:expr),* $(,)?)) => {
        E::$name(<F::$name as SolError>::new(($($field,)*)))
    };
}

fn error(data: Bytes) -> E {
    E::abi_decode(&data).unwrap_or_else(|e| panic!("not a ModelFactory error {data}: {e}"))
}

fn key(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

struct World {
    evm: Evm,
    a: Addresses,
    config: DeployConfig,
}

impl World {
    fn new() -> Self {
        let mut evm = Evm::new(&[DEPLOYER, OPERATOR, PAYER, OUTSIDER]);
        let config = DeployConfig::dev();
        let a = evm.deploy_protocol(DEPLOYER, &config);
        Self { evm, a, config }
    }

    fn pay<C: SolCall>(&mut self, from: Address, call: C, value: U256) -> Result<(), E> {
        let data = call.abi_encode().into();
        self.evm
            .send(from, self.a.model_factory, data, value)
            .map(|_| ())
            .map_err(error)
    }

    fn act<C: SolCall>(&mut self, from: Address, call: C) -> Result<(), E> {
        self.pay(from, call, U256::ZERO)
    }

    fn job(&mut self, k: B256) -> F::Job {
        let call = F::jobCall::new((OPERATOR, k));
        self.evm.sol(OUTSIDER, self.a.model_factory, call).unwrap()
    }

    fn owed(&mut self, who: Address) -> U256 {
        let call = F::owedCall::new((who,));
        self.evm.sol(OUTSIDER, self.a.model_factory, call).unwrap()
    }

    fn funded(&mut self, k: B256, fee: U256) {
        self.act(OPERATOR, F::setFeeCall::new((fee.to(),))).unwrap();
        self.pay(PAYER, F::fundCall::new((OPERATOR, k)), fee)
            .unwrap();
    }
}

#[test]
fn a_completed_job_pays_its_operator() {
    let mut w = World::new();
    let fee = U256::from(5 * OPEN);
    w.act(OPERATOR, F::setFeeCall::new((fee.to(),))).unwrap();
    let fund = F::fundCall::new((OPERATOR, key(1)));
    assert_eq!(
        w.pay(PAYER, fund.clone(), U256::from(OPEN)),
        Err(err!(WrongFee(fee, U256::from(OPEN))))
    );
    let before = w.evm.balance(PAYER);
    w.pay(PAYER, fund.clone(), fee).unwrap();
    assert_eq!(w.evm.balance(PAYER), before - fee);
    assert_eq!(
        w.pay(OUTSIDER, fund, fee),
        Err(err!(AlreadyFunded(OPERATOR, key(1))))
    );
    let job = w.job(key(1));
    assert_eq!(
        (job.payer, job.status, U256::from(job.fee)),
        (PAYER, FUNDED, fee)
    );
    // Only the operator moves it; completing needs a start first.
    assert_eq!(
        w.act(OPERATOR, F::completeCall::new((key(1),))),
        Err(err!(WrongJobStatus(OPERATOR, key(1), FUNDED)))
    );
    assert_eq!(
        w.act(OUTSIDER, F::startCall::new((key(1),))),
        Err(err!(WrongJobStatus(OUTSIDER, key(1), NONE)))
    );
    w.act(OPERATOR, F::startCall::new((key(1),))).unwrap();
    // Started: the payer can no longer cancel.
    assert_eq!(
        w.act(PAYER, F::cancelCall::new((OPERATOR, key(1)))),
        Err(err!(WrongJobStatus(OPERATOR, key(1), RUNNING)))
    );
    w.act(OPERATOR, F::completeCall::new((key(1),))).unwrap();
    assert_eq!(w.job(key(1)).status, COMPLETED);
    assert_eq!(w.owed(OPERATOR), fee);
    assert_eq!(
        w.act(OPERATOR, F::refundCall::new((key(1),))),
        Err(err!(WrongJobStatus(OPERATOR, key(1), COMPLETED)))
    );
    let operator_before = w.evm.balance(OPERATOR);
    w.act(OUTSIDER, F::claimCall::new((OPERATOR,))).unwrap();
    assert_eq!(w.evm.balance(OPERATOR), operator_before + fee);
    assert_eq!(
        w.act(OUTSIDER, F::claimCall::new((OPERATOR,))),
        Err(err!(NothingToClaim(OPERATOR)))
    );
}

#[test]
fn refunds_and_cancels_return_the_fee_to_the_payer_only() {
    let mut w = World::new();
    let fee = U256::from(OPEN);
    w.funded(key(1), fee);
    w.act(OPERATOR, F::refundCall::new((key(1),))).unwrap();
    assert_eq!(w.job(key(1)).status, REFUNDED);
    assert_eq!(w.owed(PAYER), fee);
    // A payer cancels a job not yet started; nobody else can.
    w.pay(PAYER, F::fundCall::new((OPERATOR, key(2))), fee)
        .unwrap();
    assert_eq!(
        w.act(OUTSIDER, F::cancelCall::new((OPERATOR, key(2)))),
        Err(err!(NotPayer(OPERATOR, key(2), OUTSIDER)))
    );
    w.act(PAYER, F::cancelCall::new((OPERATOR, key(2))))
        .unwrap();
    assert_eq!(w.owed(PAYER), fee * U256::from(2));
    // A running job may be refunded by its operator too.
    w.pay(PAYER, F::fundCall::new((OPERATOR, key(3))), fee)
        .unwrap();
    w.act(OPERATOR, F::startCall::new((key(3),))).unwrap();
    w.act(OPERATOR, F::refundCall::new((key(3),))).unwrap();
    w.act(PAYER, F::claimCall::new((PAYER,))).unwrap();
    assert_eq!(w.evm.balance(w.a.model_factory), U256::ZERO);
}

#[test]
fn a_payer_reclaims_from_an_operator_that_does_not_act_in_time() {
    let mut w = World::new();
    let fee = U256::from(OPEN);
    w.funded(key(1), fee);
    let start_by = w.job(key(1)).fundedAt + w.config.job_start_timeout_secs;
    let reclaim = F::reclaimCall::new((OPERATOR, key(1)));
    assert_eq!(
        w.act(PAYER, reclaim.clone()),
        Err(err!(TooEarly(OPERATOR, key(1), start_by)))
    );
    assert_eq!(
        w.act(OUTSIDER, reclaim.clone()),
        Err(err!(NotPayer(OPERATOR, key(1), OUTSIDER)))
    );
    w.evm.advance(w.config.job_start_timeout_secs);
    w.act(PAYER, reclaim.clone()).unwrap();
    assert_eq!(w.owed(PAYER), fee);
    assert_eq!(
        w.act(PAYER, reclaim),
        Err(err!(WrongJobStatus(OPERATOR, key(1), REFUNDED)))
    );
    // A started job gets the run timeout.
    w.pay(PAYER, F::fundCall::new((OPERATOR, key(2))), fee)
        .unwrap();
    w.act(OPERATOR, F::startCall::new((key(2),))).unwrap();
    let reclaim = F::reclaimCall::new((OPERATOR, key(2)));
    assert!(matches!(w.act(PAYER, reclaim.clone()), Err(E::TooEarly(_))));
    w.evm.advance(w.config.job_run_timeout_secs);
    w.act(PAYER, reclaim).unwrap();
    assert_eq!(w.owed(PAYER), fee * U256::from(2));
    // Jobs keep the fee they were funded with when the operator changes it.
    w.funded(key(3), U256::from(2 * OPEN));
    w.act(OPERATOR, F::setFeeCall::new((7,))).unwrap();
    assert_eq!(U256::from(w.job(key(3)).fee), U256::from(2 * OPEN));
}
