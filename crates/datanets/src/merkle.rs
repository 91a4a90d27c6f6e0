//! Versions as Merkle trees that OpenZeppelin's `MerkleProof` verifies.
//!
//! A version's leaves are its accepted contributions in ascending id order, each
//! `keccak256(keccak256(abi.encode(uint256 id, bytes32 contentHash)))` — hashed twice, as
//! OpenZeppelin's `StandardMerkleTree` does, so that no leaf can pass for an inner node. Inner
//! nodes hash their two children in sorted order (`MerkleProof`'s commutative hashing), pairing
//! neighbours left to right; a node left without a partner moves up a level unchanged. A proof
//! is the list of siblings from the leaf up.

use alloy_primitives::{keccak256, B256};
use rayon::prelude::*;

/// Below this many nodes a level is hashed on one thread; above, rayon splits it.
const PARALLEL_LEVEL: usize = 4096;

/// Why a version's tree could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("a version needs at least one accepted contribution")]
    Empty,
    #[error("contribution {0} appears twice in the version")]
    DuplicateContribution(u64),
}

/// The leaf of contribution `id` with `content_hash`.
pub fn leaf(id: u64, content_hash: B256) -> B256 {
    let mut encoded = [0u8; 64];
    encoded[24..32].copy_from_slice(&id.to_be_bytes());
    encoded[32..].copy_from_slice(content_hash.as_slice());
    keccak256(keccak256(encoded))
}

/// `MerkleProof`'s commutative pair hash.
fn hash_pair(a: &B256, b: &B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// Whether `proof` leads from `leaf` to `root` (what `MerkleProof.verify` computes).
pub fn verify(root: B256, leaf: B256, proof: &[B256]) -> bool {
    proof
        .iter()
        .fold(leaf, |node, sibling| hash_pair(&node, sibling))
        == root
}

/// A version's tree, every level kept so that any member's proof can be read off.
#[derive(Debug, Clone)]
pub struct VersionTree {
    /// Member ids, ascending; `levels[0][i]` is the leaf of `ids[i]`.
    ids: Vec<u64>,
    /// `levels[0]` holds the leaves, the last level the root alone.
    levels: Vec<Vec<B256>>,
}

impl VersionTree {
    /// Builds the tree over `(contribution id, content hash)` pairs, in any order.
    pub fn build(mut members: Vec<(u64, B256)>) -> Result<Self, MerkleError> {
        if members.is_empty() {
            return Err(MerkleError::Empty);
        }
        members.par_sort_unstable_by_key(|(id, _)| *id);
        if let Some(pair) = members.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(MerkleError::DuplicateContribution(pair[0].0));
        }
        let leaves: Vec<B256> = if members.len() >= PARALLEL_LEVEL {
            members.par_iter().map(|(id, h)| leaf(*id, *h)).collect()
        } else {
            members.iter().map(|(id, h)| leaf(*id, *h)).collect()
        };
        let ids = members.into_iter().map(|(id, _)| id).collect();
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("at least the leaves");
            let pair = |chunk: &[B256]| match chunk {
                [a, b] => hash_pair(a, b),
                [a] => *a,
                _ => unreachable!("chunks of two"),
            };
            let level: Vec<B256> = if below.len() >= PARALLEL_LEVEL {
                below.par_chunks(2).map(pair).collect()
            } else {
                below.chunks(2).map(pair).collect()
            };
            levels.push(level);
        }
        Ok(Self { ids, levels })
    }

    /// The root, as published on chain.
    pub fn root(&self) -> B256 {
        self.levels.last().expect("never empty")[0]
    }

    /// How many contributions the version holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: a tree has at least one member.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The member ids, ascending.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The proof that contribution `id` is in the version, or `None` if it is not.
    pub fn proof(&self, id: u64) -> Option<Vec<B256>> {
        let mut index = self.ids.binary_search(&id).ok()?;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            index /= 2;
        }
        Some(proof)
    }

    /// The leaf of member `id`, if it is one.
    pub fn leaf_of(&self, id: u64) -> Option<B256> {
        let index = self.ids.binary_search(&id).ok()?;
        Some(self.levels[0][index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u64) -> Vec<(u64, B256)> {
        (1..=n)
            .map(|i| (i * 3, keccak256(i.to_be_bytes())))
            .collect()
    }

    #[test]
    fn every_member_proves_and_outsiders_do_not() {
        for n in [1, 2, 3, 5, 8, 13, 100] {
            let tree = VersionTree::build(members(n)).unwrap();
            for (id, hash) in members(n) {
                let proof = tree.proof(id).unwrap();
                assert!(verify(tree.root(), leaf(id, hash), &proof), "n={n} id={id}");
                // The right id with the wrong content does not prove.
                assert!(!verify(tree.root(), leaf(id, B256::ZERO), &proof));
            }
            assert!(tree.proof(1).is_none());
        }
    }

    #[test]
    fn order_of_input_does_not_matter_and_duplicates_are_refused() {
        let mut shuffled = members(9);
        shuffled.reverse();
        assert_eq!(
            VersionTree::build(shuffled).unwrap().root(),
            VersionTree::build(members(9)).unwrap().root()
        );
        let mut twice = members(3);
        twice.push(twice[0]);
        assert_eq!(
            VersionTree::build(twice).unwrap_err(),
            MerkleError::DuplicateContribution(3)
        );
        assert_eq!(VersionTree::build(vec![]).unwrap_err(), MerkleError::Empty);
    }

    #[test]
    fn a_single_member_is_its_own_root() {
        let tree = VersionTree::build(members(1)).unwrap();
        assert_eq!(tree.root(), leaf(3, keccak256(1u64.to_be_bytes())));
        assert!(tree.proof(3).unwrap().is_empty());
    }
}
