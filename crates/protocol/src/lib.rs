//! Typed bindings to OpenLedger's protocol contracts.
//!
//! The Solidity sources live in `contracts/src`; `scripts/build-contracts` compiles them into
//! `contracts/out`, which is committed, so this crate builds without Node.js. Each contract
//! gets its calls, events, custom errors and creation bytecode from alloy's `sol!` over its
//! artifact, in a module of its own (artifacts repeat shared types such as
//! `ProtocolParams.Role`). The client that services use to read and write the chain comes with
//! the rest of the protocol.

/// Runtime parameters owned by governance.
pub mod protocol_params {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        ProtocolParams,
        "../../contracts/out/ProtocolParams.json"
    );
}

/// Staking of native OPEN for roles, with unbonding, slashing and voting power.
pub mod staking {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        Staking,
        "../../contracts/out/Staking.json"
    );
}

/// Linear release of an OPEN allocation after a cliff.
pub mod vesting {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        OpenVesting,
        "../../contracts/out/OpenVesting.json"
    );
}

/// Governance: proposals voted with staked OPEN.
#[allow(clippy::too_many_arguments)] // generated from the ABI (signature-based voting)
pub mod governor {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        OpenGovernor,
        "../../contracts/out/OpenGovernor.json"
    );
}

/// The timelock that executes passed proposals.
pub mod timelock {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        OpenTimelock,
        "../../contracts/out/OpenTimelock.json"
    );
}

pub mod genesis;

pub use governor::OpenGovernor;
pub use protocol_params::ProtocolParams;
pub use staking::Staking;
pub use timelock::OpenTimelock;
pub use vesting::OpenVesting;
