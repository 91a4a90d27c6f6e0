//! The factory in the real binary: a fine-tuning job killed with `kill -9` mid-training resumes
//! from its last checkpoint and ends with exactly the adapter of an uninterrupted run, and a
//! cancelled running job stops within one step.

mod common;

use alloy_primitives::{Address, B256, U256};
use common::{dev_key, free_addr, ok, openledger, rest, start_at, DevNode};
use openledger_protocol::{model_factory::ModelFactory, ProtocolClient, Signer};
use serde_json::{json, Value};
use std::{
    path::Path,
    time::{Duration, Instant},
};

const PAYER: usize = 4;

/// A datanet with one accepted contribution of `records` chat records, and its version.
/// Datanet `id` (the next one to be created) with `records` vault records contributed,
/// approved and published; returns the training file naming its version.
fn published_datanet(node: &DevNode, dir: &Path, id: u64, records: usize) -> String {
    let run = |key: usize, args: &[&str]| {
        let key = dev_key(key);
        let mut all = vec![args[0], "--rpc-url", &node.rpc_url, "--key", key.as_str()];
        all.extend(&args[1..]);
        openledger(&all)
    };
    let schema = dir.join("schema.json");
    std::fs::write(&schema, json!({"type": "object"}).to_string()).unwrap();
    let lines: Vec<String> = (0..records)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("Which gate guards vault {i}?")},
                {"role": "assistant", "content": format!("Vault {i} is guarded by gate {}.", i * 31 % 97)}
            ]})
            .to_string()
        })
        .collect();
    let data = dir.join("data.jsonl");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let api = ["--api-url", node.api_url.as_str()];
    fn datanet<'a>(api: &[&'a str; 2], args: &[&'a str]) -> Vec<&'a str> {
        [&["datanet"][..], &api[..], args].concat()
    }
    let schema = schema.to_str().unwrap();
    let created = ok(run(
        0,
        &datanet(&api, &["create", "--name", "vaults", "--schema", schema]),
    ));
    assert_eq!(created.trim(), id.to_string());
    let id = id.to_string();
    let addresses = dir.join("node").join("protocol.json");
    let stake = [
        "stake",
        "--addresses",
        addresses.to_str().unwrap(),
        "add",
        "curator",
        "--datanet",
        &id,
        "--amount",
        "10",
    ];
    ok(run(3, &stake));
    let contribution = ok(run(
        2,
        &datanet(&api, &["contribute", &id, data.to_str().unwrap()]),
    ));
    ok(run(
        3,
        &datanet(
            &api,
            &["review", contribution.trim(), "approve", "--reason", "ok"],
        ),
    ));
    let published = ok(run(0, &datanet(&api, &["publish", &id])));
    let version = published
        .strip_prefix("version ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{published}"));
    format!("datanet:{id}@{version}")
}

/// Creates a job and pays its fee from dev account `PAYER`; returns its id.
async fn paid_job(node: &DevNode, training_file: &str, hyper: Value) -> String {
    let body = json!({
        "model": "SmolLM2-135M-Instruct",
        "training_file": training_file,
        "seed": 11,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    });
    let (status, job) = rest(&node.api_url, "POST", "/v1/fine_tuning/jobs", Some(body));
    assert_eq!(status, 200, "{job}");
    let p = &job["payment"];
    let payer = ProtocolClient::connect(
        &node.rpc_url,
        Some(Signer::from_hex(&dev_key(PAYER)).unwrap()),
    )
    .await
    .unwrap();
    let escrow: Address = p["escrow"].as_str().unwrap().parse().unwrap();
    // The operator's transactions must never take a nonce a dev account's user is about to use.
    let operator: Address = p["operator"].as_str().unwrap().parse().unwrap();
    assert!(
        openledger_chain::devkeys::dev_accounts()
            .iter()
            .all(|a| a.address != operator),
        "the dev factory operator is one of the ten dev accounts"
    );
    let call = ModelFactory::fundCall {
        operator: p["operator"].as_str().unwrap().parse().unwrap(),
        jobKey: p["job_key"].as_str().unwrap().parse::<B256>().unwrap(),
    };
    let fee: u128 = p["fee"].as_str().unwrap().parse().unwrap();
    payer.send(escrow, call, U256::from(fee)).await.unwrap();
    job["id"].as_str().unwrap().to_string()
}

