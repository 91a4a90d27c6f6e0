//! The contributor's signed metadata: EIP-712 typed data over what the contribution is, so
//! that the service, curators and anyone else can check who vouched for which bytes under
//! which licence. Its EIP-712 hash is the `metadataHash` recorded on chain.

use alloy_primitives::{Address, Signature, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

alloy_sol_types::sol! {
    /// What an uploader signs to store a file as its own pending contribution: the raw bytes
    /// it sends (their keccak256 and length), for which datanet, until when.
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct UploadRequest {
        uint256 datanetId;
        address contributor;
        bytes32 fileHash;
        uint64 size;
        uint64 deadline;
    }

    /// What a contributor signs.
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct ContributionMetadata {
        uint256 datanetId;
        bytes32 contentHash;
        uint64 size;
        uint64 records;
        string licence;
        string[] tags;
        uint64 time;
    }
}

/// Why signed metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the metadata's signature is not a valid signature")]
    Malformed,
    #[error("the metadata is signed by {signer}, not by the contributor {contributor}")]
    WrongSigner {
        signer: Address,
        contributor: Address,
    },
    #[error("the metadata says {field} is {claimed} but the file's is {actual}")]
    Mismatch {
        field: &'static str,
        claimed: String,
        actual: String,
    },
}

/// The EIP-712 domain: this protocol's registry on this chain.
pub fn domain(chain_id: u64, registry: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("OpenLedger Datanets".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(registry),
        None,
    )
}

/// The longest an upload signature may stay valid, in seconds: it bounds replays.
pub const MAX_UPLOAD_VALIDITY: u64 = 3600;

/// Why a signed upload request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadAuthError {
    #[error("the upload is not signed: send X-Upload-Signature and X-Upload-Deadline")]
    Missing,
    #[error("the upload's signature is not a valid signature")]
    Malformed,
    #[error("the upload is signed by {signer}, not by the contributor {contributor}")]
    WrongSigner {
        signer: Address,
        contributor: Address,
    },
    #[error(
        "the upload's signature expired at {deadline} (or is valid for more than an hour): \
         sign it again"
    )]
    Expired { deadline: u64 },
}

impl UploadRequest {
    /// Recovers who signed this request with the 65-byte `signature`, and checks that it is
    /// the contributor and that `now` is within the request's validity.
    pub fn verify(
        &self,
        domain: &Eip712Domain,
        signature: &[u8],
        now: u64,
    ) -> Result<(), UploadAuthError> {
        if self.deadline < now || self.deadline > now + MAX_UPLOAD_VALIDITY {
            return Err(UploadAuthError::Expired {
                deadline: self.deadline,
            });
        }
        let signature = Signature::try_from(signature).map_err(|_| UploadAuthError::Malformed)?;
        let signer = signature
            .recover_address_from_prehash(&self.eip712_signing_hash(domain))
            .map_err(|_| UploadAuthError::Malformed)?;
        if signer != self.contributor {
            return Err(UploadAuthError::WrongSigner {
                signer,
                contributor: self.contributor,
            });
        }
        Ok(())
    }

    /// Signs the request with `key`: 65 bytes, r, s, v.
    pub fn sign(&self, domain: &Eip712Domain, key: &k256::ecdsa::SigningKey) -> Vec<u8> {
        let (sig, recid) = key
            .sign_prehash_recoverable(self.eip712_signing_hash(domain).as_slice())
            .expect("signing a 32-byte prehash cannot fail");
        Signature::from((sig, recid)).as_bytes().to_vec()
    }
}

/// Metadata with its signature, as stored beside the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMetadata {
    pub metadata: ContributionMetadata,
    /// 65 bytes: r, s, v.
    pub signature: alloy_primitives::Bytes,
}

impl SignedMetadata {
    /// The hash recorded on chain as `metadataHash`.
    pub fn hash(&self, domain: &Eip712Domain) -> B256 {
        self.metadata.eip712_signing_hash(domain)
    }

    /// Signs `metadata` with `key`.
    pub fn sign(
        metadata: ContributionMetadata,
        domain: &Eip712Domain,
        key: &k256::ecdsa::SigningKey,
    ) -> Self {
        let hash = metadata.eip712_signing_hash(domain);
        let (sig, recid) = key
            .sign_prehash_recoverable(hash.as_slice())
            .expect("signing a 32-byte prehash cannot fail");
        let signature = Signature::from((sig, recid));
        Self {
            metadata,
            signature: signature.as_bytes().to_vec().into(),
        }
    }

    /// The address that signed, or an error if the signature is malformed.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, MetadataError> {
        let signature =
            Signature::try_from(self.signature.as_ref()).map_err(|_| MetadataError::Malformed)?;
        signature
            .recover_address_from_prehash(&self.hash(domain))
            .map_err(|_| MetadataError::Malformed)
    }

    /// Checks that `contributor` signed and that the metadata describes this file.
    pub fn verify(
        &self,
        domain: &Eip712Domain,
        contributor: Address,
        datanet: u64,
        content_hash: B256,
        size: u64,
        records: u64,
    ) -> Result<(), MetadataError> {
        let signer = self.signer(domain)?;
        if signer != contributor {
            return Err(MetadataError::WrongSigner {
                signer,
                contributor,
            });
        }
        let m = &self.metadata;
        let checks = [
            ("datanetId", m.datanetId.to_string(), datanet.to_string()),
            (
                "contentHash",
                m.contentHash.to_string(),
                content_hash.to_string(),
            ),
            ("size", m.size.to_string(), size.to_string()),
            ("records", m.records.to_string(), records.to_string()),
        ];
        for (field, claimed, actual) in checks {
            if claimed != actual {
                return Err(MetadataError::Mismatch {
                    field,
                    claimed,
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    fn metadata() -> ContributionMetadata {
        ContributionMetadata {
            datanetId: U256::from(1),
            contentHash: B256::repeat_byte(7),
            size: 10,
            records: 2,
            licence: "CC-BY-4.0".into(),
            tags: vec!["solidity".into()],
            time: 1_800_000_000,
        }
    }

    #[test]
    fn the_signer_is_recovered_and_tampering_is_caught() {
        let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let address = openledger_protocol::Signer::from_key(key.clone()).address();
        let domain = domain(1612, Address::repeat_byte(9));
        let signed = SignedMetadata::sign(metadata(), &domain, &key);
        signed
            .verify(&domain, address, 1, B256::repeat_byte(7), 10, 2)
            .unwrap();
        // Another chain's domain recovers someone else.
        let other = super::domain(1, Address::repeat_byte(9));
        assert!(matches!(
            signed.verify(&other, address, 1, B256::repeat_byte(7), 10, 2),
            Err(MetadataError::WrongSigner { .. })
        ));
        let mut tampered = signed.clone();
        tampered.metadata.licence = "proprietary".into();
        assert!(matches!(
            tampered.verify(&domain, address, 1, B256::repeat_byte(7), 10, 2),
            Err(MetadataError::WrongSigner { .. })
        ));
        assert_eq!(
            signed.verify(&domain, address, 1, B256::repeat_byte(7), 11, 2),
            Err(MetadataError::Mismatch {
                field: "size",
                claimed: "10".into(),
                actual: "11".into()
            })
        );
    }
}
