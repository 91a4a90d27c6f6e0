//! Datanets through the real binary: `openledger datanet` talks to a dev node's REST API and
//! signs and sends its own transactions, from creation to a verified, exported version.

mod common;

use alloy_primitives::U256;
use common::{dev_key, fails, ok, openledger, start};
use openledger_protocol::{deploy::Addresses, ProtocolClient, Signer, Staking};
use serde_json::{json, Value};

const CURATOR: u8 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datanet_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir.path().join("node"));
    let run = |key: Option<usize>, args: &[&str]| {
        let mut all = vec![
            "datanet",
            "--rpc-url",
            &node.rpc_url,
            "--api-url",
            &node.api_url,
        ];
        let key = key.map(dev_key);
        if let Some(key) = &key {
            all.extend(["--key", key.as_str()]);
        }
        all.extend(args);
        openledger(&all)
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    std::fs::write(
        path("schema.json"),
        json!({"type": "object", "required": ["question", "answer"], "properties": {
            "question": {"type": "string"}, "answer": {"type": "string", "minLength": 3}}})
        .to_string(),
    )
    .unwrap();
    let created = ok(run(
        Some(0),
        &[
            "create",
            "--name",
            "exploits",
            "--schema",
            &path("schema.json"),
            "--fee",
            "0.5",
        ],
    ));
    assert_eq!(created.trim(), "1");
    assert!(ok(run(None, &["list"])).contains("exploits"));

    // A curator stakes for the datanet (staking has no CLI yet).
    let addresses = Addresses::load(&dir.path().join("node").join("protocol.json")).unwrap();
    let curator =
        ProtocolClient::connect(&node.rpc_url, Some(Signer::from_hex(&dev_key(3)).unwrap()))
            .await
            .unwrap();
    curator
        .send(
            addresses.staking,
            Staking::stakeCall {
                role: CURATOR,
                subject: U256::from(1),
            },
            U256::from(10u128 * 10u128.pow(18)),
        )
        .await
        .unwrap();

    // Bad input is refused with the line named, and nothing is sent.
    std::fs::write(
        path("bad.jsonl"),
        "{\"question\": \"q\", \"answer\": \"fine\"}\n{\"question\": \"q\", \"answer\": \"no\"}\n",
    )
    .unwrap();
    let refused = fails(run(Some(1), &["contribute", "1", &path("bad.jsonl")]));
    assert!(
        refused.contains("line 2: the record breaks the datanet's schema at '/answer'"),
        "{refused}"
    );
    let missing = fails(run(Some(1), &["contribute", "7", &path("bad.jsonl")]));
    assert!(missing.contains("datanet 7 does not exist"), "{missing}");

    let records: Vec<Value> = (0..3)
        .map(|i| json!({"question": format!("what drained pool {i}?"), "answer": format!("a price oracle read in block {}", 1000 + i)}))
        .collect();
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(path("good.jsonl"), lines.join("\n") + "\n").unwrap();
    let contributed = ok(run(
        Some(1),
        &["contribute", "1", &path("good.jsonl"), "--tag", "defi"],
    ));
    assert_eq!(contributed.trim(), "1");
    // The same file again is the same contribution.
    assert_eq!(
        ok(run(Some(1), &["contribute", "1", &path("good.jsonl")])).trim(),
        "1"
    );

    let queue = ok(run(None, &["queue", "1"]));
    assert!(
        queue.contains("contribution 1 from") && queue.contains("3 records"),
        "{queue}"
    );
    let reviewed = ok(run(
        Some(3),
        &["review", "1", "approve", "--reason", "sources check out"],
    ));
    assert_eq!(reviewed.trim(), "contribution 1: accepted");
    let published = ok(run(Some(0), &["publish", "1"]));
    assert!(
        published.starts_with("version 1 of datanet 1: 1 contributions"),
        "{published}"
    );
    assert!(ok(run(None, &["versions", "1"])).lines().count() == 2);

    let proof = ok(run(None, &["prove", "1", "1"]));
    std::fs::write(path("proof.json"), &proof).unwrap();
    let verified = ok(run(None, &["verify", &path("proof.json")]));
    assert_eq!(verified.trim(), "here: valid, registry contract: valid");
    // A tampered proof is caught by both.
    let mut forged: Value = serde_json::from_str(&proof).unwrap();
    forged["leaf"] = json!(format!("0x{}", "11".repeat(32)));
    forged["content_hash"] = json!(format!("0x{}", "22".repeat(32)));
    std::fs::write(path("forged.json"), forged.to_string()).unwrap();
    assert!(fails(run(None, &["verify", &path("forged.json")])).contains("does not verify"));

    ok(run(None, &["export", "1", "--out", &path("corpus.jsonl")]));
    let exported: Vec<Value> = std::fs::read_to_string(path("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = records
        .iter()
        .map(|r| json!({"contribution": 1, "record": r}))
        .collect();
    assert_eq!(exported, expected);
}
