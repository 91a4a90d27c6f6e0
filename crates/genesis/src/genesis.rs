//! The genesis: chain parameters and the initial allocation of OPEN.
//!
//! OPEN is the native currency and nothing ever mints it, so a genesis is only valid when its
//! allocations add up to exactly [`TOTAL_SUPPLY`]. A genesis file is JSON or TOML; the built-in
//! dev genesis follows the published allocation split and funds the dev accounts out of the
//! community share.

use crate::devkeys::dev_accounts;
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use serde::{Deserialize, Deserializer};
use std::{collections::BTreeMap, path::Path};

/// 1,000,000,000 OPEN with 18 decimals: 10^27 wei.
pub const TOTAL_SUPPLY: U256 = U256::from_limbs([0x9fd0803ce8000000, 0x33b2e3c, 0, 0]);

/// One OPEN in wei.
pub const ONE_OPEN: u128 = 1_000_000_000_000_000_000;

/// The dev chain's id.
pub const DEV_CHAIN_ID: u64 = 1612;

/// What each dev account receives from the community allocation.
pub const DEV_ACCOUNT_BALANCE: u128 = 10_000 * ONE_OPEN;

/// Why a genesis could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("genesis file {path} is not valid {format}: {message}")]
    Parse {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error(
        "genesis allocations add up to {total} wei, but they must be exactly 10^27 wei \
         (1,000,000,000 OPEN): {difference}"
    )]
    WrongSupply { total: U256, difference: String },
    #[error("genesis allocations overflow 256 bits")]
    Overflow,
    #[error("genesis gasLimit must be at least 21000, got {0}")]
    GasLimit(u64),
    #[error("genesis baseFeeMaxChangeDenominator and elasticityMultiplier must be non-zero")]
    BaseFeeParams,
}

/// An account as the genesis creates it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    #[serde(deserialize_with = "de_u256")]
    pub balance: U256,
    #[serde(default)]
    pub nonce: u64,
    #[serde(default)]
    pub code: Option<Bytes>,
    #[serde(default)]
    pub storage: BTreeMap<B256, B256>,
}

/// Chain parameters and the initial state.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: u64,
    #[serde(default)]
    pub timestamp: u64,
    #[serde(default = "default_gas_limit")]
    pub gas_limit: u64,
    #[serde(default = "default_base_fee")]
    pub base_fee_per_gas: u64,
    /// The base fee never falls below this, so that fees keep a floor on an idle chain.
    #[serde(default = "default_min_base_fee")]
    pub min_base_fee_per_gas: u64,
    /// EIP-1559 parameters; the defaults are the OP Stack's (elasticity 6, denominator 250),
    /// which move the fee gently on a chain with one-second blocks.
    #[serde(default = "default_denominator")]
    pub base_fee_max_change_denominator: u64,
    #[serde(default = "default_elasticity")]
    pub elasticity_multiplier: u64,
    /// Where every fee goes: base fee and priority fee are both credited here, never burned.
    pub fee_vault: Address,
    pub alloc: BTreeMap<Address, GenesisAccount>,
}

fn default_gas_limit() -> u64 {
    300_000_000
}
fn default_base_fee() -> u64 {
    1_000_000_000
}
fn default_min_base_fee() -> u64 {
    100_000_000
}
fn default_denominator() -> u64 {
    250
}
fn default_elasticity() -> u64 {
    6
}

fn de_u256<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(U256::from(n)),
        Raw::Str(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => U256::from_str_radix(hex, 16),
                None => U256::from_str_radix(&s.replace('_', ""), 10),
            };
            parsed.map_err(|e| serde::de::Error::custom(format!("bad balance {s:?}: {e}")))
        }
    }
}

/// A well-known address for a named allocation holder, until the protocol contracts that will
/// hold them are deployed at genesis.
pub fn allocation_address(name: &str) -> Address {
    Address::from_slice(&keccak256(format!("openledger.allocation.{name}"))[12..])
}

