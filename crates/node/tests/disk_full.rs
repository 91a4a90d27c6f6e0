//! A full disk: the node stops producing blocks with a clear log line instead of reporting
//! anything it could not make durable, and once space is freed it restarts from its last
//! durable block with every acknowledged transaction mined or pending.
//!
//! The data directory lives on a small tmpfs that the test mounts (it needs root, as CI and
//! the development machines run; elsewhere it says so and does nothing, unless CI is set).

mod common;

use common::{free_addr, rpc, NodeProcess};
use serde_json::json;
use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, megabytes: u32) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_path_buf()))
    }

    fn resize(&self, megabytes: u32) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remounting the tmpfs larger");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn start(dir: &Path, addr: SocketAddr, log: &Path) -> NodeProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_openledger"))
        .args(["node", "--dev", "--block-time", "100", "--data-dir"])
        .arg(dir)
        .args(["--http-addr", &addr.to_string()])
        .args(["--metrics-addr", &free_addr().to_string()])
        .args(["--api-addr", &free_addr().to_string()])
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .expect("start the node");
    let child = NodeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rpc(addr, "eth_chainId", json!([])).is_none() {
        assert!(
            Instant::now() < deadline,
            "node did not come up: {}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn head(addr: SocketAddr) -> Option<u64> {
    let v = rpc(addr, "eth_blockNumber", json!([]))?;
    u64::from_str_radix(v["result"].as_str()?.trim_start_matches("0x"), 16).ok()
}

#[test]
fn a_full_disk_stops_block_production_and_the_node_restarts_cleanly() {
    let outside = tempfile::tempdir().unwrap();
    let mount_point = outside.path().join("disk");
    std::fs::create_dir(&mount_point).unwrap();
    let Some(disk) = Tmpfs::mount(&mount_point, 24) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = mount_point.join("chain");
    let (addr, log) = (free_addr(), outside.path().join("node.log"));
    let mut node = start(&data, addr, &log);

    // Fill the disk with large transactions until the node stops.
    let sender = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"; // dev account 2
    let input = format!("0x{}", "ab".repeat(100 * 1024));
    let mut acknowledged = Vec::new();
    let mut last_head = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "the disk never filled: {}",
            read(&log)
        );
        if let Some(status) = node.0.try_wait().unwrap() {
            break status;
        }
        last_head = head(addr).unwrap_or(last_head).max(last_head);
        let tx = json!([{"from": sender, "to": sender, "gas": "0x4c4b40", "input": input}]);
        if let Some(answer) = rpc(addr, "eth_sendTransaction", tx) {
            if let Some(hash) = answer["result"].as_str() {
                acknowledged.push(hash.to_string());
            }
        }
    };
    let stderr = read(&log);
    assert_eq!(status.code(), Some(70), "{stderr}");
    assert!(stderr.contains("could not make block"), "{stderr}");
    assert!(stderr.contains("free space"), "{stderr}");
    assert!(!acknowledged.is_empty());

    // With room again, the node resumes from its last durable block and nothing it
    // acknowledged is lost.
    disk.resize(256);
    let _node = start(&data, addr, &log);
    let resumed = head(addr).unwrap();
    assert!(
        resumed >= last_head,
        "resumed at {resumed}, had reported {last_head}"
    );
    for hash in &acknowledged {
        let mined = rpc(addr, "eth_getTransactionReceipt", json!([hash])).unwrap();
        let known = rpc(addr, "eth_getTransactionByHash", json!([hash])).unwrap();
        assert!(
            !mined["result"].is_null() || !known["result"].is_null(),
            "acknowledged {hash} was lost"
        );
    }
}
