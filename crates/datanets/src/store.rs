//! The blob store: contribution bytes and everything off chain that goes with them, behind
//! the `object_store` interface (a local directory by default; S3-compatible storage with
//! the `s3` feature).
//!
//! Layout (keys):
//! - `blobs/<content hash>`: a contribution's canonical bytes (shared when two datanets hold
//!   the same file).
//! - `contributions/<datanet>/<content hash>/{report,metadata}.json` and `.../minhash.bin`:
//!   the validation report, the signed metadata, and the records' MinHash signatures.
//! - `pending/<datanet>/<content hash>/<contributor>.json`: a contribution stored but not yet
//!   seen on chain, one per contributor;
//!   [`crate::Datanets::sweep`] removes what never landed.
//! - `schemas/<schema hash>.json`, `datanets/<metadata hash>.json`: datanets' schemas and
//!   descriptions, named by the hashes on chain.
//! - `versions/<datanet>/<root>.json`: a version's members, named by its root on chain.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::{
    local::LocalFileSystem, path::Path as Key, ObjectStore, PutPayload, WriteMultipart,
};
use serde::{de::DeserializeOwned, Serialize};
use std::{io::Read, path::Path, sync::Arc};

/// Bytes per part when a file streams into the store.
const PART_BYTES: usize = 8 << 20;

/// A blob store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob store: reading {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("blob store {0:?}: {1}")]
    Location(String, String),
    #[error("blob store: {key} is not valid JSON: {source}")]
    Json {
        key: String,
        source: serde_json::Error,
    },
}

/// The blob store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::File {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self::new(Arc::new(LocalFileSystem::new_with_prefix(dir)?)))
    }

    /// The store at `location`: a directory (or `file://` URL), or `s3://bucket[/prefix]` in
    /// a build with the `s3` feature, configured by the usual `AWS_*` environment variables
    /// (`AWS_ENDPOINT` for S3-compatible services such as MinIO).
    pub fn open(location: &str) -> Result<Self, StoreError> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::s3(location, rest);
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(StoreError::Location(
                location.into(),
                "expected a directory, file:// or s3://".into(),
            ));
        }
        Self::local(Path::new(location.trim_start_matches("file://")))
    }

    #[cfg(feature = "s3")]
    fn s3(location: &str, rest: &str) -> Result<Self, StoreError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bad = |e: object_store::Error| StoreError::Location(location.into(), e.to_string());
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(bad)?;
        Ok(if prefix.is_empty() {
            Self::new(Arc::new(s3))
        } else {
            Self::new(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)))
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(location: &str, _rest: &str) -> Result<Self, StoreError> {
        Err(StoreError::Location(
            location.into(),
            "this build has no S3 support (build with `--features s3`)".into(),
        ))
    }

    /// A store over any `object_store` backend.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// Streams the file at `path` into `key`.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let file_error = |source| StoreError::File {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(file_error)?;
        let mut upload = WriteMultipart::new_with_chunk_size(
            self.inner.put_multipart(&Key::from(key)).await?,
            PART_BYTES,
        );
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = file.read(&mut buf).map_err(file_error)?;
            if n == 0 {
                break;
            }
            upload.write(&buf[..n]);
        }
        upload.finish().await?;
        Ok(())
    }

    /// Writes `bytes` to `key`.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        self.inner
            .put(&Key::from(key), PutPayload::from(bytes.into()))
            .await?;
        Ok(())
    }

    /// Writes `value` as JSON to `key`.
    pub async fn put_json(&self, key: &str, value: &impl Serialize) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).expect("serialising a plain value cannot fail");
        self.put(key, bytes).await
    }

    /// The bytes at `key`, or `None` if there are none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(&Key::from(key)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The JSON value at `key`, or `None` if there is none.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json {
                key: key.into(),
                source,
            })
    }

    /// The bytes at `key` as a stream of chunks.
    pub async fn stream(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, StoreError>>, StoreError> {
        let result = self.inner.get(&Key::from(key)).await?;
        Ok(result.into_stream().map_err(StoreError::from))
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&Key::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = Key::from(prefix);
        let mut keys = Vec::new();
        let mut listing = self.inner.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location.to_string());
        }
        keys.sort();
        Ok(keys)
    }
}

/// Where things live in the store.
pub mod keys {
    use alloy_primitives::{Address, B256};

    pub fn blob(content_hash: B256) -> String {
        format!("blobs/{content_hash:x}")
    }
    pub fn contribution(datanet: u64, content_hash: B256, file: &str) -> String {
        format!("contributions/{datanet}/{content_hash:x}/{file}")
    }
    /// A contributor's upload waiting for its transaction: one per contributor, so another
    /// uploader of the same bytes cannot displace it.
    pub fn pending(datanet: u64, content_hash: B256, contributor: Address) -> String {
        format!("pending/{datanet}/{content_hash:x}/{contributor:x}.json")
    }
    /// Every contributor's pending upload of these bytes to this datanet.
    pub fn pending_of(datanet: u64, content_hash: B256) -> String {
        format!("pending/{datanet}/{content_hash:x}")
    }
    /// The mark of a prepared call's blobs, waiting for its transaction.
    pub fn draft(id: B256) -> String {
        format!("drafts/{id:x}.json")
    }
    /// A contributor's signed metadata for these bytes.
    pub fn metadata(datanet: u64, content_hash: B256, contributor: Address) -> String {
        contribution(
            datanet,
            content_hash,
            &format!("metadata-{contributor:x}.json"),
        )
    }
    /// The key a datanet's `metadataURI` names, if it is in this service's own form
    /// (`openledger:datanets/<64 hex>.json`); any other string names nothing here.
    pub fn from_metadata_uri(uri: &str) -> Option<String> {
        let hex = uri
            .strip_prefix("openledger:datanets/")?
            .strip_suffix(".json")?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return None;
        }
        Some(description(hex.parse().ok()?))
    }
    pub fn schema(hash: B256) -> String {
        format!("schemas/{hash:x}.json")
    }
    pub fn description(hash: B256) -> String {
        format!("datanets/{hash:x}.json")
    }
    pub fn version(datanet: u64, root: B256) -> String {
        format!("versions/{datanet}/{root:x}.json")
    }
}
