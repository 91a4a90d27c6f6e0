//! Staking: minimums per role, unbonding, slashing by slashers only with the challenger's
//! share, voting power that follows the stake, and OPEN conserved throughout.

mod evm;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolInterface};
use evm::{fee_split, Evm, OPEN};
use openledger_protocol::{
    protocol_params::ProtocolParams,
    staking::Staking::{self, StakingErrors},
};

const GOVERNANCE: Address = Address::repeat_byte(0x60);
const TREASURY: Address = Address::repeat_byte(0x7e);
const ALICE: Address = Address::repeat_byte(0xa1);
const BOB: Address = Address::repeat_byte(0xb0);
const CHALLENGER: Address = Address::repeat_byte(0xc4);
const UNBONDING: u64 = 7 * 24 * 3600;
const VALIDATOR: u8 = 0;
const CURATOR: u8 = 1;
const HOST: u8 = 2;

struct World {
    evm: Evm,
    staking: Address,
}

fn open(n: u128) -> U256 {
    U256::from(n * OPEN)
}

fn world() -> World {
    let mut evm = Evm::new(&[GOVERNANCE, ALICE, BOB, CHALLENGER]);
    let params = ProtocolParams::constructorCall {
        governance: GOVERNANCE,
        split: fee_split([4000, 1000, 2500, 1500, 1000]),
        minStakes: [open(100), open(10), open(50)],
        quorum: 2,
        challengeSeconds: 86_400,
        rulingSeconds: 86_400,
        unbondingSeconds: UNBONDING,
    };
    let code = [ProtocolParams::BYTECODE.as_ref(), &params.abi_encode()].concat();
    let params = evm.deploy(GOVERNANCE, code.into()).unwrap();
    let args = Staking::constructorCall {
        admin: GOVERNANCE,
        governance: GOVERNANCE,
        treasury_: TREASURY,
        params_: params,
        challengerShareBps_: 2000,
    };
    let code = [Staking::BYTECODE.as_ref(), &args.abi_encode()].concat();
    let staking = evm.deploy(GOVERNANCE, code.into()).unwrap();
    World { evm, staking }
}

fn error(data: &Bytes) -> StakingErrors {
    StakingErrors::abi_decode(data).unwrap_or_else(|e| panic!("not a custom error {data}: {e}"))
}

impl World {
    fn stake(
        &mut self,
        who: Address,
        role: u8,
        subject: u64,
        amount: U256,
    ) -> Result<(), StakingErrors> {
        let data = Staking::stakeCall {
            role,
            subject: U256::from(subject),
        }
        .abi_encode();
        self.evm
            .send(who, self.staking, data.into(), amount)
            .map(|_| ())
            .map_err(|e| error(&e))
    }

    fn view<C: SolCall>(&mut self, call: C) -> C::Return {
        self.evm.sol(BOB, self.staking, call).unwrap()
    }

    fn stake_of(&mut self, who: Address, role: u8, subject: u64) -> U256 {
        self.view(Staking::stakeOfCall {
            staker: who,
            role,
            subject: U256::from(subject),
        })
    }

    fn votes(&mut self, who: Address) -> U256 {
        self.view(Staking::getVotesCall { account: who })
    }

    fn total(&self) -> U256 {
        [GOVERNANCE, TREASURY, ALICE, BOB, CHALLENGER, self.staking]
            .iter()
            .map(|a| self.evm.balance(*a))
            .sum()
    }
}