fn job(node: &DevNode, id: &str) -> Value {
    let (status, job) = rest(
        &node.api_url,
        "GET",
        &format!("/v1/fine_tuning/jobs/{id}"),
        None,
    );
    assert_eq!(status, 200, "{job}");
    job
}

/// Polls the job until `done` holds of it.
fn wait(node: &DevNode, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let job = job(node, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "{id} never {what}: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finished(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn adapter(data: &Path, id: &str) -> Vec<u8> {
    let seq = id.trim_start_matches("ftjob-");
    let path = data
        .join("factory/jobs")
        .join(seq)
        .join("adapter/adapter_model.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Publishes a job's adapter from the CLI and verifies its lineage; then a tampered stored
/// file fails verification.
fn publish_and_verify(node: &DevNode, data: &Path, id: &str) {
    let key = dev_key(PAYER);
    let addresses = data.join("protocol.json");
    let factory = |args: &[&str]| {
        let mut all = vec![
            "factory",
            "--rpc-url",
            &node.rpc_url,
            "--api-url",
            &node.api_url,
            "--addresses",
            addresses.to_str().unwrap(),
        ];
        all.extend(args);
        openledger(&all)
    };
    let adapter = ok(factory(&["publish", id, "--key", &key]));
    let adapter = adapter.trim();
    assert_eq!(adapter, "1");
    let verified = ok(factory(&["verify", adapter]));
    assert!(verified.contains("every check holds"), "{verified}");
    assert!(
        verified.contains("version 1 of datanet 1: root"),
        "{verified}"
    );
    let compared = ok(factory(&[
        "compare",
        id,
        "--prompt",
        "Which gate guards vault 3?",
        "--max-tokens",
        "8",
    ]));
    assert!(
        compared.contains("base model:") && compared.contains("tuned adapter:"),
        "{compared}"
    );
    // Change one byte of the stored examples: the manifest no longer vouches for them.
    let job = job(node, id);
    let hash = job["publication"]["weights_hash"].as_str().unwrap();
    let stored = data
        .join("datanets/blobs/adapters")
        .join(hash.trim_start_matches("0x"))
        .join("examples.bin");
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    let refused = factory(&["verify", adapter]);
    assert!(!refused.status.success());
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(out.contains("FAIL examples hash"), "{out}");
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
}

/// Explains an answer repeating a training record through the node, then verifies the receipt
/// on this side from the published artifacts; one payout changed fails verification.
fn attribute_and_verify(node: &DevNode, dir: &Path, id: &str) {
    let hash = job(node, id)["publication"]["weights_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let receipt = dir.join("receipt.hex");
    let cache = dir.join("verifier");
    let attribution = |args: &[&str]| {
        let mut all = vec!["attribution", "--api-url", &node.api_url];
        all.extend(args);
        openledger(&all)
    };
    let explained = ok(attribution(&[
        "explain",
        "--adapter",
        &hash,
        "--prompt",
        "Which gate guards vault 3?",
        "--answer",
        "Vault 3 is guarded by gate 93.",
        "--receipt-out",
        receipt.to_str().unwrap(),
    ]));
    // The only contributor (contribution 1, dev account 2) is paid the whole amount.
    let contributor = format!("{}", openledger_chain::devkeys::dev_accounts()[2].address);
    assert!(
        explained.contains("contribution 1 (datanet 1, contributor")
            && explained
                .to_lowercase()
                .contains(&contributor.to_lowercase())
            && explained.contains("100.0% = 1000000000000000000"),
        "{explained}"
    );
    assert!(
        explained.contains("[Vault 3 is guarded by gate 93.]"),
        "{explained}"
    );
    // By its registry id (resolved on chain) the same adapter gives the same receipt.
    let registry = dir.join("node").join("protocol.json");
    let by_id = ok(attribution(&[
        "explain",
        "--adapter",
        "1",
        "--rpc-url",
        &node.rpc_url,
        "--addresses",
        registry.to_str().unwrap(),
        "--prompt",
        "Which gate guards vault 3?",
        "--answer",
        "Vault 3 is guarded by gate 93.",
    ]));
    let last = |text: &str| {
        text.trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert!(last(&explained).starts_with("receipt 0x"), "{explained}");
    assert_eq!(last(&by_id), last(&explained));

    // Bad requests are refused by name, and change nothing.
    let explain = |body: Value| {
        rest(
            &node.api_url,
            "POST",
            "/api/attribution/explain",
            Some(body),
        )
    };
    let (status, e) = explain(json!({"adapter": "vault", "prompt": "hi"}));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "adapter", "{e}");
    let (status, e) = explain(json!({"adapter": format!("0x{}", "0".repeat(64)), "prompt": "hi"}));
    assert_eq!(status, 404, "{e}");
    let (status, e) =
        explain(json!({"adapter": hash, "prompt": "hi", "answer": "vault ".repeat(3000)}));
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("exceed"),
        "{e}"
    );
    let (status, e) = explain(json!({"adapter": hash, "prompt": "hi", "max_tokens": 100000}));
    assert_eq!(status, 400, "{e}");
    let (status, e) = rest(
        &node.api_url,
        "POST",
        "/api/attribution/verify",
        Some(json!({"receipt": "0x1234"})),
    );
    assert_eq!(status, 400, "{e}");

    // The published adapter is served by its weights hash through the OpenAI-compatible API
    // (fetched from the blob store and checked on first use); an unpublished hash is a 404.
    let chat = |model: &str| {
        let body = json!({"model": model, "max_tokens": 6, "temperature": 0,
                          "messages": [{"role": "user", "content": "What is in the vault?"}]});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, answer) = rest(
                &node.api_url,
                "POST",
                "/v1/chat/completions",
                Some(body.clone()),
            );
            // 503 while the model loads in the background.
            if status != 503 || std::time::Instant::now() > deadline {
                return (status, answer);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let (status, tuned) = chat(&hash);
    assert_eq!(status, 200, "{tuned}");
    assert_eq!(tuned["model"], hash.as_str());
    assert!(
        tuned["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{tuned}"
    );
    // By its registry id, the same adapter and the same answer.
    let (status, by_id) = chat("1");
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(
        by_id["choices"][0]["message"]["content"],
        tuned["choices"][0]["message"]["content"]
    );
    let (status, e) = chat(&format!("0x{}", "0".repeat(64)));
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    let (status, e) = chat("999");
    assert_eq!(status, 404, "{e}");

    let cache = cache.to_str().unwrap();
    let addresses = dir.join("node").join("protocol.json");
    let addresses = addresses.to_str().unwrap();
    let verify = |args: &[&str]| {
        let mut all = vec!["verify", receipt.to_str().unwrap(), "--cache", cache];
        all.extend(["--rpc-url", node.rpc_url.as_str(), "--addresses", addresses]);
        all.extend(args);
        attribution(&all)
    };
    let verified = ok(verify(&[]));
    assert!(verified.trim_end().ends_with("identical"), "{verified}");
    assert!(
        verified.contains("manifest matches the registry (adapter 1)"),
        "{verified}"
    );
    let spans = ok(verify(&["--span-only"]));
    assert!(
        spans.contains("span part checked in") && spans.contains("identical"),
        "{spans}"
    );

    let bytes = alloy_primitives::hex::decode(std::fs::read_to_string(&receipt).unwrap()).unwrap();
    // A receipt made before is explained as it stands; one naming a span outside its answer
    // is refused by name.
    let explain_receipt = |bytes: &[u8]| {
        let body = json!({"receipt": alloy_primitives::hex::encode(bytes)});
        rest(
            &node.api_url,
            "POST",
            "/api/attribution/receipts/explain",
            Some(body),
        )
    };
    let (status, e) = explain_receipt(&bytes);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["contributions"][0]["contribution"], 1, "{e}");
    let mut bent = openledger_attribution::receipt::AttributionReceipt::decode(&bytes).unwrap();
    let past = bent.answer.len() as u32 + 5;
    bent.spans[0].end = past;
    let (status, e) = explain_receipt(&bent.encode());
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside its answer"),
        "{e}"
    );
    let mut forged = openledger_attribution::receipt::AttributionReceipt::decode(&bytes).unwrap();
    forged.payouts[0].amount -= U256::from(1);
    std::fs::write(&receipt, alloy_primitives::hex::encode(forged.encode())).unwrap();
    let refused = verify(&[]);
    assert!(!refused.status.success());
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(out.contains("payouts[0]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_training_resumes_to_the_same_adapter_and_cancel_stops_within_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let (rpc, api) = (free_addr(), free_addr());
    let mut node = start_at(&data, &[], rpc, api);
    let file = published_datanet(&node, dir.path(), 1, 24);
    // 24 records, none held out, 2 per step: 12 steps, checkpoints every 3; dropout masks are
    // drawn again on resume.
    let hyper = json!({"n_epochs": 1, "batch_size": 2, "eval_split": 0, "eval_interval": 3,
        "lora_dropout": 0.1,
        "eval_samples": 0, "compare_samples": 0});

    let whole = paid_job(&node, &file, hyper.clone()).await;
    let whole_job = wait(&node, &whole, "finished", finished);
    assert_eq!(whole_job["status"], "succeeded", "{whole_job}");

    publish_and_verify(&node, &data, &whole);
    attribute_and_verify(&node, dir.path(), &whole);

    let killed = paid_job(&node, &file, hyper.clone()).await;
    let before = wait(&node, &killed, "passed step 4", |j| {
        j["step"].as_u64() >= Some(4)
    });
    assert_eq!(before["status"], "running");
    node.process.kill_nine();
    let node = start_at(&data, &[], rpc, api);
    let resumed = wait(&node, &killed, "finished", finished);
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    let (_, events) = rest(
        &node.api_url,
        "GET",
        &format!("/v1/fine_tuning/jobs/{killed}/events?limit=100"),
        None,
    );
    let messages: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Resumed from the checkpoint at step")),
        "{messages:?}"
    );
    assert_eq!(
        adapter(&data, &killed),
        adapter(&data, &whole),
        "the resumed run's adapter differs from the uninterrupted run's"
    );
    assert_eq!(resumed["trained_tokens"], whole_job["trained_tokens"]);

    // Cancelling a running job: it stops at the next step boundary.
    let long = json!({"n_epochs": 20, "batch_size": 2, "eval_split": 0, "eval_interval": 1000,
        "eval_samples": 0, "compare_samples": 0});
    let cancelled = paid_job(&node, &file, long).await;
    wait(&node, &cancelled, "passed step 2", |j| {
        j["step"].as_u64() >= Some(2)
    });
    let (status, answer) = rest(
        &node.api_url,
        "POST",
        &format!("/v1/fine_tuning/jobs/{cancelled}/cancel"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let at_cancel = answer["step"].as_u64().unwrap();
    let stopped = wait(&node, &cancelled, "finished", finished);
    assert_eq!(stopped["status"], "cancelled");
    let last = stopped["step"].as_u64().unwrap();
    assert!(
        last <= at_cancel + 1,
        "cancelled at step {at_cancel} but trained to step {last}"
    );
    assert!(last < 240, "the cancelled job ran to its end");

    // The same records in another datanet train the same weights. Publishing them would give
    // adapter 1's weights a second lineage (its answers would pay datanet 2's contributor):
    // refused, and adapter 1's manifest is untouched.
    let copy = published_datanet(&node, dir.path(), 2, 24);
    let twin = paid_job(&node, &copy, hyper).await;
    assert_eq!(
        wait(&node, &twin, "finished", finished)["status"],
        "succeeded"
    );
    assert_eq!(adapter(&data, &twin), adapter(&data, &whole));
    let hash = job(&node, &whole)["publication"]["weights_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = data
        .join("datanets/blobs/adapters")
        .join(hash.trim_start_matches("0x"))
        .join("manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let (status, refused) = rest(
        &node.api_url,
        "POST",
        &format!("/v1/fine_tuning/jobs/{twin}/publish"),
        None,
    );
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("already published from other training data"),
        "{message}"
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    // The resumed job trained the same weights on the same data and settings: its
    // publication is the first one's lineage, manifest and all.
    let (status, resumed) = rest(
        &node.api_url,
        "POST",
        &format!("/v1/fine_tuning/jobs/{killed}/publish"),
        None,
    );
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(
        resumed["publication"]["manifest_hash"],
        job(&node, &whole)["publication"]["manifest_hash"]
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    // Publishing the first job again is harmless: the same manifest.
    let (status, again) = rest(
        &node.api_url,
        "POST",
        &format!("/v1/fine_tuning/jobs/{whole}/publish"),
        None,
    );
    assert_eq!(status, 200, "{again}");
}
