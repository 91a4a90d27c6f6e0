//! The OpenLedger L2 execution node.
//!
//! An EVM chain (revm, Prague rules) whose native currency is OPEN, produced by one sequencer
//! and served over standard Ethereum JSON-RPC. It knows nothing of AI: the protocol contracts
//! and services above it reach it only through JSON-RPC.
//!
//! How it is organised:
//! - [`genesis`] and [`devkeys`] (from `openledger-genesis`): the initial allocation (exactly
//!   10^27 wei) and dev accounts.
//! - [`state`] and [`trie`]: head state in memory with incrementally hashed Merkle-Patricia
//!   tries; [`store`]: the redb database that makes blocks, state history and the mempool
//!   durable.
//! - [`exec`]: running transactions and calls on revm; [`mempool`] and [`submit`]: admitting
//!   transactions; [`chain`]: producing blocks and answering queries.
//! - [`rpc`]: JSON-RPC over HTTP and WebSocket; [`node`]: wiring it together with the block
//!   timer; [`metrics`]: Prometheus counters.

pub mod block;
pub mod chain;
pub mod exec;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod state;
pub mod store;
pub mod submit;
pub mod trie;

pub use chain::{BlockId, Chain};
pub use genesis::Genesis;
pub use node::{Node, NodeConfig};
/// The genesis types and dev keys live in `openledger-genesis`, which the services use without
/// linking the node; they are re-exported here under their old paths.
pub use openledger_genesis::{devkeys, genesis};
