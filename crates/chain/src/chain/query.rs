//! Reads of the chain: blocks, transactions, state at any block, proofs, and calls.

use super::{BlockId, Chain};
use crate::{
    block::{Block, BlockTx},
    exec::{self, BlockParams, CallBounds, CallError, CallRequest},
    state::{Account, AccountProof},
    store::{HistoricalState, StoreError},
};
use alloy_primitives::{Address, Bytes, B256, U256};
use std::sync::Arc;

/// Why a state query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("header not found")]
    UnknownBlock,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of an address's transactions: each as its block and index, newest first.
pub struct AddressPage {
    pub txs: Vec<(Arc<Block>, usize)>,
    /// The page holds as many as were asked for: there may be more before its last.
    pub full: bool,
}

impl Chain {
    /// A block by number or hash; `pending` answers the head.
    pub fn block(&self, id: BlockId) -> Result<Option<Arc<Block>>, StoreError> {
        let number = match id {
            BlockId::Latest | BlockId::Pending => return Ok(Some(self.head())),
            BlockId::Earliest => 0,
            BlockId::Number(n) => n,
            BlockId::Hash(hash) => match self.store.block_number(&hash)? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        if let Some(block) = self.recent.read().get(&number) {
            return Ok(Some(block.clone()));
        }
        Ok(self.store.block(number)?.map(Arc::new))
    }

    /// A block number for a tag; `None` if it is beyond the head.
    pub fn resolve(&self, id: BlockId) -> Result<Option<u64>, StoreError> {
        let head = self.head().header.number;
        Ok(match id {
            BlockId::Latest | BlockId::Pending => Some(head),
            BlockId::Earliest => Some(0),
            BlockId::Number(n) => (n <= head).then_some(n),
            BlockId::Hash(h) => self.store.block_number(&h)?,
        })
    }

    /// A mined transaction: its block and index.
    pub fn tx_location(&self, hash: &B256) -> Result<Option<(Arc<Block>, usize)>, StoreError> {
        let Some((number, index)) = self.store.tx_location(hash)? else {
            return Ok(None);
        };
        Ok(self
            .block(BlockId::Number(number))?
            .map(|b| (b, index as usize)))
    }

    /// Up to `limit` mined transactions of `address` (sent, received or creating a contract)
    /// before position `before` (block, index; all when `None`), newest first, and whether
    /// the page is full (there may be more before its last).
    pub fn address_transactions(
        &self,
        address: &Address,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<AddressPage, StoreError> {
        let positions = self.store.address_transactions(address, before, limit)?;
        let full = positions.len() == limit;
        let mut out: Vec<(Arc<Block>, usize)> = Vec::with_capacity(positions.len());
        for (number, index) in positions {
            // Positions come newest first, so one block's transactions are adjacent: each
            // block is read once however many of its transactions the page holds.
            let block = match out.last() {
                Some((b, _)) if b.header.number == number => b.clone(),
                _ => match self.block(BlockId::Number(number))? {
                    Some(block) => block,
                    None => continue,
                },
            };
            out.push((block, index as usize));
        }
        Ok(AddressPage { txs: out, full })
    }

    /// The blocks of `from..=to` whose logs may pass `may_match` (by their stored blooms;
    /// a block without one is included).
    pub fn blocks_maybe_matching(
        &self,
        from: u64,
        to: u64,
        may_match: impl Fn(&alloy_primitives::Bloom) -> bool,
    ) -> Result<Vec<u64>, StoreError> {
        self.store.blocks_maybe_matching(from, to, may_match)
    }

    /// A pending transaction by hash.
    pub fn pooled(&self, hash: &B256) -> Option<BlockTx> {
        self.pool.lock().get(hash).map(|p| p.tx.clone())
    }

    /// Reads an account at a block; `pending` counts the pool for the nonce.
    pub fn account(&self, address: &Address, id: BlockId) -> Result<Account, QueryError> {
        match self.historical(id)? {
            None => Ok(self
                .state
                .read()
                .account(address)
                .unwrap_or_else(Account::empty)),
            Some(old) => Ok(old.account(address)?.unwrap_or_else(Account::empty)),
        }
    }

    /// The next nonce of `address`; at `pending` it counts queued transactions too.
    pub fn nonce(&self, address: &Address, id: BlockId) -> Result<u64, QueryError> {
        let nonce = self.account(address, id)?.nonce;
        Ok(if id == BlockId::Pending {
            self.pool.lock().pending_nonce(address, nonce)
        } else {
            nonce
        })
    }

    /// A storage slot at a block.
    pub fn storage(&self, address: &Address, slot: U256, id: BlockId) -> Result<U256, QueryError> {
        match self.historical(id)? {
            None => Ok(self.state.read().storage(address, slot)),
            Some(old) => Ok(old.storage(address, &slot)?),
        }
    }

    /// An account's code at a block.
    pub fn code(&self, address: &Address, id: BlockId) -> Result<Bytes, QueryError> {
        let account = self.account(address, id)?;
        if account.code_hash == alloy_trie::KECCAK_EMPTY {
            return Ok(Bytes::new());
        }
        // The head state keeps every code ever deployed (code is never deleted), so it serves
        // past blocks too.
        Ok(self
            .state
            .read()
            .code(&account.code_hash)
            .map(|code| code.original_bytes())
            .unwrap_or_default())
    }

    /// EIP-1186 proofs at the head (older blocks are not proved: their tries are not kept).
    pub fn proof(
        &self,
        address: Address,
        slots: &[U256],
        id: BlockId,
    ) -> Result<AccountProof, String> {
        let head = self.head().header.number;
        match self.resolve(id).map_err(|e| e.to_string())? {
            // Between blocks every trie is hashed, so a reader serves the proof; the write lock
            // is only a fallback that block production never leaves a reason for.
            Some(n) if n == head => {
                let proof = self.state.read().committed_proof(address, slots);
                Ok(proof.unwrap_or_else(|| self.state.write().proof(address, slots)))
            }
            Some(n) => Err(format!(
                "proofs are served for the latest block ({head}) only, not block {n}"
            )),
            None => Err("header not found".into()),
        }
    }

    /// `None` when `id` is the head (read the in-memory state), else a historical view.
    fn historical(&self, id: BlockId) -> Result<Option<HistoricalState>, QueryError> {
        let head = self.head().header.number;
        match self.resolve(id)? {
            Some(n) if n < head => Ok(Some(self.store.state_at(n)?)),
            Some(_) => Ok(None),
            None => Err(QueryError::UnknownBlock),
        }
    }

    /// Executes a call at a block without changing anything, within `bounds`. Calls read the
    /// store's snapshot of the block, never the head state's lock, so a slow call cannot hold
    /// up block production.
    pub fn call(
        &self,
        req: &CallRequest,
        id: BlockId,
        bounds: &CallBounds,
    ) -> Result<Bytes, CallError> {
        let (state, params) = self.call_context(id)?;
        let gas = exec::call_gas(req, &params, bounds);
        exec::call(&state, self.genesis.chain_id, &params, req, gas, bounds).map(|(out, _)| out)
    }

    /// Estimates the gas a call or transaction needs, within `bounds`.
    pub fn estimate_gas(
        &self,
        req: &CallRequest,
        id: BlockId,
        bounds: &CallBounds,
    ) -> Result<u64, CallError> {
        let (state, params) = self.call_context(id)?;
        exec::estimate_gas(&state, self.genesis.chain_id, &params, req, bounds)
    }

    fn call_context(&self, id: BlockId) -> Result<(HistoricalState, BlockParams), CallError> {
        let storage = |e: StoreError| CallError::Invalid(e.to_string());
        let not_found = || CallError::Invalid("header not found".into());
        let number = self.resolve(id).map_err(storage)?.ok_or_else(not_found)?;
        let block = self
            .block(BlockId::Number(number))
            .map_err(storage)?
            .ok_or_else(not_found)?;
        let state = self.store.state_at(number).map_err(storage)?;
        // At the head, calls run in the context of the next block, as in geth and anvil.
        let mut params = self.params_after(&block);
        if number < self.head().header.number {
            params.number = number;
            params.timestamp = block.header.timestamp;
        }
        Ok((state, params))
    }
}
