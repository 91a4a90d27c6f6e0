//! InferenceSettlement on revm, deployed by the deployment plan: credit, per-host
//! authorisation and the delayed withdrawal; every way a batch can be refused (with the exact
//! custom error, and no state changed); the attacks the contract exists to stop, each one a
//! test; the escrow, its release to every role down to the rounding wei, challenges and their
//! rulings, refunds; and the gas of large batches.

#[path = "../evm/mod.rs"]
mod evm;

use alloy_primitives::{keccak256, Address, Bytes, Log, B256, U256};
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry as DR,
    deploy::{Addresses, DeployConfig},
    inference_settlement::{
        pack_receipts,
        InferenceSettlement::{
            self as IS, ContributionPayout, Debit, InferenceSettlementErrors as E, OwnerPayout,
            Receipt,
        },
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
/// Agents 1 and 3 are MODEL_A's on adapter 1, agent 2 MODEL_B's on adapter 2; 1 and 2 run on
/// HOST, 3 on HOST2. Agent 4 names HOST, which never accepted it.
const AGENT_A: u64 = 1;
const AGENT_B: u64 = 2;
const AGENT_HOST2: u64 = 3;
const AGENT_UNACCEPTED: u64 = 4;
/// Agent prices, wei per 1,000 input and output tokens.
const PRICE_IN: u128 = 1_000_000;
const PRICE_OUT: u128 = 3_000_000;
/// Contributions: 1 (CONTRIB) and 2 (CONTRIB2) accepted in datanet 1, 3 (CONTRIB) accepted
/// there and then found poisoned, 4 (CONTRIB2) accepted in datanet 2. Version 1 holds 1, 2, 3;
/// version 2 holds 4. Adapter 1 was trained on version 1, adapter 2 on versions 1 and 2.
/// Contributions 1 and 2 are proven part of adapter 1's lineage.
const C1: u64 = 1;
const C2: u64 = 2;
const C_POISONED: u64 = 3;
const C_OTHER: u64 = 4;

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

fn h(s: &str) -> B256 {
    keccak256(s.as_bytes())
}

/// Credits packed as the contract reads them: (position in the batch's list, weight in bps).
fn credits(list: &[(u16, u16)]) -> Bytes {
    list.iter()
        .flat_map(|(p, w)| [p.to_be_bytes(), w.to_be_bytes()].concat())
        .collect::<Vec<u8>>()
        .into()
}

/// A receipt for `tokens` (input, output) at `fee`, crediting `credit`.
fn receipt(
    consumer: Address,
    agent: u64,
    seq: u64,
    tokens: (u32, u32),
    fee: u128,
    credit: &[(u16, u16)],
) -> Receipt {
    Receipt {
        consumer,
        agentId: agent,
        seq,
        inputTokens: tokens.0,
        outputTokens: tokens.1,
        fee,
        attributionHash: keccak256(format!("{consumer} {agent} {seq}")),
        credits: credits(credit),
    }
}

/// The most a receipt for `tokens` may charge at the agents' prices.
fn max_fee(tokens: (u32, u32)) -> u128 {
    (tokens.0 as u128 * PRICE_IN + tokens.1 as u128 * PRICE_OUT) / 1000
}

fn fees(receipts: &[Receipt]) -> U256 {
    receipts.iter().map(|r| U256::from(r.fee)).sum()
}

/// The leaf the contract hashes, spelled out as eight 32-byte words so the test does not lean
/// on the same encoder.
fn leaf(r: &Receipt) -> B256 {
    let mut words = [0u8; 256];
    words[12..32].copy_from_slice(r.consumer.as_slice());
    words[56..64].copy_from_slice(&r.agentId.to_be_bytes());
    words[88..96].copy_from_slice(&r.seq.to_be_bytes());
    words[124..128].copy_from_slice(&r.inputTokens.to_be_bytes());
    words[156..160].copy_from_slice(&r.outputTokens.to_be_bytes());
    words[176..192].copy_from_slice(&r.fee.to_be_bytes());
    words[192..224].copy_from_slice(r.attributionHash.as_slice());
    words[224..].copy_from_slice(keccak256(&r.credits).as_slice());
    keccak256(keccak256(words))
}

fn pair(a: &B256, b: &B256) -> B256 {
    keccak256([a.min(b).as_slice(), a.max(b).as_slice()].concat())
}

/// Every level of the Merkle tree over `leaves` (commutative pairs, an odd node moves up).
fn levels(leaves: Vec<B256>) -> Vec<Vec<B256>> {
    let mut all = vec![leaves];
    while all.last().unwrap().len() > 1 {
        let next = all
            .last()
            .unwrap()
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    pair(&c[0], &c[1])
                } else {
                    c[0]
                }
            })
            .collect();
        all.push(next);
    }
    all
}

