//! OPEN is conserved across the whole protocol: a long seeded random run of deposits,
//! settlements, claims, credit withdrawals, stakes, unbonding, slashes (upheld challenges of
//! batches and contributions, and governance slashing directly), contributions, reviews, fee
//! releases and vesting releases never changes the sum of all balances, and every contract
//! holds exactly what a model kept by the test says it owes. It runs over several seeds (more
//! with `OPENLEDGER_CONSERVATION_SEEDS=N`), and checks invariants at every step: fees are
//! conserved to the wei, a slash never takes more than the slashable stake, and a stake that an
//! open challenge may slash never leaves before the ruling.

mod actions;
#[path = "../evm/mod.rs"]
mod evm;

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, Address, Log, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolEvent, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry::{self as DR, DatanetRegistryErrors as DrErr},
    deploy::{Addresses, DeployConfig},
    governor::OpenGovernor as G,
    inference_settlement::{
        pack_receipts,
        InferenceSettlement::{self as IS, InferenceSettlementErrors as IsErr, Receipt},
    },
    model_registry::ModelRegistry as MR,
    staking::Staking::{self, StakingErrors as StErr},
    vesting::OpenVesting::{self, OpenVestingErrors as VestErr},
};

const SEED: u64 = 0x0be1_1ed9_e5ee_d001;
/// Seeds run by default; each is a whole run of `ACTIONS` actions.
const DEFAULT_SEEDS: u64 = 4;
const ACTIONS: usize = 1_500;
const DEPLOYER: Address = actor(0xde);
/// Stakes enough to pass proposals alone; the random actions never touch it.
const GOV: Address = actor(0x71);
const DATA_OWNER: Address = actor(0x70);
const CONSUMERS: [Address; 4] = [actor(0x10), actor(0x11), actor(0x12), actor(0x13)];
const HOSTS: [Address; 2] = [actor(0x20), actor(0x21)];
const OWNERS: [Address; 2] = [actor(0x30), actor(0x31)];
const CONTRIBUTORS: [Address; 3] = [actor(0x40), actor(0x41), actor(0x42)];
const CURATORS: [Address; 3] = [actor(0x50), actor(0x51), actor(0x52)];
const VALIDATORS: [Address; 2] = [actor(0x60), actor(0x61)];
const BENEFICIARIES: [Address; 2] = [actor(0x80), actor(0x81)];
/// (agent, host, model owner): HOSTS[0] serves both owners, so its batches split the model
/// share between them.
const AGENTS: [(u64, usize, usize); 3] = [(1, 0, 0), (2, 1, 1), (3, 0, 1)];
/// Every agent's price, wei per 1,000 input tokens and per 1,000 output tokens.
const PRICE: u128 = OPEN / 100;
/// The dev deployment's fee split, minimum stakes by role, windows, bond and challenger share.
const SPLIT: [u64; 5] = [4000, 1000, 2500, 1500, 1000];
const MIN_STAKE: [u128; 3] = [100 * OPEN, 10 * OPEN, 50 * OPEN];
const WINDOW: u64 = 600;
const RULING: u64 = 600;
const BOND: u128 = OPEN;
const CHALLENGER_BPS: u64 = 2000;
/// The most a contribution's challenger earns beyond its bond, as a share of the forfeit.
const REWARD_CAP_BPS: u64 = 5000;
/// The share of a decided deposit paid to the contribution's reviewers.
const REVIEW_REWARD_BPS: u64 = 2000;
/// A contribution deposit that two rejecting curators cannot split evenly.
const DATANET_FEE: u128 = OPEN / 3;
const QUORUM: usize = 2;
const Z: U256 = U256::ZERO;

/// A staking position: staker, role, subject.
type Key = (Address, u8, u64);
type Kind = &'static str;
/// An open challenge: challenger and bond.
type Challenge = Option<(Address, U256)>;

const fn actor(byte: u8) -> Address {
    Address::repeat_byte(byte)
}

