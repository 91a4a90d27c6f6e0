//! ProtocolParams: only governance changes parameters, fee splits must add up to 10,000 basis
//! points, zero quorums and windows are refused, and every change emits its event.

mod evm;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolError, SolEvent, SolInterface};
use evm::{fee_split as split, Evm};
use openledger_protocol::protocol_params::ProtocolParams::{self, FeeSplit, ProtocolParamsErrors};

const GOVERNANCE: Address = Address::repeat_byte(0x60);
const STRANGER: Address = Address::repeat_byte(0x51);

fn creation(split: FeeSplit, quorum: u16, window: u64) -> Bytes {
    let args = ProtocolParams::constructorCall {
        governance: GOVERNANCE,
        split,
        minStakes: [U256::from(1000), U256::from(100), U256::from(500)],
        quorum,
        challengeSeconds: window,
        rulingSeconds: 86_400,
        unbondingSeconds: 7 * 24 * 3600,
    }
    .abi_encode();
    [ProtocolParams::BYTECODE.as_ref(), &args].concat().into()
}

fn deployed() -> (Evm, Address) {
    let mut evm = Evm::new(&[GOVERNANCE, STRANGER]);
    let address = evm
        .deploy(
            GOVERNANCE,
            creation(split([4000, 1000, 2500, 1500, 1000]), 3, 86_400),
        )
        .expect("deploys");
    (evm, address)
}

fn decode_error(data: &Bytes) -> ProtocolParamsErrors {
    ProtocolParamsErrors::abi_decode(data)
        .unwrap_or_else(|e| panic!("not a custom error {data}: {e}"))
}

#[test]
fn reads_the_parameters_it_was_deployed_with() {
    let (mut evm, params) = deployed();
    let current = evm
        .sol(STRANGER, params, ProtocolParams::feeSplitCall {})
        .unwrap();
    assert_eq!(current, split([4000, 1000, 2500, 1500, 1000]));
    let quorum = evm
        .sol(STRANGER, params, ProtocolParams::reviewQuorumCall {})
        .unwrap();
    assert_eq!(quorum, 3);
}

#[test]
fn only_governance_changes_the_split_and_it_must_add_up() {
    let (mut evm, params) = deployed();
    let new = split([5000, 1000, 2000, 1000, 1000]);
    let set = |s: FeeSplit| -> Bytes {
        ProtocolParams::setFeeSplitCall { split: s }
            .abi_encode()
            .into()
    };

    let refused = evm.call(STRANGER, params, set(new.clone())).unwrap_err();
    match decode_error(&refused) {
        ProtocolParamsErrors::OwnableUnauthorizedAccount(e) => assert_eq!(e.account, STRANGER),
        other => panic!("expected OwnableUnauthorizedAccount, got {other:?}"),
    }

    let short = evm
        .call(
            GOVERNANCE,
            params,
            set(split([5000, 1000, 2000, 1000, 999])),
        )
        .unwrap_err();
    match decode_error(&short) {
        ProtocolParamsErrors::SplitDoesNotAddUp(e) => assert_eq!(e.total, U256::from(9999)),
        other => panic!("expected SplitDoesNotAddUp, got {other:?}"),
    }
    let over = evm
        .call(GOVERNANCE, params, set(split([u16::MAX, 1, 0, 0, 0])))
        .unwrap_err();
    assert!(
        matches!(decode_error(&over), ProtocolParamsErrors::SplitDoesNotAddUp(e) if e.total == U256::from(65536))
    );

    let (_, logs) = evm.call(GOVERNANCE, params, set(new.clone())).unwrap();
    assert_eq!(logs.len(), 1);
    let event = ProtocolParams::FeeSplitSet::decode_log_data(&logs[0].data).unwrap();
    assert_eq!((event.contributors, event.treasury), (5000, 1000));
    let current = evm
        .sol(STRANGER, params, ProtocolParams::feeSplitCall {})
        .unwrap();
    assert_eq!(current, new);
}

#[test]
fn zero_quorums_and_windows_are_refused() {
    let mut evm = Evm::new(&[GOVERNANCE]);
    let bad_quorum = evm
        .deploy(
            GOVERNANCE,
            creation(split([4000, 1000, 2500, 1500, 1000]), 0, 60),
        )
        .unwrap_err();
    assert!(matches!(
        decode_error(&bad_quorum),
        ProtocolParamsErrors::ZeroQuorum(_)
    ));
    let bad_split = evm
        .deploy(GOVERNANCE, creation(split([1, 1, 1, 1, 1]), 1, 60))
        .unwrap_err();
    assert_eq!(
        bad_split.as_ref(),
        ProtocolParams::SplitDoesNotAddUp {
            total: U256::from(5)
        }
        .abi_encode()
    );

    let (mut evm, params) = deployed();
    let zero_window: Bytes = ProtocolParams::setChallengeWindowCall { secondsLong: 0 }
        .abi_encode()
        .into();
    assert!(matches!(
        decode_error(&evm.call(GOVERNANCE, params, zero_window).unwrap_err()),
        ProtocolParamsErrors::ZeroDuration(_)
    ));
    let stake: Bytes = ProtocolParams::setMinStakeCall {
        role: 2,
        amount: U256::from(42),
    }
    .abi_encode()
    .into();
    let (_, logs) = evm.call(GOVERNANCE, params, stake).unwrap();
    let event = ProtocolParams::MinStakeSet::decode_log_data(&logs[0].data).unwrap();
    assert_eq!((event.role, event.amount), (2, U256::from(42)));
}

