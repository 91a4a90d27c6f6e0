//! The wallet's side on the server: on a `--dev` node, a signer for the dev accounts (so that
//! nothing needs installing to try the app), and revert data decoded into words for any
//! wallet.
//!
//! The dev signer answers the few EIP-1193 methods the app uses, as JSON-RPC at
//! `POST /wallet/dev`: `eth_accounts`, `eth_chainId`, `eth_sendTransaction` (to a contract,
//! never a deployment), `eth_signTypedData_v4` for the datanets' two EIP-712 types in this
//! node's domain, `personal_sign`, and the reads a page waits on (`eth_getTransactionReceipt`,
//! `eth_blockNumber`). It signs for keys everyone knows (the test mnemonic's), on a dev chain
//! only, and still keeps strangers out: it wants a JSON body (which a cross-site form cannot
//! send without a CORS preflight this node never grants), this node's own pages as the origin,
//! a host given as an address (no DNS rebinding), transactions to the protocol's contracts
//! only, and `personal_sign` only of a sign-in to this host.

use crate::Web;
use alloy_primitives::{eip191_hash_message, hex, Address, Bytes, Signature, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use k256::ecdsa::SigningKey;
use openledger_datanets::{ContributionMetadata, UploadRequest};
use openledger_genesis::devkeys::DevKey;
use openledger_protocol::{client::describe_revert, ClientError, ProtocolClient, Signer};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// What the app tells a wallet about this chain, and the dev accounts it may sign for.
pub struct WalletSettings {
    /// The JSON-RPC URL a browser wallet adds for this chain.
    pub rpc_url: String,
    /// The dev accounts' keys (on a `--dev` node only).
    pub dev_keys: Vec<DevKey>,
}

pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/wallet/dev", post(dev_rpc))
        .route("/wallet/explain", post(explain))
}

/// A JSON-RPC failure as EIP-1193 wallets report it: a code, a message and, for a revert, its
/// data.
struct RpcFailure {
    code: i64,
    message: String,
    data: Option<Bytes>,
}

impl RpcFailure {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
            data: None,
        }
    }

    fn unauthorized(account: Address) -> Self {
        Self {
            code: 4100,
            message: format!("{account} is not one of this dev node's accounts"),
            data: None,
        }
    }

    fn from_client(e: ClientError) -> Self {
        match e {
            ClientError::Reverted { reason, data, .. } => Self {
                code: 3,
                message: format!("the contract refused: {}", words(&reason)),
                data: Some(data),
            },
            other => Self {
                code: -32603,
                message: other.to_string(),
                data: None,
            },
        }
    }
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

/// The page's host, if the request may use the dev wallet: sent by this node's own pages
/// (an `Origin`, when there is one, naming the host asked for) to a host given as an address
/// or `localhost`. A name that is neither is how a DNS-rebinding page would reach a node on
/// loopback, so it is refused.
fn trusted_host(headers: &HeaderMap) -> Result<&str, &'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("the request names no host")?;
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name != "localhost" && name.parse::<std::net::IpAddr>().is_err() {
        return Err("the dev wallet answers only at an IP address or localhost");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Err("the dev wallet answers only this node's own pages");
        }
    }
    Ok(host)
}

async fn dev_rpc(State(web): State<Arc<Web>>, headers: HeaderMap, body: String) -> Response {
    if web.wallet.dev_keys.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "the dev wallet is only on a --dev node",
        )
            .into_response();
    }
    let host = match trusted_host(&headers) {
        Ok(host) => host,
        Err(why) => return (StatusCode::FORBIDDEN, why).into_response(),
    };
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the dev wallet takes application/json",
        )
            .into_response();
    }
    let request: Request = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return Json(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("not a JSON-RPC request: {e}")}}))
            .into_response()
        }
    };
    let answer = match dev_method(&web, host, &request.method, &request.params).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": request.id, "result": result}),
        Err(f) => {
            json!({"jsonrpc": "2.0", "id": request.id,
                   "error": {"code": f.code, "message": f.message, "data": f.data}})
        }
    };
    Json(answer).into_response()
}