/// splitmix64: small, deterministic, and good enough to shuffle actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Mostly one of `likely` (expected to succeed), sometimes anything in `any`.
    fn pick_or<T: Copy>(&mut self, likely: &[T], any: &[T]) -> T {
        let wild = likely.is_empty() || self.chance(12);
        self.pick(if wild { any } else { likely })
    }
    /// 1 ..= max wei.
    fn wei(&mut self, max: u128) -> U256 {
        let wide = (self.next() as u128) << 64 | self.next() as u128;
        u(wide % max + 1)
    }
    /// 1 ..= max wei, or zero `percent` of the time.
    fn wei_or_zero(&mut self, max: u128, percent: u64) -> U256 {
        let zero = self.chance(percent);
        self.wei(max) * u(!zero as u128)
    }
}

fn u(n: u128) -> U256 {
    U256::from(n)
}

fn bps(amount: U256, part: u64) -> U256 {
    amount * U256::from(part) / U256::from(10_000)
}

fn add(map: &mut BTreeMap<Address, U256>, who: Address, amount: U256) {
    *map.entry(who).or_default() += amount;
}

/// The allowance of `key` at time `t`, a due lowering put into effect (as the contract does
/// whenever it touches the authorisation).
fn allowance_at(m: &mut Model, key: (Address, Address), t: u64) -> &mut (U256, u64, U256) {
    let a = m.allowance.entry(key).or_insert((Z, 0, Z));
    if a.1 != 0 && t >= a.1 {
        a.0 = a.0.min(a.2);
        (a.1, a.2) = (0, Z);
    }
    a
}

fn get(map: &BTreeMap<Address, U256>, who: Address) -> U256 {
    map.get(&who).copied().unwrap_or_default()
}

/// The keys with something in `map`.
fn holders<K: Copy>(map: &BTreeMap<K, U256>) -> Vec<K> {
    map.iter()
        .filter(|e| !e.1.is_zero())
        .map(|e| *e.0)
        .collect()
}

fn total<K, V>(map: &BTreeMap<K, V>, amount: impl Fn(&V) -> U256) -> U256 {
    map.values().map(amount).sum()
}

#[derive(Clone, Copy, PartialEq)]
enum Status {
    Pending,
    Accepted,
    Rejected,
    Poisoned,
}

