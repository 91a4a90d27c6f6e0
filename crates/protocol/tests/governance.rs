//! Governance end to end on revm: stakers vote with staked OPEN on a fee-split change; it is
//! queued in the timelock, waits out the delay, executes, and the parameters change. Nobody
//! else can change them directly.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolInterface};
use evm::{fee_split as split, Evm, OPEN};
use openledger_protocol::{
    governor::OpenGovernor,
    protocol_params::ProtocolParams::{self, ProtocolParamsErrors},
    staking::Staking,
    timelock::OpenTimelock,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const ALICE: Address = Address::repeat_byte(0xa1);
const BOB: Address = Address::repeat_byte(0xb0);
const DELAY: u64 = 2 * 24 * 3600;
const VOTING_DELAY: u64 = 1;
const VOTING_PERIOD: u64 = 5;

fn deploy(evm: &mut Evm, bytecode: &[u8], args: Vec<u8>) -> Address {
    evm.deploy(DEPLOYER, [bytecode, &args].concat().into())
        .unwrap()
}

#[test]
fn a_fee_split_change_passes_through_vote_queue_delay_and_execution() {
    let mut evm = Evm::new(&[DEPLOYER, ALICE, BOB]);
    // Timelock with the deployer as bootstrap admin; anyone may execute ready operations.
    let timelock = deploy(
        &mut evm,
        &OpenTimelock::BYTECODE,
        OpenTimelock::constructorCall {
            minDelay: U256::from(DELAY),
            proposers: vec![],
            executors: vec![Address::ZERO],
            admin: DEPLOYER,
        }
        .abi_encode(),
    );
    let params = deploy(
        &mut evm,
        &ProtocolParams::BYTECODE,
        ProtocolParams::constructorCall {
            governance: timelock,
            split: split([4000, 1000, 2500, 1500, 1000]),
            minStakes: [
                U256::from(100 * OPEN),
                U256::from(10 * OPEN),
                U256::from(50 * OPEN),
            ],
            quorum: 2,
            challengeSeconds: 86_400,
            unbondingSeconds: 7 * 86_400,
        }
        .abi_encode(),
    );
    let staking = deploy(
        &mut evm,
        &Staking::BYTECODE,
        Staking::constructorCall {
            admin: DEPLOYER,
            governance: timelock,
            treasury_: timelock,
            params_: params,
            challengerShareBps_: 2000,
        }
        .abi_encode(),
    );
    let governor = deploy(
        &mut evm,
        &OpenGovernor::BYTECODE,
        OpenGovernor::constructorCall {
            staking,
            timelock,
            delayBlocks: alloy_primitives::aliases::U48::from(VOTING_DELAY),
            periodBlocks: VOTING_PERIOD as u32,
            threshold: U256::from(100 * OPEN),
            quorumPercent: U256::from(10),
        }
        .abi_encode(),
    );
    // Wire the governor in as the only proposer, then the deployer steps down.
    let proposer = evm
        .sol(DEPLOYER, timelock, OpenTimelock::PROPOSER_ROLECall {})
        .unwrap();
    let canceller = evm
        .sol(DEPLOYER, timelock, OpenTimelock::CANCELLER_ROLECall {})
        .unwrap();
    let admin = evm
        .sol(DEPLOYER, timelock, OpenTimelock::DEFAULT_ADMIN_ROLECall {})
        .unwrap();
    for role in [proposer, canceller] {
        evm.sol(
            DEPLOYER,
            timelock,
            OpenTimelock::grantRoleCall {
                role,
                account: governor,
            },
        )
        .unwrap();
    }
    evm.sol(
        DEPLOYER,
        timelock,
        OpenTimelock::renounceRoleCall {
            role: admin,
            callerConfirmation: DEPLOYER,
        },
    )
    .unwrap();

    // Alice and Bob stake; their stake is their voting power.
    for (who, amount) in [(ALICE, 300u128), (BOB, 100)] {
        let stake = Staking::stakeCall {
            role: 0,
            subject: U256::ZERO,
        }
        .abi_encode();
        evm.send(who, staking, stake.into(), U256::from(amount * OPEN))
            .unwrap();
    }

    // Nobody changes the split directly, not even the deployer.
    let new_split = split([5000, 1000, 2000, 1000, 1000]);
    let direct = ProtocolParams::setFeeSplitCall {
        split: new_split.clone(),
    };
    let err = evm
        .call(DEPLOYER, params, direct.abi_encode().into())
        .unwrap_err();
    assert!(matches!(
        ProtocolParamsErrors::abi_decode(&err).unwrap(),
        ProtocolParamsErrors::OwnableUnauthorizedAccount(_)
    ));

    // Propose, vote, queue, wait, execute.
    let targets = vec![params];
    let values = vec![U256::ZERO];
    let calldatas: Vec<Bytes> = vec![direct.abi_encode().into()];
    let description = "Raise the contributors' share to 50%".to_string();
    let description_hash = keccak256(description.as_bytes());
    let id = evm
        .sol(
            ALICE,
            governor,
            OpenGovernor::proposeCall {
                targets: targets.clone(),
                values: values.clone(),
                calldatas: calldatas.clone(),
                description,
            },
        )
        .unwrap();
    evm.number += VOTING_DELAY;
    evm.sol(
        ALICE,
        governor,
        OpenGovernor::castVoteCall {
            proposalId: id,
            support: 1,
        },
    )
    .unwrap();
    evm.sol(
        BOB,
        governor,
        OpenGovernor::castVoteCall {
            proposalId: id,
            support: 0,
        },
    )
    .unwrap();
    let votes = evm
        .sol(
            BOB,
            governor,
            OpenGovernor::proposalVotesCall { proposalId: id },
        )
        .unwrap();
    assert_eq!(
        (votes.forVotes, votes.againstVotes),
        (U256::from(300 * OPEN), U256::from(100 * OPEN))
    );
    evm.number += VOTING_PERIOD;
    let queue = OpenGovernor::queueCall {
        targets: targets.clone(),
        values: values.clone(),
        calldatas: calldatas.clone(),
        descriptionHash: description_hash,
    };
    evm.sol(BOB, governor, queue).unwrap();
    let execute = OpenGovernor::executeCall {
        targets,
        values,
        calldatas,
        descriptionHash: description_hash,
    };
    // Too early: the timelock's delay has not passed.
    assert!(evm.sol(BOB, governor, execute.clone()).is_err());
    evm.advance(DELAY);
    evm.sol(BOB, governor, execute).unwrap();
    let current = evm
        .sol(BOB, params, ProtocolParams::feeSplitCall {})
        .unwrap();
    assert_eq!(current, new_split);
    let state = evm
        .sol(BOB, governor, OpenGovernor::stateCall { proposalId: id })
        .unwrap();
    assert_eq!(state, 7, "Executed");
}