#[test]
fn each_role_needs_its_minimum_and_curators_stake_per_datanet() {
    let mut w = world();
    assert!(matches!(
        w.stake(ALICE, VALIDATOR, 0, open(99)),
        Err(StakingErrors::InsufficientStake(e)) if e.required == open(100) && e.provided == open(99)
    ));
    assert!(matches!(
        w.stake(ALICE, HOST, 7, open(60)),
        Err(StakingErrors::SubjectNotAllowed(_))
    ));
    assert!(matches!(
        w.stake(ALICE, HOST, 0, U256::ZERO),
        Err(StakingErrors::ZeroAmount(_))
    ));
    w.stake(ALICE, VALIDATOR, 0, open(100)).unwrap();
    w.stake(ALICE, CURATOR, 7, open(10)).unwrap();
    w.stake(ALICE, CURATOR, 8, open(25)).unwrap();
    // Topping up below the minimum is fine once the minimum is met.
    w.stake(ALICE, CURATOR, 8, U256::from(1)).unwrap();
    assert_eq!(w.stake_of(ALICE, CURATOR, 7), open(10));
    assert_eq!(w.stake_of(ALICE, CURATOR, 8), open(25) + U256::from(1));
    assert!(w.view(Staking::isStakedCall {
        staker: ALICE,
        role: CURATOR,
        subject: U256::from(7)
    }));
    assert!(!w.view(Staking::isStakedCall {
        staker: ALICE,
        role: CURATOR,
        subject: U256::from(9)
    }));
    assert_eq!(w.votes(ALICE), open(135) + U256::from(1));
}

#[test]
fn unstaking_waits_for_the_unbonding_delay_and_pays_once() {
    let mut w = world();
    let before = w.evm.balance(ALICE);
    let total = w.total();
    w.stake(ALICE, HOST, 0, open(80)).unwrap();
    let request = |amount| Staking::requestUnstakeCall {
        role: HOST,
        subject: U256::ZERO,
        amount,
    };
    // Leaving 20 OPEN staked would be below the host minimum of 50.
    let err = w
        .evm
        .call(ALICE, w.staking, request(open(60)).abi_encode().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::InsufficientStake(e) if e.provided == open(20)));
    let err = w
        .evm
        .call(ALICE, w.staking, request(open(81)).abi_encode().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::NotEnoughStaked(_)));

    let (out, _) = w
        .evm
        .call(ALICE, w.staking, request(open(80)).abi_encode().into())
        .unwrap();
    let id = Staking::requestUnstakeCall::abi_decode_returns(&out).unwrap();
    assert_eq!(w.votes(ALICE), U256::ZERO, "unbonding stake does not vote");
    let withdraw = Staking::withdrawCall { id }.abi_encode();
    let err = w
        .evm
        .call(ALICE, w.staking, withdraw.clone().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::StillUnbonding(_)));
    w.evm.advance(UNBONDING);
    let err = w
        .evm
        .call(BOB, w.staking, withdraw.clone().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::NotYourWithdrawal(_)));
    w.evm
        .call(ALICE, w.staking, withdraw.clone().into())
        .unwrap();
    assert_eq!(w.evm.balance(ALICE), before);
    let err = w.evm.call(ALICE, w.staking, withdraw.into()).unwrap_err();
    assert!(matches!(error(&err), StakingErrors::UnknownWithdrawal(_)));
    assert_eq!(w.total(), total, "OPEN is conserved");
}

#[test]
fn only_slashers_slash_and_the_challenger_gets_its_share() {
    let mut w = world();
    let total = w.total();
    w.stake(BOB, VALIDATOR, 0, open(200)).unwrap();
    let slash = |amount| Staking::slashCall {
        role: VALIDATOR,
        subject: U256::ZERO,
        staker: BOB,
        amount,
        challenger: CHALLENGER,
    };
    let err = w
        .evm
        .call(ALICE, w.staking, slash(open(50)).abi_encode().into())
        .unwrap_err();
    assert!(
        matches!(error(&err), StakingErrors::AccessControlUnauthorizedAccount(e) if e.account == ALICE)
    );

    let challenger_before = w.evm.balance(CHALLENGER);
    w.evm
        .call(GOVERNANCE, w.staking, slash(open(50)).abi_encode().into())
        .unwrap();
    assert_eq!(w.stake_of(BOB, VALIDATOR, 0), open(150));
    assert_eq!(
        w.evm.balance(CHALLENGER) - challenger_before,
        open(10),
        "20% of 50"
    );
    assert_eq!(w.evm.balance(TREASURY), open(40));
    assert_eq!(w.votes(BOB), open(150));
    // A slash larger than the stake takes the whole stake, no more.
    w.evm
        .call(GOVERNANCE, w.staking, slash(open(1000)).abi_encode().into())
        .unwrap();
    assert_eq!(w.stake_of(BOB, VALIDATOR, 0), U256::ZERO);
    assert_eq!(w.evm.balance(TREASURY), open(40 + 120));
    let err = w
        .evm
        .call(GOVERNANCE, w.staking, slash(open(1)).abi_encode().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::ZeroAmount(_)));
    assert_eq!(w.total(), total, "OPEN is conserved");
}

