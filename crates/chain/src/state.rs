//! The world state at the head of the chain, held in memory with its Merkle-Patricia tries.
//!
//! Execution reads it through revm's [`DatabaseRef`]; after each transaction the changed
//! accounts are applied and recorded in a [`ChangeSet`] that the store persists with the block.
//! Tries are updated in place and re-hashed lazily, so a block's state root costs in
//! proportion to what the block changed.

use crate::{genesis::Genesis, trie::Trie};
use alloy_primitives::{keccak256, map::HashMap, Address, Bytes, B256, U256};
use alloy_trie::{TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use revm::{
    bytecode::Bytecode,
    database_interface::DatabaseRef,
    state::{AccountInfo, EvmState},
};
use std::{collections::BTreeMap, convert::Infallible};

/// An account's plain fields, as persisted and as served over RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

impl Account {
    /// A fresh account: no nonce, no balance, no code.
    pub fn empty() -> Self {
        Self {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK_EMPTY,
        }
    }

    /// Fixed-width encoding for the store: nonce (8) ++ balance (32) ++ code hash (32).
    pub fn to_bytes(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..8].copy_from_slice(&self.nonce.to_be_bytes());
        out[8..40].copy_from_slice(&self.balance.to_be_bytes::<32>());
        out[40..].copy_from_slice(self.code_hash.as_slice());
        out
    }

    /// Inverse of [`Account::to_bytes`]; `None` for anything else (a deleted-account marker).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == 72).then(|| Self {
            nonce: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            balance: U256::from_be_slice(&bytes[8..40]),
            code_hash: B256::from_slice(&bytes[40..]),
        })
    }
}

/// What changed since the last [`WorldState::take_changes`]: the store writes exactly this.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// New account values; `None` means the account was deleted.
    pub accounts: HashMap<Address, Option<Account>>,
    /// New storage values; zero means the slot was cleared.
    pub storage: HashMap<(Address, U256), U256>,
    /// Code first seen in this change set.
    pub code: HashMap<B256, Bytes>,
}

#[derive(Debug, Default)]
struct AccountEntry {
    info: Account,
    storage: HashMap<U256, U256>,
    storage_trie: Trie,
}

/// The account and storage proofs of EIP-1186 for one account.
#[derive(Debug, Clone)]
pub struct AccountProof {
    pub address: Address,
    pub account: Account,
    pub storage_hash: B256,
    pub account_proof: Vec<Bytes>,
    pub storage: Vec<(U256, U256, Vec<Bytes>)>,
}

/// Head state: accounts, storage, code, and the account trie.
#[derive(Debug, Default)]
pub struct WorldState {
    accounts: HashMap<Address, AccountEntry>,
    code: HashMap<B256, Bytecode>,
    trie: Trie,
    dirty: Vec<Address>,
    /// Hashes of recent blocks for the BLOCKHASH opcode (the EVM sees at most 256).
    block_hashes: BTreeMap<u64, B256>,
    changes: ChangeSet,
}

fn storage_leaf(value: U256) -> Vec<u8> {
    alloy_rlp::encode(value)
}