impl Genesis {
    /// Reads a genesis from a `.json` or `.toml` file and validates it.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: shown.clone(),
            source,
        })?;
        let genesis: Genesis = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| GenesisError::Parse {
                path: shown,
                format: "TOML",
                message: e.to_string(),
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| GenesisError::Parse {
                path: shown,
                format: "JSON",
                message: e.to_string(),
            })?
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// Checks the supply rule and the chain parameters.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let mut total = U256::ZERO;
        for account in self.alloc.values() {
            total = total
                .checked_add(account.balance)
                .ok_or(GenesisError::Overflow)?;
        }
        if total != TOTAL_SUPPLY {
            let difference = if total > TOTAL_SUPPLY {
                format!("{} wei too many", total - TOTAL_SUPPLY)
            } else {
                format!("{} wei missing", TOTAL_SUPPLY - total)
            };
            return Err(GenesisError::WrongSupply { total, difference });
        }
        if self.gas_limit < 21_000 {
            return Err(GenesisError::GasLimit(self.gas_limit));
        }
        if self.base_fee_max_change_denominator == 0 || self.elasticity_multiplier == 0 {
            return Err(GenesisError::BaseFeeParams);
        }
        Ok(())
    }

    /// The built-in dev genesis: the published allocation split (community 51.71%, ecosystem
    /// 10%, investors 18.29%, team 15%, liquidity 5%), with the ten dev accounts funded out of
    /// the community share.
    pub fn dev() -> Self {
        let open = |n: u128| U256::from(n) * U256::from(ONE_OPEN);
        let dev = dev_accounts();
        let dev_total = U256::from(DEV_ACCOUNT_BALANCE) * U256::from(dev.len());
        let mut alloc = BTreeMap::new();
        let mut put = |address: Address, balance: U256| {
            alloc.insert(
                address,
                GenesisAccount {
                    balance,
                    ..Default::default()
                },
            );
        };
        put(
            allocation_address("community"),
            open(517_100_000) - dev_total,
        );
        put(allocation_address("ecosystem"), open(100_000_000));
        put(allocation_address("investors"), open(182_900_000));
        put(allocation_address("team"), open(150_000_000));
        put(allocation_address("liquidity"), open(50_000_000));
        for account in &dev {
            put(account.address, U256::from(DEV_ACCOUNT_BALANCE));
        }
        let genesis = Genesis {
            chain_id: DEV_CHAIN_ID,
            timestamp: 0,
            gas_limit: default_gas_limit(),
            base_fee_per_gas: default_base_fee(),
            min_base_fee_per_gas: default_min_base_fee(),
            base_fee_max_change_denominator: default_denominator(),
            elasticity_multiplier: default_elasticity(),
            fee_vault: allocation_address("fee-vault"),
            alloc,
        };
        debug_assert!(genesis.validate().is_ok());
        genesis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_supply_constant_is_ten_to_the_27() {
        assert_eq!(TOTAL_SUPPLY, U256::from(10u64).pow(U256::from(27)));
    }

    #[test]
    fn dev_genesis_is_valid_and_funds_dev_accounts() {
        let genesis = Genesis::dev();
        genesis.validate().unwrap();
        for account in dev_accounts() {
            assert_eq!(
                genesis.alloc[&account.address].balance,
                U256::from(DEV_ACCOUNT_BALANCE)
            );
        }
    }

    #[test]
    fn loads_json_and_toml_and_rejects_a_wrong_supply() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("g.json");
        std::fs::write(
            &json,
            r#"{"chainId": 7, "feeVault": "0x00000000000000000000000000000000000000fe",
                "alloc": {"0x0000000000000000000000000000000000000001":
                          {"balance": "1000000000000000000000000000"}}}"#,
        )
        .unwrap();
        let g = Genesis::load(&json).unwrap();
        assert_eq!(g.chain_id, 7);

        let toml_path = dir.path().join("g.toml");
        std::fs::write(
            &toml_path,
            "chainId = 9\nfeeVault = \"0x00000000000000000000000000000000000000fe\"\n\
             [alloc.0x0000000000000000000000000000000000000001]\nbalance = \"0x33b2e3c9fd0803ce8000000\"\n",
        )
        .unwrap();
        assert_eq!(Genesis::load(&toml_path).unwrap().chain_id, 9);

        std::fs::write(
            &json,
            r#"{"chainId": 7, "feeVault": "0x00000000000000000000000000000000000000fe",
                "alloc": {"0x0000000000000000000000000000000000000001": {"balance": "5"}}}"#,
        )
        .unwrap();
        let err = Genesis::load(&json).unwrap_err().to_string();
        assert!(err.contains("must be exactly 10^27 wei"), "{err}");
        assert!(err.contains("missing"), "{err}");
    }
}
