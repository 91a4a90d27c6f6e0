//! DatanetRegistry on revm, deployed and wired as production does: datanet creation within the
//! quorum range, fee deposits, curator review and quorum, the rejected fee's split and claims,
//! versions with real Merkle proofs, and challenges ruled by governance with the slashing and
//! payouts they trigger.

mod evm;

use alloy_primitives::{hex, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolError, SolEvent, SolInterface, SolValue};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry::{self as Reg, DatanetRegistryErrors as E},
    deploy::{Addresses, DeployConfig},
    governor::OpenGovernor,
    staking::Staking,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const OWNER: Address = Address::repeat_byte(0x0a);
const CONTRIBUTOR: Address = Address::repeat_byte(0xc0);
const CURATORS: [Address; 5] = [
    Address::repeat_byte(0x11),
    Address::repeat_byte(0x12),
    Address::repeat_byte(0x13),
    Address::repeat_byte(0x14),
    Address::repeat_byte(0x15),
];
const OUTSIDER: Address = Address::repeat_byte(0xee);
const CHALLENGER: Address = Address::repeat_byte(0xc4);
const VOTER: Address = Address::repeat_byte(0x70);
const CURATOR: u8 = 1;
const PENDING: u8 = 1;
const ACCEPTED: u8 = 2;
const REJECTED: u8 = 3;
const POISONED: u8 = 4;

/// `err!(Name(fields…))` is the registry's custom error `Name` with those fields, in order.
macro_rules! err {
    ($name:ident($($field:expr),* $(,)?)) => {
        E::$name(<Reg::$name as SolError>::new(($($field,)*)))
    };
}

fn open(n: u128) -> U256 {
    U256::from(n * OPEN)
}

fn uint(n: u64) -> U256 {
    U256::from(n)
}

