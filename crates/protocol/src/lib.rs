//! Typed bindings to OpenLedger's protocol contracts.
//!
//! The Solidity sources live in `contracts/src`; `scripts/build-contracts` compiles them into
//! `contracts/out`, which is committed, so this crate builds without Node.js. Each contract
//! gets its calls, events, custom errors and creation bytecode from alloy's `sol!` over its
//! artifact, in a module of its own (artifacts repeat shared types such as
//! `ProtocolParams.Role`).
//!
//! - [`deploy`]: the deployment as a plan of transactions whose addresses are known up front.
//! - [`client`]: [`ProtocolClient`], which services use for every read and write over
//!   JSON-RPC, and which runs deployments.
//! - [`genesis`]: the OPEN allocations and their vesting wallets in the genesis state.
//! - [`proposal`]: the protocol settings a governance proposal changes, as calls and in words.
//! - [`rewards`]: what an account earned from released inference batches, by role and datanet.

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

/// Datanets: contributions, curator reviews, versions and challenges.
pub mod datanet_registry {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        DatanetRegistry,
        "../../contracts/out/DatanetRegistry.json"
    );
}

/// Base models, adapters with their lineage, and the agents that serve them.
#[allow(clippy::too_many_arguments)] // generated from the ABI (the AdapterRegistered event)
pub mod model_registry {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        ModelRegistry,
        "../../contracts/out/ModelRegistry.json"
    );
}

/// Escrow of fine-tuning job fees between payers and factory operators.
pub mod model_factory {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        ModelFactory,
        "../../contracts/out/ModelFactory.json"
    );
}

/// Prepaid credit, settlement batches of inference receipts, and claimable payouts.
pub mod inference_settlement {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        InferenceSettlement,
        "../../contracts/out/InferenceSettlement.json"
    );

    use alloy_primitives::{keccak256, Bytes, B256};
    use InferenceSettlement::Receipt;

    /// Credits as a receipt carries them: (position in the batch's contribution list, weight
    /// in basis points), four big-endian bytes each.
    pub fn pack_credits(credits: &[(u16, u16)]) -> Bytes {
        let bytes: Vec<u8> = credits
            .iter()
            .flat_map(|(position, weight)| [position.to_be_bytes(), weight.to_be_bytes()])
            .flatten()
            .collect();
        bytes.into()
    }

    /// Receipts packed one after another as `settle` reads them (`RECEIPT_HEADER` bytes, then
    /// the credits). Credits must be whole four-byte entries, at most 65,535 of them.
    pub fn pack_receipts(receipts: &[Receipt]) -> Bytes {
        let mut out = Vec::with_capacity(receipts.len() * 94);
        for r in receipts {
            out.extend_from_slice(r.consumer.as_slice());
            out.extend_from_slice(&r.agentId.to_be_bytes());
            out.extend_from_slice(&r.seq.to_be_bytes());
            out.extend_from_slice(&r.inputTokens.to_be_bytes());
            out.extend_from_slice(&r.outputTokens.to_be_bytes());
            out.extend_from_slice(&r.fee.to_be_bytes());
            out.extend_from_slice(r.attributionHash.as_slice());
            let count = u16::try_from(r.credits.len() / 4).expect("at most 65,535 credits");
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(&r.credits);
        }
        out.into()
    }

    /// Reads receipts packed as `settle` takes them (a settlement's calldata, for a validator).
    pub fn unpack_receipts(mut bytes: &[u8]) -> Result<Vec<Receipt>, String> {
        const HEADER: usize = 94;
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = out.len();
            if bytes.len() < HEADER {
                return Err(format!("receipt {n} is cut short"));
            }
            let (h, rest) = bytes.split_at(HEADER);
            let int = |range: std::ops::Range<usize>| {
                h[range]
                    .iter()
                    .fold(0u128, |v, &b| (v << 8) | u128::from(b))
            };
            let credits = int(92..94) as usize * 4;
            if rest.len() < credits {
                return Err(format!("receipt {n}'s credits are cut short"));
            }
            out.push(Receipt {
                consumer: alloy_primitives::Address::from_slice(&h[..20]),
                agentId: int(20..28) as u64,
                seq: int(28..36) as u64,
                inputTokens: int(36..40) as u32,
                outputTokens: int(40..44) as u32,
                fee: int(44..60),
                attributionHash: B256::from_slice(&h[60..92]),
                credits: Bytes::copy_from_slice(&rest[..credits]),
            });
            bytes = &rest[credits..];
        }
        Ok(out)
    }

    /// Credits as (position, weight) pairs, from their packed bytes.
    pub fn unpack_credits(bytes: &[u8]) -> Vec<(u16, u16)> {
        bytes
            .chunks_exact(4)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u16::from_be_bytes([c[2], c[3]]),
                )
            })
            .collect()
    }

    /// A receipt's Merkle leaf, as the contract computes it (`receiptLeaf`).
    pub fn receipt_leaf(r: &Receipt) -> B256 {
        let mut words = [0u8; 256];
        words[12..32].copy_from_slice(r.consumer.as_slice());
        words[56..64].copy_from_slice(&r.agentId.to_be_bytes());
        words[88..96].copy_from_slice(&r.seq.to_be_bytes());
        words[124..128].copy_from_slice(&r.inputTokens.to_be_bytes());
        words[156..160].copy_from_slice(&r.outputTokens.to_be_bytes());
        words[176..192].copy_from_slice(&r.fee.to_be_bytes());
        words[192..224].copy_from_slice(r.attributionHash.as_slice());
        words[224..].copy_from_slice(keccak256(&r.credits).as_slice());
        keccak256(keccak256(words))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn packed_receipts_read_back_and_cut_ones_are_refused() {
            let receipts: Vec<Receipt> = (0..3u64)
                .map(|i| Receipt {
                    consumer: alloy_primitives::Address::repeat_byte(i as u8 + 1),
                    agentId: 7 + i,
                    seq: 100 + i,
                    inputTokens: 12,
                    outputTokens: u32::MAX - i as u32,
                    fee: u128::MAX - u128::from(i),
                    attributionHash: B256::repeat_byte(0xab),
                    credits: pack_credits(&[(0, 9_000), (i as u16, 1_000)][..i as usize]),
                })
                .collect();
            let packed = pack_receipts(&receipts);
            assert_eq!(unpack_receipts(&packed).unwrap(), receipts);
            assert_eq!(
                unpack_credits(&receipts[2].credits),
                [(0, 9_000), (2, 1_000)]
            );
            assert!(unpack_receipts(&packed[..packed.len() - 1]).is_err());
            assert!(unpack_receipts(&packed[..50]).is_err());
        }
    }
}

pub mod client;
pub mod deploy;
pub mod genesis;
pub mod proposal;
pub mod rewards;

pub use client::{ClientError, ProtocolClient, Signer};
pub use datanet_registry::DatanetRegistry;
pub use governor::OpenGovernor;
pub use inference_settlement::InferenceSettlement;
pub use model_factory::ModelFactory;
pub use model_registry::ModelRegistry;
pub use protocol_params::ProtocolParams;
pub use staking::Staking;
pub use timelock::OpenTimelock;
pub use vesting::OpenVesting;
