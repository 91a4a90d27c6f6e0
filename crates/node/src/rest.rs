//! A small client for the node's REST API: JSON in, JSON out, files streamed up with
//! progress, and the API's `{"error": …}` answers turned into errors that say what failed.

use anyhow::{anyhow, Context, Result};
use futures_util::{stream, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Frame, Method, Request, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use openledger_protocol::Signer;
use serde_json::{json, Value};
use std::path::Path;
use tokio::io::AsyncReadExt;

type Body = BoxBody<hyper::body::Bytes, std::io::Error>;

/// The REST API at a base URL.
pub struct Api {
    base: String,
    client: Client<HttpConnector, Body>,
}

impl Api {
    pub fn new(base: &str) -> Result<Self> {
        let uri: Uri = base
            .parse()
            .with_context(|| format!("bad API URL {base:?}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "the API URL must be http://host:port, not {base:?}"
        );
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Body,
        kind: &str,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", kind);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(body).expect("a valid request");
        self.client.request(request).await.map_err(|e| {
            anyhow!("cannot reach the API at {url}: {e} (is `openledger node --dev` running?)")
        })
    }

    async fn send(&self, method: Method, path: &str, body: Body, kind: &str) -> Result<Vec<u8>> {
        self.send_with(method, path, body, kind, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Body,
        kind: &str,
        headers: &[(&str, String)],
    ) -> Result<Vec<u8>> {
        let response = self.request_with(method, path, body, kind, headers).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer to {path}: {e}"))?
            .to_bytes()
            .to_vec();
        if !status.is_success() {
            anyhow::bail!("{}", error_message(&bytes));
        }
        Ok(bytes)
    }

    fn json_of(bytes: &[u8], path: &str) -> Result<Value> {
        serde_json::from_slice(bytes).with_context(|| format!("the answer to {path} is not JSON"))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let bytes = self
            .send(Method::GET, path, empty(), "application/json")
            .await?;
        Self::json_of(&bytes, path)
    }

    /// A GET with `headers`: the status and the JSON answer (`null` if it is not JSON), for
    /// callers that act on the status.
    pub async fn get_with(&self, path: &str, headers: &[(&str, String)]) -> Result<(u16, Value)> {
        let (status, bytes) = self.get_raw_with(path, headers).await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// The status and raw bytes at `path`, for callers that act on the status.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        self.get_raw_with(path, &[]).await
    }

    async fn get_raw_with(&self, path: &str, headers: &[(&str, String)]) -> Result<(u16, Vec<u8>)> {
        let response = self
            .request_with(Method::GET, path, empty(), "application/json", headers)
            .await?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer to {path}: {e}"))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }

    /// The raw bytes at `path`.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        self.send(Method::GET, path, empty(), "application/json")
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with(path, body, &[]).await
    }

    /// A POST of JSON with `headers` (an API key, say).
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        let body = Full::new(body.to_string().into())
            .map_err(|never| match never {})
            .boxed();
        let bytes = self
            .send_with(Method::POST, path, body, "application/json", headers)
            .await?;
        Self::json_of(&bytes, path)
    }

    /// Signs in with Ethereum (EIP-4361) as `signer` and returns the API key issued, labelled
    /// `label`.
    pub async fn sign_in(&self, signer: &Signer, statement: &str, label: &str) -> Result<String> {
        let nonce = self.post("/v1/auth/nonce", &json!({})).await?;
        let domain = nonce["domain"]
            .as_str()
            .context("the nonce names no domain")?;
        let text = openledger_studio::siwe::sign_in_message(
            domain,
            signer.address(),
            nonce["chain_id"]
                .as_u64()
                .context("the nonce names no chain")?,
            nonce["nonce"].as_str().context("no nonce")?,
            statement,
        );
        let hash = alloy_primitives::eip191_hash_message(text.as_bytes());
        let (signature, recovery) = signer
            .key()
            .sign_prehash_recoverable(hash.as_slice())
            .context("signing the sign-in message")?;
        let mut bytes = signature.to_bytes().to_vec();
        bytes.push(27 + recovery.to_byte());
        let login = json!({"message": text, "signature": format!("0x{}", alloy_primitives::hex::encode(bytes)),
                           "label": label});
        let issued = self.post("/v1/auth/login", &login).await?;
        Ok(issued["key"].as_str().context("no key issued")?.to_string())
    }

    /// POSTs a multipart form: text `fields`, then the file `bytes` as field `file`.
    pub async fn post_file(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Value> {
        let boundary = format!("openledger-{:016x}", fastrand_boundary());
        let mut body = Vec::with_capacity(bytes.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Full::new(body.into())
            .map_err(|never| match never {})
            .boxed();
        let kind = format!("multipart/form-data; boundary={boundary}");
        let bytes = self.send(Method::POST, path, body, &kind).await?;
        Self::json_of(&bytes, path)
    }

    /// GETs `path` and hands each complete line of the answer to `on_line` as it arrives,
    /// until the answer ends or `on_line` returns false.
    pub async fn get_lines(&self, path: &str, on_line: impl FnMut(&str) -> bool) -> Result<()> {
        self.lines(Method::GET, path, empty(), &[], on_line).await
    }

    /// POSTs `body` (with `headers`) and hands each complete line of the answer to `on_line`
    /// as it arrives (server-sent events, NDJSON), until it ends or `on_line` returns false.
    pub async fn post_lines(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, String)],
        on_line: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        let body = Full::new(body.to_string().into())
            .map_err(|never| match never {})
            .boxed();
        self.lines(Method::POST, path, body, headers, on_line).await
    }

    async fn lines(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, String)],
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        let response = self
            .request_with(method, path, body, "application/json", headers)
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| anyhow!("reading the answer to {path}: {e}"))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            if !status.is_success() {
                continue;
            }
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if !on_line(String::from_utf8_lossy(&line).trim_end()) {
                    return Ok(());
                }
            }
        }
        if !status.is_success() {
            anyhow::bail!("{}", error_message(&pending));
        }
        Ok(())
    }

    /// PUTs the file at `file` as the request body, telling `progress` how many bytes went,
    /// and reads an NDJSON answer: `{"progress": …}` lines go to `on_line`, and the
    /// `{"result": …}` line is returned (an `{"error": …}` line fails).
    pub async fn put_file(
        &self,
        path: &str,
        headers: &[(&str, String)],
        file: &Path,
        progress: impl Fn(u64) + Send + Sync + 'static,
        mut on_line: impl FnMut(&Value),
    ) -> Result<Value> {
        let handle = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let chunks = stream::unfold((handle, 0u64), move |(mut handle, sent)| {
            let mut buf = vec![0u8; 1 << 20];
            async move {
                match handle.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(buf), (handle, sent + n as u64)))
                    }
                    Err(e) => Some((Err(e), (handle, sent))),
                }
            }
        });
        let mut sent = 0u64;
        let frames = chunks.map(move |chunk| {
            chunk.map(|bytes| {
                sent += bytes.len() as u64;
                progress(sent);
                Frame::data(hyper::body::Bytes::from(bytes))
            })
        });
        let body = BodyExt::boxed(StreamBody::new(frames));
        let response = self
            .request_with(Method::PUT, path, body, "application/octet-stream", headers)
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut pending = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| anyhow!("reading the answer to {path}: {e}"))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            if !status.is_success() {
                all.extend_from_slice(data);
                continue;
            }
            pending.extend_from_slice(data);
            // Complete lines: progress goes to `on_line`, anything else is the answer.
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let value = Self::json_of(&line, path)?;
                if let Some(p) = value.get("progress") {
                    on_line(p);
                } else if let Some(error) = value.get("error") {
                    anyhow::bail!("{}", error.as_str().unwrap_or("the upload failed"));
                } else {
                    return Ok(value["result"].clone());
                }
            }
        }
        if !status.is_success() {
            anyhow::bail!("{}", error_message(&all));
        }
        anyhow::bail!("the answer to {path} ended without a result")
    }
}

/// The message of an `{"error": "…"}` answer (datanets) or of OpenAI's
/// `{"error": {"message", "param"}}` (factory).
fn error_message(bytes: &[u8]) -> String {
    let value = serde_json::from_slice::<Value>(bytes).ok();
    let error = value.as_ref().map(|v| &v["error"]);
    if let Some(text) = error.and_then(Value::as_str) {
        return text.to_string();
    }
    if let Some(message) = error.and_then(|e| e["message"].as_str()) {
        return match error.and_then(|e| e["param"].as_str()) {
            Some(param) => format!("{message} (parameter {param})"),
            None => message.to_string(),
        };
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// A multipart boundary unlikely to occur in the file.
fn fastrand_boundary() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn empty() -> Body {
    Full::new(hyper::body::Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}