fn content(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

fn error(data: Bytes) -> E {
    E::abi_decode(&data).unwrap_or_else(|e| panic!("not a DatanetRegistry error {data}: {e}"))
}

struct World {
    evm: Evm,
    a: Addresses,
    config: DeployConfig,
    proposals: usize,
}

fn world() -> World {
    world_with(DeployConfig::dev())
}

fn world_with(config: DeployConfig) -> World {
    let mut accounts = vec![DEPLOYER, OWNER, CONTRIBUTOR, OUTSIDER, CHALLENGER, VOTER];
    accounts.extend(CURATORS);
    let mut evm = Evm::new(&accounts);
    let a = evm.deploy_protocol(DEPLOYER, &config);
    let mut w = World {
        evm,
        a,
        config,
        proposals: 0,
    };
    // Voting power for the proposals through which governance rules.
    w.stake(VOTER, 0, U256::ZERO, w.config.proposal_threshold);
    w
}

impl World {
    fn pay<C: SolCall>(&mut self, from: Address, call: C, value: U256) -> Result<C::Return, E> {
        let (to, data) = (self.a.datanet_registry, call.abi_encode().into());
        let (out, _) = self.evm.send(from, to, data, value).map_err(error)?;
        Ok(C::abi_decode_returns(&out).unwrap())
    }

    fn reg<C: SolCall>(&mut self, from: Address, call: C) -> Result<C::Return, E> {
        self.pay(from, call, U256::ZERO)
    }

    /// A call whose return value does not matter.
    fn act<C: SolCall>(&mut self, from: Address, call: C) -> Result<(), E> {
        self.reg(from, call).map(|_| ())
    }

    fn view<C: SolCall>(&mut self, call: C) -> C::Return {
        self.reg(OUTSIDER, call).unwrap()
    }

    fn stake(&mut self, who: Address, role: u8, subject: U256, amount: U256) {
        let data = Staking::stakeCall::new((role, subject)).abi_encode();
        (self.evm.send(who, self.a.staking, data.into(), amount)).unwrap();
    }

    fn stake_of(&mut self, curator: Address, datanet: U256) -> U256 {
        let call = Staking::stakeOfCall::new((curator, CURATOR, datanet));
        self.evm.sol(OUTSIDER, self.a.staking, call).unwrap()
    }

    /// Stakes the curator minimum for `datanet` from each of `who`.
    fn curate(&mut self, who: &[Address], datanet: U256) {
        for c in who {
            self.stake(*c, CURATOR, datanet, self.config.min_stakes[1]);
        }
    }

    fn create(&mut self, quorum: u16, fee: U256) -> Result<U256, E> {
        let uri = "ipfs://datanet".to_string();
        let call = Reg::createDatanetCall::new((uri, content(999), quorum, fee.to()));
        self.reg(OWNER, call)
    }

    /// Contributes content `n`, sending `value`.
    fn contribute(&mut self, from: Address, datanet: U256, n: u64, value: U256) -> Result<U256, E> {
        let call = Reg::contributeCall::new((datanet, content(n), 100, content(n + 1000)));
        self.pay(from, call, value)
    }

    fn review(&mut self, curator: Address, id: U256, approve: bool) -> Result<(), E> {
        self.act(curator, Reg::reviewCall::new((id, approve, B256::ZERO)))
    }

    fn contribution(&mut self, id: U256) -> Reg::Contribution {
        self.view(Reg::contributionCall::new((id,)))
    }

    fn datanet(&mut self, id: U256) -> Reg::Datanet {
        self.view(Reg::datanetCall::new((id,)))._0
    }

    fn owed(&mut self, account: Address) -> U256 {
        self.view(Reg::owedCall::new((account,)))
    }

    fn claim(&mut self, account: Address) -> Result<(), E> {
        self.act(OUTSIDER, Reg::claimCall::new((account,)))
    }

    fn publish(&mut self, from: Address, datanet: U256, root: B256, count: u64) -> Result<U256, E> {
        let uri = "ipfs://version".to_string();
        let call = Reg::publishVersionCall::new((datanet, root, count, uri));
        self.reg(from, call)
    }

    fn challenge(&mut self, id: U256, bond: U256) -> Result<(), E> {
        let call = Reg::challengeCall::new((id, content(7)));
        self.pay(CHALLENGER, call, bond).map(|_| ())
    }

    fn release(&mut self, id: U256) -> Result<(), E> {
        self.act(OUTSIDER, Reg::releaseFeeCall::new((id,)))
    }

    /// A fresh datanet with `quorum` and `fee` and as many staked curators, and one
    /// contribution from CONTRIBUTOR that they accepted.
    fn accepted_contribution(&mut self, quorum: u16, fee: U256) -> (U256, U256) {
        let datanet = self.create(quorum, fee).unwrap();
        let curators = &CURATORS[..quorum as usize];
        self.curate(curators, datanet);
        let id = self.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
        for c in curators {
            self.review(*c, id, true).unwrap();
        }
        (datanet, id)
    }

    /// Runs `call` on the registry as the timelock, through a proposal that VOTER passes
    /// alone; `Err` holds the registry's revert data, which the governor passes through.
    fn govern(&mut self, call: impl SolCall) -> Result<(), Bytes> {
        self.proposals += 1;
        let description = format!("proposal {}", self.proposals);
        let hash = keccak256(description.as_bytes());
        let (targets, values) = (vec![self.a.datanet_registry], vec![U256::ZERO]);
        let calldatas: Vec<Bytes> = vec![call.abi_encode().into()];
        let operation = (targets, values, calldatas);
        let (governor, (t, v, c)) = (self.a.governor, operation.clone());
        let propose = OpenGovernor::proposeCall::new((t, v, c, description));
        let id = self.evm.sol(VOTER, governor, propose).unwrap();
        self.evm.number += self.config.voting_delay_blocks;
        let vote = OpenGovernor::castVoteCall::new((id, 1));
        self.evm.sol(VOTER, governor, vote).unwrap();
        self.evm.number += u64::from(self.config.voting_period_blocks);
        let (t, v, c) = operation.clone();
        let queue = OpenGovernor::queueCall::new((t, v, c, hash));
        self.evm.sol(VOTER, governor, queue).unwrap();
        self.evm.advance(self.config.timelock_delay_secs);
        let (t, v, c) = operation;
        let execute = OpenGovernor::executeCall::new((t, v, c, hash));
        self.evm.sol(VOTER, governor, execute).map(|_| ())
    }
}

/// The leaf the registry hashes for a contribution (double-hashed against second preimages).
fn leaf(id: U256, content_hash: B256) -> B256 {
    keccak256(keccak256((id, content_hash).abi_encode_params()))
}

/// Every level of the tree, leaves first: pairs hashed sorted, an odd last node moved up.
fn tree(leaves: Vec<B256>) -> Vec<Vec<B256>> {
    let mut levels = vec![leaves];
    while levels.last().unwrap().len() > 1 {
        let next = (levels.last().unwrap().chunks(2))
            .map(|pair| match pair {
                [a, b] if a <= b => keccak256([a.as_slice(), b.as_slice()].concat()),
                [a, b] => keccak256([b.as_slice(), a.as_slice()].concat()),
                [odd] => *odd,
                _ => unreachable!(),
            })
            .collect();
        levels.push(next);
    }
    levels
}

fn proof(levels: &[Vec<B256>], mut index: usize) -> Vec<B256> {
    let mut proof = Vec::new();
    for level in &levels[..levels.len() - 1] {
        proof.extend(level.get(index ^ 1));
        index /= 2;
    }
    proof
}

#[test]
fn datanets_need_a_quorum_in_range_and_are_numbered_from_one() {
    let mut config = DeployConfig::dev();
    config.review_quorum = 3;
    let mut w = world_with(config);
    for quorum in [0, 2, 33] {
        let out_of_range = err!(QuorumOutOfRange(quorum, 3, 32));
        assert_eq!(w.create(quorum, open(1)), Err(out_of_range));
    }
    assert_eq!(w.view(Reg::countsCall {}).datanets, U256::ZERO);

    let uri = "ipfs://medical".to_string();
    let call = Reg::createDatanetCall::new((uri, content(5), 32, 7)).abi_encode();
    let (out, logs) = (w.evm.call(OWNER, w.a.datanet_registry, call.into())).unwrap();
    let id = Reg::createDatanetCall::abi_decode_returns(&out).unwrap();
    assert_eq!(id, uint(1));
    let e = Reg::DatanetCreated::decode_log_data(&logs[0].data).unwrap();
    let fields = (e.datanetId, e.owner, e.schemaHash, e.quorum, e.fee);
    assert_eq!(fields, (uint(1), OWNER, content(5), 32, 7));
    assert_eq!(e.metadataURI, "ipfs://medical");
    assert_eq!(w.create(3, open(1)), Ok(uint(2)));
    let (d, uri) = w.view(Reg::datanetCall::new((uint(1),))).into();
    assert_eq!((d.owner, d.quorum, d.fee, d.accepted), (OWNER, 32, 7, 0));
    assert_eq!((d.schemaHash, uri.as_str()), (content(5), "ipfs://medical"));
}

#[test]
fn a_contribution_deposits_exactly_the_fee() {
    let mut w = world();
    let fee = open(2);
    let datanet = w.create(1, fee).unwrap();
    let before = w.evm.balance(CONTRIBUTOR);
    let unknown = err!(UnknownDatanet(uint(9)));
    assert_eq!(w.contribute(CONTRIBUTOR, uint(9), 1, fee), Err(unknown));
    for sent in [fee - uint(1), fee + uint(1), U256::ZERO] {
        let wrong = err!(WrongFee(fee, sent));
        assert_eq!(w.contribute(CONTRIBUTOR, datanet, 1, sent), Err(wrong));
    }
    for (hash, size) in [(B256::ZERO, 10), (content(1), 0)] {
        let call = Reg::contributeCall::new((datanet, hash, size, B256::ZERO));
        let empty = w.pay(CONTRIBUTOR, call, fee);
        assert_eq!(empty, Err(err!(EmptyContribution())));
    }
    assert_eq!(w.view(Reg::countsCall {}).contributions, U256::ZERO);
    assert_eq!(w.evm.balance(CONTRIBUTOR), before);

    assert_eq!(w.contribute(CONTRIBUTOR, datanet, 1, fee), Ok(uint(1)));
    assert_eq!(w.contribute(OUTSIDER, datanet, 2, fee), Ok(uint(2)));
    assert_eq!(w.evm.balance(CONTRIBUTOR), before - fee);
    assert_eq!(w.evm.balance(w.a.datanet_registry), fee * uint(2));
    let c = w.contribution(uint(1));
    let fields = (c.contributor, c.datanetId, c.status, c.contentHash);
    assert_eq!(fields, (CONTRIBUTOR, 1, PENDING, content(1)));
    assert_eq!((c.fee, c.decidedAt), (fee.to(), 0));
}

#[test]
fn only_staked_curators_of_the_datanet_review_and_only_once() {
    let mut w = world();
    let datanet = w.create(3, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let [c1, c2, c3, ..] = CURATORS;
    w.curate(&[c1, c2, CONTRIBUTOR], datanet);
    w.curate(&[c3], other);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    let outsider = err!(NotCurator(datanet, OUTSIDER));
    assert_eq!(w.review(OUTSIDER, id, true), Err(outsider));
    // A stake for another datanet does not make a curator of this one.
    assert_eq!(w.review(c3, id, true), Err(err!(NotCurator(datanet, c3))));
    let own = err!(SelfReview(id));
    assert_eq!(w.review(CONTRIBUTOR, id, true), Err(own));
    w.review(c1, id, true).unwrap();
    let again = err!(AlreadyReviewed(id, c1));
    assert_eq!(w.review(c1, id, true), Err(again.clone()));
    assert_eq!(w.review(c1, id, false), Err(again));
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (PENDING, 1, 0));
    let voters = w.view(Reg::reviewersCall::new((id,)));
    assert_eq!((voters.approvers, voters.rejecters), (vec![c1], vec![]));
    let unknown = err!(UnknownContribution(uint(42)));
    assert_eq!(w.review(c1, uint(42), true), Err(unknown));
}

#[test]
fn a_contribution_is_decided_when_one_side_reaches_the_quorum() {
    let mut w = world();
    let datanet = w.create(3, open(1)).unwrap();
    let [c1, c2, c3, c4, c5] = CURATORS;
    w.curate(&CURATORS, datanet);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    for (curator, approve) in [(c1, true), (c2, false), (c3, true), (c4, false)] {
        w.review(curator, id, approve).unwrap();
    }
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (PENDING, 2, 2));
    assert_eq!(w.datanet(datanet).accepted, 0);

    let decided_at = w.evm.timestamp;
    w.review(c5, id, true).unwrap();
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (ACCEPTED, 3, 2));
    assert_eq!((c.decidedAt, w.datanet(datanet).accepted), (decided_at, 1));
    // The deposit stays held until the challenge window has passed.
    assert_eq!((c.fee, w.owed(CONTRIBUTOR)), (OPEN, U256::ZERO));
    let decided = w.contribute(CONTRIBUTOR, datanet, 2, open(1)).unwrap();
    for c in [c1, c2, c3] {
        w.review(c, decided, false).unwrap();
    }
    for (id, status) in [(id, ACCEPTED), (decided, REJECTED)] {
        assert_eq!(w.review(c4, id, true), Err(err!(NotPending(id, status))));
    }

    // With quorum 1 the first vote decides, either way.
    let quick = w.create(1, open(1)).unwrap();
    w.curate(&[c5], quick);
    let yes = w.contribute(CONTRIBUTOR, quick, 3, open(1)).unwrap();
    let no = w.contribute(CONTRIBUTOR, quick, 4, open(1)).unwrap();
    w.review(c5, yes, true).unwrap();
    w.review(c5, no, false).unwrap();
    assert_eq!(w.contribution(yes).status, ACCEPTED);
    assert_eq!(w.contribution(no).status, REJECTED);
    assert_eq!(w.datanet(quick).accepted, 1);
    assert_eq!(w.owed(c5), open(1), "the lone rejecter takes the whole fee");
}

