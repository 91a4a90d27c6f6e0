//! Incremental in-memory Ethereum Merkle-Patricia trie for state and storage roots.
//!
//! Keys are 32-byte *hashed* keys (`keccak(address)`, `keccak(slot)`), so no key is a prefix
//! of another and branch nodes never carry a value. Every node caches the reference its parent
//! embeds (its RLP when shorter than 32 bytes, otherwise the RLP of its keccak hash). A mutation
//! clears that cache only along the path it walked, so [`Trie::root`] after `k` changes
//! re-encodes and re-hashes `O(k * depth)` nodes and reuses every untouched subtree as-is.
//!
//! [`Trie::proof`] produces EIP-1186 style proofs accepted by
//! [`alloy_trie::proof::verify_proof`].

use alloy_primitives::{keccak256, Bytes, B256};
use alloy_rlp::{Encodable, Header, EMPTY_STRING_CODE};
use alloy_trie::{nodes::RlpNode, EMPTY_ROOT_HASH};

/// Nibbles in a (hashed) key.
const KEY_NIBBLES: usize = 64;
/// Largest node encoding: a full branch (list header, 16 hash references, empty value).
const MAX_NODE_RLP: usize = 3 + 16 * 33 + 1;
/// An empty branch slot or value.
const EMPTY: &[u8] = &[EMPTY_STRING_CODE];

type Children = [Option<Box<Node>>; 16];

/// Ethereum Merkle-Patricia trie over 32-byte hashed keys, with cached node hashes.
#[derive(Debug, Clone, Default)]
pub struct Trie {
    root: Node,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    kind: Kind,
    /// How the parent references this node; `None` marks it dirty.
    rlp: Option<RlpNode>,
}

#[derive(Debug, Clone, Default)]
enum Kind {
    /// Only ever the root of an empty trie (empty branch slots are `None`).
    #[default]
    Empty,
    /// The path is the key's nibbles from the node's depth on, so moving a leaf to another
    /// depth only invalidates its cache instead of rewriting a path.
    Leaf {
        key: B256,
        value: Vec<u8>,
    },
    /// The path is nibbles `[depth, end)` of `path`: any key whose first `end` nibbles
    /// spell the absolute path down to `child`, present in the trie or not. This keeps nodes
    /// free of heap-allocated paths and makes splitting and merging a matter of moving `end`.
    Extension {
        path: B256,
        end: usize,
        child: Box<Node>,
    },
    Branch {
        children: Box<Children>,
    },
}

/// What an insert did, so callers know whether to dirty the path and bump `len`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Unchanged,
    Updated,
    Added,
}

impl Trie {
    /// Creates an empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the value stored under the hashed `key`.
    pub fn get(&self, key: B256) -> Option<&[u8]> {
        let (mut node, mut depth) = (&self.root, 0);
        while let Some(next) = step(node, depth, &key) {
            (node, depth) = next;
        }
        match &node.kind {
            Kind::Leaf { key: found, value } if *found == key => Some(value),
            _ => None,
        }
    }

    /// Sets the RLP-encoded `value` of the hashed `key`; an empty value removes the key.
    pub fn insert(&mut self, key: B256, value: Vec<u8>) {
        if value.is_empty() {
            return self.remove(key);
        }
        if insert(&mut self.root, 0, key, value) == Change::Added {
            self.len += 1;
        }
    }

    /// Removes the hashed `key`, if present.
    pub fn remove(&mut self, key: B256) {
        if remove(&mut self.root, 0, key) {
            self.len -= 1;
        }
    }

    /// Root hash, re-hashing only the nodes changed since the previous call.
    pub fn root(&mut self) -> B256 {
        if matches!(self.root.kind, Kind::Empty) {
            return EMPTY_ROOT_HASH;
        }
        commit(&mut self.root, 0, &mut Vec::with_capacity(MAX_NODE_RLP));
        let rlp = self.root.rlp.as_ref().expect("root committed");
        // The root is hashed even when its encoding is short enough to be inlined.
        rlp.as_hash().unwrap_or_else(|| keccak256(rlp))
    }

