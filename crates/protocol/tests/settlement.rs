//! InferenceSettlement on revm, deployed by the deployment plan: prepaid credit and its delayed
//! withdrawal, every way a batch can be refused (with the exact custom error, and no state
//! changed), the fee split of a correct batch down to the rounding wei, its events and its
//! receipts' Merkle root, claims, challenges and their rulings, and the gas of a 100-receipt
//! batch.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, Log, B256, U256};
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry as DR,
    deploy::{Addresses, DeployConfig},
    governor::OpenGovernor as G,
    inference_settlement::InferenceSettlement::{
        self as IS, InferenceSettlementErrors as E, Payout, Receipt,
    },
    model_registry::ModelRegistry as MR,
    staking::Staking,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const HOST: Address = Address::repeat_byte(0x40);
const HOST2: Address = Address::repeat_byte(0x41);
const DATA_OWNER: Address = Address::repeat_byte(0xd0);
const CONTRIB: Address = Address::repeat_byte(0xa0);
const CONTRIB2: Address = Address::repeat_byte(0xa1);
const CURATOR: Address = Address::repeat_byte(0xc0);
const CURATOR2: Address = Address::repeat_byte(0xc1);
const CURATOR3: Address = Address::repeat_byte(0xc2);
const MODEL_A: Address = Address::repeat_byte(0x5a);
const MODEL_B: Address = Address::repeat_byte(0x5b);
const VALIDATOR: Address = Address::repeat_byte(0x7a);
const VALIDATOR2: Address = Address::repeat_byte(0x7b);
const OUTSIDER: Address = Address::repeat_byte(0xee);
/// Holds enough staked OPEN to propose and pass proposals alone.
const GOV: Address = Address::repeat_byte(0x60);
/// The dev config's fee split (contributors, curators, model owner, host, treasury), in bps.
const SPLIT: [u64; 5] = [4000, 1000, 2500, 1500, 1000];
const WINDOW: u64 = 600;
/// Agents 1 and 3 are MODEL_A's, agent 2 MODEL_B's; 1 and 2 run on HOST, 3 on HOST2.
const AGENT_A: u64 = 1;
const AGENT_B: u64 = 2;
const AGENT_HOST2: u64 = 3;

/// The decoded custom error `$name` with these fields.
macro_rules! err {
    ($name:ident $(, $arg:expr)*) => {
        E::$name(<IS::$name as alloy_sol_types::SolError>::new(($($arg,)*)))
    };
}

/// Consumers in ascending address order, as a batch lists them.
fn consumer(i: u8) -> Address {
    Address::repeat_byte(0x10 + i)
}

fn u(n: u64) -> U256 {
    U256::from(n)
}

fn open(n: u128) -> U256 {
    U256::from(n * OPEN)
}

fn receipt(consumer: Address, agent: u64, fee: u128) -> Receipt {
    let hash = keccak256(format!("{consumer} {agent} {fee}"));
    (consumer, agent, fee, hash).into()
}

/// `total` divided evenly over `to`, the last taking the remainder.
fn spread(total: U256, to: &[Address]) -> Vec<Payout> {
    let each = total / U256::from(to.len());
    let last = total - each * U256::from(to.len() - 1);
    let amount = |i| if i + 1 == to.len() { last } else { each };
    to.iter()
        .enumerate()
        .map(|(i, a)| (*a, amount(i)).into())
        .collect()
}

fn bps(amount: U256, part: u64) -> U256 {
    amount * u(part) / u(10_000)
}

fn fees(receipts: &[Receipt]) -> U256 {
    receipts.iter().map(|r| U256::from(r.fee)).sum()
}

/// The leaf the contract hashes, spelled out as four 32-byte words so the test does not lean
/// on the same encoder.
fn leaf(r: &Receipt) -> B256 {
    let mut words = [0u8; 128];
    words[12..32].copy_from_slice(r.consumer.as_slice());
    words[56..64].copy_from_slice(&r.agentId.to_be_bytes());
    words[80..96].copy_from_slice(&r.fee.to_be_bytes());
    words[96..].copy_from_slice(r.receiptHash.as_slice());
    keccak256(keccak256(words))
}

fn merkle_root(receipts: &[Receipt]) -> B256 {
    let mut level: Vec<B256> = receipts.iter().map(leaf).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => keccak256([a.min(b).as_slice(), a.max(b).as_slice()].concat()),
                [odd] => *odd,
                _ => unreachable!(),
            })
            .collect();
    }
    level[0]
}

