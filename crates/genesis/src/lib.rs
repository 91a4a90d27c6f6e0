//! What a chain starts from, shared below the services and the node alike.
//!
//! This is the lowest layer: [`genesis`] describes a chain's parameters and initial state (and
//! checks that it allocates exactly 10^27 wei of OPEN), and [`devkeys`] derives the dev
//! accounts from the standard test mnemonic. The node (`openledger-chain`) builds its first
//! block from a [`Genesis`]; the protocol crate places its vesting wallets into one and signs
//! with the dev keys, without linking the node.

pub mod devkeys;
pub mod genesis;

pub use genesis::Genesis;
