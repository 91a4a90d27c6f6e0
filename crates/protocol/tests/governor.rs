//! The governor on a clock of seconds, as the dev deployment configures it: making blocks does
//! not shorten a vote, the quorum never drops below its floor, a late quorum extends the vote,
//! and each refusal (below the threshold, a second vote, early execution, a defeated quorum)
//! comes with its error.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    governor::OpenGovernor::{self as G, OpenGovernorErrors as GErr},
    protocol_params::ProtocolParams,
    staking::Staking,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const ALICE: Address = Address::repeat_byte(0xa1);
const BOB: Address = Address::repeat_byte(0xb0);
const ACTIVE: u8 = 1;
const DEFEATED: u8 = 3;
const SUCCEEDED: u8 = 4;

struct World {
    evm: Evm,
    a: Addresses,
    config: DeployConfig,
}

fn world() -> World {
    let mut evm = Evm::new(&[DEPLOYER, ALICE, BOB]);
    let config = DeployConfig::dev();
    let a = evm.deploy_protocol(DEPLOYER, &config);
    World { evm, a, config }
}

impl World {
    /// Stakes for a role whose minimum `open` meets: validator (100), host (50), or curator of
    /// datanet 1 (10); any stake votes.
    fn stake(&mut self, who: Address, open: u128) {
        let (role, subject) = match open {
            100.. => (0, 0),
            50.. => (2, 0),
            _ => (1, 1),
        };
        let data = Staking::stakeCall::new((role, U256::from(subject))).abi_encode();
        let value = U256::from(open * OPEN);
        self.evm
            .send(who, self.a.staking, data.into(), value)
            .unwrap();
    }

    fn gov<C: SolCall>(&mut self, from: Address, call: C) -> Result<C::Return, GErr> {
        let data = call.abi_encode().into();
        match self.evm.send(from, self.a.governor, data, U256::ZERO) {
            Ok((out, _)) => Ok(C::abi_decode_returns(&out).unwrap()),
            Err(e) => {
                Err(GErr::abi_decode(&e).unwrap_or_else(|_| panic!("not a governor error: {e}")))
            }
        }
    }

    fn action(&self) -> (Vec<Address>, Vec<U256>, Vec<Bytes>) {
        let call = ProtocolParams::setReviewQuorumCall { quorum: 2 }.abi_encode();
        (
            vec![self.a.protocol_params],
            vec![U256::ZERO],
            vec![call.into()],
        )
    }

    fn propose(&mut self, who: Address, description: &str) -> Result<U256, GErr> {
        let (t, v, c) = self.action();
        self.gov(who, G::proposeCall::new((t, v, c, description.to_string())))
    }

    fn state(&mut self, id: U256) -> u8 {
        self.gov(ALICE, G::stateCall::new((id,))).unwrap()
    }
}

#[test]
fn the_governor_keeps_time_in_seconds() {
    let mut w = world();
    let mode = w.gov(ALICE, G::CLOCK_MODECall {}).unwrap();
    assert_eq!(mode, "mode=timestamp");
    let now = w.evm.timestamp;
    assert_eq!(
        w.gov(ALICE, G::clockCall {}).unwrap(),
        alloy_primitives::aliases::U48::from(now)
    );
    w.stake(ALICE, 100);
    w.stake(BOB, 300);
    w.evm.advance(1);
    let id = w.propose(ALICE, "seconds, not blocks").unwrap();
    w.evm.advance(w.config.voting_delay_secs + 1);
    w.gov(BOB, G::castVoteCall::new((id, 0))).unwrap();
    // A thousand empty blocks do not end the vote: only time does.
    w.evm.number += 1000;
    assert_eq!(w.state(id), ACTIVE);
    w.gov(ALICE, G::castVoteCall::new((id, 1))).unwrap();
    w.evm.advance(u64::from(w.config.voting_period_secs) + 1);
    assert_eq!(w.state(id), DEFEATED, "300 against beat 100 for");
}