fn decode(data: &Bytes) -> E {
    E::abi_decode(data).unwrap_or_else(|e| panic!("not an InferenceSettlement error {data}: {e}"))
}

fn count_logs(logs: &[Log], signature: B256) -> usize {
    logs.iter()
        .filter(|l| l.topics().first() == Some(&signature))
        .count()
}

struct World {
    evm: Evm,
    a: Addresses,
    is: Address,
    proposals: u32,
}

/// The dev deployment with one datanet version, MODEL_A's base model and adapter 1, MODEL_B's
/// adapter 2, three agents, two staked hosts, two validators, and consumers without credit.
fn world() -> World {
    let funded: Vec<Address> = [DEPLOYER, HOST, HOST2, DATA_OWNER, CONTRIB, CURATOR, MODEL_A]
        .into_iter()
        .chain([MODEL_B, VALIDATOR, VALIDATOR2, OUTSIDER, GOV])
        .chain((0..10).map(consumer))
        .collect();
    let mut evm = Evm::new(&funded);
    let a = evm.deploy_protocol(DEPLOYER, &DeployConfig::dev());
    let (is, proposals) = (a.inference_settlement, 0);
    let mut w = World {
        evm,
        a,
        is,
        proposals,
    };
    let (dr, mr) = (a.datanet_registry, a.model_registry);
    let h = |s: &str| keccak256(s.as_bytes());
    w.ok(
        DATA_OWNER,
        dr,
        DR::createDatanetCall::new(("d".into(), h("schema"), 1, 0)),
    );
    w.stake(CURATOR, 1, 1, open(10));
    let contribute = DR::contributeCall::new((u(1), h("record"), 100, h("meta")));
    w.ok(CONTRIB, dr, contribute);
    w.ok(CURATOR, dr, DR::reviewCall::new((u(1), true, h("fine"))));
    let publish = DR::publishVersionCall::new((u(1), h("root"), 1, "v1".into()));
    w.ok(DATA_OWNER, dr, publish);
    let base = MR::registerBaseModelCall::new((h("base"), "hf://b".into(), "MIT".into()));
    w.ok(MODEL_A, mr, base);
    for owner in [MODEL_A, MODEL_B] {
        let lineage = vec![u(1)];
        let call = MR::registerAdapterCall::new((u(1), lineage, h("cfg"), h("lora"), "".into()));
        w.ok(owner, mr, call);
    }
    w.stake(HOST, 2, 0, open(120));
    w.stake(HOST2, 2, 0, open(50));
    for (owner, adapter, host) in [(MODEL_A, 1, HOST), (MODEL_B, 2, HOST), (MODEL_A, 1, HOST2)] {
        let call = MR::deployAgentCall::new((u(adapter), host, 1000, "".into()));
        w.ok(owner, mr, call);
    }
    w.stake(VALIDATOR, 0, 0, open(100));
    w.stake(VALIDATOR2, 0, 0, open(100));
    w.stake(GOV, 0, 0, open(300));
    w
}

impl World {
    /// A call that must succeed.
    fn ok<C: SolCall>(&mut self, from: Address, to: Address, call: C) -> C::Return {
        self.pay(from, to, call, U256::ZERO)
    }

    fn pay<C: SolCall>(&mut self, from: Address, to: Address, call: C, value: U256) -> C::Return {
        let (out, _) = self
            .evm
            .send(from, to, call.abi_encode().into(), value)
            .unwrap_or_else(|e| panic!("{} reverted: {e}", C::SIGNATURE));
        C::abi_decode_returns(&out).unwrap()
    }