struct Contribution {
    contributor: Address,
    status: Status,
    /// The deposit still held.
    fee: U256,
    decided_at: u64,
    bond: Challenge,
    /// When the open challenge was raised (its ruling period runs from then).
    challenged_at: u64,
    approvers: Vec<Address>,
    rejecters: Vec<Address>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BatchState {
    Escrowed,
    Released,
    Upheld,
    Refunded,
}

/// A settled batch, as the model sees it.
struct Batch {
    host: Address,
    settled_at: u64,
    state: BatchState,
    fees: U256,
    /// Challenges raised: challenger, bond, when, whether still open.
    challenges: Vec<(Address, U256, u64, bool)>,
    /// What its release credits (model owners, host, treasury).
    payouts: Vec<(Address, U256)>,
    /// What it took from each consumer.
    debits: Vec<(Address, U256)>,
    /// The calls that release and refund it, with the lists read off its events.
    release: IS::releaseCall,
    refund: IS::refundBatchCall,
}

impl Batch {
    fn open_challenges(&self) -> usize {
        self.challenges.iter().filter(|c| c.3).count()
    }
}

/// What each contract owes, kept from the calls that succeeded.
#[derive(Default)]
struct Model {
    credit: BTreeMap<Address, U256>,
    /// What each consumer lets each host take, and the last receipt number each host settled.
    /// (allowance, when a pending lowering takes effect (0: none), what it lowers to).
    allowance: BTreeMap<(Address, Address), (U256, u64, U256)>,
    seq: BTreeMap<(Address, Address), u64>,
    /// Credit withdrawals asked for: amount and when they are ready.
    requests: BTreeMap<Address, (U256, u64)>,
    claimable: BTreeMap<Address, U256>,
    /// Settled batches, by id − 1.
    batches: Vec<Batch>,
    owed: BTreeMap<Address, U256>,
    contributions: Vec<Contribution>,
    stakes: BTreeMap<Key, U256>,
    /// Unbonding stakes by withdrawal id: staker, amount, when they are ready.
    unbonding: BTreeMap<U256, (Address, U256, u64)>,
    /// The one pending withdrawal of each stake that has one.
    pending: BTreeMap<Key, U256>,
}

struct Wallet {
    address: Address,
    beneficiary: Address,
    start: u64,
    seconds: u64,
    allocation: U256,
}

struct Sim {
    evm: Evm,
    a: Addresses,
    rng: Rng,
    m: Model,
    total: U256,
    everyone: Vec<Address>,
    wallets: Vec<Wallet>,
    proposals: u32,
    /// OPEN slashed by upheld batch challenges, upheld contribution challenges, governance.
    slashed: [U256; 3],
    /// Per kind of action: how many succeeded and how many reverted.
    stats: BTreeMap<Kind, (u32, u32)>,
    /// The logs of the last call that succeeded.
    logs: Vec<Log>,
}

impl Sim {
    /// Sends one call, checks that OPEN is conserved, and tallies the outcome; a revert must
    /// be one of the target's own custom errors (no panics, no empty reverts).
    fn send<E: SolInterface, C: SolCall>(
        &mut self,
        kind: Kind,
        (from, to): (Address, Address),
        call: C,
        value: U256,
    ) -> Option<C::Return> {
        let result = self.evm.send(from, to, call.abi_encode().into(), value);
        let total = self.evm.total_balance();
        assert_eq!(total, self.total, "{kind} changed total OPEN");
        let tally = self.stats.entry(kind).or_default();
        match result {
            Ok((out, logs)) => {
                tally.0 += 1;
                self.logs = logs;
                Some(C::abi_decode_returns(&out).unwrap())
            }
            Err(e) => {
                tally.1 += 1;
                let why = E::abi_decode(&e).err();
                assert!(why.is_none(), "{kind} reverted with {e}: {why:?}");
                None
            }
        }
    }

    fn is<C: SolCall>(&mut self, kind: Kind, from: Address, call: C, value: U256) -> bool {
        let to = self.a.inference_settlement;
        self.send::<IsErr, C>(kind, (from, to), call, value)
            .is_some()
    }

    fn dr<C: SolCall>(&mut self, kind: Kind, from: Address, call: C, value: U256) -> bool {
        let to = self.a.datanet_registry;
        self.send::<DrErr, C>(kind, (from, to), call, value)
            .is_some()
    }

    /// A call that must succeed: setup, and the steps of a proposal.
    fn must<C: SolCall>(&mut self, from: Address, to: Address, call: C) -> C::Return {
        let data = call.abi_encode().into();
        let out = self.evm.send(from, to, data, Z).expect(C::SIGNATURE).0;
        C::abi_decode_returns(&out).unwrap()
    }

    /// Has the timelock make a call by passing a proposal (the harness cannot send from a
    /// contract: EIP-3607); the final `execute` is what is tallied under `kind`.
    fn govern<E: SolInterface>(&mut self, kind: Kind, to: Address, data: Vec<u8>) -> bool {
        self.proposals += 1;
        let (gov, description) = (self.a.governor, format!("ruling {}", self.proposals));
        let config = DeployConfig::dev();
        let execute = self
            .evm
            .pass_proposal(GOV, gov, &config, (to, data), description);
        let execute = G::executeCall::abi_decode(&execute).expect("execute calldata");
        self.send::<E, _>(kind, (GOV, gov), execute, Z).is_some()
    }

    /// A staking position an actor may hold (GOV's excluded).
    fn random_key(&mut self) -> Key {
        self.rng.pick(&keys())
    }