    /// The root hash if nothing changed since the last [`Trie::root`].
    pub fn committed_root(&self) -> Option<B256> {
        if matches!(self.root.kind, Kind::Empty) {
            return Some(EMPTY_ROOT_HASH);
        }
        let rlp = self.root.rlp.as_ref()?;
        Some(rlp.as_hash().unwrap_or_else(|| keccak256(rlp)))
    }

    /// EIP-1186 proof for the hashed `key`: the RLP of every node on its path, root first.
    ///
    /// Nodes shorter than 32 bytes are embedded in their parent and not listed separately. For
    /// an absent key the path stops at the node that shows the absence. An empty trie yields an
    /// empty proof.
    pub fn proof(&mut self, key: B256) -> Vec<Bytes> {
        if !matches!(self.root.kind, Kind::Empty) {
            commit(&mut self.root, 0, &mut Vec::with_capacity(MAX_NODE_RLP));
        }
        self.committed_proof(key)
            .expect("the trie was just committed")
    }

    /// [`Trie::proof`] on a trie whose root is already hashed (a change un-hashes the path up
    /// to the root, so a hashed root means every node is); `None` when it is not.
    pub fn committed_proof(&self, key: B256) -> Option<Vec<Bytes>> {
        let mut proof = Vec::new();
        if matches!(self.root.kind, Kind::Empty) {
            return Some(proof);
        }
        self.root.rlp.as_ref()?;
        let mut buf = Vec::with_capacity(MAX_NODE_RLP);
        let mut at = Some((&self.root, 0));
        while let Some((node, depth)) = at {
            // The root is always listed. Inline nodes are part of their parent's encoding, and
            // everything below an inline node is inline too.
            if proof.is_empty() || node.rlp.as_ref().is_some_and(RlpNode::is_hash) {
                buf.clear();
                encode(node, depth, &mut buf);
                proof.push(Bytes::copy_from_slice(&buf));
            }
            at = step(node, depth, &key);
        }
        Some(proof)
    }
}

impl FromIterator<(B256, Vec<u8>)> for Trie {
    fn from_iter<I: IntoIterator<Item = (B256, Vec<u8>)>>(items: I) -> Self {
        let mut trie = Self::new();
        trie.extend(items);
        trie
    }
}

impl Extend<(B256, Vec<u8>)> for Trie {
    fn extend<I: IntoIterator<Item = (B256, Vec<u8>)>>(&mut self, items: I) {
        for (key, value) in items {
            self.insert(key, value);
        }
    }
}

impl Node {
    fn new(kind: Kind) -> Self {
        Self { kind, rlp: None }
    }
}

/// The next node on `key`'s path below `node` at `depth`, or `None` where the path ends.
fn step<'a>(node: &'a Node, depth: usize, key: &B256) -> Option<(&'a Node, usize)> {
    match &node.kind {
        Kind::Empty | Kind::Leaf { .. } => None,
        Kind::Extension { path, end, child } => {
            (common_len(path, key, depth, *end) == *end).then_some((child, *end))
        }
        Kind::Branch { children } => Some((children[nibble(key, depth)].as_deref()?, depth + 1)),
    }
}