    /// A read that leaves the clock where it was, so windows can be hit to the second.
    fn view<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        let t = self.evm.timestamp;
        let r = self.evm.sol(OUTSIDER, to, call).unwrap();
        self.evm.timestamp = t;
        r
    }

    fn stake(&mut self, who: Address, role: u8, subject: u64, amount: U256) {
        let call = Staking::stakeCall::new((role, u(subject)));
        self.pay(who, self.a.staking, call, amount);
    }

    fn deposit(&mut self, who: Address, amount: U256) {
        self.pay(who, self.is, IS::depositCall {}, amount);
    }

    fn credit(&mut self, who: Address) -> U256 {
        self.view(self.is, IS::creditOfCall::new((who,)))
    }

    fn claimable(&mut self, who: Address) -> U256 {
        self.view(self.is, IS::claimableCall::new((who,)))
    }

    fn host_stake(&mut self, host: Address) -> U256 {
        self.view(
            self.a.staking,
            Staking::stakeOfCall::new((host, 2, U256::ZERO)),
        )
    }

    fn batch(&mut self, id: U256) -> IS::Batch {
        self.view(self.is, IS::batchCall::new((id,)))
    }

    /// Votes a call by the timelock through the governor and returns the `execute` that makes
    /// it. (The harness cannot send from the timelock itself: EIP-3607 refuses senders with
    /// code.)
    fn proposal(&mut self, target: Address, data: Vec<u8>) -> Vec<u8> {
        self.proposals += 1;
        let description = format!("proposal {}", self.proposals);
        let hash = keccak256(description.as_bytes());
        let (targets, values, calldatas) = (vec![target], vec![U256::ZERO], vec![data.into()]);
        let gov = self.a.governor;
        let call = (
            targets.clone(),
            values.clone(),
            calldatas.clone(),
            description,
        );
        let id = self.ok(GOV, gov, G::proposeCall::new(call));
        self.evm.number += 1; // the dev voting delay
        self.ok(GOV, gov, G::castVoteCall::new((id, 1)));
        self.evm.number += 20; // the dev voting period
        let call = (targets.clone(), values.clone(), calldatas.clone(), hash);
        self.ok(GOV, gov, G::queueCall::new(call));
        self.evm.advance(60); // the dev timelock delay
        G::executeCall::new((targets, values, calldatas, hash)).abi_encode()
    }

    /// Has the timelock make `call` by passing a proposal.
    fn govern<C: SolCall>(&mut self, target: Address, call: C) {
        let execute = self.proposal(target, call.abi_encode());
        if let Err(e) = self.evm.call(GOV, self.a.governor, execute.into()) {
            panic!("{} by the timelock reverted: {e}", C::SIGNATURE);
        }
    }

    fn settle_call(r: &[Receipt], contributors: Vec<Payout>, curators: Vec<Payout>) -> Vec<u8> {
        IS::settleCall::new((r.to_vec(), contributors, curators)).abi_encode()
    }

    fn settle(
        &mut self,
        host: Address,
        r: &[Receipt],
        c: Vec<Payout>,
        k: Vec<Payout>,
    ) -> (U256, Vec<Log>) {
        let data = Self::settle_call(r, c, k);
        let (out, logs) = self
            .evm
            .call(host, self.is, data.into())
            .unwrap_or_else(|e| panic!("settle reverted: {:?}", decode(&e)));
        (IS::settleCall::abi_decode_returns(&out).unwrap(), logs)
    }

    /// Settles with the payouts the split asks for, spread over two contributors and curators.
    fn settle_ok(&mut self, host: Address, r: &[Receipt]) -> (U256, Vec<Log>) {
        let (c, k) = self.totals(fees(r));
        let (c, k) = (
            spread(c, &[CONTRIB, CONTRIB2]),
            spread(k, &[CURATOR, CURATOR2]),
        );
        self.settle(host, r, c, k)
    }

    fn totals(&mut self, fees: U256) -> (U256, U256) {
        let t = self.view(self.is, IS::payoutTotalsCall::new((fees,)));
        (t.contributors, t.curators)
    }

    /// Everything a failed call might have touched.
    fn snapshot(&mut self) -> Vec<String> {
        let t = self.evm.timestamp;
        let mut s = vec![];
        let people = [
            HOST, HOST2, CONTRIB, CONTRIB2, CURATOR, CURATOR2, CURATOR3, MODEL_A,
        ]
        .into_iter()
        .chain([MODEL_B, VALIDATOR, VALIDATOR2, OUTSIDER, self.a.timelock])
        .chain((0..10).map(consumer));
        for who in people {
            s.push(format!("{:?}", self.credit(who)));
            s.push(format!("{:?}", self.claimable(who)));
            let w = IS::creditWithdrawalCall::new((who,));
            s.push(format!("{:?}", self.view(self.is, w)));
            s.push(format!("{:?}", self.evm.balance(who)));
        }
        let count = self.view(self.is, IS::batchCountCall {});
        for id in 1..=count.to::<u64>() {
            s.push(format!("{:?}", self.batch(u(id))));
            let c = IS::challengeOfCall::new((u(id),));
            s.push(format!("{:?}", self.view(self.is, c)));
        }
        let (is, st) = (self.evm.balance(self.is), self.evm.balance(self.a.staking));
        s.push(format!(
            "{count} {is} {st} {}",
            self.view(self.is, IS::challengeBondCall {})
        ));
        s.push(format!(
            "{} {}",
            self.host_stake(HOST),
            self.host_stake(HOST2)
        ));
        self.evm.timestamp = t;
        s
    }

    /// Sends a call that must revert, checks that nothing changed, and returns its error.
    fn fails(&mut self, from: Address, to: Address, data: Vec<u8>, value: U256) -> E {
        let before = self.snapshot();
        let err = self
            .evm
            .send(from, to, data.into(), value)
            .expect_err("the call should revert");
        assert_eq!(self.snapshot(), before, "a reverted call changed state");
        decode(&err)
    }

    fn settle_fails(&mut self, host: Address, r: &[Receipt], c: Vec<Payout>, k: Vec<Payout>) -> E {
        self.fails(host, self.is, Self::settle_call(r, c, k), U256::ZERO)
    }

    /// Challenges batch `id`, posting the dev bond of 1 OPEN.
    fn challenge(&mut self, who: Address, id: U256) {
        self.pay(
            who,
            self.is,
            IS::challengeCall::new((id, B256::ZERO)),
            open(1),
        );
    }

    /// A governance call that must revert inside the timelock; returns the bubbled error.
    fn govern_fails(&mut self, data: Vec<u8>) -> E {
        let execute = self.proposal(self.is, data);
        self.fails(GOV, self.a.governor, execute, U256::ZERO)
    }
}

