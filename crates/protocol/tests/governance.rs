//! Governance end to end on revm: stakers vote with staked OPEN on a fee-split change; it is
//! queued in the timelock, waits out the delay, executes, and the parameters change. Nobody
//! else can change them directly. On the full deployment, settlement pays by the new split
//! from the moment the proposal executes, and not before.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolEvent, SolInterface};
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
            rulingSeconds: 86_400,
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
            delaySeconds: alloy_primitives::aliases::U48::from(VOTING_DELAY),
            periodSeconds: VOTING_PERIOD as u32,
            threshold: U256::from(100 * OPEN),
            quorumPercent: U256::from(10),
            quorumFloor_: U256::ZERO,
            lateQuorumExtension: alloy_primitives::aliases::U48::ZERO,
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
    evm.advance(VOTING_DELAY + 1);
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
    evm.advance(VOTING_PERIOD + 1);
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

#[test]
fn settlement_uses_the_fee_split_in_force_when_a_batch_is_settled() {
    use openledger_protocol::{
        datanet_registry::DatanetRegistry as DR,
        deploy::DeployConfig,
        inference_settlement::InferenceSettlement::{self as IS, Receipt},
        model_registry::ModelRegistry as MR,
    };
    const HOST: Address = Address::repeat_byte(0x40);
    const MODEL: Address = Address::repeat_byte(0x5a);
    const CURATOR: Address = Address::repeat_byte(0xc0);
    const CONTRIB: Address = Address::repeat_byte(0xc7);
    const CONSUMER: Address = Address::repeat_byte(0x10);
    let people = [
        DEPLOYER, ALICE, BOB, HOST, MODEL, CURATOR, CONTRIB, CONSUMER,
    ];
    let mut evm = Evm::new(&people);
    let a = evm.deploy_protocol(DEPLOYER, &DeployConfig::dev());
    let (treasury, is, params, gov) = (
        a.timelock,
        a.inference_settlement,
        a.protocol_params,
        a.governor,
    );
    let u = |n: u64| U256::from(n);
    let h = |s: &str| keccak256(s.as_bytes());
    let send = |evm: &mut Evm, from, to, data: Vec<u8>, value: u128| {
        evm.send(from, to, data.into(), U256::from(value))
            .unwrap_or_else(|e| panic!("reverted: {e}"))
    };
    let stake = |role: u8, subject: u64| Staking::stakeCall::new((role, u(subject))).abi_encode();
    // Staking self-delegates, so these stakes are votes: 300 for, 100 against below.
    send(&mut evm, ALICE, a.staking, stake(0, 0), 300 * OPEN);
    send(&mut evm, BOB, a.staking, stake(0, 0), 100 * OPEN);

    // One agent, on an adapter trained on a version holding contribution 1, served by HOST.
    let (dr, mr) = (a.datanet_registry, a.model_registry);
    let create = DR::createDatanetCall::new(("d".into(), h("schema"), 1, 0));
    send(&mut evm, CONTRIB, dr, create.abi_encode(), 0);
    send(&mut evm, CURATOR, a.staking, stake(1, 1), 10 * OPEN);
    let contribute = DR::contributeCall::new((u(1), h("record"), 100, h("meta")));
    send(&mut evm, CONTRIB, dr, contribute.abi_encode(), 0);
    let review = DR::reviewCall::new((u(1), true, h("ok")));
    send(&mut evm, CURATOR, dr, review.abi_encode(), 0);
    // A one-contribution version's root is its leaf (the datanets crate's encoding).
    let mut leaf = [0u8; 64];
    leaf[31] = 1;
    leaf[32..].copy_from_slice(h("record").as_slice());
    let root = keccak256(keccak256(leaf));
    let publish = DR::publishVersionCall::new((u(1), root, 1, "v1".into()));
    send(&mut evm, CONTRIB, dr, publish.abi_encode(), 0);
    let base = MR::registerBaseModelCall::new((h("base"), "hf://b".into(), "MIT".into()));
    send(&mut evm, MODEL, mr, base.abi_encode(), 0);
    let adapter =
        MR::registerAdapterCall::new((u(1), vec![u(1)], h("c"), h("w"), h("m"), "".into()));
    send(&mut evm, MODEL, mr, adapter.abi_encode(), 0);
    send(&mut evm, HOST, a.staking, stake(2, 0), 50 * OPEN);
    let agent = MR::deployAgentCall::new((u(1), HOST, 1000, 1000, 0, "".into()));
    send(&mut evm, MODEL, mr, agent.abi_encode(), 0);
    send(
        &mut evm,
        HOST,
        mr,
        MR::acceptAgentCall::new((u(1),)).abi_encode(),
        0,
    );
    let prove = IS::proveLineageCall::new((u(1), u(1), u(1), vec![]));
    send(&mut evm, BOB, is, prove.abi_encode(), 0);
    send(
        &mut evm,
        CONSUMER,
        is,
        IS::depositCall {}.abi_encode(),
        10 * OPEN,
    );
    let authorize = IS::authorizeCall::new((HOST, 10 * OPEN));
    send(&mut evm, CONSUMER, is, authorize.abi_encode(), 0);

    // A fee that leaves a remainder under both splits; the treasury takes it.
    let fee: u128 = 1_000_003;
    let shares = |split: [u64; 5]| {
        let mut s = split.map(|bps| fee as u64 * bps / 10_000);
        s[4] = fee as u64 - s[..4].iter().sum::<u64>();
        s
    };
    let payees = [CONTRIB, CURATOR, MODEL, HOST, treasury];
    // Settles receipt `seq` crediting contribution 1, and returns the batch's release call.
    let settle = |evm: &mut Evm, seq: u64| {
        let receipt = Receipt {
            consumer: CONSUMER,
            agentId: 1,
            seq,
            inputTokens: 1_000_000,
            outputTokens: 1_000_000,
            fee,
            attributionHash: h("r"),
            credits: vec![0u8, 0, 0x27, 0x10].into(),
        };
        let packed = openledger_protocol::inference_settlement::pack_receipts(&[receipt]);
        let call = IS::settleCall::new((packed, vec![1]));
        let (out, logs) = send(evm, HOST, is, call.abi_encode(), 0);
        let id = IS::settleCall::abi_decode_returns(&out).unwrap();
        let p = logs
            .iter()
            .find_map(|l| IS::BatchPayouts::decode_log_data(&l.data).ok())
            .unwrap();
        IS::releaseCall::new((id, p.contributions, p.owners)).abi_encode()
    };
    let claimable = |evm: &mut Evm| {
        payees.map(|p| {
            evm.sol(BOB, is, IS::claimableCall::new((p,)))
                .unwrap()
                .to::<u64>()
        })
    };
    let gained = |before: [u64; 5], after: [u64; 5]| [0, 1, 2, 3, 4].map(|i| after[i] - before[i]);
    let window = DeployConfig::dev().challenge_window_secs + 1;

    let old = shares([4000, 1000, 2500, 1500, 1000]);
    assert_eq!(old, [400_001, 100_000, 250_000, 150_000, 100_002]);
    let before = claimable(&mut evm);
    let release = settle(&mut evm, 1);
    evm.advance(window);
    send(&mut evm, BOB, is, release, 0);
    assert_eq!(gained(before, claimable(&mut evm)), old);

    // Governance moves ten points from the model owner and five from the host to contributors.
    let new_split = [5000, 1000, 2000, 1000, 1000];
    let call = ProtocolParams::setFeeSplitCall::new((split(new_split.map(|b| b as u16)),));
    let (targets, values) = (vec![params], vec![U256::ZERO]);
    let calldatas: Vec<Bytes> = vec![call.abi_encode().into()];
    let description = "Pay contributors half of every fee".to_string();
    let hash = keccak256(description.as_bytes());
    let propose = (
        targets.clone(),
        values.clone(),
        calldatas.clone(),
        description,
    );
    let (out, _) = send(
        &mut evm,
        ALICE,
        gov,
        OpenGovernor::proposeCall::new(propose).abi_encode(),
        0,
    );
    let id = OpenGovernor::proposeCall::abi_decode_returns(&out).unwrap();
    evm.advance(2); // the dev voting delay
    send(
        &mut evm,
        ALICE,
        gov,
        OpenGovernor::castVoteCall::new((id, 1)).abi_encode(),
        0,
    );
    send(
        &mut evm,
        BOB,
        gov,
        OpenGovernor::castVoteCall::new((id, 0)).abi_encode(),
        0,
    );
    evm.advance(61); // the dev voting period
    let queue = (targets.clone(), values.clone(), calldatas.clone(), hash);
    send(
        &mut evm,
        BOB,
        gov,
        OpenGovernor::queueCall::new(queue).abi_encode(),
        0,
    );
    // Queued is not executed: a batch settled now follows the old split, and keeps it when it
    // is released after the change.
    let before = claimable(&mut evm);
    let release = settle(&mut evm, 2);
    evm.advance(60); // the dev timelock delay
    let execute = OpenGovernor::executeCall::new((targets, values, calldatas, hash));
    send(&mut evm, BOB, gov, execute.abi_encode(), 0);
    let current = evm
        .sol(BOB, params, ProtocolParams::feeSplitCall {})
        .unwrap();
    assert_eq!(current, split(new_split.map(|b| b as u16)));
    evm.advance(window);
    send(&mut evm, BOB, is, release, 0);
    assert_eq!(gained(before, claimable(&mut evm)), old);

    // A batch settled after the change pays by the new split.
    let new = shares(new_split);
    assert_eq!(new, [500_001, 100_000, 200_000, 100_000, 100_002]);
    let before = claimable(&mut evm);
    let release = settle(&mut evm, 3);
    evm.advance(window);
    send(&mut evm, BOB, is, release, 0);
    assert_eq!(gained(before, claimable(&mut evm)), new);
}
