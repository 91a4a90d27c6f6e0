//! API keys bound to on-chain accounts. An account signs in with an EIP-4361 message and gets
//! a key; with a key it lists, makes and revokes its keys. Each key may carry a spend limit
//! (wei) and a rate limit (requests a minute). Only a key's SHA-256 is stored, so the store
//! leaks no usable key; revocation takes effect on the next request.
//!
//! Routes: `POST /v1/auth/nonce`, `POST /v1/auth/login`, `GET /v1/keys`, `POST /v1/keys`,
//! `DELETE /v1/keys/{id}`, and `GET /v1/receipts` (the account's metered requests). [`require_key`] guards other routes and hands them the
//! [`Consumer`].

use crate::{
    siwe::{self, Expected, SiweError},
    store::{KeyRow, Store, StoreError},
    ApiError,
};
use alloy_primitives::{hex, Address};
use axum::{
    extract::{Path, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// How long a sign-in nonce stays valid, in seconds.
const NONCE_SECONDS: u64 = 600;
/// How far a sign-in message's `Issued At` may be from the server's clock, in seconds.
const CLOCK_SKEW: i64 = 300;
/// The prefix of every key this server issues.
const KEY_PREFIX: &str = "olk_";

/// Who a request comes from: the account a key belongs to, and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumer {
    pub account: Address,
    pub key_id: u64,
}

/// Marks a request authenticated by an account's key on a node whose unpaid routes need an
/// operator's key: it may use paid agents only.
#[derive(Debug, Clone, Copy)]
pub struct PaidOnly;

/// Limits asked for a new key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub label: Option<String>,
    /// Wei, as a decimal string or a number.
    #[serde(default, with = "opt_u128")]
    pub spend_limit: Option<u128>,
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("sign-in refused: {0}")]
    SignIn(#[from] SiweError),
    #[error(
        "sign-in refused: the nonce was not issued by this server, was used already, or expired"
    )]
    Nonce,
    #[error(
        "no valid API key: send `Authorization: Bearer {KEY_PREFIX}…` (sign in at /v1/auth/login)"
    )]
    Missing,
    #[error("this API key is not valid")]
    Unknown,
    #[error("this API key was revoked")]
    Revoked,
    #[error("this API key allows {0} requests a minute; retry in a few seconds")]
    RateLimited(u32),
    #[error("no key {0} belongs to this account")]
    NoSuchKey(u64),
    #[error("a label is at most 64 characters")]
    LongLabel,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::SignIn(_)
            | KeyError::Nonce
            | KeyError::Missing
            | KeyError::Unknown
            | KeyError::Revoked => ApiError::unauthenticated(e.to_string()),
            KeyError::RateLimited(_) => ApiError::rate_limited(e.to_string()),
            KeyError::NoSuchKey(_) => ApiError::not_found("id", e.to_string()),
            KeyError::LongLabel => ApiError::invalid("label", e.to_string()),
            KeyError::Store(StoreError::TooManyKeys(_) | StoreError::TooManyNonces) => {
                ApiError::rate_limited(e.to_string())
            }
            KeyError::Store(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// A key's requests in the current minute.
struct Window {
    started: u64,
    count: u32,
}

/// The key service.
pub struct Keys {
    store: Arc<Store>,
    /// What sign-in messages must name: this API's host (and port) and the chain.
    domain: String,
    chain_id: u64,
    windows: Mutex<HashMap<u64, Window>>,
    /// Authenticates the nonces this process issues (so a restart ends outstanding ones).
    nonce_secret: [u8; 32],
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Bytes of HMAC-SHA-256 a nonce carries.
const NONCE_TAG: usize = 12;

/// HMAC-SHA-256 (RFC 2104) of `message` under a 32-byte `key`.
fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let pad = |byte: u8| {
        let mut block = [byte; 64];
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        block
    };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

impl Keys {
    pub fn new(store: Arc<Store>, domain: impl Into<String>, chain_id: u64) -> Arc<Self> {
        Arc::new(Self {
            store,
            domain: domain.into(),
            chain_id,
            windows: Mutex::new(HashMap::new()),
            nonce_secret: rand::random(),
        })
    }

    /// A fresh nonce for a sign-in message.
    ///
    /// Nonces are stateless: the expiry and a random part, authenticated with this process's
    /// secret, so asking for nonces stores nothing and nobody can crowd others out of signing
    /// in. Only used nonces are stored (until they expire), to refuse a replay.
    pub fn nonce(&self) -> Result<String, KeyError> {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&(now() + NONCE_SECONDS).to_be_bytes());
        body[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let tag = hmac(&self.nonce_secret, &body);
        Ok(format!(
            "{}{}",
            hex::encode(body),
            hex::encode(&tag[..NONCE_TAG])
        ))
    }

    /// The expiry of a nonce this process issued, if it is one.
    fn nonce_expiry(&self, nonce: &str) -> Option<u64> {
        let bytes = hex::decode(nonce).ok()?;
        if bytes.len() != 16 + NONCE_TAG {
            return None;
        }
        let (body, tag) = bytes.split_at(16);
        let want = hmac(&self.nonce_secret, body);
        // Compared without an early exit, so timing does not reveal how much of a tag matched.
        let diff = tag
            .iter()
            .zip(&want[..NONCE_TAG])
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        (diff == 0).then(|| u64::from_be_bytes(body[..8].try_into().expect("eight bytes")))
    }

    /// Checks a signed sign-in message and issues a key to its account.
    pub fn login(
        &self,
        message: &str,
        signature: &[u8],
        limits: Limits,
    ) -> Result<(KeyRow, String), KeyError> {
        let m = siwe::Message::parse(message)?;
        m.check(&Expected {
            domain: &self.domain,
            chain_id: self.chain_id,
            now: now() as i64,
            skew: CLOCK_SKEW,
        })?;
        siwe::verify_signature(message, signature, m.address)?;
        // The nonce last: a message refused above keeps its nonce for a corrected retry.
        let t = now();
        let expires = self.nonce_expiry(&m.nonce).ok_or(KeyError::Nonce)?;
        if expires <= t || !self.store.use_nonce(&m.nonce, expires, t)? {
            return Err(KeyError::Nonce);
        }
        self.create(m.address, limits)
    }

    /// Issues a new key to `account`; the secret is returned once and never stored.
    pub fn create(&self, account: Address, limits: Limits) -> Result<(KeyRow, String), KeyError> {
        let label = limits.label.unwrap_or_else(|| "default".into());
        if label.chars().count() > 64 {
            return Err(KeyError::LongLabel);
        }
        let secret = format!("{KEY_PREFIX}{}", hex::encode(rand::random::<[u8; 24]>()));
        let row = KeyRow {
            id: 0,
            account,
            label,
            created_at: now(),
            spend_limit: limits.spend_limit,
            spent: 0,
            rate_per_minute: limits.rate_per_minute,
            revoked_at: None,
        };
        let row = self.store.insert_key(&hash(&secret), row)?;
        Ok((row, secret))
    }

    /// The consumer a key belongs to, counting the request against its rate limit.
    pub fn authenticate(&self, secret: &str) -> Result<Consumer, KeyError> {
        if !secret.starts_with(KEY_PREFIX) {
            return Err(KeyError::Unknown);
        }
        let row = self.store.key(&hash(secret))?.ok_or(KeyError::Unknown)?;
        if row.revoked_at.is_some() {
            return Err(KeyError::Revoked);
        }
        if let Some(limit) = row.rate_per_minute {
            let t = now();
            let mut windows = self.windows.lock();
            let w = windows.entry(row.id).or_insert(Window {
                started: t,
                count: 0,
            });
            if t >= w.started + 60 {
                *w = Window {
                    started: t,
                    count: 0,
                };
            }
            if w.count >= limit {
                return Err(KeyError::RateLimited(limit));
            }
            w.count += 1;
        }
        Ok(Consumer {
            account: row.account,
            key_id: row.id,
        })
    }

    /// Revokes `account`'s key `id` (at once: the next request with it is refused).
    pub fn revoke(&self, account: Address, id: u64) -> Result<KeyRow, KeyError> {
        let t = now();
        let row = self
            .store
            .update_key(account, id, |row| {
                row.revoked_at.get_or_insert(t);
            })?
            .ok_or(KeyError::NoSuchKey(id))?;
        self.windows.lock().remove(&id);
        Ok(row)
    }

    /// `account`'s keys.
    pub fn list(&self, account: Address) -> Result<Vec<KeyRow>, KeyError> {
        Ok(self.store.keys_of(account)?)
    }
}

/// Middleware: the request must carry a valid key; the handler gets its [`Consumer`].
pub async fn require_key(
    State(keys): State<Arc<Keys>>,
    mut request: Request,
    next: Next,
) -> Response {
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let consumer = match secret {
        None => Err(KeyError::Missing),
        Some(secret) => keys.authenticate(secret),
    };
    match consumer {
        Ok(consumer) => {
            request.extensions_mut().insert(consumer);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A key as the API shows it (never the secret, once issued).
#[derive(Serialize)]
struct KeyView {
    id: u64,
    object: &'static str,
    account: Address,
    label: String,
    created_at: u64,
    spend_limit: Option<String>,
    spent: String,
    rate_per_minute: Option<u32>,
    revoked: bool,
    /// Present only in the answer that issues the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn view(row: KeyRow, key: Option<String>) -> KeyView {
    KeyView {
        id: row.id,
        object: "api_key",
        account: row.account,
        label: row.label,
        created_at: row.created_at,
        spend_limit: row.spend_limit.map(|l| l.to_string()),
        spent: row.spent.to_string(),
        rate_per_minute: row.rate_per_minute,
        revoked: row.revoked_at.is_some(),
        key,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    message: String,
    /// 65 bytes, hex (with or without `0x`).
    signature: String,
    #[serde(flatten)]
    limits: LoginLimits,
}

/// `Limits` without `deny_unknown_fields` (which `flatten` does not support).
#[derive(Deserialize, Default)]
struct LoginLimits {
    #[serde(default)]
    label: Option<String>,
    #[serde(default, with = "opt_u128")]
    spend_limit: Option<u128>,
    #[serde(default)]
    rate_per_minute: Option<u32>,
}

/// The routes that issue and manage keys; `/v1/keys` needs a key itself.
pub fn router(keys: Arc<Keys>) -> Router {
    let managed = Router::new()
        .route("/v1/keys", get(list).post(create))
        .route("/v1/keys/{id}", delete(revoke))
        .route("/v1/receipts", get(receipts))
        .route_layer(axum::middleware::from_fn_with_state(
            keys.clone(),
            require_key,
        ));
    Router::new()
        .route("/v1/auth/nonce", post(nonce))
        .route("/v1/auth/login", post(login))
        .merge(managed)
        .with_state(keys)
}

async fn nonce(State(keys): State<Arc<Keys>>) -> Result<Json<serde_json::Value>, ApiError> {
    let nonce = keys.nonce()?;
    Ok(Json(serde_json::json!({
        "nonce": nonce,
        "domain": keys.domain,
        "chain_id": keys.chain_id,
        "expires_in": NONCE_SECONDS,
    })))
}

async fn login(
    State(keys): State<Arc<Keys>>,
    body: axum::body::Bytes,
) -> Result<Json<KeyView>, ApiError> {
    let login: Login =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let signature = hex::decode(login.signature.trim())
        .map_err(|_| ApiError::invalid("signature", "the signature is not hex"))?;
    let limits = Limits {
        label: login.limits.label,
        spend_limit: login.limits.spend_limit,
        rate_per_minute: login.limits.rate_per_minute,
    };
    let (row, secret) = keys.login(&login.message, &signature, limits)?;
    Ok(Json(view(row, Some(secret))))
}

async fn list(
    State(keys): State<Arc<Keys>>,
    axum::Extension(consumer): axum::Extension<Consumer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = keys.list(consumer.account)?;
    let data: Vec<KeyView> = rows.into_iter().map(|r| view(r, None)).collect();
    Ok(Json(serde_json::json!({"object": "list", "data": data})))
}

/// Only a key without limits manages keys: a limited key could otherwise make itself an
/// unlimited one, or revoke the keys that limit it.
fn check_manager(keys: &Keys, consumer: &Consumer) -> Result<(), ApiError> {
    let row = keys
        .store
        .key_of(consumer.account, consumer.key_id)
        .map_err(KeyError::from)?;
    // A key revoked (or its record replaced) since it authenticated manages nothing.
    let Some(row) = row.filter(|r| r.revoked_at.is_none()) else {
        return Err(ApiError::forbidden("this key has been revoked"));
    };
    if row.spend_limit.is_some() || row.rate_per_minute.is_some() {
        return Err(ApiError::forbidden(
            "a key with limits cannot make or revoke keys: use a key without limits, or sign in again",
        ));
    }
    Ok(())
}

async fn create(
    State(keys): State<Arc<Keys>>,
    axum::Extension(consumer): axum::Extension<Consumer>,
    body: axum::body::Bytes,
) -> Result<Json<KeyView>, ApiError> {
    check_manager(&keys, &consumer)?;
    let limits: Limits = if body.is_empty() {
        Limits::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    let (row, secret) = keys.create(consumer.account, limits)?;
    Ok(Json(view(row, Some(secret))))
}

async fn revoke(
    State(keys): State<Arc<Keys>>,
    axum::Extension(consumer): axum::Extension<Consumer>,
    Path(id): Path<u64>,
) -> Result<Json<KeyView>, ApiError> {
    check_manager(&keys, &consumer)?;
    Ok(Json(view(keys.revoke(consumer.account, id)?, None)))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// The account's receipts, newest first (`?before=ID&limit=N`, at most 100).
async fn receipts(
    State(keys): State<Arc<Keys>>,
    axum::Extension(consumer): axum::Extension<Consumer>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page.limit.unwrap_or(20).min(100);
    let rows = keys
        .store
        .receipts_of(consumer.account, page.before.unwrap_or(u64::MAX), limit)
        .map_err(KeyError::from)?;
    let mut data: Vec<serde_json::Value> = Vec::with_capacity(rows.len());
    for r in rows {
        let settlement = keys.store.settlement_of(r.id).map_err(KeyError::from)?;
        data.push(serde_json::json!({
                "id": r.id,
                "object": "receipt",
                "agent": format!("agent-{}", r.agent_id),
                "seq": r.seq,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "fee": r.fee.to_string(),
                "complete": r.complete,
                "created_at": r.created_at,
                "key_id": r.key_id,
                // The batch that settled it (0: settled before a restart, batch unrecorded).
                "batch": settlement.map(|s| s.0),
                "released": settlement.is_some_and(|s| s.1),
        }));
    }
    Ok(Json(serde_json::json!({"object": "list", "data": data})))
}

/// `Option<u128>` from a JSON number or a decimal string (wei exceed JSON's safe integers).
mod opt_u128 {
    use serde::{de::Error, Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wei {
            Number(u128),
            Text(String),
        }
        match Option::<Wei>::deserialize(d)? {
            None => Ok(None),
            Some(Wei::Number(n)) => Ok(Some(n)),
            Some(Wei::Text(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("`{s}` is not an amount of wei"))),
        }
    }
}

#[cfg(test)]
mod tests;