fn insert(node: &mut Node, depth: usize, key: B256, value: Vec<u8>) -> Change {
    let change = match &mut node.kind {
        Kind::Empty => {
            node.kind = Kind::Leaf { key, value };
            Change::Added
        }
        Kind::Leaf {
            key: existing,
            value: old,
        } if *existing == key => {
            // Rewriting an identical value (common for storage slots) must not dirty the path.
            if *old == value {
                return Change::Unchanged;
            }
            *old = value;
            Change::Updated
        }
        Kind::Leaf { key: existing, .. } => {
            let at = common_len(existing, &key, depth, KEY_NIBBLES);
            let side = nibble(existing, at);
            // The old leaf moves below the new branch; `Node::new` drops its stale cache.
            let old = Node::new(std::mem::take(&mut node.kind));
            node.kind = fork(depth, at, (side, old), key, value);
            Change::Added
        }
        Kind::Extension { path, end, child } => {
            let end = *end;
            let at = common_len(path, &key, depth, end);
            if at == end {
                insert(child, end, key, value)
            } else {
                let side = nibble(path, at);
                let Kind::Extension { path, child, .. } = std::mem::take(&mut node.kind) else {
                    unreachable!("matched an extension above")
                };
                // When no path is left below the fork, the child keeps its absolute depth and
                // therefore its cached encoding.
                let lower = if at + 1 == end {
                    *child
                } else {
                    Node::new(Kind::Extension { path, end, child })
                };
                node.kind = fork(depth, at, (side, lower), key, value);
                Change::Added
            }
        }
        Kind::Branch { children } => match &mut children[nibble(&key, depth)] {
            Some(child) => insert(child, depth + 1, key, value),
            slot => {
                *slot = Some(Box::new(Node::new(Kind::Leaf { key, value })));
                Change::Added
            }
        },
    };
    if change != Change::Unchanged {
        node.rlp = None;
    }
    change
}

/// The node that replaces one at `depth` whose path diverges from the inserted `key` at nibble
/// `at`: a branch at `at` holding the existing subtree and the new leaf, under an extension
/// when `at > depth`.
fn fork(depth: usize, at: usize, existing: (usize, Node), key: B256, value: Vec<u8>) -> Kind {
    let mut children = Box::<Children>::default();
    children[existing.0] = Some(Box::new(existing.1));
    children[nibble(&key, at)] = Some(Box::new(Node::new(Kind::Leaf { key, value })));
    let branch = Kind::Branch { children };
    if at == depth {
        branch
    } else {
        Kind::Extension {
            path: key,
            end: at,
            child: Box::new(Node::new(branch)),
        }
    }
}

/// Removes `key` below `node`, restoring canonical form; returns whether the key was present.
fn remove(node: &mut Node, depth: usize, key: B256) -> bool {
    match &mut node.kind {
        Kind::Empty => return false,
        Kind::Leaf { key: existing, .. } => {
            if *existing != key {
                return false;
            }
            node.kind = Kind::Empty;
        }
        Kind::Extension { path, end, child } => {
            if common_len(path, &key, depth, *end) < *end || !remove(child, *end, key) {
                return false;
            }
            // The child was a branch. If it collapsed into a leaf or an extension, absorb it:
            // an extension may only point at a branch.
            match std::mem::take(&mut child.kind) {
                kind @ (Kind::Leaf { .. } | Kind::Extension { .. }) => node.kind = kind,
                kind => child.kind = kind,
            }
        }
        Kind::Branch { children } => {
            let slot = nibble(&key, depth);
            let Some(child) = children[slot].as_deref_mut() else {
                return false;
            };
            if !remove(child, depth + 1, key) {
                return false;
            }
            if matches!(child.kind, Kind::Empty) {
                children[slot] = None;
            }
            let mut occupied = (0..16).filter(|&i| children[i].is_some());
            if let (Some(only), None) = (occupied.next(), occupied.next()) {
                // A branch with a single child is not canonical: pull the child up a level.
                // Leaves and extensions already carry the slot nibble in their key; a branch
                // gets a one-nibble extension whose key is the removed key re-routed through
                // `only`, which spells the right path without walking down to a real key.
                let mut last = children[only].take().expect("occupied slot");
                node.kind = if matches!(last.kind, Kind::Branch { .. }) {
                    Kind::Extension {
                        path: with_nibble(key, depth, only),
                        end: depth + 1,
                        child: last,
                    }
                } else {
                    std::mem::take(&mut last.kind)
                };
            }
        }
    }
    node.rlp = None;
    true
}

