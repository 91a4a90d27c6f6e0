//! Blocks as the node keeps them: the Ethereum header, the transactions with their recovered
//! senders, and the consensus receipts, plus the compact byte layouts the store uses.

use alloy_consensus::{Header, ReceiptEnvelope, Transaction, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, TxKind, B256};
use alloy_rlp::{Decodable, Encodable};

/// A transaction in a block, with the sender recovered once at submission.
#[derive(Debug, Clone)]
pub struct BlockTx {
    pub tx: TxEnvelope,
    pub sender: Address,
}

impl BlockTx {
    /// The transaction hash.
    pub fn hash(&self) -> B256 {
        *self.tx.tx_hash()
    }

    /// The address a contract-creating transaction deploys to.
    pub fn created_address(&self) -> Option<Address> {
        matches!(self.tx.kind(), TxKind::Create).then(|| self.sender.create(self.tx.nonce()))
    }
}

/// A sealed block: header, hash, transactions and receipts.
#[derive(Debug, Clone)]
pub struct Block {
    pub header: Header,
    pub hash: B256,
    pub txs: Vec<BlockTx>,
    pub receipts: Vec<ReceiptEnvelope>,
}

impl Block {
    /// The header's RLP length plus the transactions', as `size` in RPC answers.
    pub fn size(&self) -> usize {
        self.header.length()
            + self
                .txs
                .iter()
                .map(|t| t.tx.encode_2718_len())
                .sum::<usize>()
    }

    /// Gas used by transaction `index` alone.
    pub fn gas_used_by(&self, index: usize) -> u64 {
        let cumulative = |i: usize| self.receipts[i].cumulative_gas_used();
        cumulative(index) - if index == 0 { 0 } else { cumulative(index - 1) }
    }
}

/// Errors in the store's own byte layouts: a corrupt database.
#[derive(Debug, thiserror::Error)]
#[error("stored block data is corrupt: {0}")]
pub struct CorruptBlock(pub String);

fn push_item(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_be_bytes());
    out.extend_from_slice(item);
}

fn next_item<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], CorruptBlock> {
    if buf.len() < 4 {
        return Err(CorruptBlock("truncated length".into()));
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if buf.len() < 4 + len {
        return Err(CorruptBlock("truncated item".into()));
    }
    let item = &buf[4..4 + len];
    *buf = &buf[4 + len..];
    Ok(item)
}

/// Layout: header RLP, then per transaction sender ++ EIP-2718 bytes, then per receipt its
/// EIP-2718 bytes; every item length-prefixed.
pub fn encode_block(block: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(600 + block.txs.len() * 400);
    push_item(&mut out, &alloy_rlp::encode(&block.header));
    out.extend_from_slice(&(block.txs.len() as u32).to_be_bytes());
    for (tx, receipt) in block.txs.iter().zip(&block.receipts) {
        let mut item = tx.sender.to_vec();
        tx.tx.encode_2718(&mut item);
        push_item(&mut out, &item);
        push_item(&mut out, &receipt.encoded_2718());
    }
    out
}

/// Inverse of [`encode_block`].
pub fn decode_block(mut buf: &[u8]) -> Result<Block, CorruptBlock> {
    let bad = |e: &dyn std::fmt::Display| CorruptBlock(e.to_string());
    let header = Header::decode(&mut next_item(&mut buf)?).map_err(|e| bad(&e))?;
    if buf.len() < 4 {
        return Err(CorruptBlock("missing transaction count".into()));
    }
    let count = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    buf = &buf[4..];
    let mut txs = Vec::with_capacity(count);
    let mut receipts = Vec::with_capacity(count);
    for _ in 0..count {
        let item = next_item(&mut buf)?;
        if item.len() < 20 {
            return Err(CorruptBlock("short transaction".into()));
        }
        let sender = Address::from_slice(&item[..20]);
        let tx = TxEnvelope::decode_2718(&mut &item[20..]).map_err(|e| bad(&e))?;
        txs.push(BlockTx { tx, sender });
        let receipt = next_item(&mut buf)?;
        receipts.push(ReceiptEnvelope::decode_2718(&mut &receipt[..]).map_err(|e| bad(&e))?);
    }
    let hash = header.hash_slow();
    Ok(Block {
        header,
        hash,
        txs,
        receipts,
    })
}