#[test]
fn a_rejected_fee_is_split_among_its_rejecters_and_claimed_once() {
    let mut w = world();
    // Not divisible by three: the first rejecter also takes the remainder of 2 wei.
    let fee = U256::from(OPEN + 1);
    let datanet = w.create(3, fee).unwrap();
    let [c1, c2, c3, c4, c5] = CURATORS;
    w.curate(&CURATORS, datanet);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
    let votes = [
        (c4, false),
        (c1, true),
        (c2, false),
        (c5, true),
        (c3, false),
    ];
    for (curator, approve) in votes {
        w.review(curator, id, approve).unwrap();
    }
    let c = w.contribution(id);
    assert_eq!((c.status, c.fee), (REJECTED, 0));
    let each = U256::from(OPEN / 3);
    let shares = [(c4, each + uint(2)), (c2, each), (c3, each)];
    assert_eq!(shares.iter().map(|s| s.1).sum::<U256>(), fee);
    for (curator, share) in shares {
        assert_eq!(w.owed(curator), share);
    }
    // Approvers of a rejected contribution earn nothing.
    assert_eq!(w.owed(c1), U256::ZERO);

    for (curator, share) in shares {
        let before = w.evm.balance(curator);
        w.claim(curator).unwrap();
        assert_eq!(w.evm.balance(curator), before + share);
        assert_eq!(w.claim(curator), Err(err!(NothingToClaim(curator))));
        assert_eq!(w.evm.balance(curator), before + share);
    }
    assert_eq!(w.evm.balance(w.a.datanet_registry), U256::ZERO);
}

