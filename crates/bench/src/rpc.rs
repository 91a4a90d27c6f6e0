//! A minimal JSON-RPC client over HTTP/1.1 keep-alive connections.
//!
//! Hand-written rather than a full HTTP stack so that the client spends as little CPU as
//! possible: it shares the machine with the server it measures. It speaks just what the
//! benchmark needs: one request at a time per connection, `Content-Length` framed responses.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One keep-alive HTTP connection to a JSON-RPC server; reconnects when the server closes it.
pub struct Rpc {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Request head (reused to avoid an allocation per request).
    head: Vec<u8>,
    /// Bytes read from the socket; the current response's body is at `body`.
    buf: Vec<u8>,
    body: std::ops::Range<usize>,
    next_id: u64,
}

impl Rpc {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            head: Vec::with_capacity(128),
            buf: Vec::with_capacity(16 * 1024),
            body: 0..0,
            next_id: 1,
        }
    }

    /// Calls `method` and returns its result, or fails with the JSON-RPC error.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(body.to_string().as_bytes()).await?;
        result_of(response).with_context(|| format!("{method} failed"))
    }

    /// Posts a prepared JSON-RPC request body and returns the raw response body.
    pub async fn post(&mut self, body: &[u8]) -> Result<&[u8]> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            // Requests are small and latency matters: don't let Nagle hold them back.
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        self.head.clear();
        self.head.extend_from_slice(b"POST / HTTP/1.1\r\nHost: ");
        self.head
            .extend_from_slice(self.addr.to_string().as_bytes());
        self.head
            .extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        self.head
            .extend_from_slice(body.len().to_string().as_bytes());
        self.head.extend_from_slice(b"\r\n\r\n");
        let result = self.exchange(body).await;
        if result.is_err() {
            self.stream = None;
        }
        let keep_alive = result?;
        if !keep_alive {
            self.stream = None;
        }
        Ok(&self.buf[self.body.clone()])
    }

    /// Writes the request and reads one response; returns whether the connection stays open.
    async fn exchange(&mut self, body: &[u8]) -> Result<bool> {
        let stream = self.stream.as_mut().expect("connected");
        // Small bodies go in one write with the head, so one request is one segment.
        if body.len() < 4096 {
            self.head.extend_from_slice(body);
            stream.write_all(&self.head).await?;
        } else {
            stream.write_all(&self.head).await?;
            stream.write_all(body).await?;
        }
        self.buf.clear();
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("{} closed the connection before responding", self.addr);
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let ok = status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200");
        let status_len = status.len();
        let mut content_length = None;
        let mut keep_alive = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse::<usize>().context("Content-Length")?);
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.eq_ignore_ascii_case("close");
            }
        }
        let Some(len) = content_length else {
            bail!(
                "response without Content-Length (chunked responses are not supported): {status}"
            );
        };
        while self.buf.len() < head_end + len {
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("{} closed the connection mid-response", self.addr);
            }
        }
        self.body = head_end..head_end + len;
        if !ok {
            bail!(
                "HTTP error {}: {}",
                String::from_utf8_lossy(&self.buf[..status_len]),
                String::from_utf8_lossy(&self.buf[self.body.clone()])
            );
        }
        Ok(keep_alive)
    }
}

/// An error the server answered with, as opposed to a transport failure.
#[derive(Debug)]
pub struct RpcError(pub Value);

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON-RPC error: {}", self.0)
    }
}

impl std::error::Error for RpcError {}

/// The `result` of a JSON-RPC response, or its `error` as an error.
pub fn result_of(response: &[u8]) -> Result<Value> {
    let mut value: Value = serde_json::from_slice(response).with_context(|| {
        format!(
            "bad JSON-RPC response: {}",
            String::from_utf8_lossy(response)
        )
    })?;
    if let Some(error) = value.get_mut("error") {
        return Err(RpcError(error.take()).into());
    }
    value
        .get_mut("result")
        .map(Value::take)
        .ok_or_else(|| anyhow!("JSON-RPC response without result: {value}"))
}

/// Parses a JSON-RPC quantity ("0x1a").
pub fn quantity(value: &Value) -> Result<u128> {
    let s = value
        .as_str()
        .ok_or_else(|| anyhow!("expected a hex quantity, got {value}"))?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| anyhow!("expected a hex quantity, got {s}"))?;
    u128::from_str_radix(digits, 16).with_context(|| format!("bad hex quantity {s}"))
}

/// Parses a JSON-RPC quantity that must fit a u64.
pub fn quantity_u64(value: &Value) -> Result<u64> {
    Ok(u64::try_from(quantity(value)?)?)
}

/// Lower-case 0x-prefixed hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results_and_errors() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":"0x7a69"}"#;
        assert_eq!(quantity(&result_of(ok).unwrap()).unwrap(), 31337);
        let err = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}"#;
        assert!(result_of(err)
            .unwrap_err()
            .to_string()
            .contains("nonce too low"));
        assert_eq!(hex(&[0x00, 0xab]), "0x00ab");
    }
}