/// Re-encodes the dirty nodes under `node` bottom-up, filling their caches.
fn commit(node: &mut Node, depth: usize, buf: &mut Vec<u8>) {
    if node.rlp.is_some() {
        return;
    }
    match &mut node.kind {
        Kind::Extension { end, child, .. } => commit(child, *end, buf),
        Kind::Branch { children } => {
            for child in children.iter_mut().flatten() {
                commit(child, depth + 1, buf);
            }
        }
        Kind::Empty | Kind::Leaf { .. } => {}
    }
    // Children are done with `buf` by now, so one scratch buffer serves the whole walk.
    buf.clear();
    encode(node, depth, buf);
    node.rlp = Some(RlpNode::from_rlp(buf));
}

/// Appends the RLP of `node` at `depth`; its children must already be committed.
fn encode(node: &Node, depth: usize, out: &mut Vec<u8>) {
    match &node.kind {
        Kind::Empty => out.push(EMPTY_STRING_CODE),
        Kind::Leaf { key, value } => {
            let (path, len) = hex_prefix(key, depth, KEY_NIBBLES, true);
            let (path, value) = (&path[..len], value.as_slice());
            list_header(path.length() + value.length(), out);
            path.encode(out);
            value.encode(out);
        }
        Kind::Extension { path, end, child } => {
            let (path, len) = hex_prefix(path, depth, *end, false);
            let (path, child) = (&path[..len], child_ref(child));
            list_header(path.length() + child.len(), out);
            path.encode(out);
            out.extend_from_slice(child);
        }
        Kind::Branch { children } => {
            let refs = children
                .iter()
                .map(|c| c.as_deref().map_or(EMPTY, child_ref));
            // 16 child slots plus the always-empty value slot (keys have a fixed length).
            list_header(refs.clone().map(<[u8]>::len).sum::<usize>() + 1, out);
            refs.chain([EMPTY]).for_each(|r| out.extend_from_slice(r));
        }
    }
}

/// RLP header of a list whose items take `payload_length` bytes.
fn list_header(payload_length: usize, out: &mut Vec<u8>) {
    Header {
        list: true,
        payload_length,
    }
    .encode(out);
}

/// What a parent embeds for a committed child: its inline RLP or the RLP of its hash.
fn child_ref(node: &Node) -> &[u8] {
    node.rlp.as_deref().expect("child committed before parent")
}

/// Hex-prefix encoding of nibbles `[from, to)` of `key`, with the leaf flag if `leaf`.
fn hex_prefix(key: &B256, from: usize, to: usize, leaf: bool) -> ([u8; 33], usize) {
    let mut out = [0u8; 33];
    let flag = if leaf { 0x20 } else { 0 };
    let odd = (to - from) % 2 == 1;
    // An odd nibble goes into the flag byte, which leaves the rest byte-aligned for leaves.
    out[0] = if odd {
        flag | 0x10 | nibble(key, from) as u8
    } else {
        flag
    };
    let mut i = from + usize::from(odd);
    if i.is_multiple_of(2) {
        // Byte-aligned: copy instead of packing nibbles.
        let bytes = &key[i / 2..to / 2];
        out[1..=bytes.len()].copy_from_slice(bytes);
        return (out, 1 + bytes.len());
    }
    let mut len = 1;
    while i < to {
        out[len] = (nibble(key, i) << 4 | nibble(key, i + 1)) as u8;
        (i, len) = (i + 2, len + 1);
    }
    (out, len)
}

fn nibble(key: &B256, i: usize) -> usize {
    let shift = if i.is_multiple_of(2) { 4 } else { 0 };
    usize::from((key[i / 2] >> shift) & 0x0f)
}

fn with_nibble(mut key: B256, i: usize, nibble: usize) -> B256 {
    let shift = if i.is_multiple_of(2) { 4 } else { 0 };
    key[i / 2] = (key[i / 2] & !(0x0f << shift)) | ((nibble as u8) << shift);
    key
}