#[test]
fn only_the_owner_publishes_versions_within_the_accepted_count() {
    let mut w = world();
    let datanet = w.create(1, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let c1 = CURATORS[0];
    w.curate(&[c1], datanet);
    w.curate(&[c1], other);
    for (n, d) in [(1, datanet), (2, datanet), (3, other)] {
        let id = w.contribute(CONTRIBUTOR, d, n, open(1)).unwrap();
        w.review(c1, id, true).unwrap();
    }
    let root = content(77);
    let unknown = err!(UnknownDatanet(uint(9)));
    assert_eq!(w.publish(OWNER, uint(9), root, 1), Err(unknown));
    let not_owner = err!(NotDatanetOwner(datanet, OUTSIDER));
    assert_eq!(w.publish(OUTSIDER, datanet, root, 1), Err(not_owner));
    let empty = err!(EmptyRoot());
    assert_eq!(w.publish(OWNER, datanet, B256::ZERO, 1), Err(empty));
    for count in [0, 3] {
        let bad = err!(BadVersionCount(count, 2));
        assert_eq!(w.publish(OWNER, datanet, root, count), Err(bad));
    }
    assert_eq!(w.view(Reg::countsCall {}).versions, U256::ZERO);

    let published_at = w.evm.timestamp;
    assert_eq!(w.publish(OWNER, datanet, root, 2), Ok(uint(1)));
    // Version ids are shared by all datanets.
    assert_eq!(w.publish(OWNER, other, content(78), 1), Ok(uint(2)));
    assert_eq!(w.publish(OWNER, datanet, content(79), 1), Ok(uint(3)));
    let v = w.view(Reg::versionCall::new((uint(1),)));
    let fields = (v.datanetId, v.count, v.root, v.publishedAt);
    assert_eq!(fields, (1, 2, root, published_at));
}

#[test]
fn contains_checks_merkle_proofs_against_a_published_version() {
    let mut w = world();
    let datanet = w.create(1, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let c1 = CURATORS[0];
    w.curate(&[c1], datanet);
    w.curate(&[c1], other);
    let mut leaves = Vec::new();
    for n in 1..=6 {
        let d = if n <= 5 { datanet } else { other };
        let id = w.contribute(CONTRIBUTOR, d, n, open(1)).unwrap();
        w.review(c1, id, true).unwrap();
        leaves.push(leaf(id, content(n)));
    }
    // The owner slips the other datanet's contribution (id 6) into the tree as a sixth leaf.
    let levels = tree(leaves);
    let root = levels.last().unwrap()[0];
    let version = w.publish(OWNER, datanet, root, 5).unwrap();

    let mut contains =
        |id: u64, path: Vec<B256>| w.view(Reg::containsCall::new((version, uint(id), path)));
    for id in 1..=5 {
        assert!(contains(id, proof(&levels, id as usize - 1)), "member {id}");
    }
    assert!(!contains(1, proof(&levels, 1)), "someone else's proof");
    assert!(!contains(5, vec![]), "no proof");
    // A valid path, but the contribution belongs to another datanet.
    assert!(!contains(6, proof(&levels, 5)));
    assert!(!contains(99, proof(&levels, 0)), "no such contribution");
    let call = Reg::containsCall::new((uint(9), uint(1), proof(&levels, 0)));
    assert_eq!(w.reg(OUTSIDER, call), Err(err!(UnknownVersion(uint(9)))));
}

#[test]
fn challenges_need_an_accepted_contribution_the_bond_and_an_open_window() {
    let mut w = world();
    let (bond, window) = (w.config.challenge_bond, w.config.challenge_window_secs);
    let (datanet, id) = w.accepted_contribution(1, open(1));
    let [expiring, challenged, pending, rejected] =
        [2, 3, 4, 5].map(|n| w.contribute(CONTRIBUTOR, datanet, n, open(1)).unwrap());
    w.review(CURATORS[0], expiring, true).unwrap();
    w.review(CURATORS[0], challenged, true).unwrap();
    w.review(CURATORS[0], rejected, false).unwrap();
    for (c, status) in [(pending, PENDING), (rejected, REJECTED)] {
        assert_eq!(w.challenge(c, bond), Err(err!(NotAccepted(c, status))));
    }
    let unknown = err!(UnknownContribution(uint(77)));
    assert_eq!(w.challenge(uint(77), bond), Err(unknown));
    let before = w.evm.balance(CHALLENGER);
    for sent in [bond - uint(1), bond + uint(1), U256::ZERO] {
        assert_eq!(w.challenge(id, sent), Err(err!(WrongBond(bond, sent))));
    }
    assert_eq!(w.evm.balance(CHALLENGER), before);
    w.challenge(challenged, bond).unwrap();
    let again = err!(AlreadyChallenged(challenged));
    assert_eq!(w.challenge(challenged, bond), Err(again));

    // The window's last second still counts; the next one does not.
    let closes_at = w.contribution(id).decidedAt + window;
    w.evm.timestamp = closes_at;
    w.challenge(id, bond).unwrap();
    let open_challenge = w.view(Reg::challengeOfCall::new((id,)));
    let expected = Reg::Challenge::from((CHALLENGER, bond.to(), closes_at));
    assert_eq!(open_challenge, expected);
    let closed_at = w.contribution(expiring).decidedAt + window;
    w.evm.timestamp = closed_at + 1;
    let closed = err!(ChallengeWindowClosed(expiring, closed_at));
    assert_eq!(w.challenge(expiring, bond), Err(closed));
    assert_eq!(w.evm.balance(CHALLENGER), before - bond * uint(2));
    let held = w.evm.balance(w.a.datanet_registry);
    assert_eq!(held, open(5) + bond * uint(2));
}

#[test]
fn an_upheld_challenge_poisons_pays_the_challenger_and_slashes_the_approvers() {
    let mut w = world();
    let total = w.evm.total_balance();
    let (fee, bond, penalty) = (open(3), w.config.challenge_bond, w.config.min_stakes[1]);
    let [c1, c2, c3, c4, c5] = CURATORS;
    let datanet = w.create(3, fee).unwrap();
    w.curate(&CURATORS, datanet);
    // c2 staked more than the penalty and keeps the rest.
    w.stake(c2, CURATOR, datanet, open(15));
    let poison = w.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
    for (curator, approve) in [(c1, true), (c5, false), (c2, true), (c3, true)] {
        w.review(curator, poison, approve).unwrap();
    }
    let good = w.contribute(CONTRIBUTOR, datanet, 2, fee).unwrap();
    for c in [c1, c2, c4] {
        w.review(c, good, true).unwrap();
    }
    w.publish(OWNER, datanet, content(50), 2).unwrap();
    w.challenge(poison, bond).unwrap();
    // c1 asks to leave once challenged, but unbonding stake is still at risk. c3 leaves
    // completely before the ruling: nothing is left to take, and that must not block it.
    let unstake = Staking::requestUnstakeCall::new((CURATOR, datanet, penalty));
    w.evm.sol(c1, w.a.staking, unstake.clone()).unwrap();
    let leaving = w.evm.sol(c3, w.a.staking, unstake).unwrap();
    w.evm.advance(w.config.unbonding_delay_secs);
    let withdraw = Staking::withdrawCall::new((leaving,));
    w.evm.sol(c3, w.a.staking, withdraw).unwrap();
    let challenger_before = w.evm.balance(CHALLENGER);
    let treasury_before = w.evm.balance(w.a.timelock);
    let resolve = Reg::resolveChallengeCall::new((poison, true));
    w.govern(resolve).unwrap();

    let c = w.contribution(poison);
    let accepted = w.datanet(datanet).accepted;
    assert_eq!((c.status, c.fee, accepted), (POISONED, 0, 1));
    let bad = err!(BadVersionCount(2, 1));
    assert_eq!(w.publish(OWNER, datanet, content(51), 2), Err(bad));
    // Two approvers lose the curator minimum each; the challenger is credited 20% of each
    // slash on top of its bond and the contributor's fee.
    let share = penalty * U256::from(w.config.challenger_share_bps) / uint(10_000);
    assert_eq!(share, open(2));
    let payout = bond + fee + share * uint(2);
    assert_eq!(w.owed(CHALLENGER), payout);
    assert_eq!(w.evm.balance(CHALLENGER), challenger_before);
    let treasury_now = treasury_before + (penalty - share) * uint(2);
    assert_eq!(w.evm.balance(w.a.timelock), treasury_now);
    let stakes = CURATORS.map(|c| w.stake_of(c, datanet));
    assert_eq!(stakes, [U256::ZERO, open(15), U256::ZERO, penalty, penalty]);
    let slashable = Staking::slashableOfCall::new((c1, CURATOR, datanet));
    let unbonding_left = w.evm.sol(c1, w.a.staking, slashable).unwrap();
    assert_eq!(
        unbonding_left,
        U256::ZERO,
        "the slash took c1's unbonding stake"
    );
    let open_challenge = w.view(Reg::challengeOfCall::new((poison,)));
    assert_eq!(open_challenge.challenger, Address::ZERO);
    let poisoned = err!(NotAccepted(poison, POISONED));
    assert_eq!(w.challenge(poison, bond), Err(poisoned));
    w.claim(CHALLENGER).unwrap();
    assert_eq!(w.evm.balance(CHALLENGER), challenger_before + payout);
    assert_eq!(w.evm.total_balance(), total, "OPEN is conserved");
}

#[test]
fn a_rejected_challenge_forfeits_the_bond_to_the_treasury() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let (datanet, id) = w.accepted_contribution(2, open(1));
    let stakes = CURATORS.map(|c| w.stake_of(c, datanet));
    w.challenge(id, bond).unwrap();
    let resolve = |upheld| Reg::resolveChallengeCall::new((id, upheld));
    w.govern(resolve(false)).unwrap();
    assert_eq!(w.owed(w.a.timelock), bond);
    assert_eq!(w.owed(CHALLENGER), U256::ZERO);
    let (c, accepted) = (w.contribution(id), w.datanet(datanet).accepted);
    assert_eq!((c.status, c.fee, accepted), (ACCEPTED, OPEN, 1));
    assert_eq!(CURATORS.map(|c| w.stake_of(c, datanet)), stakes);
    let none = err!(NoOpenChallenge(id));
    assert_eq!(error(w.govern(resolve(true)).unwrap_err()), none);
    assert_eq!(w.contribution(id).status, ACCEPTED);

    let treasury = w.evm.balance(w.a.timelock);
    w.claim(w.a.timelock).unwrap();
    assert_eq!(w.evm.balance(w.a.timelock), treasury + bond);
    // Still inside the window, so someone may challenge again.
    w.challenge(id, bond).unwrap();
}

#[test]
fn only_governance_rules_on_challenges_and_sets_the_bond() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let (_, id) = w.accepted_contribution(1, open(1));
    w.challenge(id, bond).unwrap();
    for who in [OUTSIDER, OWNER, DEPLOYER] {
        let unauthorized = err!(OwnableUnauthorizedAccount(who));
        let resolve = Reg::resolveChallengeCall::new((id, true));
        assert_eq!(w.act(who, resolve), Err(unauthorized.clone()));
        let set = Reg::setChallengeBondCall::new((U256::ZERO,));
        assert_eq!(w.act(who, set), Err(unauthorized));
    }
    assert_eq!(w.contribution(id).status, ACCEPTED);
    assert_eq!(w.view(Reg::challengeBondCall {}), bond);

    w.govern(Reg::setChallengeBondCall::new((open(5),)))
        .unwrap();
    assert_eq!(w.view(Reg::challengeBondCall {}), open(5));
    let (_, fresh) = w.accepted_contribution(1, open(1));
    let wrong = err!(WrongBond(open(5), bond));
    assert_eq!(w.challenge(fresh, bond), Err(wrong));
    w.challenge(fresh, open(5)).unwrap();
}

