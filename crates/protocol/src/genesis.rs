//! The OPEN allocations at genesis: the published split, with the locked shares held by
//! `OpenVesting` wallets placed in the genesis state.
//!
//! A wallet's runtime code and storage come from running its real creation code on revm, so the
//! genesis holds exactly what deploying it would have produced, without a deployment
//! transaction (which would need OPEN that genesis has not yet created).

use crate::vesting::OpenVesting;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolConstructor;
use openledger_genesis::genesis::{allocation_address, Genesis, GenesisAccount};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::result::{ExecutionResult, Output},
    database::{CacheDB, EmptyDB},
    primitives::hardfork::SpecId,
    Context, ExecuteCommitEvm, MainBuilder, MainContext,
};

/// Seconds in the months of the vesting schedule (30-day months).
pub const MONTH: u64 = 30 * 24 * 3600;

/// One allocation of the published split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The allocation's name, which also fixes its genesis address.
    pub name: &'static str,
    /// Share of the supply in hundredths of a percent (51.71% = 5171).
    pub share_bp: u32,
    /// Months from genesis until release starts (the cliff), and months of linear release;
    /// `None` for an allocation that is free at genesis.
    pub vesting: Option<(u64, u64)>,
}

/// The published split: community 51.71%, ecosystem 10%, investors 18.29%, team 15%,
/// liquidity 5%. Team and investors: 12-month cliff then 36 months linear; community and
/// ecosystem: 48 months linear from genesis (to the treasury); liquidity: free at genesis.
pub const ALLOCATIONS: [Allocation; 5] = [
    Allocation {
        name: "community",
        share_bp: 5171,
        vesting: Some((0, 48)),
    },
    Allocation {
        name: "ecosystem",
        share_bp: 1000,
        vesting: Some((0, 48)),
    },
    Allocation {
        name: "investors",
        share_bp: 1829,
        vesting: Some((12, 36)),
    },
    Allocation {
        name: "team",
        share_bp: 1500,
        vesting: Some((12, 36)),
    },
    Allocation {
        name: "liquidity",
        share_bp: 500,
        vesting: None,
    },
];

/// Who receives each vesting allocation's releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beneficiaries {
    /// Receives community and ecosystem releases (governance's treasury).
    pub treasury: Address,
    pub investors: Address,
    pub team: Address,
}

impl Beneficiaries {
    fn of(&self, allocation: &str) -> Address {
        match allocation {
            "investors" => self.investors,
            "team" => self.team,
            _ => self.treasury,
        }
    }
}

/// When the dev chain's genesis happened (2026-01-01T00:00:00Z): fixed, so that the dev genesis
/// is the same on every start, and in the past, so that its vesting schedules are under way.
pub const DEV_GENESIS_TIME: u64 = 1_767_225_600;

/// OPEN the dev deployer receives at genesis (from the community allocation) to pay for
/// deploying the protocol.
pub const DEV_DEPLOYER_BALANCE: u128 = 100 * 1_000_000_000_000_000_000;

/// The account that deploys the protocol on the dev network: the eleventh key of the dev
/// mnemonic, so that it never competes for nonces with the ten dev accounts people use.
pub fn dev_deployer() -> openledger_genesis::devkeys::DevKey {
    let mut keys = openledger_genesis::devkeys::derive_accounts(
        openledger_genesis::devkeys::DEV_MNEMONIC,
        openledger_genesis::devkeys::DEV_ACCOUNT_COUNT + 1,
    );
    keys.pop().expect("one key past the dev accounts")
}

/// The account a dev node hosts agents as: the twelfth key of the dev mnemonic, apart from
/// the ten dev accounts (whose nonces belong to the people using them) and the deployer. It
/// starts without OPEN: fund it and stake it as a host.
pub fn dev_host() -> openledger_genesis::devkeys::DevKey {
    let mut keys = openledger_genesis::devkeys::derive_accounts(
        openledger_genesis::devkeys::DEV_MNEMONIC,
        openledger_genesis::devkeys::DEV_ACCOUNT_COUNT + 2,
    );
    keys.pop().expect("two keys past the dev accounts")
}

/// The dev network's genesis: [`Genesis::dev`] at [`DEV_GENESIS_TIME`] with the vesting
/// allocations in `OpenVesting` wallets. The treasury is the governance timelock that the dev
/// deployer's first transaction creates (see [`crate::deploy::plan`]), so community and
/// ecosystem releases reach governance; dev accounts 8 and 9 receive the investor and team
/// releases, so that releases can be tried from a wallet.
pub fn dev_genesis() -> Genesis {
    let dev = openledger_genesis::devkeys::dev_accounts();
    let deployer = dev_deployer().address;
    let mut genesis = Genesis::dev();
    genesis.timestamp = DEV_GENESIS_TIME;
    let community = genesis
        .alloc
        .get_mut(&allocation_address("community"))
        .expect("the dev genesis has a community allocation");
    community.balance -= U256::from(DEV_DEPLOYER_BALANCE);
    genesis.alloc.insert(
        deployer,
        GenesisAccount {
            balance: U256::from(DEV_DEPLOYER_BALANCE),
            ..Default::default()
        },
    );
    place_vesting(
        &mut genesis,
        Beneficiaries {
            treasury: crate::deploy::timelock_address(deployer, 0),
            investors: dev[8].address,
            team: dev[9].address,
        },
    )
    .expect("the dev genesis holds every allocation");
    genesis
}