fn challenge(id: U256) -> Vec<u8> {
    IS::challengeCall::new((id, keccak256(b"evidence"))).abi_encode()
}

#[test]
fn credit_is_deposited_and_withdrawn_after_one_challenge_window() {
    let mut w = world();
    let (c0, c1) = (consumer(0), consumer(1));
    let deposit = IS::depositCall {}.abi_encode();
    assert_eq!(w.fails(c0, w.is, deposit, U256::ZERO), err!(ZeroAmount));
    w.deposit(c0, open(10));
    w.deposit(c0, open(2));
    assert_eq!(w.credit(c0), open(12));
    assert_eq!(w.evm.balance(w.is), open(12));

    let withdraw = IS::withdrawCreditCall {}.abi_encode();
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    let request = |amount: u128| IS::requestCreditWithdrawalCall::new((amount,));
    let err = w.fails(c0, w.is, request(0).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(ZeroAmount));
    // A new request replaces the old one, clock and all.
    w.ok(c0, w.is, request(OPEN));
    let asked_at = w.evm.timestamp;
    w.ok(c0, w.is, request(10 * OPEN));
    let ready_at = asked_at + WINDOW;
    let pending = w.view(w.is, IS::creditWithdrawalCall::new((c0,)));
    assert_eq!((pending.amount, pending.readyAt), (10 * OPEN, ready_at));

    // During the delay the credit still pays for inferences already served.
    w.settle_ok(HOST, &[receipt(c0, AGENT_A, 5 * OPEN)]);
    assert_eq!(w.credit(c0), open(7));
    w.evm.timestamp = ready_at - 1;
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(WithdrawalNotReady, ready_at));
    // At readyAt it pays what is left (7), not the 10 asked.
    let before = w.evm.balance(c0);
    w.evm.timestamp = ready_at;
    w.ok(c0, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c0) - before, open(7));
    assert_eq!(w.credit(c0), U256::ZERO);
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    // With nothing left to pay the withdrawal fails, and the request stays.
    w.ok(c0, w.is, request(OPEN));
    w.evm.advance(WINDOW);
    assert_eq!(w.fails(c0, w.is, withdraw, U256::ZERO), err!(ZeroAmount));

    // Asking for less than the credit pays exactly what was asked.
    w.deposit(c1, open(10));
    w.ok(c1, w.is, request(4 * OPEN));
    w.evm.advance(WINDOW);
    let before = w.evm.balance(c1);
    w.ok(c1, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c1) - before, open(4));
    assert_eq!(w.credit(c1), open(6));
    // The 5 OPEN settled stay in the contract as claimable payouts.
    assert_eq!(w.evm.balance(w.is), open(6 + 5));
}