#[test]
fn the_quorum_has_a_floor_and_a_late_quorum_extends_the_vote() {
    let mut w = world();
    // 100 OPEN staked in all: 4% of it would be 4 OPEN, but the floor is 100 OPEN.
    w.stake(ALICE, 100);
    w.stake(BOB, 50);
    w.evm.advance(1);
    let id = w.propose(ALICE, "floor").unwrap();
    let snapshot = w.gov(ALICE, G::proposalSnapshotCall::new((id,))).unwrap();
    let quorum = w.gov(ALICE, G::quorumCall::new((snapshot,))).unwrap();
    assert_eq!(quorum, w.config.quorum_floor);
    w.evm.advance(w.config.voting_delay_secs + 1);
    // Bob's 50 alone do not reach the floor: defeated for want of quorum.
    w.gov(BOB, G::castVoteCall::new((id, 1))).unwrap();
    let deadline = w.gov(ALICE, G::proposalDeadlineCall::new((id,))).unwrap();
    // Alice's 100 arrive in the vote's last seconds: the quorum is reached late, so the vote
    // stays open for the extension from then.
    w.evm.timestamp = deadline.to::<u64>() - 1;
    w.gov(ALICE, G::castVoteCall::new((id, 1))).unwrap();
    let extended = w.gov(ALICE, G::proposalDeadlineCall::new((id,))).unwrap();
    assert!(extended.to::<u64>() >= deadline.to::<u64>() - 1 + w.config.late_quorum_extension_secs);
    w.evm.timestamp = deadline.to::<u64>() + 1;
    assert_eq!(w.state(id), ACTIVE, "still open after the first deadline");
    w.evm.timestamp = extended.to::<u64>() + 1;
    assert_eq!(w.state(id), SUCCEEDED);

    // Without Alice, only Bob votes: the floor defeats it.
    let other = w.propose(ALICE, "floor again").unwrap();
    w.evm.advance(w.config.voting_delay_secs + 1);
    w.gov(BOB, G::castVoteCall::new((other, 1))).unwrap();
    w.evm.advance(u64::from(w.config.voting_period_secs) + 1);
    assert_eq!(
        w.state(other),
        DEFEATED,
        "50 OPEN for is below the 100 OPEN quorum"
    );
}

#[test]
fn the_governor_refuses_with_its_errors() {
    let mut w = world();
    w.stake(ALICE, 100);
    w.stake(BOB, 50);
    w.evm.advance(1);
    // Below the proposal threshold (100 OPEN).
    match w.propose(BOB, "too small") {
        Err(GErr::GovernorInsufficientProposerVotes(e)) => {
            assert_eq!((e.proposer, e.votes), (BOB, U256::from(50 * OPEN)))
        }
        other => panic!("expected GovernorInsufficientProposerVotes, got {other:?}"),
    }
    let id = w.propose(ALICE, "refusals").unwrap();
    // Voting before the vote opens, then twice.
    assert!(matches!(
        w.gov(ALICE, G::castVoteCall::new((id, 1))),
        Err(GErr::GovernorUnexpectedProposalState(_))
    ));
    w.evm.advance(w.config.voting_delay_secs + 1);
    w.gov(ALICE, G::castVoteCall::new((id, 1))).unwrap();
    assert!(matches!(
        w.gov(ALICE, G::castVoteCall::new((id, 1))),
        Err(GErr::GovernorAlreadyCastVote(e)) if e.voter == ALICE
    ));
    // Queueing or executing before the vote ends.
    let (t, v, c) = w.action();
    let hash = keccak256("refusals");
    assert!(matches!(
        w.gov(
            ALICE,
            G::queueCall::new((t.clone(), v.clone(), c.clone(), hash))
        ),
        Err(GErr::GovernorUnexpectedProposalState(_))
    ));
    w.evm.advance(u64::from(w.config.voting_period_secs) + 1);
    w.gov(
        ALICE,
        G::queueCall::new((t.clone(), v.clone(), c.clone(), hash)),
    )
    .unwrap();
    // Executing before the timelock's delay: the timelock's refusal comes through.
    let early = w.evm.send(
        ALICE,
        w.a.governor,
        G::executeCall::new((t.clone(), v.clone(), c.clone(), hash))
            .abi_encode()
            .into(),
        U256::ZERO,
    );
    assert!(early.is_err(), "executed before the timelock delay");
    w.evm.advance(w.config.timelock_delay_secs + 1);
    w.gov(ALICE, G::executeCall::new((t, v, c, hash))).unwrap();
}
