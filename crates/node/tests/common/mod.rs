//! Running the real `openledger` binary in tests.

#![allow(dead_code)] // each test file uses part of it

use alloy_primitives::hex;
use openledger_chain::devkeys::dev_accounts;
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The node process; killed when dropped so that a failing test leaves nothing running.
pub struct NodeProcess(pub Child);

impl NodeProcess {
    /// SIGKILL, as a crash would.
    pub fn kill_nine(&mut self) {
        self.0.kill().expect("SIGKILL the node");
        self.0.wait().unwrap();
    }
}

/// One JSON-RPC call over a fresh HTTP/1.1 connection; `None` if the node is unreachable.
pub fn rpc(addr: SocketAddr, method: &str, params: serde_json::Value) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// One REST request over a fresh HTTP/1.1 connection: the status and the JSON answer.
pub fn rest(
    base: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(addr).expect("the REST API answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started dev node: its JSON-RPC and REST API URLs.
pub struct DevNode {
    pub process: NodeProcess,
    pub rpc_url: String,
    pub api_url: String,
}

/// Starts a dev node and waits until its first-start deployment has written the addresses
/// and its REST API answers.
pub fn start(dir: &Path) -> DevNode {
    start_with(dir, &[])
}

/// [`start`] with extra flags for the node.
pub fn start_with(dir: &Path, flags: &[&str]) -> DevNode {
    start_at(dir, flags, free_addr(), free_addr())
}

/// [`start_with`] on given JSON-RPC and REST addresses (a restart keeps its URLs).
pub fn start_at(dir: &Path, flags: &[&str], addr: SocketAddr, api: SocketAddr) -> DevNode {
    let child = Command::new(env!("CARGO_BIN_EXE_openledger"))
        .args(["node", "--dev", "--block-time", "0", "--data-dir"])
        .arg(dir)
        .args(flags)
        .args(["--http-addr", &addr.to_string()])
        .args(["--metrics-addr", &free_addr().to_string()])
        .args(["--api-addr", &api.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the node");
    let process = NodeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("protocol.json").exists() || std::net::TcpStream::connect(api).is_err() {
        assert!(
            Instant::now() < deadline,
            "the dev node did not deploy and serve its API"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    DevNode {
        process,
        rpc_url: format!("http://{addr}"),
        api_url: format!("http://{api}"),
    }
}

pub fn openledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openledger"))
        .args(args)
        .env_remove("OPENLEDGER_KEY")
        .output()
        .expect("run openledger")
}

/// Stdout of a run that must succeed.
pub fn ok(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Stderr of a run that must fail.
pub fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

pub fn dev_key(i: usize) -> String {
    hex::encode_prefixed(dev_accounts()[i].key.to_bytes())
}