#[test]
fn settle_refuses_bad_batches_with_their_error_and_changes_nothing() {
    let mut w = world();
    let (c0, c1, c2) = (consumer(0), consumer(1), consumer(2));
    w.deposit(c0, open(1));
    w.deposit(c1, open(1));
    let good = [receipt(c0, AGENT_A, 1000), receipt(c1, AGENT_B, 3000)];
    let (c, k) = w.totals(u(4000));
    let (cp, kp) = (spread(c, &[CONTRIB]), spread(k, &[CURATOR]));

    let err = w.settle_fails(OUTSIDER, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(HostNotStaked, OUTSIDER));
    // A validator stake does not make a host.
    let err = w.settle_fails(VALIDATOR, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(HostNotStaked, VALIDATOR));
    assert_eq!(w.settle_fails(HOST, &[], vec![], vec![]), err!(EmptyBatch));
    let swapped = [good[1].clone(), good[0].clone()];
    let err = w.settle_fails(HOST, &swapped, cp.clone(), kp.clone());
    assert_eq!(err, err!(ReceiptsNotGrouped, u(1)));
    // A consumer that comes back after another would be debited twice.
    let split_up = [good[0].clone(), good[1].clone(), receipt(c0, AGENT_A, 1)];
    let err = w.settle_fails(HOST, &split_up, vec![], vec![]);
    assert_eq!(err, err!(ReceiptsNotGrouped, u(2)));

    // Fees are summed per consumer before the credit check.
    let over = [
        receipt(c1, AGENT_A, OPEN / 2),
        receipt(c1, AGENT_B, OPEN / 2 + 1),
    ];
    let err = w.settle_fails(HOST, &over, vec![], vec![]);
    assert_eq!(err, err!(InsufficientCredit, c1, open(1), open(1) + u(1)));
    let r = [good[0].clone(), receipt(c2, AGENT_A, 5)];
    let err = w.settle_fails(HOST, &r, vec![], vec![]);
    assert_eq!(err, err!(InsufficientCredit, c2, U256::ZERO, u(5)));

    let err = w.settle_fails(HOST2, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(NotAgentHost, u(AGENT_A), HOST2));
    let mixed = [receipt(c0, AGENT_HOST2, 1000), receipt(c1, AGENT_B, 3000)];
    let err = w.settle_fails(HOST2, &mixed, cp.clone(), kp.clone());
    assert_eq!(err, err!(NotAgentHost, u(AGENT_B), HOST2));

    // Agents that do not exist: 0 (ids start at 1), first or later in the batch, and 99.
    for (first, second, unknown) in [(0, AGENT_B, 0), (AGENT_B, 0, 0), (99, AGENT_B, 99)] {
        let r = [receipt(c0, first, 1000), receipt(c1, second, 3000)];
        let err = w.settle_fails(HOST, &r, cp.clone(), kp.clone());
        assert_eq!(err, err!(AgentNotServable, u(unknown)));
    }
    let pause = |active| MR::updateAgentCall::new((u(AGENT_B), active, 1000));
    w.ok(MODEL_B, w.a.model_registry, pause(false));
    let err = w.settle_fails(HOST, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(AgentNotServable, u(AGENT_B)));
    w.ok(MODEL_B, w.a.model_registry, pause(true));
    let status = |status| MR::setAdapterStatusCall::new((u(1), status));
    w.govern(w.a.model_registry, status(3)); // Retired
    let err = w.settle_fails(HOST, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(AgentNotServable, u(AGENT_A)));
    w.govern(w.a.model_registry, status(2)); // Endorsed

    // One wei too little or too much, for each role (0 contributors, 1 curators).
    for more in [false, true] {
        let shift = |x: U256| if more { x + u(1) } else { x - u(1) };
        let err = w.settle_fails(HOST, &good, spread(shift(c), &[CONTRIB]), kp.clone());
        assert_eq!(err, err!(ShareMismatch, 0, c, shift(c)));
        let err = w.settle_fails(HOST, &good, cp.clone(), spread(shift(k), &[CURATOR]));
        assert_eq!(err, err!(ShareMismatch, 1, k, shift(k)));
    }
    let err = w.settle_fails(HOST, &good, vec![], kp.clone());
    assert_eq!(err, err!(ShareMismatch, 0, c, U256::ZERO));

    // After all that, the same batch goes through.
    let (id, _) = w.settle(HOST, &good, cp, kp);
    assert_eq!(id, u(1));
}

