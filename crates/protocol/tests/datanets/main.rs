//! DatanetRegistry on revm, deployed and wired as production does: datanet creation within the
//! quorum range, fee deposits, curator review and quorum, the rejected fee's split and claims,
//! versions with real Merkle proofs, and challenges ruled by governance with the slashing and
//! payouts they trigger.

#[path = "../evm/mod.rs"]
mod evm;

use alloy_primitives::{hex, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolError, SolEvent, SolInterface, SolValue};
use evm::{Evm, OPEN};
use openledger_protocol::{
    datanet_registry::DatanetRegistry::{self as Reg, DatanetRegistryErrors as E},
    deploy::{Addresses, DeployConfig},
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
const WITHDRAWN: u8 = 5;

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
        let (governor, config) = (self.a.governor, self.config.clone());
        let call = (self.a.datanet_registry, call.abi_encode());
        let description = format!("proposal {}", self.proposals);
        let execute = self
            .evm
            .pass_proposal(VOTER, governor, &config, call, description);
        self.evm.call(VOTER, governor, execute.into()).map(|_| ())
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

mod access;
mod challenges;
mod contributions;
