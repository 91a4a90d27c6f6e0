//! The dev accounts: keys derived from the well-known test mnemonic with BIP-39 and BIP-32
//! (path `m/44'/60'/0'/0/i`), so that wallets and dev tooling configured for that mnemonic work
//! against a `--dev` node unchanged.

use alloy_primitives::{Address, B256};
use hmac::{Hmac, Mac};
use k256::{ecdsa::SigningKey, elliptic_curve::PrimeField, Scalar};
use sha2::Sha512;

/// The mnemonic that every Ethereum dev node funds.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// How many dev accounts the dev genesis funds and `eth_accounts` lists.
pub const DEV_ACCOUNT_COUNT: u32 = 10;

const HARDENED: u32 = 0x8000_0000;

/// A private key with the address it controls.
#[derive(Clone)]
pub struct DevKey {
    pub key: SigningKey,
    pub address: Address,
}

/// The first `count` accounts of `mnemonic` on Ethereum's derivation path.
pub fn derive_accounts(mnemonic: &str, count: u32) -> Vec<DevKey> {
    let seed = bip39_seed(mnemonic, "");
    let (mut key, mut chain) = master_key(&seed);
    for index in [44 | HARDENED, 60 | HARDENED, HARDENED, 0] {
        (key, chain) = child_key(&key, &chain, index);
    }
    (0..count)
        .map(|i| {
            let (child, _) = child_key(&key, &chain, i);
            let key = SigningKey::from_bytes(&child.to_bytes()).expect("derived key is non-zero");
            DevKey {
                address: address_of(&key),
                key,
            }
        })
        .collect()
}

/// The ten dev accounts of [`DEV_MNEMONIC`].
pub fn dev_accounts() -> Vec<DevKey> {
    derive_accounts(DEV_MNEMONIC, DEV_ACCOUNT_COUNT)
}

/// The Ethereum address of a secp256k1 key: the last 20 bytes of keccak of the public point.
pub fn address_of(key: &SigningKey) -> Address {
    let point = key.verifying_key().to_encoded_point(false);
    Address::from_raw_public_key(&point.as_bytes()[1..])
}

fn bip39_seed(mnemonic: &str, passphrase: &str) -> [u8; 64] {
    let mut seed = [0u8; 64];
    let salt = format!("mnemonic{passphrase}");
    pbkdf2::pbkdf2_hmac::<Sha512>(mnemonic.as_bytes(), salt.as_bytes(), 2048, &mut seed);
    seed
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn split(i: [u8; 64]) -> (Scalar, B256) {
    let left: [u8; 32] = i[..32].try_into().expect("32 bytes");
    let scalar = Option::from(Scalar::from_repr(left.into()))
        .expect("BIP-32 key material out of range (probability below 2^-127)");
    (scalar, B256::from_slice(&i[32..]))
}

fn master_key(seed: &[u8]) -> (Scalar, B256) {
    split(hmac512(b"Bitcoin seed", &[seed]))
}

fn child_key(parent: &Scalar, chain: &B256, index: u32) -> (Scalar, B256) {
    let i = if index & HARDENED != 0 {
        hmac512(
            chain.as_slice(),
            &[&[0u8], &parent.to_bytes(), &index.to_be_bytes()],
        )
    } else {
        let key = SigningKey::from_bytes(&parent.to_bytes()).expect("non-zero parent key");
        let public = key.verifying_key().to_encoded_point(true);
        hmac512(chain.as_slice(), &[public.as_bytes(), &index.to_be_bytes()])
    };
    let (tweak, child_chain) = split(i);
    (tweak + parent, child_chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn derives_the_standard_dev_accounts() {
        let accounts = dev_accounts();
        assert_eq!(accounts.len(), 10);
        assert_eq!(
            accounts[0].address,
            address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
        assert_eq!(
            accounts[1].address,
            address!("70997970C51812dc3A010C7d01b50e0d17dc79C8")
        );
        assert_eq!(
            accounts[9].address,
            address!("a0Ee7A142d267C1f36714E4a8F75612F20a79720")
        );
        assert_eq!(
            alloy_primitives::hex::encode(accounts[0].key.to_bytes()),
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        );
    }
}