#[test]
fn a_batch_pays_each_role_its_rounded_share_and_the_treasury_the_rest() {
    let mut w = world();
    let (c0, c1, treasury) = (consumer(0), consumer(1), w.a.timelock);
    w.deposit(c0, open(1));
    w.deposit(c1, u(10));
    // Owner A's agent, then B's, then A's again: 1002 wei for each owner, 2004 in all.
    let r = [
        receipt(c0, AGENT_A, 1001),
        receipt(c0, AGENT_B, 1002),
        receipt(c1, AGENT_A, 1),
    ];
    let total = fees(&r);
    assert_eq!(total, u(2004));
    let (c, k) = w.totals(total);
    // 40% of 2004 is 801.6 and 10% is 200.4: both round down.
    assert_eq!((c, k), (u(801), u(200)));
    assert_eq!((c, k), (bps(total, SPLIT[0]), bps(total, SPLIT[1])));
    let cp = vec![
        Payout::from((CONTRIB, u(500))),
        Payout::from((CONTRIB2, u(301))),
    ];
    let kp = vec![
        Payout::from((CURATOR, u(199))),
        Payout::from((CURATOR2, u(1))),
    ];
    let credit_before = [w.credit(c0), w.credit(c1)];
    let (id, logs) = w.settle(HOST, &r, cp, kp);

    // The model share is rounded per owner, 250.5 → 250 twice, so the owners get 500 where
    // 25% of the whole batch would round to 501.
    assert_eq!(bps(total, SPLIT[2]), u(501));
    let expected = [
        (CONTRIB, 500),
        (CONTRIB2, 301),
        (CURATOR, 199),
        (CURATOR2, 1),
        (MODEL_A, 250),
        (MODEL_B, 250),
        (HOST, 300), // 300.6
        // 2004 − 801 − 200 − 500 − 300: the nominal 200.4 plus every rounding remainder.
        (treasury, 203),
    ];
    for (who, amount) in expected {
        assert_eq!(w.claimable(who), u(amount), "{who}");
    }
    assert_eq!(u(expected.iter().map(|e| e.1).sum()), total);
    assert_eq!(credit_before[0] - w.credit(c0), u(2003));
    assert_eq!(credit_before[1] - w.credit(c1), u(1));

    assert_eq!(
        count_logs(&logs, IS::InferenceSettled::SIGNATURE_HASH),
        r.len()
    );
    let settled = logs
        .iter()
        .filter_map(|l| IS::InferenceSettled::decode_log(l).ok());
    for (e, r) in settled.zip(&r) {
        assert_eq!(
            (e.batchId, e.consumer, e.agentId),
            (id, r.consumer, u(r.agentId))
        );
        assert_eq!((e.fee, e.receiptHash), (U256::from(r.fee), r.receiptHash));
    }
    let e = logs
        .iter()
        .find_map(|l| IS::BatchSettled::decode_log(l).ok())
        .expect("a BatchSettled event");
    assert_eq!(
        (e.batchId, e.host, e.count, e.fees),
        (id, HOST, u(3), total)
    );
    assert_eq!(e.receiptsRoot, merkle_root(&r));
    let b = w.batch(id);
    assert_eq!((b.host, b.count, b.fees), (HOST, 3, 2004));
    assert_eq!(b.receiptsRoot, e.receiptsRoot);

    // Claims: anyone may trigger one, the OPEN goes to the account, and only once.
    let before = w.evm.balance(CONTRIB);
    w.ok(OUTSIDER, w.is, IS::claimCall::new((CONTRIB,)));
    assert_eq!(w.evm.balance(CONTRIB) - before, u(500));
    assert_eq!(w.claimable(CONTRIB), U256::ZERO);
    let again = IS::claimCall::new((CONTRIB,)).abi_encode();
    let err = w.fails(CONTRIB, w.is, again, U256::ZERO);
    assert_eq!(err, err!(NothingToClaim, CONTRIB));
    let before = w.evm.balance(treasury);
    w.ok(OUTSIDER, w.is, IS::claimCall::new((treasury,)));
    assert_eq!(w.evm.balance(treasury) - before, u(203));
    // Settling moved OPEN from credit to claimable inside the contract; only claims took it out.
    assert_eq!(w.evm.balance(w.is), open(1) + u(10) - u(500 + 203));
}