    /// The actors staked for `role` at its minimum or more.
    fn staked(&self, role: u8) -> Vec<Address> {
        let min = u(MIN_STAKE[role as usize]);
        let keys = keys().into_iter().filter(|k| k.1 == role);
        keys.filter(|k| get_stake(&self.m.stakes, *k) >= min)
            .map(|k| k.0)
            .collect()
    }

    /// One of the positions with something staked, mostly.
    fn staked_key(&mut self) -> Key {
        let mut keys = holders(&self.m.stakes);
        keys.retain(|k| k.0 != GOV);
        let any = self.random_key();
        self.rng.pick_or(&keys, &[any])
    }

    fn stake(&mut self, (who, role, subject): Key, amount: U256) {
        let call = Staking::stakeCall::new((role, U256::from(subject)));
        let to = (who, self.a.staking);
        if self.send::<StErr, _>("stake", to, call, amount).is_some() {
            *self.m.stakes.entry((who, role, subject)).or_default() += amount;
        }
    }

    /// What a successful `slash` of up to `amount` took from a stake and then from its
    /// pending withdrawal, by `path`.
    fn slashed(&mut self, path: usize, key: Key, amount: U256) -> U256 {
        let slashable = get_stake(&self.m.stakes, key)
            + self
                .m
                .pending
                .get(&key)
                .map_or(Z, |id| self.m.unbonding[id].1);
        let stake = self.m.stakes.entry(key).or_default();
        let mut taken = amount.min(*stake);
        *stake -= taken;
        if let Some(&id) = self.m.pending.get(&key).filter(|_| taken < amount) {
            let w = self.m.unbonding.get_mut(&id).unwrap();
            let more = (amount - taken).min(w.1);
            w.1 -= more;
            taken += more;
            if w.1.is_zero() {
                self.m.unbonding.remove(&id);
                self.m.pending.remove(&key);
            }
        }
        assert!(
            taken <= slashable,
            "a slash took {taken} of {slashable} slashable"
        );
        self.slashed[path] += taken;
        taken
    }

    /// Whether an open challenge may slash the stake `key`, so that it must not leave.
    fn frozen(&self, key: Key) -> bool {
        let (staker, role, _) = key;
        let contribution = |c: &Contribution| c.bond.is_some() && c.approvers.contains(&staker);
        let batch = |b: &Batch| b.open_challenges() > 0 && b.host == staker;
        (role == 1 && self.m.contributions.iter().any(contribution))
            || (role == 2 && self.m.batches.iter().any(batch))
    }

    /// Mostly an accepted contribution that `keep` selects, sometimes any accepted one (or
    /// any at all).
    fn accepted(&mut self, keep: impl Fn(&Contribution) -> bool) -> u64 {
        let ids = |keep: &dyn Fn(&Contribution) -> bool| -> Vec<u64> {
            let all = self.m.contributions.iter().zip(1..);
            all.filter(|c| keep(c.0)).map(|c| c.1).collect()
        };
        let accepted = |c: &Contribution| c.status == Status::Accepted;
        let (likely, mut any) = (ids(&|c| accepted(c) && keep(c)), ids(&accepted));
        any.push(1 + self.rng.below(self.m.contributions.len() as u64));
        self.rng.pick_or(&likely, &any)
    }

