//! The deployment plan on revm: every step succeeds within its gas limit, contracts land at
//! the predicted addresses, and the deployer keeps no power afterwards.

mod evm;

use alloy_primitives::{keccak256, Address, B256};
use evm::Evm;
use openledger_protocol::{
    deploy::{plan, DeployConfig},
    DatanetRegistry, InferenceSettlement, ModelFactory, ModelRegistry, OpenGovernor, OpenTimelock,
    ProtocolParams, Staking,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);

#[test]
fn the_plan_deploys_at_the_predicted_addresses_within_its_gas_limits() {
    for config in [DeployConfig::mainnet(), DeployConfig::dev()] {
        let mut evm = Evm::new(&[DEPLOYER]);
        let (addresses, steps) = plan(1612, DEPLOYER, 0, &config);
        let used = evm.run_plan(DEPLOYER, &steps);
        for (step, used) in steps.iter().zip(&used) {
            // A fifth of headroom, so that a chain with slightly different costs still fits.
            assert!(
                *used * 5 <= step.gas_limit * 4,
                "{}: used {used} of {}",
                step.label,
                step.gas_limit
            );
        }
        let timelock = addresses.timelock;
        let owner = evm
            .sol(
                DEPLOYER,
                addresses.protocol_params,
                ProtocolParams::ownerCall {},
            )
            .unwrap();
        assert_eq!(owner, timelock);
        let owner = evm
            .sol(
                DEPLOYER,
                addresses.datanet_registry,
                DatanetRegistry::ownerCall {},
            )
            .unwrap();
        assert_eq!(owner, timelock);
        let owner = evm
            .sol(
                DEPLOYER,
                addresses.model_registry,
                ModelRegistry::ownerCall {},
            )
            .unwrap();
        assert_eq!(owner, timelock);
        let owner = evm
            .sol(
                DEPLOYER,
                addresses.inference_settlement,
                InferenceSettlement::ownerCall {},
            )
            .unwrap();
        assert_eq!(owner, timelock);
        // The job escrow has no owner; its timeouts are the config's.
        let start = evm
            .sol(
                DEPLOYER,
                addresses.model_factory,
                ModelFactory::startTimeoutCall {},
            )
            .unwrap();
        assert_eq!(start, config.job_start_timeout_secs);
        let gov_timelock = evm
            .sol(DEPLOYER, addresses.governor, OpenGovernor::timelockCall {})
            .unwrap();
        assert_eq!(gov_timelock, timelock);

        let staking_role = |evm: &mut Evm, role: B256, account: Address| {
            evm.sol(
                DEPLOYER,
                addresses.staking,
                Staking::hasRoleCall { role, account },
            )
            .unwrap()
        };
        let slasher = keccak256("SLASHER_ROLE");
        assert!(staking_role(&mut evm, slasher, addresses.datanet_registry));
        assert!(staking_role(
            &mut evm,
            slasher,
            addresses.inference_settlement
        ));
        assert!(staking_role(&mut evm, slasher, timelock));
        assert!(staking_role(&mut evm, B256::ZERO, timelock));
        assert!(!staking_role(&mut evm, B256::ZERO, DEPLOYER));
        assert!(!staking_role(&mut evm, slasher, DEPLOYER));

        let timelock_role = |evm: &mut Evm, role: B256, account: Address| {
            evm.sol(
                DEPLOYER,
                timelock,
                OpenTimelock::hasRoleCall { role, account },
            )
            .unwrap()
        };
        assert!(timelock_role(
            &mut evm,
            keccak256("PROPOSER_ROLE"),
            addresses.governor
        ));
        assert!(timelock_role(
            &mut evm,
            keccak256("CANCELLER_ROLE"),
            addresses.governor
        ));
        assert!(timelock_role(
            &mut evm,
            keccak256("EXECUTOR_ROLE"),
            Address::ZERO
        ));
        assert!(!timelock_role(&mut evm, B256::ZERO, DEPLOYER));
        assert!(!timelock_role(
            &mut evm,
            keccak256("PROPOSER_ROLE"),
            DEPLOYER
        ));
    }
}

/// The deployer renounces last, and only a deployment that passes every wiring check is one
/// it should renounce: the checks hold after the plan's other steps, and fail when a step is
/// missing.
#[test]
fn the_wiring_checks_hold_before_renouncing_and_catch_a_missing_step() {
    use openledger_protocol::deploy::{is_renounce, wiring_checks};
    let config = DeployConfig::dev();
    let (addresses, steps) = plan(1612, DEPLOYER, 0, &config);
    let first_renounce = steps.iter().position(is_renounce).unwrap();
    assert!(
        steps[first_renounce..].iter().all(is_renounce),
        "renouncing comes last"
    );
    assert_eq!(steps.len() - first_renounce, 2);

    let failing = |skip: Option<&str>| -> Vec<String> {
        let mut evm = Evm::new(&[DEPLOYER]);
        let build: Vec<_> = steps[..first_renounce]
            .iter()
            .map(|s| match skip {
                // A skipped step still uses its nonce, as a failed transaction would.
                Some(label) if s.label == label => openledger_protocol::deploy::Step {
                    input: alloy_primitives::Bytes::new(),
                    to: Some(DEPLOYER),
                    ..s.clone()
                },
                _ => s.clone(),
            })
            .collect();
        evm.run_plan(DEPLOYER, &build);
        wiring_checks(&addresses)
            .into_iter()
            .filter(|c| {
                let out = evm.call(DEPLOYER, c.to, c.input.clone().into());
                out.map(|(bytes, _)| bytes.to_vec()) != Ok(c.expect.clone())
            })
            .map(|c| c.label)
            .collect()
    };
    assert_eq!(failing(None), Vec::<String>::new());
    assert_eq!(
        failing(Some("let DatanetRegistry slash curators")),
        vec!["DatanetRegistry may slash".to_string()]
    );
}

/// A challenge must be one governance can rule on in time: the ruling period outlasts the
/// fastest proposal (delay, vote, late-quorum extension, timelock), or every challenge would
/// expire unruled.
#[test]
fn governance_can_rule_within_the_ruling_period() {
    for config in [DeployConfig::mainnet(), DeployConfig::dev()] {
        assert!(
            config.ruling_period_secs > config.governance_latency_secs(),
            "ruling period {} s, governance needs {} s",
            config.ruling_period_secs,
            config.governance_latency_secs()
        );
        assert!(
            config.unbonding_delay_secs >= config.challenge_window_secs + config.ruling_period_secs
        );
    }
}
