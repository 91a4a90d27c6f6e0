//! Dev keys, the benchmark contract, and signing of EIP-1559 transactions.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{keccak256, Address, Bytes, Signature, TxKind, B256, U256};
use anyhow::{Context, Result};
use k256::ecdsa::SigningKey;

/// Private keys of the ten accounts of the mnemonic
/// `test test test test test test test test test test test junk` (paths m/44'/60'/0'/0/0..9),
/// the dev accounts of both anvil and `openledger node --dev`.
const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Runtime code of the benchmark contract: stores the first calldata word in slot 0 and emits
/// it as the data of a log whose only topic is the caller.
///
/// ```text
/// 60 00   PUSH1 0        [0]
/// 35      CALLDATALOAD   [v]               v = calldata[0..32]
/// 80      DUP1           [v, v]
/// 60 00   PUSH1 0        [0, v, v]
/// 55      SSTORE         [v]               storage[0] = v
/// 60 00   PUSH1 0        [0, v]
/// 52      MSTORE         []                memory[0..32] = v
/// 33      CALLER         [caller]
/// 60 20   PUSH1 32       [32, caller]
/// 60 00   PUSH1 0        [0, 32, caller]
/// a1      LOG1           []                log(data = memory[0..32], topics = [caller])
/// 00      STOP
/// ```
///
/// PUSH1 0 rather than PUSH0 so that the code does not depend on the node's hardfork.
pub const RUNTIME_CODE: [u8; 17] = [
    0x60, 0x00, 0x35, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x52, 0x33, 0x60, 0x20, 0x60, 0x00, 0xa1,
    0x00,
];

/// Init code: copies the 17 runtime bytes that follow it (at offset 12) to memory and returns
/// them.
///
/// ```text
/// 60 11   PUSH1 17       [17]              size
/// 60 0c   PUSH1 12       [12, 17]          code offset of the runtime (= length of this init code)
/// 60 00   PUSH1 0        [0, 12, 17]       memory offset
/// 39      CODECOPY       []                memory[0..17] = code[12..29]
/// 60 11   PUSH1 17       [17]
/// 60 00   PUSH1 0        [0, 17]
/// f3      RETURN                           return memory[0..17]
/// ```
const INIT_CODE: [u8; 12] = [
    0x60, 0x11, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x11, 0x60, 0x00, 0xf3,
];

/// Gas of a plain value transfer.
pub const TRANSFER_GAS: u64 = 21_000;
/// Gas limit of a contract call. The worst case (first write of slot 0) uses about 45,000:
/// 21,000 + 512 calldata + 22,100 SSTORE + ~1,030 LOG1 + pushes. The limit is kept tight because
/// block builders count the gas limit, not the gas used, against the block's room.
pub const CALL_GAS: u64 = 60_000;
/// Gas limit of the deployment.
const DEPLOY_GAS: u64 = 200_000;

/// A dev account: its key and the address derived from it.
pub struct Account {
    pub key: SigningKey,
    pub address: Address,
}

/// The ten dev accounts, addresses derived from the keys rather than hard-coded.
pub fn dev_accounts() -> Vec<Account> {
    DEV_KEYS
        .iter()
        .map(|hex| {
            let key = SigningKey::from_slice(&decode_hex(hex)).expect("valid dev key");
            let address = Address::from_private_key(&key);
            Account { key, address }
        })
        .collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Fee fields shared by every transaction of a run.
#[derive(Clone, Copy)]
pub struct Fees {
    pub chain_id: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// A signed transaction, ready to submit.
pub struct SignedTx {
    pub hash: B256,
    /// The EIP-2718 encoding, as `eth_sendRawTransaction` takes it.
    pub raw: Vec<u8>,
}

/// Signs an EIP-1559 transaction.
pub fn sign(
    account: &Account,
    fees: Fees,
    nonce: u64,
    gas_limit: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
) -> Result<SignedTx> {
    let tx = TxEip1559 {
        chain_id: fees.chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to,
        value,
        access_list: Default::default(),
        input,
    };
    let (sig, recid) = account
        .key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .context("signing")?;
    let envelope = TxEnvelope::from(tx.into_signed(Signature::from((sig, recid))));
    let raw = envelope.encoded_2718();
    Ok(SignedTx {
        hash: keccak256(&raw),
        raw,
    })
}

/// The deployment of the benchmark contract, and the address it will have.
pub fn sign_deploy(account: &Account, fees: Fees, nonce: u64) -> Result<(SignedTx, Address)> {
    let code: Vec<u8> = INIT_CODE.iter().chain(&RUNTIME_CODE).copied().collect();
    let tx = sign(
        account,
        fees,
        nonce,
        DEPLOY_GAS,
        TxKind::Create,
        U256::ZERO,
        code.into(),
    )?;
    Ok((tx, account.address.create(nonce)))
}

/// A 1-wei transfer. Recipients are derived from the index so that they are spread over many
/// fresh accounts (as real traffic is) yet the same on every run.
pub fn sign_transfer(account: &Account, fees: Fees, nonce: u64, index: usize) -> Result<SignedTx> {
    let seed = keccak256([b"openledger-bench".as_slice(), &index.to_be_bytes()].concat());
    let to = Address::from_slice(&seed[12..]);
    sign(
        account,
        fees,
        nonce,
        TRANSFER_GAS,
        TxKind::Call(to),
        U256::from(1),
        Bytes::new(),
    )
}

/// A call of the benchmark contract storing `index + 1`: distinct non-zero values, so that every
/// call really changes the slot.
pub fn sign_call(
    account: &Account,
    fees: Fees,
    nonce: u64,
    contract: Address,
    index: usize,
) -> Result<SignedTx> {
    let word = U256::from(index as u64 + 1).to_be_bytes::<32>();
    sign(
        account,
        fees,
        nonce,
        CALL_GAS,
        TxKind::Call(contract),
        U256::ZERO,
        Bytes::copy_from_slice(&word),
    )
}

/// Signs `count` transactions spread round-robin over `accounts` (transaction `i` is sent by
/// account `i % n` with nonce `first_nonce[i % n] + i / n`), on all cores: signing is the
/// slow part of preparing a run and is done before timing starts.
pub fn sign_many<F>(
    accounts: &[Account],
    first_nonce: &[u64],
    count: usize,
    sign_one: F,
) -> Result<Vec<SignedTx>>
where
    F: Fn(&Account, u64, usize) -> Result<SignedTx> + Sync,
{
    let n = accounts.len();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunk = count.div_ceil(threads).max(1);
    let sign_one = &sign_one;
    let parts: Vec<Result<Vec<SignedTx>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|i| sign_one(&accounts[i % n], first_nonce[i % n] + (i / n) as u64, i))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signing thread panicked"))
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

/// How many of `count` round-robin transactions each of `n` accounts sends.
pub fn per_account(count: usize, n: usize) -> impl Iterator<Item = u64> {
    (0..n).map(move |a| ((count + n - 1 - a) / n) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_the_standard_ones() {
        let expected = [
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
            "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
            "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
            "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
            "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
            "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
            "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        ];
        let derived: Vec<Address> = dev_accounts().iter().map(|a| a.address).collect();
        let expected: Vec<Address> = expected.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(derived, expected);
    }

    #[test]
    fn round_robin_counts() {
        assert_eq!(
            per_account(23, 10).collect::<Vec<_>>(),
            [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
        );
        assert_eq!(per_account(20, 10).sum::<u64>(), 20);
    }
}