#[test]
fn the_fee_returns_to_the_contributor_after_an_unchallenged_window() {
    let mut w = world();
    let (fee, window) = (open(2), w.config.challenge_window_secs);
    let (datanet, id) = w.accepted_contribution(1, fee);
    let challenged = w.contribute(CONTRIBUTOR, datanet, 2, fee).unwrap();
    w.review(CURATORS[0], challenged, true).unwrap();
    let pending = w.contribute(CONTRIBUTOR, datanet, 3, fee).unwrap();
    let not_accepted = err!(NotAccepted(pending, PENDING));
    assert_eq!(w.release(pending), Err(not_accepted));
    let unknown = err!(UnknownContribution(uint(99)));
    assert_eq!(w.release(uint(99)), Err(unknown));
    w.challenge(challenged, w.config.challenge_bond).unwrap();

    let closes_at = w.contribution(id).decidedAt + window;
    w.evm.timestamp = closes_at;
    let window_open = err!(ChallengeWindowOpen(id, closes_at));
    assert_eq!(w.release(id), Err(window_open));
    assert_eq!(w.contribution(id).fee, fee.to::<u128>());
    w.evm.timestamp = w.contribution(challenged).decidedAt + window + 1;
    w.release(id).unwrap();
    assert_eq!((w.contribution(id).fee, w.owed(CONTRIBUTOR)), (0, fee));
    assert_eq!(w.release(id), Err(err!(FeeAlreadyReleased(id))));
    // An open challenge holds the fee past the window until governance rules.
    let held = err!(AlreadyChallenged(challenged));
    assert_eq!(w.release(challenged), Err(held));
    assert_eq!(w.contribution(challenged).fee, fee.to::<u128>());
    let before = w.evm.balance(CONTRIBUTOR);
    w.claim(CONTRIBUTOR).unwrap();
    assert_eq!(w.evm.balance(CONTRIBUTOR), before + fee);
    assert_eq!(w.owed(CONTRIBUTOR), U256::ZERO);
}