impl WorldState {
    /// The state a genesis describes; its changes are pending so the store can persist them.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let mut state = Self::default();
        for (address, account) in &genesis.alloc {
            let code_hash = match &account.code {
                Some(code) if !code.is_empty() => state.insert_code(code.clone()),
                _ => KECCAK_EMPTY,
            };
            state.set_account(
                *address,
                Account {
                    nonce: account.nonce,
                    balance: account.balance,
                    code_hash,
                },
            );
            for (slot, value) in &account.storage {
                state.set_storage(*address, (*slot).into(), (*value).into());
            }
        }
        state
    }

    /// Rebuilds the state from what the store holds; nothing is left pending.
    pub fn from_parts(
        accounts: impl IntoIterator<Item = (Address, Account)>,
        storage: impl IntoIterator<Item = (Address, U256, U256)>,
        code: impl IntoIterator<Item = Bytes>,
    ) -> Self {
        let mut state = Self::default();
        for bytes in code {
            state.insert_code(bytes);
        }
        for (address, account) in accounts {
            state.set_account(address, account);
        }
        for (address, slot, value) in storage {
            state.set_storage(address, slot, value);
        }
        state.changes = ChangeSet::default();
        state
    }

    fn insert_code(&mut self, code: Bytes) -> B256 {
        let hash = keccak256(&code);
        if !self.code.contains_key(&hash) {
            self.changes.code.insert(hash, code.clone());
            self.code.insert(hash, Bytecode::new_raw(code));
        }
        hash
    }

    fn set_account(&mut self, address: Address, info: Account) {
        self.accounts.entry(address).or_default().info = info;
        self.changes.accounts.insert(address, Some(info));
        self.dirty.push(address);
    }

    fn set_storage(&mut self, address: Address, slot: U256, value: U256) {
        let entry = self.accounts.entry(address).or_default();
        let key = keccak256(slot.to_be_bytes::<32>());
        if value.is_zero() {
            entry.storage.remove(&slot);
            entry.storage_trie.remove(key);
        } else {
            entry.storage.insert(slot, value);
            entry.storage_trie.insert(key, storage_leaf(value));
        }
        self.changes.storage.insert((address, slot), value);
        self.dirty.push(address);
    }

    fn delete_account(&mut self, address: Address) {
        if let Some(entry) = self.accounts.remove(&address) {
            for slot in entry.storage.keys() {
                self.changes.storage.insert((address, *slot), U256::ZERO);
            }
        }
        self.changes.accounts.insert(address, None);
        self.dirty.push(address);
    }

    /// Applies what one transaction changed, with EIP-161's removal of touched empty accounts.
    pub fn apply(&mut self, changes: EvmState) {
        for (address, account) in changes {
            if !account.is_touched() {
                continue;
            }
            if account.is_selfdestructed() || account.is_empty() {
                self.delete_account(address);
                continue;
            }
            if account.is_created() {
                if let Some(entry) = self.accounts.get(&address) {
                    let cleared: Vec<U256> = entry.storage.keys().copied().collect();
                    for slot in cleared {
                        self.set_storage(address, slot, U256::ZERO);
                    }
                }
            }
            let info = &account.info;
            if info.code_hash != KECCAK_EMPTY && !self.code.contains_key(&info.code_hash) {
                if let Some(code) = &info.code {
                    self.insert_code(code.original_bytes());
                }
            }
            self.set_account(
                address,
                Account {
                    nonce: info.nonce,
                    balance: info.balance,
                    code_hash: info.code_hash,
                },
            );
            for (slot, value) in account.storage {
                if value.is_changed() {
                    self.set_storage(address, slot, value.present_value());
                }
            }
        }
    }

    /// Credits `amount` to `address`, creating the account if needed (fees to the vault).
    pub fn add_balance(&mut self, address: Address, amount: U256) {
        if amount.is_zero() {
            return;
        }
        let mut info = self.account(&address).unwrap_or_else(Account::empty);
        info.balance += amount;
        self.set_account(address, info);
    }

    /// An account's plain fields, if it exists.
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.accounts.get(address).map(|e| e.info)
    }

    /// A storage slot's value (zero when unset).
    pub fn storage(&self, address: &Address, slot: U256) -> U256 {
        self.accounts
            .get(address)
            .and_then(|e| e.storage.get(&slot).copied())
            .unwrap_or_default()
    }

    /// Code by hash.
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.code.get(hash)
    }

    /// The sum of every balance; the supply invariant says it never changes.
    pub fn total_balance(&self) -> U256 {
        self.accounts.values().map(|e| e.info.balance).sum()
    }

    /// Remembers a block's hash for BLOCKHASH, keeping the last 256.
    pub fn record_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
        while self.block_hashes.len() > 256 {
            self.block_hashes.pop_first();
        }
    }

    /// Hands over the changes made since the last call.
    pub fn take_changes(&mut self) -> ChangeSet {
        std::mem::take(&mut self.changes)
    }

    /// The state root, re-hashing only the accounts touched since the last call.
    pub fn state_root(&mut self) -> B256 {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for address in dirty {
            let key = keccak256(address);
            match self.accounts.get_mut(&address) {
                Some(entry) => {
                    let account = TrieAccount {
                        nonce: entry.info.nonce,
                        balance: entry.info.balance,
                        storage_root: entry.storage_trie.root(),
                        code_hash: entry.info.code_hash,
                    };
                    self.trie.insert(key, alloy_rlp::encode(account));
                }
                None => self.trie.remove(key),
            }
        }
        self.trie.root()
    }

    /// EIP-1186 proofs for an account and some of its slots, against [`WorldState::state_root`].
    pub fn proof(&mut self, address: Address, slots: &[U256]) -> AccountProof {
        self.state_root();
        self.committed_proof(address, slots)
            .expect("every trie is hashed once the state root is")
    }

    /// [`WorldState::proof`] without re-hashing, so a reader can serve it: `None` when the
    /// state changed since the last [`WorldState::state_root`] (never so between blocks).
    pub fn committed_proof(&self, address: Address, slots: &[U256]) -> Option<AccountProof> {
        if !self.dirty.is_empty() {
            return None;
        }
        let account_proof = self.trie.committed_proof(keccak256(address))?;
        let Some(entry) = self.accounts.get(&address) else {
            return Some(AccountProof {
                address,
                account: Account::empty(),
                storage_hash: EMPTY_ROOT_HASH,
                account_proof,
                storage: slots
                    .iter()
                    .map(|slot| (*slot, U256::ZERO, Vec::new()))
                    .collect(),
            });
        };
        let storage_hash = entry.storage_trie.committed_root()?;
        let mut storage = Vec::with_capacity(slots.len());
        for slot in slots {
            let value = entry.storage.get(slot).copied().unwrap_or_default();
            let proof = entry
                .storage_trie
                .committed_proof(keccak256(slot.to_be_bytes::<32>()))?;
            storage.push((*slot, value, proof));
        }
        Some(AccountProof {
            address,
            account: entry.info,
            storage_hash,
            account_proof,
            storage,
        })
    }
}

impl DatabaseRef for WorldState {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.accounts.get(&address).map(|e| AccountInfo {
            balance: e.info.balance,
            nonce: e.info.nonce,
            code_hash: e.info.code_hash,
            code: self.code.get(&e.info.code_hash).cloned(),
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.code.get(&code_hash).cloned().unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self.storage(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(&number).copied().unwrap_or_default())
    }
}
