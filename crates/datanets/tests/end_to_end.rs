//! A datanet's whole life on the embedded node: created; two contributors upload a JSONL and
//! a CSV file (and one more JSONL); curators approve two and reject one; a version is
//! published; proofs verify here and through the contract's view; the export holds exactly
//! the accepted records, each with its contribution id. Then the index is deleted and
//! rebuilt from the chain's logs, and the view is the same.

mod common;

use common::{chat_datanet, chat_line, write_jsonl, World};
use openledger_datanets::{Datanets, DatanetsError, Policy, Status};
use serde_json::{json, Value};

struct Scenario {
    datanet: u64,
    accepted: Vec<(u64, Vec<Value>)>,
    rejected: u64,
    version: u64,
}

/// Everything up to a published version.
async fn run(world: &World, service: &Datanets) -> Scenario {
    let owner = world.account(0).await;
    let (alice, bob) = (world.account(1).await, world.account(2).await);
    let curators = [
        world.account(3).await,
        world.account(4).await,
        world.account(5).await,
    ];

    let datanet = service.create(&owner, &chat_datanet(2)).await.unwrap();
    for c in &curators {
        world.stake_curator(c, datanet).await;
    }
    let dir = world.dir.path();

    // Alice: chat records as JSONL, with Windows line endings (canonicalised away).
    let alice_lines: Vec<String> = (0..40).map(|n| chat_line(n, "alice")).collect();
    let jsonl = dir.join("alice.jsonl");
    std::fs::write(&jsonl, alice_lines.join("\r\n") + "\r\n").unwrap();
    let a = service
        .contribute(&alice, datanet, &jsonl, "CC-BY-4.0", &["defi".into()])
        .await
        .unwrap();
    assert_eq!(a.report.records, 40);
    assert!(!a.existing);

    // Bob: question/answer rows as CSV (quoted commas and newlines inside fields).
    let csv = dir.join("bob.csv");
    let mut text = String::from("question,answer\n");
    let mut bob_records = Vec::new();
    for n in 0..25 {
        let q = format!("Bob's question {n}: what went wrong with bridge {n}, exactly?");
        let ans = format!("Validator keys {n} were\nreused across {} chains", n + 2);
        text.push_str(&format!("\"{q}\",\"{ans}\"\n"));
        bob_records.push(json!({"question": q, "answer": ans}));
    }
    std::fs::write(&csv, text).unwrap();
    let b = service
        .contribute(&bob, datanet, &csv, "CC0-1.0", &[])
        .await
        .unwrap();
    assert_eq!(b.report.records, 25);

    // Alice again, different data, which the curators will reject.
    let junk = dir.join("junk.jsonl");
    write_jsonl(
        &junk,
        &(100..110).map(|n| chat_line(n, "junk")).collect::<Vec<_>>(),
    );
    let c = service
        .contribute(&alice, datanet, &junk, "CC-BY-4.0", &[])
        .await
        .unwrap();

    // The same file from the same contributor again: the same contribution, nothing sent.
    let nonce = world.nonce(&alice, alice.sender().unwrap()).await;
    let again = service
        .contribute(&alice, datanet, &jsonl, "CC-BY-4.0", &[])
        .await
        .unwrap();
    assert!(again.existing);
    assert_eq!(again.id, a.id);
    assert_eq!(world.nonce(&alice, alice.sender().unwrap()).await, nonce);

    // Curators see the three pending contributions with their reports and signed metadata.
    let queue = service.queue(datanet).await.unwrap();
    assert_eq!(
        queue.iter().map(|e| e.contribution.id).collect::<Vec<_>>(),
        vec![a.id, b.id, c.id]
    );
    for entry in &queue {
        let report = entry.report.as_ref().unwrap();
        assert_eq!(report.content_hash, entry.contribution.content_hash);
        let signed = entry.metadata.as_ref().unwrap();
        assert_eq!(
            signed.signer(service.domain()).unwrap(),
            entry.contribution.contributor
        );
        assert_eq!(
            signed.hash(service.domain()),
            entry.contribution.metadata_hash
        );
    }

    for (id, approve) in [(a.id, true), (b.id, true), (c.id, false)] {
        for curator in &curators[..2] {
            service
                .review(curator, id, approve, "checked by hand")
                .await
                .unwrap();
        }
    }
    let status = |id| service.index().contribution(id).unwrap().unwrap().status;
    assert_eq!(status(a.id), Status::Accepted);
    assert_eq!(status(b.id), Status::Accepted);
    assert_eq!(status(c.id), Status::Rejected);
    assert!(service.queue(datanet).await.unwrap().is_empty());

    let published = service.publish(&owner, datanet).await.unwrap();
    assert_eq!(published.count, 2);
    let alice_records = alice_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Scenario {
        datanet,
        accepted: vec![(a.id, alice_records), (b.id, bob_records)],
        rejected: c.id,
        version: published.version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datanet_from_creation_to_a_proven_exported_version() {
    let world = World::start().await;
    let service = world.service("service", Policy::default()).await;
    let s = run(&world, &service).await;

    // Every accepted contribution proves, here and in the contract.
    for (id, _) in &s.accepted {
        let proof = service.prove(s.version, *id).await.unwrap();
        assert_eq!(service.verify(&proof).await.unwrap(), (true, true));
        // A wrong sibling fails both ways.
        let mut forged = proof.clone();
        forged.proof[0].0[0] ^= 1;
        assert_eq!(service.verify(&forged).await.unwrap(), (false, false));
        // Claimed content other than what was registered fails here (the contract reads the
        // registered hash itself, so it still holds the contribution to be in the version).
        let mut forged = proof.clone();
        forged.content_hash = alloy_primitives::B256::repeat_byte(1);
        assert!(!service.verify(&forged).await.unwrap().0);
    }
    let refused = service.prove(s.version, s.rejected).await.unwrap_err();
    assert!(
        matches!(refused, DatanetsError::NotInVersion { .. }),
        "{refused}"
    );

    // The export holds exactly the accepted records, in order, each with its contribution.
    let mut out = Vec::new();
    let summary = service.export(s.version, &mut out).await.unwrap();
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = s
        .accepted
        .iter()
        .flat_map(|(id, records)| {
            records
                .iter()
                .map(move |r| json!({"contribution": id, "record": r}))
        })
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(summary.records, 65);
    assert_eq!(summary.contributions, 2);
    assert_eq!(service.members(s.version).await.unwrap().len(), 2);
    assert_eq!(service.index().versions(Some(s.datanet)).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_index_and_syncing_rebuilds_the_same_view() {
    let world = World::start().await;
    let service = world.service("service", Policy::default()).await;
    let s = run(&world, &service).await;
    let view = |service: &Datanets| {
        let index = service.index();
        (
            index.datanets().unwrap(),
            index.contributions(s.datanet).unwrap(),
            index.versions(None).unwrap(),
        )
    };
    let before = view(&service);
    assert_eq!(before.1.len(), 3);
    drop(service);

    let index_file = world.dir.path().join("service").join("index.redb");
    std::fs::remove_file(&index_file).unwrap();
    let rebuilt = world.service("service", Policy::default()).await;
    assert!(rebuilt.index().datanets().unwrap().is_empty());
    rebuilt.sync().await.unwrap();
    assert_eq!(view(&rebuilt), before);
    // And what depends on it works again: proofs and export.
    let proof = rebuilt.prove(s.version, s.accepted[0].0).await.unwrap();
    assert_eq!(rebuilt.verify(&proof).await.unwrap(), (true, true));
    let mut out = Vec::new();
    assert_eq!(
        rebuilt.export(s.version, &mut out).await.unwrap().records,
        65
    );
}
