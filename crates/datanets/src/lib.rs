//! Datanets off chain: taking in contributions, checking them, storing them by content,
//! putting them before curators, and publishing versions that anyone can prove membership
//! of — all tied to the `DatanetRegistry` contract through `openledger-protocol`.
//!
//! How it is organised:
//! - [`format`] reads the accepted file formats as streams and defines their canonical bytes,
//!   whose keccak256 is the content hash on chain; [`parquet`] reads Parquet rows.
//! - [`validate`] checks every record (schema, UTF-8, size, secrets, personal data,
//!   near-duplicates, quality) and writes the report curators see; [`scan`] holds the secret
//!   and personal-data patterns, [`minhash`] the near-duplicate index.
//! - [`metadata`] is the contributor's EIP-712 signed description of a contribution.
//! - [`store`] is the blob store (`object_store`); [`index`] is the embedded view of the
//!   registry rebuilt from its events.
//! - [`merkle`] builds versions as OpenZeppelin-compatible Merkle trees with proofs.
//! - [`search`] ranks a version's records against a query (BM25), for agents answering from a
//!   knowledge datanet.
//! - [`Datanets`] ties them together: create, contribute, queue, review, publish, prove,
//!   verify, export; [`api`] serves it as a REST API.

pub mod api;
mod contribute;
mod drafts;
pub mod format;
pub mod index;
mod lines;
pub mod merkle;
pub mod metadata;
pub mod minhash;
pub mod parquet;
pub mod scan;
pub mod search;
mod service;
pub mod store;
pub mod validate;
mod versions;

pub use contribute::{Call, Contributed, Uploaded};
pub use format::{Format, Place};
pub use index::{ContributionRow, DatanetRow, Status, VersionRow};
pub use metadata::{ContributionMetadata, SignedMetadata, UploadRequest};
pub use service::{
    Datanets, NewDatanet, Progress, QueueEntry, MAX_DESCRIPTION_BYTES, MAX_REASON_BYTES,
    MAX_SCHEMA_BYTES,
};
pub use validate::{Policy, Report, ValidationError};
pub use versions::{ExportSummary, Proof, Published};

use alloy_primitives::B256;
use openledger_protocol::client::ClientError;

/// Why a datanet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatanetsError {
    #[error("the contribution was refused: {0}")]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    #[error(transparent)]
    UploadAuth(#[from] metadata::UploadAuthError),
    #[error("{contributor} already has {what} waiting for their transactions, the most allowed; send those (or let them expire) first")]
    ContributorQuota {
        contributor: alloy_primitives::Address,
        what: String,
    },
    #[error("the service holds the most uploads waiting for their transactions ({limit}); try again later")]
    PendingFull { limit: usize },
    #[error("the service holds the most bytes of uploads waiting for their transactions ({limit}); try again later")]
    PendingBytesFull { limit: u64 },
    #[error(
        "the service is checking the most uploads it checks at once ({limit}); try again shortly"
    )]
    Busy { limit: usize },
    #[error("the service holds the most prepared calls waiting for their transactions ({limit}); try again later")]
    DraftsFull { limit: String },
    #[error("the {what} is too large: at most {max} bytes")]
    TooLarge { what: &'static str, max: usize },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Chain(#[from] ClientError),
    #[error("datanet {0} does not exist")]
    UnknownDatanet(u64),
    #[error("contribution {0} does not exist")]
    UnknownContribution(u64),
    #[error("version {0} does not exist")]
    UnknownVersion(u64),
    #[error("the schema is not a valid JSON Schema: {0}")]
    BadSchema(String),
    #[error("datanet {datanet}'s schema ({hash}) is not in this blob store")]
    MissingSchema { datanet: u64, hash: B256 },
    #[error("this file is already contribution {contribution} to datanet {datanet} ({status:?})")]
    ExactDuplicate {
        datanet: u64,
        contribution: u64,
        status: Status,
    },
    #[error("contribution {contribution} is not in version {version}")]
    NotInVersion { version: u64, contribution: u64 },
    #[error("version {version}'s member list ({key}) is missing or does not match its root")]
    BadManifest { version: u64, key: String },
    #[error("datanet {datanet} has no accepted contributions to publish")]
    NothingToPublish { datanet: u64 },
    #[error("no upload of {content_hash} to datanet {datanet} is waiting; upload the file first")]
    NoUpload { datanet: u64, content_hash: B256 },
    #[error("the protocol's addresses are not known to this client")]
    NoAddresses,
    #[error("this needs a signing key")]
    NoSigner,
    #[error("{0}")]
    Io(String),
}