/// Creation code of a contract that forwards any call with calldata to `target` (passing the
/// value on and bubbling the result) and refuses plain OPEN transfers.
fn refuser(target: Address) -> Bytes {
    // Runtime: no calldata → revert; else copy it, CALL target with it and the value, and
    // return or revert with what came back. The init code copies the 0x37 runtime bytes out.
    let runtime_head = hex!("3615603357365f5f375f5f365f3473");
    let runtime_tail = hex!("5af13d5f5f3e602f573d5ffd5b3d5ff35b5f5ffd");
    let init = hex!("60378060095f395ff3");
    let runtime = [&runtime_head[..], target.as_slice(), &runtime_tail].concat();
    assert_eq!(runtime.len(), 0x37);
    [&init[..], &runtime].concat().into()
}

#[test]
fn a_challenger_that_refuses_open_cannot_block_an_upheld_ruling() {
    let mut w = world();
    let (fee, bond, penalty) = (open(3), w.config.challenge_bond, w.config.min_stakes[1]);
    let (_, id) = w.accepted_contribution(2, fee);
    let registry = w.a.datanet_registry;
    let challenger = w.evm.deploy(OUTSIDER, refuser(registry)).unwrap();
    let challenge = Reg::challengeCall::new((id, content(7))).abi_encode();
    (w.evm.send(OUTSIDER, challenger, challenge.into(), bond)).unwrap();
    let open_challenge = w.view(Reg::challengeOfCall::new((id,)));
    assert_eq!(open_challenge.challenger, challenger);
    let treasury = w.evm.balance(w.a.timelock);

    let resolve = Reg::resolveChallengeCall::new((id, true));
    w.govern(resolve).unwrap();
    assert_eq!(w.contribution(id).status, POISONED);
    // Its share of both slashes is credited with the bond and the fee, like every payment.
    let share = penalty * U256::from(w.config.challenger_share_bps) / uint(10_000);
    assert_eq!(w.owed(challenger), bond + fee + share * uint(2));
    assert_eq!(w.evm.balance(challenger), U256::ZERO);
    let treasury_now = treasury + (penalty - share) * uint(2);
    assert_eq!(w.evm.balance(w.a.timelock), treasury_now);
    // Only Staking may send OPEN unasked, or it would be stuck here for good.
    let stray = w.evm.send(OUTSIDER, registry, Bytes::new(), open(1));
    let refused = err!(UnexpectedPayment(OUTSIDER));
    assert_eq!(stray.map(|_| ()).map_err(error), Err(refused));
}

