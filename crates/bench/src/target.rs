//! Starting and stopping the servers under test.

use crate::rpc::{quantity_u64, Rpc};
use anyhow::{bail, Context, Result};
use std::{
    fmt,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Which server a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Anvil,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Node => "node",
            Kind::Anvil => "anvil",
        })
    }
}

/// Block gas limit asked of anvil: large enough that a 1 s block holds every transaction that
/// arrived during it, so the block gas limit is not what the benchmark measures.
const ANVIL_GAS_LIMIT: &str = "300000000";

/// How long a server may take to answer its first `eth_chainId`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; killed when dropped.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub chain_id: u64,
    child: Child,
    log: PathBuf,
    // Holds the node's data directory and the logs until the target is dropped.
    _dir: tempfile::TempDir,
}

impl Target {
    /// Starts `bin` as a `kind` server on a free local port and waits until it answers
    /// `eth_chainId`.
    pub async fn start(kind: Kind, bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("openledger-bench-{kind}-"))
            .tempdir()?;
        let addr = free_addr()?;
        let mut command = Command::new(bin);
        match kind {
            Kind::Node => {
                // A port of its own for the metrics endpoint too, so that the bench does not
                // clash with a node already running on the default ports.
                command
                    .arg("node")
                    .arg("--dev")
                    .arg("--data-dir")
                    .arg(dir.path().join("data"))
                    .arg("--http-addr")
                    .arg(addr.to_string())
                    .arg("--metrics-addr")
                    .arg(free_addr()?.to_string())
                    .args(["--block-time", "1000"]);
            }
            Kind::Anvil => {
                command
                    .args(["--host", "127.0.0.1", "--port"])
                    .arg(addr.port().to_string())
                    .args([
                        "--block-time",
                        "1",
                        "--quiet",
                        "--gas-limit",
                        ANVIL_GAS_LIMIT,
                    ]);
            }
        }
        let log = dir.path().join(format!("{kind}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut target = Self {
            kind,
            addr,
            chain_id: 0,
            child,
            log,
            _dir: dir,
        };
        target.chain_id = target.wait_ready().await.with_context(|| {
            format!(
                "{kind} failed to start; its log ends with:\n{}",
                target.log_tail()
            )
        })?;
        Ok(target)
    }

    /// Polls `eth_chainId` until it answers, failing early if the process exits.
    async fn wait_ready(&mut self) -> Result<u64> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited during startup ({status})", self.kind);
            }
            match Rpc::new(self.addr)
                .call("eth_chainId", serde_json::json!([]))
                .await
            {
                Ok(id) => return quantity_u64(&id),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "{} did not answer eth_chainId within {STARTUP_TIMEOUT:?}",
                        self.kind
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The last lines the server logged, to explain a failure.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The data directory is throwaway, so there is nothing to shut down cleanly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local address with a port that is free now (the OS picks it).
fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