    /// One random action.
    fn step(&mut self) {
        match self.rng.below(100) {
            0..=6 => self.deposit(),
            7..=18 => self.settle(),
            19..=21 => self.authorize(),
            22..=26 => self.release_batch(),
            27..=29 => self.claim_settlement(),
            30..=32 => self.request_credit(),
            33..=35 => self.withdraw_credit(),
            36..=41 => self.new_stake(),
            42..=45 => self.request_unstake(),
            46..=49 => self.withdraw_stake(),
            50..=53 => self.challenge_batch(),
            54..=56 => self.rule_on_batch(),
            57..=58 => self.refund_batch(),
            59..=64 => {
                let who = self.rng.pick(&CONTRIBUTORS);
                // Now and then the wrong fee.
                let fee = DATANET_FEE + self.rng.chance(5) as u128;
                self.contribute(who, u(fee));
            }
            65..=72 => self.random_review(),
            73..=76 => self.release_fee(),
            77..=79 => self.challenge_contribution(),
            80 => self.rule_on_contribution(),
            81..=82 => self.expire_contribution_challenge(),
            83..=86 => self.claim_datanet(),
            87..=88 => self.governance_slash(),
            89..=91 => self.vesting_release(),
            _ => {
                self.evm.advance(1 + self.rng.below(300));
                self.stats.entry("advance time").or_default().0 += 1;
            }
        }
    }

