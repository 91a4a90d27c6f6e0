//! TEMPORARY stub until the incremental trie lands.
use alloy_primitives::{Bytes, B256};
use alloy_trie::{HashBuilder, Nibbles};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Trie {
    leaves: BTreeMap<B256, Vec<u8>>,
}

impl Trie {
    pub fn insert(&mut self, key: B256, value: Vec<u8>) {
        if value.is_empty() {
            self.leaves.remove(&key);
        } else {
            self.leaves.insert(key, value);
        }
    }
    pub fn remove(&mut self, key: B256) {
        self.leaves.remove(&key);
    }
    pub fn root(&mut self) -> B256 {
        let mut hb = HashBuilder::default();
        for (k, v) in &self.leaves {
            hb.add_leaf(Nibbles::unpack(k), v);
        }
        hb.root()
    }
    pub fn proof(&mut self, _key: B256) -> Vec<Bytes> {
        Vec::new()
    }
}