#[test]
fn the_stored_receipts_root_is_the_merkle_root_of_the_batch() {
    let mut w = world();
    for i in 0..4 {
        w.deposit(consumer(i), open(1));
    }
    for n in [1usize, 2, 3, 7] {
        // Consumers in ascending groups; fees and agents vary so every leaf differs.
        let r: Vec<Receipt> = (0..n)
            .map(|i| {
                let agent = if i % 3 == 0 { AGENT_B } else { AGENT_A };
                let fee = 1_000 + 37 * i as u128 + n as u128;
                receipt(consumer(i as u8 / 2), agent, fee)
            })
            .collect();
        let (id, logs) = w.settle_ok(HOST, &r);
        let stored = w.batch(id).receiptsRoot;
        assert_eq!(stored, merkle_root(&r), "batch of {n}");
        if n == 1 {
            assert_eq!(stored, leaf(&r[0]), "one receipt is its own root");
        }
        assert_eq!(count_logs(&logs, IS::InferenceSettled::SIGNATURE_HASH), n);
        assert_eq!(count_logs(&logs, IS::BatchSettled::SIGNATURE_HASH), 1);
    }
}

#[test]
fn challenges_need_a_validator_the_bond_and_an_open_window() {
    let mut w = world();
    w.deposit(consumer(0), open(1));
    let [b1, b2, b3] = [AGENT_A, AGENT_B, AGENT_A]
        .map(|agent| w.settle_ok(HOST, &[receipt(consumer(0), agent, 1000)]).0);
    let bond = open(1);
    for id in [U256::ZERO, u(4)] {
        let err = w.fails(VALIDATOR, w.is, challenge(id), bond);
        assert_eq!(err, err!(UnknownBatch, id));
    }
    let err = w.fails(OUTSIDER, w.is, challenge(b1), bond);
    assert_eq!(err, err!(NotValidator, OUTSIDER));
    // A host stake does not make a validator.
    let err = w.fails(HOST2, w.is, challenge(b1), bond);
    assert_eq!(err, err!(NotValidator, HOST2));
    for sent in [U256::ZERO, open(2)] {
        let err = w.fails(VALIDATOR, w.is, challenge(b1), sent);
        assert_eq!(err, err!(WrongBond, bond, sent));
    }

    // Only governance sets the bond.
    let set = |bond| IS::setChallengeBondCall::new((bond,));
    let err = w.fails(OUTSIDER, w.is, set(open(2)).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(OwnableUnauthorizedAccount, OUTSIDER));
    w.govern(w.is, set(open(2)));
    let err = w.fails(VALIDATOR, w.is, challenge(b1), bond);
    assert_eq!(err, err!(WrongBond, open(2), bond));
    w.govern(w.is, set(bond));

    let held = w.evm.balance(w.is);
    w.challenge(VALIDATOR, b2);
    assert_eq!(w.evm.balance(w.is) - held, bond);
    let ch = w.view(w.is, IS::challengeOfCall::new((b2,)));
    assert_eq!((ch.challenger, U256::from(ch.bond)), (VALIDATOR, bond));
    let err = w.fails(VALIDATOR2, w.is, challenge(b2), bond);
    assert_eq!(err, err!(AlreadyChallenged, b2));

    // The window's last second is still inside it; the next is not.
    w.evm.timestamp = w.batch(b1).submittedAt + WINDOW;
    w.challenge(VALIDATOR2, b1);
    let closed_at = w.batch(b3).submittedAt + WINDOW;
    w.evm.timestamp = closed_at + 1;
    let err = w.fails(VALIDATOR2, w.is, challenge(b3), bond);
    assert_eq!(err, err!(ChallengeWindowClosed, b3, closed_at));
}

