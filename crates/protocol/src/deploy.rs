//! How the protocol is deployed and wired: a fixed list of transactions from one deployer.
//!
//! Contract addresses follow from the deployer's address and nonce (CREATE), so the whole
//! deployment is known before anything is sent: [`plan`] returns the addresses and the
//! transactions, and any executor (the JSON-RPC client, the revm test harness) sends them in
//! order with consecutive nonces. A client can send them all at once and collect the receipts,
//! and the dev genesis can name the treasury (the timelock) before it exists.
//!
//! After the last step the deployer holds no role anywhere: the timelock owns the parameters
//! and registries, administers staking's slasher role and is the treasury; the governor is its
//! only proposer and canceller; anyone may execute a ready operation.

use crate::{
    protocol_params::ProtocolParams::FeeSplit, DatanetRegistry, InferenceSettlement, ModelFactory,
    ModelRegistry, OpenGovernor, OpenTimelock, ProtocolParams, Staking,
};
use alloy_primitives::{aliases::U48, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const OPEN: u128 = 1_000_000_000_000_000_000;

/// The protocol's contracts on one chain: what `openledger deploy` writes to its addresses file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addresses {
    pub chain_id: u64,
    /// Executes passed proposals; owns every parameter and is the treasury.
    pub timelock: Address,
    pub protocol_params: Address,
    pub staking: Address,
    pub governor: Address,
    pub datanet_registry: Address,
    pub model_registry: Address,
    pub inference_settlement: Address,
    /// Escrow of fine-tuning job fees.
    pub model_factory: Address,
}