fn governed(
    evm: &mut Evm,
    params: Address,
    call: impl SolCall,
) -> Result<(), ProtocolParamsErrors> {
    let data: Bytes = call.abi_encode().into();
    evm.call(GOVERNANCE, params, data)
        .map(|_| ())
        .map_err(|e| decode_error(&e))
}

#[test]
fn every_parameter_is_bounded_and_unbonding_outlasts_a_challenge_and_its_ruling() {
    let (mut evm, params) = deployed();
    let (day, year) = (86_400u64, 365 * 86_400u64);
    use ProtocolParams as P;
    use ProtocolParamsErrors as Err;
    let refused = |r: Result<(), Err>| r.expect_err("refused");
    // Zero and too-large values, setter by setter.
    let zero = governed(&mut evm, params, P::setReviewQuorumCall { quorum: 0 });
    assert!(matches!(refused(zero), Err::ZeroQuorum(_)));
    let big = governed(&mut evm, params, P::setReviewQuorumCall { quorum: 33 });
    assert!(matches!(refused(big), Err::QuorumTooLarge(e) if e.quorum == 33 && e.max == 32));
    for call in [
        P::setRulingPeriodCall { secondsLong: 0 }.abi_encode(),
        P::setUnbondingDelayCall { secondsLong: 0 }.abi_encode(),
    ] {
        let err = evm.call(GOVERNANCE, params, call.into()).unwrap_err();
        assert!(matches!(decode_error(&err), Err::ZeroDuration(_)));
    }
    let long = governed(
        &mut evm,
        params,
        P::setChallengeWindowCall {
            secondsLong: year + 1,
        },
    );
    assert!(matches!(refused(long), Err::DurationTooLong(e) if e.max == year));
    let huge = P::setMinStakeCall {
        role: 0,
        amount: U256::from(10).pow(U256::from(27)) + U256::from(1),
    };
    assert!(matches!(
        refused(governed(&mut evm, params, huge)),
        Err::StakeTooLarge(_)
    ));

    // The unbonding delay (7 days) must cover the window (1 day) plus the ruling period (1 day).
    let short = governed(
        &mut evm,
        params,
        P::setUnbondingDelayCall {
            secondsLong: 2 * day - 1,
        },
    );
    assert!(
        matches!(refused(short), Err::UnbondingTooShort(e) if e.unbonding == 2 * day - 1 && e.required == 2 * day)
    );
    let window = governed(
        &mut evm,
        params,
        P::setChallengeWindowCall {
            secondsLong: 6 * day + 1,
        },
    );
    assert!(matches!(refused(window), Err::UnbondingTooShort(e) if e.required == 7 * day + 1));
    let ruling = governed(
        &mut evm,
        params,
        P::setRulingPeriodCall {
            secondsLong: 6 * day + 1,
        },
    );
    assert!(matches!(refused(ruling), Err::UnbondingTooShort(_)));
    // Lengthening the delay first makes room, as one proposal would do it.
    governed(
        &mut evm,
        params,
        P::setUnbondingDelayCall {
            secondsLong: 10 * day,
        },
    )
    .unwrap();
    governed(
        &mut evm,
        params,
        P::setRulingPeriodCall {
            secondsLong: 6 * day + 1,
        },
    )
    .unwrap();
    let now = evm.sol(STRANGER, params, P::rulingPeriodCall {}).unwrap();
    assert_eq!(now, 6 * day + 1);
    // Nobody else sets any of it.
    let call: Bytes = P::setRulingPeriodCall { secondsLong: day }
        .abi_encode()
        .into();
    let stranger = evm.call(STRANGER, params, call).unwrap_err();
    assert!(matches!(
        decode_error(&stranger),
        Err::OwnableUnauthorizedAccount(_)
    ));

    // Deploying with too short an unbonding delay is refused too.
    let args = P::constructorCall {
        governance: GOVERNANCE,
        split: split([4000, 1000, 2500, 1500, 1000]),
        minStakes: [U256::from(1000), U256::from(100), U256::from(500)],
        quorum: 3,
        challengeSeconds: day,
        rulingSeconds: day,
        unbondingSeconds: day,
    }
    .abi_encode();
    let code: Bytes = [P::BYTECODE.as_ref(), &args].concat().into();
    let err = evm.deploy(GOVERNANCE, code).unwrap_err();
    assert!(matches!(decode_error(&err), Err::UnbondingTooShort(_)));
}