#[test]
fn an_upheld_challenge_slashes_the_host_and_a_rejected_one_forfeits_the_bond() {
    let mut w = world();
    let total = w.evm.total_balance();
    let (bond, treasury) = (open(1), w.a.timelock);
    w.deposit(consumer(0), open(1));
    let (b1, _) = w.settle_ok(HOST, &[receipt(consumer(0), AGENT_A, 1000)]);
    let (b2, _) = w.settle_ok(HOST, &[receipt(consumer(0), AGENT_B, 1000)]);
    let (b3, _) = w.settle_ok(HOST2, &[receipt(consumer(0), AGENT_HOST2, 1000)]);
    for b in [b1, b2, b3] {
        w.challenge(VALIDATOR, b);
    }
    let resolve = |id: U256, upheld| IS::resolveChallengeCall::new((id, upheld));
    let err = w.fails(VALIDATOR, w.is, resolve(b1, true).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(OwnableUnauthorizedAccount, VALIDATOR));
    let err = w.govern_fails(resolve(u(9), true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, u(9)));

    // Upheld: the host loses the host minimum (50), a fifth credited to the challenger with
    // its bond (a challenger that refuses OPEN cannot block the ruling) and the rest to the
    // treasury.
    let before = (
        w.evm.balance(VALIDATOR),
        w.evm.balance(treasury),
        w.claimable(treasury),
    );
    w.govern(w.is, resolve(b1, true));
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(w.evm.balance(treasury) - before.1, open(40));
    assert_eq!(w.claimable(VALIDATOR), bond + open(10));
    assert_eq!(w.claimable(treasury), before.2);
    let ch = w.view(w.is, IS::challengeOfCall::new((b1,)));
    assert_eq!(ch.challenger, Address::ZERO);
    assert!(w.batch(b1).slashed);
    let err = w.govern_fails(resolve(b1, true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, b1));
    // One slash per batch: it cannot be challenged again.
    let err = w.fails(VALIDATOR2, w.is, challenge(b1), bond);
    assert_eq!(err, err!(AlreadySlashed, b1));

    // Rejected: the bond is the treasury's, and the host keeps its stake.
    let before = (w.evm.balance(VALIDATOR), w.claimable(treasury));
    w.govern(w.is, resolve(b2, false));
    assert_eq!(w.claimable(treasury) - before.1, bond);
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(
        w.claimable(VALIDATOR),
        bond + open(10),
        "only the upheld bond came back"
    );

    // A host staked at exactly the minimum loses it all and can no longer settle; asking to
    // unstake before the ruling does not save it, since unbonding stake is still slashable.
    let unstake = Staking::requestUnstakeCall::new((2, U256::ZERO, open(50)));
    w.evm.sol(HOST2, w.a.staking, unstake).unwrap();
    assert_eq!(w.host_stake(HOST2), U256::ZERO);
    let treasury_before = w.evm.balance(treasury);
    w.govern(w.is, resolve(b3, true));
    assert_eq!(w.evm.balance(treasury) - treasury_before, open(40));
    let slashable = Staking::slashableOfCall::new((HOST2, 2, U256::ZERO));
    assert_eq!(
        w.evm.sol(HOST2, w.a.staking, slashable).unwrap(),
        U256::ZERO
    );
    let r = [receipt(consumer(0), AGENT_HOST2, 1000)];
    let (c, k) = w.totals(u(1000));
    let err = w.settle_fails(HOST2, &r, spread(c, &[CONTRIB]), spread(k, &[CURATOR]));
    assert_eq!(err, err!(HostNotStaked, HOST2));
    assert_eq!(w.evm.total_balance(), total, "OPEN is conserved");
}

#[test]
fn settling_100_receipts_fits_the_gas_budget() {
    let mut w = world();
    for i in 0..10 {
        w.deposit(consumer(i), open(1));
    }
    let r: Vec<Receipt> = (0..100u128)
        .map(|i| receipt(consumer(i as u8 / 10), AGENT_A, 1_000_003 + 7919 * i))
        .collect();
    let contributors: Vec<Address> = (0..20)
        .map(|i| Address::left_padding_from(&[0xa5, i]))
        .collect();
    let (c, k) = w.totals(fees(&r));
    let (cp, kp) = (
        spread(c, &contributors),
        spread(k, &[CURATOR, CURATOR2, CURATOR3]),
    );
    let (id, logs) = w.settle(HOST, &r, cp, kp);
    let gas = w.evm.last_gas;
    println!(
        "settle: 100 receipts (10 consumers, 1 agent, 20 contributor and 3 curator payouts) \
         used {gas} gas, {} per receipt",
        gas / 100
    );
    assert!(gas < 2_000_000, "settle of 100 receipts used {gas} gas");
    assert_eq!(w.batch(id).receiptsRoot, merkle_root(&r));
    // One log per inference, one per credited account (20 + 3 + owner, host, treasury) and
    // the batch's.
    assert_eq!(logs.len(), 100 + 26 + 1);
}