/// First index in `[from, to)` at which the nibbles of `a` and `b` differ, or `to`.
fn common_len(a: &B256, b: &B256, from: usize, to: usize) -> usize {
    (from..to)
        .find(|&i| nibble(a, i) != nibble(b, i))
        .unwrap_or(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::{proof::verify_proof, HashBuilder, Nibbles};
    use std::collections::BTreeMap;

    type Model = BTreeMap<B256, Vec<u8>>;

    /// splitmix64, so the tests need no `rand` and are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn key(&mut self) -> B256 {
            B256::from(std::array::from_fn(|_| self.next() as u8))
        }

        /// A key sharing a random-length prefix with `key`, so extensions form at any depth.
        fn near(&mut self, mut key: B256) -> B256 {
            for i in self.below(KEY_NIBBLES)..KEY_NIBBLES {
                key = with_nibble(key, i, self.below(16));
            }
            key
        }

        /// Mostly short values, including single bytes below 0x80 that RLP encodes as themselves.
        fn value(&mut self) -> Vec<u8> {
            let len = if self.below(4) == 0 {
                1
            } else {
                1 + self.below(80)
            };
            (0..len).map(|_| self.next() as u8).collect()
        }

        fn entries(&mut self, n: usize) -> Model {
            (0..n).map(|_| (self.key(), self.value())).collect()
        }
    }

    fn check(trie: &mut Trie, model: &Model) {
        let mut builder = HashBuilder::default();
        for (key, value) in model {
            builder.add_leaf(Nibbles::unpack(key), value);
        }
        assert_eq!(trie.root(), builder.root());
        assert_eq!(trie.len(), model.len());
    }

    fn check_proofs(trie: &mut Trie, model: &Model, absent: impl IntoIterator<Item = B256>) {
        let root = trie.root();
        let verify = |key: &B256, value: Option<Vec<u8>>, proof: &[Bytes]| {
            verify_proof(root, Nibbles::unpack(key), value, proof).is_ok()
        };
        for (key, value) in model {
            let proof = trie.proof(*key);
            assert!(verify(key, Some(value.clone()), &proof));
            let mut wrong = value.clone();
            wrong[0] ^= 1;
            assert!(!verify(key, Some(wrong), &proof));
            assert!(!verify(key, None, &proof));
        }
        for key in absent {
            assert!(!model.contains_key(&key));
            let proof = trie.proof(key);
            assert!(verify(&key, None, &proof));
            assert!(!verify(&key, Some(vec![1]), &proof));
        }
    }

    fn count(node: &Node, pred: &impl Fn(&Node) -> bool) -> usize {
        let below = match &node.kind {
            Kind::Extension { child, .. } => count(child, pred),
            Kind::Branch { children } => children.iter().flatten().map(|c| count(c, pred)).sum(),
            Kind::Empty | Kind::Leaf { .. } => 0,
        };
        below + usize::from(pred(node))
    }

    fn dirty(trie: &Trie) -> usize {
        count(&trie.root, &|n| n.rlp.is_none())
    }

    #[test]
    fn random_sets_match_hash_builder() {
        let mut rng = Rng(1);
        for n in [0, 1, 2, 3, 16, 17, 100, 1000, 5000] {
            let model = rng.entries(n);
            let mut trie: Trie = model.clone().into_iter().collect();
            check(&mut trie, &model);
            assert!(model
                .iter()
                .all(|(k, v)| trie.get(*k) == Some(v.as_slice())));
            assert_eq!(trie.get(rng.key()), None);
        }
    }

    #[test]
    fn interleaved_updates_match_hash_builder() {
        let mut rng = Rng(2);
        let (mut trie, mut model) = (Trie::new(), Model::new());
        for _ in 0..60 {
            for _ in 0..1 + rng.below(60) {
                let existing = (!model.is_empty()).then(|| rng.below(model.len()));
                let existing = existing.map(|i| *model.keys().nth(i).unwrap());
                let op = rng.below(10);
                let fresh = match existing {
                    Some(key) if rng.below(2) == 0 => rng.near(key),
                    _ => rng.key(),
                };
                // Inserts of new keys, updates, removals, and removals of absent neighbours.
                let key = existing.filter(|_| (5..=8).contains(&op)).unwrap_or(fresh);
                if op < 7 {
                    let value = rng.value();
                    trie.insert(key, value.clone());
                    model.insert(key, value);
                } else {
                    trie.remove(key);
                    model.remove(&key);
                }
            }
            check(&mut trie, &model);
        }
        // Rewriting a value unchanged must keep every cache valid.
        let (key, value) = model.iter().next().map(|(k, v)| (*k, v.clone())).unwrap();
        trie.insert(key, value);
        assert_eq!(dirty(&trie), 0);

        for (i, key) in model.clone().keys().enumerate() {
            trie.insert(*key, Vec::new()); // An empty value removes.
            model.remove(key);
            if i % 17 == 0 || model.len() < 20 {
                check(&mut trie, &model);
            }
        }
        assert!(trie.is_empty());
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn root_rehashes_only_the_changed_paths() {
        let mut rng = Rng(3);
        let mut trie: Trie = rng.entries(4000).into_iter().collect();
        trie.root();
        let (a, b) = (rng.key(), rng.key());
        trie.insert(a, vec![1]);
        trie.insert(b, vec![2]);
        // Two new leaves, a possible fork each and the branches above them: far below 4000.
        assert!(dirty(&trie) <= 12);
        trie.remove(a);
        trie.remove(b);
        trie.root();
        assert_eq!(dirty(&trie), 0);
    }

    #[test]
    fn proofs_verify_for_present_and_absent_keys() {
        let mut rng = Rng(4);
        let mut trie = Trie::new();
        assert!(trie.proof(rng.key()).is_empty());
        let single = rng.entries(1);
        trie.extend(single.clone());
        check_proofs(&mut trie, &single, [rng.key()]);

        let model = rng.entries(500);
        let mut trie: Trie = model.clone().into_iter().collect();
        let absent: Vec<B256> = (0..200).map(|_| rng.key()).collect();
        check_proofs(&mut trie, &model, absent);
    }

    #[test]
    fn short_nodes_are_inlined_like_hash_builder() {
        let mut rng = Rng(5);
        let mut model = rng.entries(8);
        // Clusters of keys agreeing on their first 59-62 nibbles, with 1-byte values, give
        // leaves, branches and extensions under 32 bytes that must be embedded in their parent.
        for _ in 0..8 {
            let base = rng.key();
            for _ in 0..12 {
                let mut key = base;
                for i in 59 + rng.below(3)..KEY_NIBBLES {
                    if rng.below(3) == 0 {
                        key = with_nibble(key, i, rng.below(3));
                    }
                }
                model.insert(key, vec![rng.below(0x90) as u8 + 1]);
            }
        }
        let mut trie: Trie = model.clone().into_iter().collect();
        check(&mut trie, &model);
        let inline = |n: &Node| n.rlp.as_ref().is_some_and(|r| !r.is_hash());
        assert!(count(&trie.root, &inline) > 10);
        let inline_branch = |n: &Node| inline(n) && matches!(n.kind, Kind::Branch { .. });
        assert!(count(&trie.root, &inline_branch) > 0);

        // Absent neighbours end their paths inside inline nodes.
        let absent = model
            .keys()
            .flat_map(|k| (60..64).map(move |i| with_nibble(*k, i, 0xf)));
        check_proofs(&mut trie, &model, absent.filter(|k| !model.contains_key(k)));

        // Collapsing back through the inline region stays canonical.
        let removed: Vec<B256> = model.keys().copied().step_by(2).collect();
        for key in &removed {
            trie.remove(*key);
            model.remove(key);
            check(&mut trie, &model);
        }
        check_proofs(&mut trie, &model, removed);
    }
}