    /// Total OPEN is unchanged, and each contract holds exactly what the model says it owes.
    fn check_balances(&self) {
        let (m, balance) = (&self.m, |who| self.evm.balance(who));
        assert_eq!(self.evm.total_balance(), self.total);
        let bond = |b: Challenge| b.map_or(Z, |b| b.1);
        let held = m
            .contributions
            .iter()
            .map(|c| c.fee + bond(c.bond))
            .sum::<U256>();
        let credit = total(&m.credit, |v| *v) + total(&m.claimable, |v| *v);
        let escrowed = |b: &Batch| {
            let bonds: U256 = b.challenges.iter().filter(|c| c.3).map(|c| c.1).sum();
            let escrow = matches!(b.state, BatchState::Escrowed | BatchState::Upheld);
            bonds + if escrow { b.fees } else { Z }
        };
        let is = credit + m.batches.iter().map(escrowed).sum::<U256>();
        assert_eq!(
            balance(self.a.inference_settlement),
            is,
            "InferenceSettlement"
        );
        let dr = total(&m.owed, |v| *v) + held;
        assert_eq!(balance(self.a.datanet_registry), dr, "DatanetRegistry");
        let staked = total(&m.stakes, |v| *v) + total(&m.unbonding, |w| w.1);
        assert_eq!(balance(self.a.staking), staked, "Staking");
        for w in &self.wallets {
            let both = balance(w.address) + balance(w.beneficiary);
            assert_eq!(both, w.allocation, "vesting wallet");
        }
    }
}

/// Every staking position an actor may hold: validators, curators of datanet 1, hosts.
fn keys() -> Vec<Key> {
    let validators = VALIDATORS.map(|v| (v, 0, 0));
    let curators = CURATORS.map(|c| (c, 1, 1));
    [&validators[..], &curators, &HOSTS.map(|h| (h, 2, 0))].concat()
}

fn get_stake(stakes: &BTreeMap<Key, U256>, key: Key) -> U256 {
    stakes.get(&key).copied().unwrap_or_default()
}

fn setup(seed: u64) -> Sim {
    let mut everyone = [CONSUMERS.to_vec(), HOSTS.to_vec(), OWNERS.to_vec()].concat();
    everyone.extend(CONTRIBUTORS.iter().chain(&CURATORS).chain(&VALIDATORS));
    let mut evm = Evm::new(&[&everyone[..], &[DEPLOYER, GOV, DATA_OWNER]].concat());
    let total = evm.total_balance();
    let a = evm.deploy_protocol(DEPLOYER, &DeployConfig::dev());
    everyone.push(a.timelock);
    let (rng, m, stats) = (Rng(seed), Model::default(), BTreeMap::new());
    let (wallets, proposals, slashed) = (vec![], 0, [Z; 3]);
    let mut s = Sim {
        evm,
        a,
        rng,
        m,
        total,
        everyone,
        wallets,
        proposals,
        slashed,
        stats,
        logs: vec![],
    };
    let (dr, mr) = (a.datanet_registry, a.model_registry);
    let h = |x: &str| keccak256(x.as_bytes());
    s.stake((GOV, 0, 0), u(500 * OPEN));
    let quorum = QUORUM as u16;
    let create = DR::createDatanetCall::new(("d".into(), h("s"), quorum, DATANET_FEE));
    s.must(DATA_OWNER, dr, create);
    for curator in CURATORS {
        s.stake((curator, 1, 1), u(12 * OPEN));
    }
    s.contribute(CONTRIBUTORS[0], u(DATANET_FEE));
    s.review(CURATORS[0], 1, true);
    s.review(CURATORS[1], 1, true);
    let publish = DR::publishVersionCall::new((u(1), h("root"), 1, "v1".into()));
    s.must(DATA_OWNER, dr, publish);
    let base = MR::registerBaseModelCall::new((h("base"), "b".into(), "MIT".into()));
    s.must(OWNERS[0], mr, base);
    for owner in OWNERS {
        let lineage = vec![u(1)];
        let call = MR::registerAdapterCall::new((u(1), lineage, h("c"), h("w"), h("m"), "".into()));
        s.must(owner, mr, call);
    }
    for host in HOSTS {
        s.stake((host, 2, 0), u(100 * OPEN));
    }
    // Owner i's agents run on its adapter, i + 1.
    for (_, host, owner) in AGENTS {
        let adapter = u(owner as u128 + 1);
        let call = MR::deployAgentCall::new((adapter, HOSTS[host], PRICE, PRICE, 0, "".into()));
        s.must(OWNERS[owner], mr, call);
    }
    for (agent, host, _) in AGENTS {
        s.must(
            HOSTS[host],
            mr,
            MR::acceptAgentCall::new((u(agent as u128),)),
        );
    }
    for consumer in CONSUMERS {
        for host in HOSTS {
            let call = IS::authorizeCall::new((host, OPEN));
            s.must(consumer, a.inference_settlement, call);
            s.m.allowance.insert((consumer, host), (u(OPEN), 0, Z));
        }
    }
    for validator in VALIDATORS {
        s.stake((validator, 0, 0), u(150 * OPEN));
    }
    // One wallet starts releasing soon and ends mid-run, the other runs past the end.
    let schedules = [(1_000, 12_000, 100), (0, 60_000, 200)];
    for (beneficiary, (delay, seconds, allocation)) in BENEFICIARIES.into_iter().zip(schedules) {
        let start = s.evm.timestamp + delay;
        let args = OpenVesting::constructorCall::new((beneficiary, start, seconds));
        let code = [OpenVesting::BYTECODE.as_ref(), &args.abi_encode()].concat();
        let address = s.evm.deploy(DEPLOYER, code.into()).unwrap();
        let allocation = u(allocation * OPEN);
        s.evm
            .send(DEPLOYER, address, Default::default(), allocation)
            .unwrap();
        let wallet = Wallet {
            address,
            beneficiary,
            start,
            seconds,
            allocation,
        };
        s.wallets.push(wallet);
    }
    assert!(s.stats.values().all(|t| t.1 == 0), "setup reverted");
    s.stats.clear();
    s.check_balances();
    s
}

/// What all the runs did: tallies per kind of action, and OPEN slashed per path.
struct Totals {
    stats: BTreeMap<Kind, (u64, u64)>,
    slashed: [U256; 3],
}

/// One seeded run: every step keeps the invariants, and at the end the model agrees with the
/// contracts' own books, account by account. Returns its tallies and slashes.
fn run(seed: u64) -> (BTreeMap<Kind, (u64, u64)>, [U256; 3]) {
    let mut s = setup(seed);
    for _ in 0..ACTIONS {
        s.step();
        s.check_balances();
    }
    let (is, dr, st) = (s.a.inference_settlement, s.a.datanet_registry, s.a.staking);
    for who in s.everyone.clone() {
        let credit = s.must(DEPLOYER, is, IS::creditOfCall::new((who,)));
        assert_eq!(credit, get(&s.m.credit, who), "credit of {who}");
        let claimable = s.must(DEPLOYER, is, IS::claimableCall::new((who,)));
        assert_eq!(claimable, get(&s.m.claimable, who), "claimable by {who}");
        let owed = s.must(DEPLOYER, dr, DR::owedCall::new((who,)));
        assert_eq!(owed, get(&s.m.owed, who), "owed to {who}");
    }
    for (key, staked) in s.m.stakes.clone() {
        let subject = u(key.2 as u128);
        let call = Staking::stakeOfCall::new((key.0, key.1, subject));
        assert_eq!(s.must(DEPLOYER, st, call), staked, "stake {key:?}");
        let pending = s.m.pending.get(&key).map_or(Z, |id| s.m.unbonding[id].1);
        let call = Staking::slashableOfCall::new((key.0, key.1, subject));
        assert_eq!(
            s.must(DEPLOYER, st, call),
            staked + pending,
            "slashable {key:?}"
        );
    }
    let batches = s.must(DEPLOYER, is, IS::batchCountCall {});
    assert_eq!(batches, U256::from(s.m.batches.len()));
    for consumer in CONSUMERS {
        for host in HOSTS {
            let a = s.must(DEPLOYER, is, IS::authorizationCall::new((consumer, host)));
            let key = (consumer, host);
            let (allowance, lowers_at, lower_to) =
                s.m.allowance.get(&key).copied().unwrap_or_default();
            assert_eq!(U256::from(a.allowance), allowance, "allowance {key:?}");
            assert_eq!(
                (a.lowersAt, U256::from(a.lowerTo)),
                (lowers_at, lower_to),
                "lowering {key:?}"
            );
            assert_eq!(
                a.lastSeq,
                s.m.seq.get(&key).copied().unwrap_or(0),
                "seq {key:?}"
            );
        }
    }
    let stats = s
        .stats
        .iter()
        .map(|(k, v)| (*k, (u64::from(v.0), u64::from(v.1))));
    (stats.collect(), s.slashed)
}

#[test]
fn open_is_conserved_by_every_action_of_random_runs() {
    let seeds: u64 = std::env::var("OPENLEDGER_CONSERVATION_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let mut stats: BTreeMap<Kind, (u64, u64)> = BTreeMap::new();
    let mut slashed = [Z; 3];
    for i in 0..seeds {
        let (tally, taken) = run(SEED.wrapping_add(i.wrapping_mul(0x9e37_79b9)));
        for (kind, (ok, failed)) in tally {
            let total = stats.entry(kind).or_default();
            (total.0, total.1) = (total.0 + ok, total.1 + failed);
        }
        for (sum, x) in slashed.iter_mut().zip(taken) {
            *sum += x;
        }
    }
    let s = Totals { stats, slashed };
    println!("{:<24} {:>6} {:>9}", "action", "ok", "reverted");
    for (kind, (ok, failed)) in &s.stats {
        println!("{kind:<24} {ok:>6} {failed:>9}");
    }
    let (ok, failed) = s.stats.values().fold((0, 0), |t, v| (t.0 + v.0, t.1 + v.1));
    println!("{:<24} {ok:>6} {failed:>9}", "all");
    // Every kind of action happened and often worked, and most actions did: a run where
    // everything reverts would conserve OPEN trivially.
    assert_eq!(s.stats.len(), 23, "every kind of action was tried");
    for (kind, &(ok, failed)) in &s.stats {
        let enough = ok >= 3 * seeds && ok * 4 >= failed;
        assert!(enough, "{kind}: {ok} succeeded, {failed} reverted");
    }
    assert!(ok >= 3 * failed, "{ok} succeeded, {failed} reverted");
    let slashed = s.slashed.map(|x| x / u(OPEN));
    println!("OPEN slashed by batch rulings, contribution rulings, governance: {slashed:?}");
    assert!(
        slashed.iter().all(|x| !x.is_zero()),
        "every way of slashing took stake"
    );
}
