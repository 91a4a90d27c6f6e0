//! `factory-bench startup`: from `POST /v1/fine_tuning/jobs` to `running` on a dev node, for a
//! datanet version of many megabytes.

use alloy_primitives::{hex, Address, B256, U256};
use anyhow::{bail, ensure, Context, Result};
use openledger_chain::devkeys::dev_accounts;
use openledger_protocol::{model_factory::ModelFactory, ProtocolClient, Signer};
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn key(i: usize) -> String {
    hex::encode_prefixed(dev_accounts()[i].key.to_bytes())
}

/// The node, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One JSON request over a fresh connection: status and answer.
fn rest(api: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(api)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("not HTTP")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn cli(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin).args(args).output()?;
    ensure!(
        out.status.success(),
        "openledger {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

pub fn run(bin: &Path, megabytes: usize, jobs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let (rpc, api) = (free_addr(), free_addr());
    let _node = Node(
        Command::new(bin)
            .args(["node", "--dev", "--block-time", "0", "--data-dir"])
            .arg(&data)
            .args([
                "--http-addr",
                &rpc.to_string(),
                "--api-addr",
                &api.to_string(),
            ])
            .args(["--metrics-addr", &free_addr().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("protocol.json").exists() || TcpStream::connect(api).is_err() {
        ensure!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rpc_url, api_url) = (format!("http://{rpc}"), format!("http://{api}"));
    let file = dir.path().join("records.jsonl");
    let mut text = String::new();
    let mut n = 0;
    while text.len() < megabytes << 20 {
        let batch = super::records(1000);
        for r in batch {
            // Distinct records: the item number runs on past the thousand the generator names.
            let line = r.to_string().replace("item ", &format!("item {n}-"));
            text.push_str(&line);
            text.push('\n');
            n += 1;
        }
    }
    std::fs::write(&file, &text)?;
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, json!({"type": "object"}).to_string())?;
    let datanet = |k: usize, args: &[&str]| {
        let key = key(k);
        let mut all = vec![
            "datanet",
            "--rpc-url",
            &rpc_url,
            "--api-url",
            &api_url,
            "--key",
            &key,
        ];
        all.extend(args);
        cli(bin, &all)
    };
    let setup = Instant::now();
    datanet(
        0,
        &[
            "create",
            "--name",
            "bench",
            "--schema",
            schema.to_str().unwrap(),
        ],
    )?;
    let addresses = data.join("protocol.json");
    let k3 = key(3);
    cli(
        bin,
        &[
            "stake",
            "--rpc-url",
            &rpc_url,
            "--addresses",
            addresses.to_str().unwrap(),
            "--key",
            &k3,
            "add",
            "curator",
            "--datanet",
            "1",
            "--amount",
            "10",
        ],
    )?;
    datanet(2, &["contribute", "1", file.to_str().unwrap()])?;
    datanet(3, &["review", "1", "approve", "--reason", "bench"])?;
    datanet(0, &["publish", "1"])?;
    eprintln!(
        "startup: datanet version of {} records, {:.1} MB, published in {:.1} s",
        n,
        text.len() as f64 / 1e6,
        setup.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let payer = runtime.block_on(ProtocolClient::connect(
        &rpc_url,
        Some(Signer::from_hex(&key(4))?),
    ))?;
    let mut times = Vec::new();
    for i in 0..jobs {
        let body = json!({"model": "SmolLM2-135M-Instruct", "training_file": "datanet:1@1",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}});
        let started = Instant::now();
        let (status, job) = rest(api, "POST", "/v1/fine_tuning/jobs", Some(body))?;
        ensure!(status == 200, "POST: {job}");
        let p = &job["payment"];
        let escrow: Address = p["escrow"].as_str().context("escrow")?.parse()?;
        let call = ModelFactory::fundCall {
            operator: p["operator"].as_str().context("operator")?.parse()?,
            jobKey: p["job_key"].as_str().context("key")?.parse::<B256>()?,
        };
        let fee: u128 = p["fee"].as_str().context("fee")?.parse()?;
        runtime.block_on(payer.send(escrow, call, U256::from(fee)))?;
        let id = job["id"].as_str().context("id")?.to_string();
        let path = format!("/v1/fine_tuning/jobs/{id}");
        loop {
            let (_, job) = rest(api, "GET", &path, None)?;
            match job["status"].as_str() {
                Some("running") => break,
                Some("validating_files" | "queued") => {}
                other => bail!("{id} became {other:?}: {job}"),
            }
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "{id} never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("startup: job {i}: running after {seconds:.2} s");
        times.push(seconds);
        rest(api, "POST", &format!("{path}/cancel"), None)?;
        loop {
            let (_, job) = rest(api, "GET", &path, None)?;
            if job["status"] == "cancelled" {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out = json!({
        "megabytes": text.len() as f64 / 1e6,
        "records": n,
        "post_to_running_seconds": times,
        "first_loads_the_model": true,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
