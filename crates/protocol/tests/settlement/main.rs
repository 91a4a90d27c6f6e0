//! InferenceSettlement on revm, deployed by the deployment plan: prepaid credit and its delayed
//! withdrawal, every way a batch can be refused (with the exact custom error, and no state
//! changed), the fee split of a correct batch down to the rounding wei, its events and its
//! receipts' Merkle root, claims, challenges and their rulings, and the gas of a 100-receipt
//! batch.

#[path = "../evm/mod.rs"]
mod evm;

use alloy_primitives::{keccak256, Address, Bytes, Log, B256, U256};
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry as DR,
    deploy::{Addresses, DeployConfig},
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
    // Several rulings in a row take several proposals: an hour to rule on each challenge.
    let config = DeployConfig {
        ruling_period_secs: 3600,
        unbonding_delay_secs: 600 + 3600,
        ..DeployConfig::dev()
    };
    let a = evm.deploy_protocol(DEPLOYER, &config);
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
        let call = MR::registerAdapterCall::new((
            u(1),
            lineage,
            h("cfg"),
            h("lora"),
            h("manifest"),
            "".into(),
        ));
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
        let (gov, description) = (self.a.governor, format!("proposal {}", self.proposals));
        let config = DeployConfig::dev();
        self.evm
            .pass_proposal(GOV, gov, &config, (target, data), description)
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

mod batches;
mod challenges;