async fn dev_method(
    web: &Web,
    host: &str,
    method: &str,
    params: &Value,
) -> Result<Value, RpcFailure> {
    let keys = &web.wallet.dev_keys;
    match method {
        "eth_accounts" | "eth_requestAccounts" => {
            Ok(json!(keys.iter().map(|k| k.address).collect::<Vec<_>>()))
        }
        "eth_chainId" => Ok(json!(format!("{:#x}", web.client.chain_id()))),
        "eth_sendTransaction" => send(web, &params[0]).await,
        "eth_signTypedData_v4" => {
            let key = key_of(keys, &params[0])?;
            let typed = match &params[1] {
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|e| RpcFailure::invalid(format!("the typed data is not JSON: {e}")))?,
                other => other.clone(),
            };
            let hash = typed_data_hash(web.datanets.domain(), &typed)?;
            Ok(json!(sign(key, hash)))
        }
        "personal_sign" => {
            let key = key_of(keys, &params[1])?;
            let message: Bytes = serde_json::from_value(params[0].clone())
                .map_err(|_| RpcFailure::invalid("personal_sign takes the message as hex"))?;
            // Only a sign-in with Ethereum to this very host: the one message the app signs.
            let sign_in = format!("{host} wants you to sign in with your Ethereum account:\n");
            if !message.starts_with(sign_in.as_bytes()) {
                return Err(RpcFailure::invalid(
                    "the dev wallet signs only a sign-in with Ethereum to this node",
                ));
            }
            Ok(json!(sign(key, eip191_hash_message(&message))))
        }
        "eth_getTransactionReceipt" | "eth_blockNumber" => web
            .client
            .rpc()
            .request::<Value>(method, params.clone())
            .await
            .map_err(|e| RpcFailure::from_client(e.into())),
        other => Err(RpcFailure {
            code: 4200,
            message: format!("the dev wallet does not do {other}"),
            data: None,
        }),
    }
}

/// The dev key of the account named by `value`.
fn key_of<'k>(keys: &'k [DevKey], value: &Value) -> Result<&'k SigningKey, RpcFailure> {
    let account: Address = serde_json::from_value(value.clone())
        .map_err(|_| RpcFailure::invalid("the account must be a 0x address"))?;
    keys.iter()
        .find(|k| k.address == account)
        .map(|k| &k.key)
        .ok_or(RpcFailure::unauthorized(account))
}

#[derive(Deserialize)]
struct Transaction {
    from: Value,
    to: Option<Address>,
    #[serde(alias = "input", default)]
    data: Bytes,
    #[serde(default)]
    value: U256,
}

