//! The protocol's contracts by address, and their functions and events by selector, from the
//! ABIs `openledger-protocol` binds: what the explorer shows instead of raw hex.

use alloy_primitives::{Address, B256};
use openledger_protocol::{
    deploy::Addresses, DatanetRegistry, InferenceSettlement, ModelFactory, ModelRegistry,
    OpenGovernor, OpenTimelock, ProtocolParams, Staking,
};

/// The protocol's contracts, as deployed.
pub struct Names {
    contracts: Vec<(&'static str, Address)>,
}

impl Names {
    pub fn new(addresses: Option<&Addresses>) -> Self {
        Self {
            contracts: addresses
                .map(|a| a.contracts().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The contract at `address`, if it is one of the protocol's.
    pub fn contract(&self, address: Address) -> Option<&'static str> {
        self.contracts
            .iter()
            .find(|(_, a)| *a == address)
            .map(|(name, _)| *name)
    }

    /// What a call to `to` with `input` is: `Contract.function(types)`, the bare selector for
    /// a function the ABI does not know, or a plain transfer.
    pub fn call(&self, to: Option<Address>, input: &[u8]) -> String {
        let Some(to) = to else {
            return "contract creation".into();
        };
        let Some(selector) = input.get(..4) else {
            return if input.is_empty() {
                "transfer".into()
            } else {
                "data".into()
            };
        };
        let selector: [u8; 4] = selector.try_into().expect("four bytes");
        let found = self.contract(to).and_then(|name| {
            let signature = match name {
                "DatanetRegistry" => {
                    DatanetRegistry::DatanetRegistryCalls::signature_by_selector(selector)
                }
                "ModelRegistry" => {
                    ModelRegistry::ModelRegistryCalls::signature_by_selector(selector)
                }
                "InferenceSettlement" => {
                    InferenceSettlement::InferenceSettlementCalls::signature_by_selector(selector)
                }
                "ModelFactory" => ModelFactory::ModelFactoryCalls::signature_by_selector(selector),
                "OpenGovernor" => OpenGovernor::OpenGovernorCalls::signature_by_selector(selector),
                "OpenTimelock" => OpenTimelock::OpenTimelockCalls::signature_by_selector(selector),
                "ProtocolParams" => {
                    ProtocolParams::ProtocolParamsCalls::signature_by_selector(selector)
                }
                "Staking" => Staking::StakingCalls::signature_by_selector(selector),
                _ => None,
            }?;
            Some(format!("{name}.{signature}"))
        });
        found.unwrap_or_else(|| format!("0x{}", alloy_primitives::hex::encode(selector)))
    }

    /// The event a log of `address` with first topic `topic` is: `Contract.Event(types)`.
    pub fn event(&self, address: Address, topic: B256) -> Option<String> {
        let name = self.contract(address)?;
        let t = topic.0;
        let signature = match name {
            "DatanetRegistry" => DatanetRegistry::DatanetRegistryEvents::signature_by_selector(t),
            "ModelRegistry" => ModelRegistry::ModelRegistryEvents::signature_by_selector(t),
            "InferenceSettlement" => {
                InferenceSettlement::InferenceSettlementEvents::signature_by_selector(t)
            }
            "ModelFactory" => ModelFactory::ModelFactoryEvents::signature_by_selector(t),
            "OpenGovernor" => OpenGovernor::OpenGovernorEvents::signature_by_selector(t),
            "OpenTimelock" => OpenTimelock::OpenTimelockEvents::signature_by_selector(t),
            "ProtocolParams" => ProtocolParams::ProtocolParamsEvents::signature_by_selector(t),
            "Staking" => Staking::StakingEvents::signature_by_selector(t),
            _ => None,
        }?;
        Some(format!("{name}.{signature}"))
    }
}