#[test]
fn voting_power_is_checkpointed_by_time() {
    let mut w = world();
    w.stake(ALICE, VALIDATOR, 0, open(100)).unwrap();
    // The clock is the block timestamp (ERC-6372 `mode=timestamp`), not the block number.
    let staked_at = w.evm.timestamp - 1;
    w.stake(ALICE, VALIDATOR, 0, open(50)).unwrap();
    w.evm.call(BOB, w.staking, Bytes::new()).ok(); // an unrelated block passes
    let past = w.view(Staking::getPastVotesCall {
        account: ALICE,
        timepoint: U256::from(staked_at),
    });
    assert_eq!(past, open(100));
    assert_eq!(w.votes(ALICE), open(150));
}

#[test]
fn unbonding_stake_stays_slashable_and_a_stake_has_one_pending_withdrawal() {
    let mut w = world();
    let total = w.total();
    w.stake(ALICE, HOST, 0, open(80)).unwrap();
    let request = |amount| Staking::requestUnstakeCall {
        role: HOST,
        subject: U256::ZERO,
        amount,
    };
    let first = w.evm.sol(ALICE, w.staking, request(open(30))).unwrap();
    w.evm.advance(UNBONDING / 2);
    // Leaving everything: the second request joins the first and restarts its delay.
    let second = w.evm.sol(ALICE, w.staking, request(open(50))).unwrap();
    let requested_at = w.evm.timestamp - 1;
    assert_eq!(first, second);
    let pending = w.view(Staking::withdrawalCall { id: first });
    assert_eq!(pending.amount, open(80));
    assert_eq!(pending.readyAt, requested_at + UNBONDING);
    assert_eq!(w.stake_of(ALICE, HOST, 0), U256::ZERO);

    // A challenge upheld now still reaches the stake on its way out.
    let slash = Staking::slashCall {
        role: HOST,
        subject: U256::ZERO,
        staker: ALICE,
        amount: open(60),
        challenger: CHALLENGER,
    };
    let before = (w.evm.balance(CHALLENGER), w.evm.balance(TREASURY));
    w.evm.sol(GOVERNANCE, w.staking, slash).unwrap();
    assert_eq!(w.evm.balance(CHALLENGER) - before.0, open(12));
    assert_eq!(w.evm.balance(TREASURY) - before.1, open(48));
    let slashable = Staking::slashableOfCall {
        staker: ALICE,
        role: HOST,
        subject: U256::ZERO,
    };
    assert_eq!(w.view(slashable), open(20));

    w.evm.advance(UNBONDING);
    let before = w.evm.balance(ALICE);
    w.evm
        .sol(ALICE, w.staking, Staking::withdrawCall { id: first })
        .unwrap();
    assert_eq!(w.evm.balance(ALICE) - before, open(20));
    // Nothing is left to slash, and a new request opens a new withdrawal.
    let empty = Staking::slashCall {
        role: HOST,
        subject: U256::ZERO,
        staker: ALICE,
        amount: open(1),
        challenger: CHALLENGER,
    };
    let err = w
        .evm
        .call(GOVERNANCE, w.staking, empty.abi_encode().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::ZeroAmount(_)));
    w.stake(ALICE, HOST, 0, open(50)).unwrap();
    let third = w.evm.sol(ALICE, w.staking, request(open(50))).unwrap();
    assert_ne!(third, first);
    assert_eq!(w.total(), total);
}