#[test]
fn a_rejected_challenge_gives_back_the_window_it_held_open() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let window = w.config.challenge_window_secs;
    let (_, id) = w.accepted_contribution(1, open(1));
    let decided = w.contribution(id).decidedAt;
    // A challenge with a tenth of the window left, then ruled out long after the window.
    w.evm.timestamp = decided + window - window / 10;
    w.challenge(id, bond).unwrap();
    let opened = w.evm.timestamp - 1;
    w.evm.advance(3 * window);
    w.govern(Reg::resolveChallengeCall::new((id, false)))
        .unwrap();
    let ruled = w.evm.timestamp - 1;
    // The window moved by exactly as long as the challenge was open.
    assert_eq!(w.contribution(id).decidedAt, decided + (ruled - opened));
    let closes_at = decided + (ruled - opened) + window;
    // A second challenge with 100 seconds left: after its rejection 100 seconds remain.
    w.evm.timestamp = closes_at - 100;
    w.challenge(id, bond).unwrap();
    w.govern(Reg::resolveChallengeCall::new((id, false)))
        .unwrap();
    let ruled = w.evm.timestamp - 1;
    let closes_at = w.contribution(id).decidedAt + window;
    assert_eq!(closes_at, ruled + 100);
    assert_eq!(w.release(id), Err(err!(ChallengeWindowOpen(id, closes_at))));
    w.evm.timestamp = closes_at + 1;
    let closed = err!(ChallengeWindowClosed(id, closes_at));
    assert_eq!(w.challenge(id, bond), Err(closed));
    w.release(id).unwrap();
}