/// Signs and sends a transaction from a dev account; its hash once the node has it.
async fn send(web: &Web, tx: &Value) -> Result<Value, RpcFailure> {
    let tx: Transaction = serde_json::from_value(tx.clone())
        .map_err(|e| RpcFailure::invalid(format!("the transaction cannot be read: {e}")))?;
    let key = key_of(&web.wallet.dev_keys, &tx.from)?.clone();
    let to = tx
        .to
        .ok_or_else(|| RpcFailure::invalid("the dev wallet does not deploy contracts"))?;
    let protocol = web.client.addresses().map(|a| a.contracts());
    if !protocol.is_some_and(|contracts| contracts.iter().any(|(_, a)| *a == to)) {
        return Err(RpcFailure::invalid(format!(
            "the dev wallet sends only to the protocol's contracts, not to {to}"
        )));
    }
    // One send at a time per account, each with a client of its own: the nonce is asked
    // afresh (whatever else used the key since) and two sends never take the same one.
    let index = web.wallet.dev_keys.iter().position(|k| k.key == key);
    let _turn = match index.and_then(|i| web.dev_turns.get(i)) {
        Some(turn) => Some(turn.lock().await),
        None => None,
    };
    let client = ProtocolClient::connect(web.client.rpc().url(), Some(Signer::from_key(key)))
        .await
        .map_err(RpcFailure::from_client)?;
    let hash = client
        .submit_raw("the transaction", to, tx.data, tx.value)
        .await
        .map_err(RpcFailure::from_client)?;
    Ok(json!(hash))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AskedDomain {
    name: Option<String>,
    version: Option<String>,
    chain_id: Option<Value>,
    verifying_contract: Option<Address>,
}

/// The EIP-712 hash of `typed` (MetaMask's `eth_signTypedData_v4` shape), for the datanets'
/// types in this node's domain only: the dev wallet signs what this app asks for, nothing else.
fn typed_data_hash(domain: &Eip712Domain, typed: &Value) -> Result<B256, RpcFailure> {
    let asked: AskedDomain = serde_json::from_value(typed["domain"].clone())
        .map_err(|e| RpcFailure::invalid(format!("the typed data's domain: {e}")))?;
    // Wallets take the chain id as a number or as a (hex or decimal) string.
    let chain_id = match &asked.chain_id {
        Some(Value::Number(n)) => n.as_u64().map(U256::from),
        Some(Value::String(s)) => s.parse::<U256>().ok(),
        _ => None,
    };
    if asked.name.as_deref() != domain.name.as_deref()
        || asked.version.as_deref() != domain.version.as_deref()
        || chain_id != domain.chain_id
        || asked.verifying_contract != domain.verifying_contract
    {
        return Err(RpcFailure::invalid(
            "the dev wallet signs only in this node's datanets domain",
        ));
    }
    let message = typed["message"].clone();
    let unreadable = |e: serde_json::Error| RpcFailure::invalid(format!("the message: {e}"));
    match typed["primaryType"].as_str() {
        Some("UploadRequest") => Ok(serde_json::from_value::<UploadRequest>(message)
            .map_err(unreadable)?
            .eip712_signing_hash(domain)),
        Some("ContributionMetadata") => Ok(serde_json::from_value::<ContributionMetadata>(message)
            .map_err(unreadable)?
            .eip712_signing_hash(domain)),
        other => Err(RpcFailure::invalid(format!(
            "the dev wallet does not sign {}",
            other.unwrap_or("typed data without a primaryType")
        ))),
    }
}

/// A 65-byte signature (r, s, v with v 27 or 28) of `hash`, as wallets return it.
fn sign(key: &SigningKey, hash: B256) -> String {
    let (sig, recid) = key
        .sign_prehash_recoverable(hash.as_slice())
        .expect("signing a 32-byte prehash cannot fail");
    hex::encode_prefixed(Signature::from((sig, recid)).as_bytes())
}

#[derive(Deserialize)]
struct Explain {
    data: Bytes,
}

/// Revert data (as a wallet reports it) in words.
async fn explain(Json(body): Json<Explain>) -> Json<Value> {
    Json(json!({"reason": words(&describe_revert(&body.data))}))
}

/// A decoded error (`NotCurator(NotCurator { datanetId: 1 })`) as a sentence:
/// `not curator (datanetId: 1)`.
pub(crate) fn words(decoded: &str) -> String {
    // The errors enum wraps the error struct of the same name: keep the inner one.
    let inner = match decoded.split_once('(') {
        Some((name, rest)) if rest.starts_with(name) => rest.strip_suffix(')').unwrap_or(rest),
        _ => decoded,
    };
    let split = inner.find([' ', '(', '{']).unwrap_or(inner.len());
    let (name, fields) = inner.split_at(split);
    let is_name = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if !is_name {
        return decoded.to_string();
    }
    let mut sentence = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            sentence.push(' ');
        }
        sentence.push(c.to_ascii_lowercase());
    }
    let fields = fields
        .trim()
        .trim_start_matches(['{', '('])
        .trim_end_matches(['}', ')'])
        .trim();
    if name == "Error" {
        // `require` with a message: the message is the words.
        return fields.trim_matches('"').to_string();
    }
    if fields.is_empty() {
        sentence
    } else {
        format!("{sentence} ({fields})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_errors_read_as_words() {
        assert_eq!(
            words("NotCurator(NotCurator { datanetId: 1, account: 0x00 })"),
            "not curator (datanetId: 1, account: 0x00)"
        );
        assert_eq!(words("NothingToClaim(NothingToClaim)"), "nothing to claim");
        assert_eq!(words("Error(\"too late\")"), "too late");
        assert_eq!(words("no reason given"), "no reason given");
    }

    #[test]
    fn the_dev_signer_signs_only_the_datanets_types_in_this_domain() {
        let domain = openledger_datanets::metadata::domain(1612, Address::repeat_byte(0x44));
        let key = openledger_genesis::devkeys::dev_accounts()[1].clone();
        let request = UploadRequest {
            datanetId: U256::from(7),
            contributor: key.address,
            fileHash: B256::repeat_byte(9),
            size: 100,
            deadline: 1_000,
        };
        let typed = json!({
            "domain": {"name": "OpenLedger Datanets", "version": "1", "chainId": 1612,
                       "verifyingContract": Address::repeat_byte(0x44)},
            "primaryType": "UploadRequest",
            "message": {"datanetId": "7", "contributor": key.address,
                        "fileHash": B256::repeat_byte(9), "size": 100, "deadline": 1000},
        });
        let hash = typed_data_hash(&domain, &typed)
            .map_err(|f| f.message)
            .unwrap();
        let signature: Bytes = sign(&key.key, hash).parse().unwrap();
        // What the upload route checks: the contributor's signature over the request.
        assert!(request.verify(&domain, &signature, 900).is_ok());

        let mut elsewhere = typed.clone();
        elsewhere["domain"]["chainId"] = json!(1);
        assert!(typed_data_hash(&domain, &elsewhere).is_err());
        let mut other = typed;
        other["primaryType"] = json!("Permit");
        assert!(typed_data_hash(&domain, &other).is_err());
    }
}