fn root(leaves: Vec<B256>) -> B256 {
    levels(leaves).last().unwrap()[0]
}

/// The proof of leaf `i`: its siblings from the bottom up.
fn proof(leaves: Vec<B256>, mut i: usize) -> Vec<B256> {
    let mut out = Vec::new();
    for level in levels(leaves).iter().filter(|l| l.len() > 1) {
        let sibling = i ^ 1;
        if sibling < level.len() {
            out.push(level[sibling]);
        }
        i /= 2;
    }
    out
}

/// A datanet version leaf (the datanets crate's `merkle::leaf`).
fn version_leaf(id: u64, content: B256) -> B256 {
    let mut encoded = [0u8; 64];
    encoded[24..32].copy_from_slice(&id.to_be_bytes());
    encoded[32..].copy_from_slice(content.as_slice());
    keccak256(keccak256(encoded))
}

fn content(id: u64) -> B256 {
    h(&format!("record {id}"))
}

fn decode(data: &Bytes) -> E {
    E::abi_decode(data).unwrap_or_else(|e| panic!("not an InferenceSettlement error {data}: {e}"))
}

fn count_logs(logs: &[Log], signature: B256) -> usize {
    logs.iter()
        .filter(|l| l.topics().first() == Some(&signature))
        .count()
}

/// What `release` and `refundBatch` take, read off a settlement's events.
#[derive(Debug, Clone)]
struct Settled {
    id: U256,
    contributions: Vec<ContributionPayout>,
    owners: Vec<OwnerPayout>,
    host_share: U256,
    debits: Vec<Debit>,
    logs: Vec<Log>,
}

impl Settled {
    fn from_logs(id: U256, logs: Vec<Log>) -> Self {
        let mut s = Settled {
            id,
            contributions: vec![],
            owners: vec![],
            host_share: U256::ZERO,
            debits: vec![],
            logs: logs.clone(),
        };
        for log in &logs {
            if let Ok(p) = IS::BatchPayouts::decode_log_data(&log.data) {
                s.contributions = p.contributions;
                s.owners = p.owners;
                s.host_share = p.hostShare;
            }
            if let Ok(d) = IS::Debited::decode_log_data(&log.data) {
                s.debits.push(Debit {
                    consumer: d.consumer,
                    amount: d.amount.to(),
                });
            }
        }
        s
    }
}

struct World {
    evm: Evm,
    a: Addresses,
    is: Address,
    proposals: u32,
}

/// The dev deployment as described by the constants above, with consumers holding 10 OPEN of
/// credit each that authorised HOST for 5 OPEN (consumer 9 has no credit nor authorisation).
fn world() -> World {
    let funded: Vec<Address> = [
        DEPLOYER, HOST, HOST2, DATA_OWNER, CONTRIB, CONTRIB2, CURATOR,
    ]
    .into_iter()
    .chain([
        CURATOR2, MODEL_A, MODEL_B, VALIDATOR, VALIDATOR2, OUTSIDER, GOV,
    ])
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
    let mut w = World {
        evm,
        a,
        is: a.inference_settlement,
        proposals: 0,
    };
    w.stake(GOV, 0, 0, open(300));
    w.datanets();
    w.models();
    w.stake(VALIDATOR, 0, 0, open(100));
    w.stake(VALIDATOR2, 0, 0, open(100));
    for i in 0..9 {
        w.deposit(consumer(i), open(10));
        w.authorize(consumer(i), HOST, open(5));
    }
    for id in [C1, C2] {
        w.prove(1, 1, id);
    }
    w
}

/// Each role's share of `fee` by the split, in bps.
fn bps(amount: U256, part: u64) -> U256 {
    amount * u(part) / u(10_000)
}

fn challenge_call(id: U256) -> Vec<u8> {
    IS::challengeCall::new((id, h("evidence"))).abi_encode()
}

mod attacks;
mod batches;
mod challenges;
mod gas;
mod knowledge;
mod world;