impl Addresses {
    /// Each contract's name and address.
    pub fn contracts(&self) -> [(&'static str, Address); 8] {
        [
            ("OpenTimelock", self.timelock),
            ("ProtocolParams", self.protocol_params),
            ("Staking", self.staking),
            ("OpenGovernor", self.governor),
            ("DatanetRegistry", self.datanet_registry),
            ("ModelRegistry", self.model_registry),
            ("InferenceSettlement", self.inference_settlement),
            ("ModelFactory", self.model_factory),
        ]
    }

    /// Reads an addresses file written by [`Addresses::save`].
    pub fn load(path: &Path) -> Result<Self, AddressesError> {
        let text = std::fs::read_to_string(path).map_err(|source| AddressesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| AddressesError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the addresses as JSON, atomically: a crash leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), AddressesError> {
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            let text = serde_json::to_string_pretty(self).expect("addresses serialize");
            std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write(path).map_err(|source| AddressesError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Why an addresses file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AddressesError {
    #[error("cannot read the protocol addresses file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a protocol addresses file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the protocol addresses file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The initial settings of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    /// Contributors, curators, model owner, host, treasury, in basis points (sum 10,000).
    pub fee_split: [u16; 5],
    /// Minimum stakes in wei: validator, curator, host.
    pub min_stakes: [U256; 3],
    pub review_quorum: u16,
    pub challenge_window_secs: u64,
    /// Seconds governance has to rule on a challenge.
    pub ruling_period_secs: u64,
    /// Seconds a contribution waits for its curators before its contributor may withdraw it.
    pub review_period_secs: u64,
    /// At least the challenge window plus the ruling period (`ProtocolParams` refuses less).
    pub unbonding_delay_secs: u64,
    /// The successful challenger's share of a slash, in basis points.
    pub challenger_share_bps: u16,
    /// OPEN (wei) a challenger posts, for contributions and for settlement batches.
    pub challenge_bond: U256,
    pub timelock_delay_secs: u64,
    /// Seconds between a proposal and its vote (governance runs on timestamps).
    pub voting_delay_secs: u64,
    /// Seconds a vote stays open.
    pub voting_period_secs: u32,
    /// Voting power (wei of staked OPEN) needed to propose.
    pub proposal_threshold: U256,
    /// Percent of all staked OPEN that must vote for a proposal to pass.
    pub quorum_percent: u64,
    /// The least voting power (wei) a quorum ever is.
    pub quorum_floor: U256,
    /// Seconds a vote stays open after a quorum reached late.
    pub late_quorum_extension_secs: u64,
    /// Seconds a factory operator has to start a funded fine-tuning job, and to finish a
    /// started one, before its payer may reclaim the fee.
    pub job_start_timeout_secs: u64,
    pub job_run_timeout_secs: u64,
}

impl DeployConfig {
    /// Settings for a public network, with one-second blocks: a day's voting delay, a week's
    /// vote, two days in the timelock, a day to challenge and a week to unbond.
    pub fn mainnet() -> Self {
        Self {
            fee_split: [4000, 1000, 2500, 1500, 1000],
            min_stakes: [
                U256::from(10_000 * OPEN),
                U256::from(1_000 * OPEN),
                U256::from(5_000 * OPEN),
            ],
            review_quorum: 3,
            challenge_window_secs: 24 * 3600,
            // Governance's fastest ruling is a proposal's delay, vote, late-quorum extension
            // and timelock (1 + 7 + 1 + 2 days): two weeks leave room to act.
            ruling_period_secs: 14 * 24 * 3600,
            review_period_secs: 14 * 24 * 3600,
            unbonding_delay_secs: 21 * 24 * 3600,
            challenger_share_bps: 2000,
            challenge_bond: U256::from(100 * OPEN),
            timelock_delay_secs: 2 * 24 * 3600,
            voting_delay_secs: 24 * 3600,
            voting_period_secs: 7 * 24 * 3600,
            proposal_threshold: U256::from(10_000 * OPEN),
            quorum_percent: 4,
            quorum_floor: U256::from(100_000 * OPEN),
            late_quorum_extension_secs: 24 * 3600,
            job_start_timeout_secs: 7 * 24 * 3600,
            job_run_timeout_secs: 30 * 24 * 3600,
        }
    }

    /// Settings for the dev network, short enough to try every flow by hand: a one-second
    /// voting delay, a one-minute vote (30 s more after a late quorum), a quorum of at least
    /// 100 OPEN, a minute in the timelock, ten minutes to challenge and
    /// to rule, twenty to unbond, small stakes.
    pub fn dev() -> Self {
        Self {
            min_stakes: [
                U256::from(100 * OPEN),
                U256::from(10 * OPEN),
                U256::from(50 * OPEN),
            ],
            review_quorum: 1,
            challenge_window_secs: 600,
            ruling_period_secs: 600,
            review_period_secs: 600,
            unbonding_delay_secs: 1200,
            challenge_bond: U256::from(OPEN),
            timelock_delay_secs: 60,
            voting_delay_secs: 1,
            voting_period_secs: 60,
            proposal_threshold: U256::from(100 * OPEN),
            quorum_floor: U256::from(100 * OPEN),
            late_quorum_extension_secs: 30,
            job_start_timeout_secs: 600,
            job_run_timeout_secs: 3600,
            ..Self::mainnet()
        }
    }
}

/// One transaction of a deployment: a contract creation (`to` is `None`) or a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it does, for progress output and errors.
    pub label: &'static str,
    pub to: Option<Address>,
    pub input: Bytes,
    /// Enough gas for the step on any EVM with Prague's schedule (a test checks the margin).
    pub gas_limit: u64,
}

/// Where a deployment from `deployer` starting at `nonce` puts the timelock (the treasury).
pub fn timelock_address(deployer: Address, nonce: u64) -> Address {
    deployer.create(nonce)
}

/// `keccak256("SLASHER_ROLE")` and friends: the AccessControl roles the wiring grants.
fn role(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// The deployment from `deployer`, whose next nonce is `nonce`: the addresses it will create
/// and the transactions, to be sent in order with nonces `nonce`, `nonce + 1`, ….
pub fn plan(
    chain_id: u64,
    deployer: Address,
    nonce: u64,
    config: &DeployConfig,
) -> (Addresses, Vec<Step>) {
    let at = |i: u64| deployer.create(nonce + i);
    let addresses = Addresses {
        chain_id,
        timelock: at(0),
        protocol_params: at(1),
        staking: at(2),
        governor: at(3),
        datanet_registry: at(4),
        model_registry: at(5),
        inference_settlement: at(6),
        model_factory: at(7),
    };
    let a = addresses;
    let create = |label, code: &[u8], args: Vec<u8>, gas_limit| Step {
        label,
        to: None,
        input: [code, &args].concat().into(),
        gas_limit,
    };
    let call = |label, to, data: Vec<u8>| Step {
        label,
        to: Some(to),
        input: data.into(),
        gas_limit: 120_000,
    };
    let [contributors, curators, model_owner, host, treasury] = config.fee_split;
    let steps = vec![
        create(
            "create OpenTimelock",
            &OpenTimelock::BYTECODE,
            OpenTimelock::constructorCall {
                minDelay: U256::from(config.timelock_delay_secs),
                proposers: vec![],
                executors: vec![Address::ZERO],
                admin: deployer,
            }
            .abi_encode(),
            2_500_000,
        ),
        create(
            "create ProtocolParams",
            &ProtocolParams::BYTECODE,
            ProtocolParams::constructorCall {
                governance: a.timelock,
                split: FeeSplit {
                    contributors,
                    curators,
                    modelOwner: model_owner,
                    host,
                    treasury,
                },
                minStakes: config.min_stakes,
                quorum: config.review_quorum,
                challengeSeconds: config.challenge_window_secs,
                rulingSeconds: config.ruling_period_secs,
                unbondingSeconds: config.unbonding_delay_secs,
            }
            .abi_encode(),
            1_200_000,
        ),
        create(
            "create Staking",
            &Staking::BYTECODE,
            Staking::constructorCall {
                admin: deployer,
                governance: a.timelock,
                treasury_: a.timelock,
                params_: a.protocol_params,
                challengerShareBps_: config.challenger_share_bps,
            }
            .abi_encode(),
            3_500_000,
        ),
        create(
            "create OpenGovernor",
            &OpenGovernor::BYTECODE,
            OpenGovernor::constructorCall {
                staking: a.staking,
                timelock: a.timelock,
                delaySeconds: U48::from(config.voting_delay_secs),
                periodSeconds: config.voting_period_secs,
                threshold: config.proposal_threshold,
                quorumPercent: U256::from(config.quorum_percent),
                quorumFloor_: config.quorum_floor,
                lateQuorumExtension: U48::from(config.late_quorum_extension_secs),
            }
            .abi_encode(),
            6_000_000,
        ),
        create(
            "create DatanetRegistry",
            &DatanetRegistry::BYTECODE,
            DatanetRegistry::constructorCall {
                governance: a.timelock,
                staking_: a.staking,
                params_: a.protocol_params,
                challengeBond_: config.challenge_bond,
                reviewPeriod_: config.review_period_secs,
            }
            .abi_encode(),
            5_400_000,
        ),
        create(
            "create ModelRegistry",
            &ModelRegistry::BYTECODE,
            ModelRegistry::constructorCall {
                governance: a.timelock,
                datanets_: a.datanet_registry,
                staking_: a.staking,
            }
            .abi_encode(),
            2_500_000,
        ),
        create(
            "create InferenceSettlement",
            &InferenceSettlement::BYTECODE,
            InferenceSettlement::constructorCall {
                governance: a.timelock,
                params_: a.protocol_params,
                staking_: a.staking,
                models_: a.model_registry,
                challengeBond_: config.challenge_bond,
            }
            .abi_encode(),
            6_200_000,
        ),
        create(
            "create ModelFactory",
            &ModelFactory::BYTECODE,
            ModelFactory::constructorCall {
                startTimeout_: config.job_start_timeout_secs,
                runTimeout_: config.job_run_timeout_secs,
            }
            .abi_encode(),
            1_500_000,
        ),
        call(
            "let DatanetRegistry slash curators",
            a.staking,
            Staking::grantRoleCall {
                role: role("SLASHER_ROLE"),
                account: a.datanet_registry,
            }
            .abi_encode(),
        ),
        call(
            "let InferenceSettlement slash hosts",
            a.staking,
            Staking::grantRoleCall {
                role: role("SLASHER_ROLE"),
                account: a.inference_settlement,
            }
            .abi_encode(),
        ),
        call(
            "hand Staking's admin role to the timelock",
            a.staking,
            Staking::grantRoleCall {
                role: B256::ZERO,
                account: a.timelock,
            }
            .abi_encode(),
        ),
        call(
            "make the governor the timelock's proposer",
            a.timelock,
            OpenTimelock::grantRoleCall {
                role: role("PROPOSER_ROLE"),
                account: a.governor,
            }
            .abi_encode(),
        ),
        call(
            "make the governor the timelock's canceller",
            a.timelock,
            OpenTimelock::grantRoleCall {
                role: role("CANCELLER_ROLE"),
                account: a.governor,
            }
            .abi_encode(),
        ),
        call(
            "renounce the deployer's Staking admin role",
            a.staking,
            Staking::renounceRoleCall {
                role: B256::ZERO,
                callerConfirmation: deployer,
            }
            .abi_encode(),
        ),
        call(
            "renounce the deployer's timelock admin role",
            a.timelock,
            OpenTimelock::renounceRoleCall {
                role: B256::ZERO,
                callerConfirmation: deployer,
            }
            .abi_encode(),
        ),
    ];
    (addresses, steps)
}

impl DeployConfig {
    /// The soonest governance can act on a challenge: a proposal's voting delay, its vote, a
    /// late-quorum extension and the timelock's delay.
    pub fn governance_latency_secs(&self) -> u64 {
        self.voting_delay_secs
            + u64::from(self.voting_period_secs)
            + self.late_quorum_extension_secs
            + self.timelock_delay_secs
    }
}

/// Whether a step gives up the deployer's power: these come last, and are sent only once
/// [`wiring_checks`] all pass.
pub fn is_renounce(step: &Step) -> bool {
    step.label.starts_with("renounce")
}

/// One read that a finished deployment must answer as expected.
#[derive(Debug, Clone)]
pub struct Check {
    pub label: String,
    pub to: Address,
    pub input: Vec<u8>,
    /// The ABI-encoded answer expected.
    pub expect: Vec<u8>,
}

/// What the deployer checks before it renounces its roles: every module points at the
/// others, governance owns what it must, and the roles are where the plan put them. Paired
/// with a code check of every address, this keeps a deployer from giving up control of a
/// deployment that came out wrong.
pub fn wiring_checks(a: &Addresses) -> Vec<Check> {
    use alloy_sol_types::SolValue;
    let check = |label: &str, to: Address, input: Vec<u8>, expect: Vec<u8>| Check {
        label: label.to_string(),
        to,
        input,
        expect,
    };
    let owner = |label: &str, to: Address| {
        let input = ProtocolParams::ownerCall {}.abi_encode();
        check(label, to, input, a.timelock.abi_encode())
    };
    let has_role = |label: &str, to: Address, role_name: &str, account: Address| {
        let role = if role_name == "DEFAULT_ADMIN_ROLE" {
            B256::ZERO
        } else {
            role(role_name)
        };
        let input = Staking::hasRoleCall { role, account }.abi_encode();
        check(label, to, input, true.abi_encode())
    };
    vec![
        owner("the timelock owns ProtocolParams", a.protocol_params),
        owner("the timelock owns DatanetRegistry", a.datanet_registry),
        owner("the timelock owns ModelRegistry", a.model_registry),
        owner(
            "the timelock owns InferenceSettlement",
            a.inference_settlement,
        ),
        check(
            "Staking reads ProtocolParams",
            a.staking,
            Staking::paramsCall {}.abi_encode(),
            a.protocol_params.abi_encode(),
        ),
        check(
            "Staking pays the timelock",
            a.staking,
            Staking::treasuryCall {}.abi_encode(),
            a.timelock.abi_encode(),
        ),
        check(
            "DatanetRegistry reads Staking",
            a.datanet_registry,
            DatanetRegistry::stakingCall {}.abi_encode(),
            a.staking.abi_encode(),
        ),
        check(
            "InferenceSettlement reads Staking",
            a.inference_settlement,
            InferenceSettlement::stakingCall {}.abi_encode(),
            a.staking.abi_encode(),
        ),
        check(
            "the governor votes with Staking",
            a.governor,
            OpenGovernor::tokenCall {}.abi_encode(),
            a.staking.abi_encode(),
        ),
        check(
            "the governor executes through the timelock",
            a.governor,
            OpenGovernor::timelockCall {}.abi_encode(),
            a.timelock.abi_encode(),
        ),
        has_role(
            "DatanetRegistry may slash",
            a.staking,
            "SLASHER_ROLE",
            a.datanet_registry,
        ),
        has_role(
            "InferenceSettlement may slash",
            a.staking,
            "SLASHER_ROLE",
            a.inference_settlement,
        ),
        has_role(
            "the timelock administers Staking",
            a.staking,
            "DEFAULT_ADMIN_ROLE",
            a.timelock,
        ),
        has_role(
            "the governor proposes to the timelock",
            a.timelock,
            "PROPOSER_ROLE",
            a.governor,
        ),
        has_role(
            "the governor cancels in the timelock",
            a.timelock,
            "CANCELLER_ROLE",
            a.governor,
        ),
    ]
}

/// The sum of the steps' gas limits: what the deployer must be able to pay for.
pub fn total_gas(steps: &[Step]) -> u64 {
    steps.iter().map(|s| s.gas_limit).sum()
}
