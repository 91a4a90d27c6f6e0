//! The deployment plan on revm: every step succeeds within its gas limit, contracts land at
//! the predicted addresses, and the deployer keeps no power afterwards.

mod evm;

use alloy_primitives::{keccak256, Address, B256};
use evm::Evm;
use openledger_protocol::{
    deploy::{plan, DeployConfig},
    DatanetRegistry, InferenceSettlement, ModelRegistry, OpenGovernor, OpenTimelock,
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