/// Why the vesting wallets could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis has no {0} allocation at {1}")]
    MissingAllocation(&'static str, Address),
    #[error("creating the {0} vesting wallet failed: {1}")]
    Creation(&'static str, String),
}

/// Turns the vesting allocations of `genesis` (at their [`allocation_address`]es, as in
/// [`Genesis::dev`]) into `OpenVesting` wallets that keep their balances and release from
/// `genesis.timestamp`.
pub fn place_vesting(
    genesis: &mut Genesis,
    beneficiaries: Beneficiaries,
) -> Result<(), GenesisError> {
    for allocation in ALLOCATIONS {
        let Some((cliff_months, release_months)) = allocation.vesting else {
            continue;
        };
        let address = allocation_address(allocation.name);
        let balance = genesis
            .alloc
            .get(&address)
            .ok_or(GenesisError::MissingAllocation(allocation.name, address))?
            .balance;
        let args = OpenVesting::constructorCall {
            beneficiary: beneficiaries.of(allocation.name),
            releaseStart: genesis.timestamp + cliff_months * MONTH,
            releaseSeconds: release_months * MONTH,
        };
        let (code, storage) = created_state(&args.abi_encode())
            .map_err(|e| GenesisError::Creation(allocation.name, e))?;
        genesis.alloc.insert(
            address,
            GenesisAccount {
                balance,
                nonce: 1,
                code: Some(code),
                storage,
            },
        );
    }
    Ok(())
}

/// Runs `OpenVesting`'s creation code with `args` and returns the runtime code and storage it
/// leaves behind.
fn created_state(args: &[u8]) -> Result<(Bytes, std::collections::BTreeMap<B256, B256>), String> {
    let mut db = CacheDB::new(EmptyDB::default());
    let creator = Address::with_last_byte(1);
    let result = Context::mainnet()
        .with_cfg(CfgEnv::new_with_spec(SpecId::PRAGUE))
        .with_block(BlockEnv::default())
        .with_db(&mut db)
        .build_mainnet()
        .transact_commit(TxEnv {
            caller: creator,
            kind: alloy_primitives::TxKind::Create,
            data: [OpenVesting::BYTECODE.as_ref(), args].concat().into(),
            gas_limit: 10_000_000,
            gas_price: 0,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    let ExecutionResult::Success {
        output: Output::Create(_, Some(created)),
        ..
    } = result
    else {
        return Err(format!("{result:?}"));
    };
    let account = db
        .cache
        .accounts
        .get(&created)
        .ok_or("created account missing")?;
    let code = account
        .info
        .code
        .as_ref()
        .map(|c| c.original_bytes())
        .ok_or("created account has no code")?;
    let storage = account
        .storage
        .iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(k, v)| (B256::from(*k), B256::from(*v)))
        .collect();
    Ok((code, storage))
}

/// How much of `allocation` (of `total` wei) has vested at `time`, for a genesis at `genesis`.
pub fn vested(allocation: &Allocation, total: U256, genesis: u64, time: u64) -> U256 {
    match allocation.vesting {
        None => total,
        Some((cliff, months)) => {
            let start = genesis + cliff * MONTH;
            let length = months * MONTH;
            if time < start {
                U256::ZERO
            } else if time >= start + length {
                total
            } else {
                total * U256::from(time - start) / U256::from(length)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_adds_up_to_the_whole_supply() {
        assert_eq!(ALLOCATIONS.iter().map(|a| a.share_bp).sum::<u32>(), 10_000);
    }

    #[test]
    fn vesting_is_zero_through_the_cliff_second_and_whole_at_the_end() {
        let team = ALLOCATIONS.iter().find(|a| a.name == "team").unwrap();
        let total = U256::from(36_000u64);
        let start = 1_000 + 12 * MONTH;
        assert_eq!(vested(team, total, 1_000, start - 1), U256::ZERO);
        assert_eq!(vested(team, total, 1_000, start), U256::ZERO);
        assert_eq!(vested(team, total, 1_000, start + MONTH), U256::from(1_000));
        assert_eq!(vested(team, total, 1_000, start + 36 * MONTH), total);
        let liquidity = ALLOCATIONS.iter().find(|a| a.name == "liquidity").unwrap();
        assert_eq!(vested(liquidity, total, 1_000, 0), total);
    }
}
