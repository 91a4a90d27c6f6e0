//! Naming a revert: the protocol contracts' custom errors, `Error(string)` and `Panic(uint256)`.

use crate::{
    datanet_registry::DatanetRegistry::DatanetRegistryErrors,
    governor::OpenGovernor::OpenGovernorErrors,
    inference_settlement::InferenceSettlement::InferenceSettlementErrors,
    model_registry::ModelRegistry::ModelRegistryErrors,
    protocol_params::ProtocolParams::ProtocolParamsErrors, staking::Staking::StakingErrors,
    timelock::OpenTimelock::OpenTimelockErrors, vesting::OpenVesting::OpenVestingErrors,
};
use alloy_sol_types::SolInterface;

/// A readable name for revert data: the first protocol error whose selector and fields match
/// (errors shared by several contracts, like `NothingToClaim`, mean the same in each), else
/// the standard reason, else the raw bytes.
pub fn describe_revert(data: &[u8]) -> String {
    fn try_decode<E: SolInterface + std::fmt::Debug>(data: &[u8]) -> Option<String> {
        E::abi_decode(data).ok().map(|e| format!("{e:?}"))
    }
    try_decode::<DatanetRegistryErrors>(data)
        .or_else(|| try_decode::<ModelRegistryErrors>(data))
        .or_else(|| try_decode::<InferenceSettlementErrors>(data))
        .or_else(|| try_decode::<StakingErrors>(data))
        .or_else(|| try_decode::<ProtocolParamsErrors>(data))
        .or_else(|| try_decode::<OpenGovernorErrors>(data))
        .or_else(|| try_decode::<OpenTimelockErrors>(data))
        .or_else(|| try_decode::<OpenVestingErrors>(data))
        .or_else(|| {
            use alloy_sol_types::SolError;
            alloy_sol_types::Revert::abi_decode(data)
                .map(|r| format!("Error({:?})", r.reason))
                .or_else(|_| alloy_sol_types::Panic::abi_decode(data).map(|p| format!("{p:?}")))
                .ok()
        })
        .unwrap_or_else(|| {
            if data.is_empty() {
                "no reason given".to_string()
            } else {
                format!("unknown error 0x{}", alloy_primitives::hex::encode(data))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanet_registry::DatanetRegistry;
    use alloy_primitives::{Address, U256};
    use alloy_sol_types::SolError;

    #[test]
    fn names_a_custom_error_with_its_fields() {
        let data = DatanetRegistry::NotCurator {
            datanetId: U256::from(7),
            account: Address::repeat_byte(1),
        }
        .abi_encode();
        let text = describe_revert(&data);
        assert!(text.contains("NotCurator"), "{text}");
        assert!(text.contains("datanetId: 7"), "{text}");
    }

    #[test]
    fn falls_back_to_the_raw_bytes() {
        assert_eq!(describe_revert(&[1, 2, 3, 4]), "unknown error 0x01020304");
        assert_eq!(describe_revert(&[]), "no reason given");
    }
}
