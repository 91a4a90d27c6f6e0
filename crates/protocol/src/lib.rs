//! Typed bindings to OpenLedger's protocol contracts.
//!
//! The Solidity sources live in `contracts/src`; `scripts/build-contracts` compiles them into
//! `contracts/out`, which is committed, so this crate builds without Node.js. Each contract
//! gets its calls, events, custom errors and creation bytecode from alloy's `sol!` over its
//! artifact. The client that services use to read and write the chain comes with the rest of
//! the protocol.

alloy_sol_types::sol!(
    #[sol(all_derives)]
    ProtocolParams,
    "../../contracts/out/ProtocolParams.json"
);