/// Slashers freeze a stake while a challenge that may slash it is open: its withdrawal waits
/// for the ruling. Freezes count, only slashers set or lift them, and an unmatched unfreeze
/// is refused.
#[test]
fn a_frozen_stake_cannot_be_withdrawn_until_every_freeze_is_lifted() {
    let mut w = world();
    w.stake(ALICE, HOST, 0, open(80)).unwrap();
    let request = Staking::requestUnstakeCall {
        role: HOST,
        subject: U256::ZERO,
        amount: open(80),
    };
    let (out, _) = w
        .evm
        .call(ALICE, w.staking, request.abi_encode().into())
        .unwrap();
    let id = Staking::requestUnstakeCall::abi_decode_returns(&out).unwrap();
    let freeze = Staking::freezeCall {
        role: HOST,
        subject: U256::ZERO,
        staker: ALICE,
    }
    .abi_encode();
    let unfreeze = Staking::unfreezeCall {
        role: HOST,
        subject: U256::ZERO,
        staker: ALICE,
    }
    .abi_encode();
    // Nobody but a slasher freezes.
    let err = w
        .evm
        .call(BOB, w.staking, freeze.clone().into())
        .unwrap_err();
    assert!(matches!(
        error(&err),
        StakingErrors::AccessControlUnauthorizedAccount(_)
    ));
    let err = w
        .evm
        .call(GOVERNANCE, w.staking, unfreeze.clone().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::NotFrozen(e) if e.staker == ALICE));
    for _ in 0..2 {
        w.evm
            .call(GOVERNANCE, w.staking, freeze.clone().into())
            .unwrap();
    }
    w.evm.advance(UNBONDING);
    let withdraw = Staking::withdrawCall { id }.abi_encode();
    let err = w
        .evm
        .call(ALICE, w.staking, withdraw.clone().into())
        .unwrap_err();
    assert!(
        matches!(error(&err), StakingErrors::StakeFrozen(e) if e.staker == ALICE && e.role == HOST)
    );
    w.evm
        .call(GOVERNANCE, w.staking, unfreeze.clone().into())
        .unwrap();
    let err = w
        .evm
        .call(ALICE, w.staking, withdraw.clone().into())
        .unwrap_err();
    assert!(
        matches!(error(&err), StakingErrors::StakeFrozen(_)),
        "one freeze is still on"
    );
    w.evm.call(GOVERNANCE, w.staking, unfreeze.into()).unwrap();
    let before = w.evm.balance(ALICE);
    w.evm.call(ALICE, w.staking, withdraw.into()).unwrap();
    assert_eq!(w.evm.balance(ALICE), before + open(80));
}

/// `requestUnstake` of nothing is refused (the error nothing else reaches).
#[test]
fn unstaking_nothing_is_refused() {
    let mut w = world();
    w.stake(ALICE, HOST, 0, open(80)).unwrap();
    let request = Staking::requestUnstakeCall {
        role: HOST,
        subject: U256::ZERO,
        amount: U256::ZERO,
    };
    let err = w
        .evm
        .call(ALICE, w.staking, request.abi_encode().into())
        .unwrap_err();
    assert!(matches!(error(&err), StakingErrors::ZeroAmount(_)));
}

/// A challenger share above the whole is refused at deployment (`ShareTooLarge`).
#[test]
fn a_challenger_share_above_the_whole_is_refused() {
    let mut evm = Evm::new(&[GOVERNANCE]);
    let args = Staking::constructorCall {
        admin: GOVERNANCE,
        governance: GOVERNANCE,
        treasury_: TREASURY,
        params_: Address::repeat_byte(1),
        challengerShareBps_: 10_001,
    };
    let code = [Staking::BYTECODE.as_ref(), &args.abi_encode()].concat();
    let err = evm.deploy(GOVERNANCE, code.into()).unwrap_err();
    assert!(matches!(error(&err), StakingErrors::ShareTooLarge(e) if e.bps == 10_001));
}
