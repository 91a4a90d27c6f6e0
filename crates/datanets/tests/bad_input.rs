//! Bad input, one case each: every refusal names the problem (and the line, where there is
//! one), and nothing changes in the blob store or on chain.
//!
//! Also: a contribution stored whose transaction never landed is swept away.

mod common;

use alloy_primitives::U256;
use alloy_sol_types::SolCall;
use common::{chat_datanet, chat_line, chat_only_datanet, write_jsonl, World};
use openledger_datanets::{store::keys, ContributionMetadata, Datanets, Policy, SignedMetadata};
use openledger_protocol::{datanet_registry::DatanetRegistry, ProtocolClient};
use std::{path::Path, time::Duration};

/// What must not change: every key in the blob store, the registry's counts, the
/// contributor's nonce (no transaction sent) and the index.
async fn snapshot(world: &World, service: &Datanets, who: &ProtocolClient) -> String {
    let keys = service.store().list("").await.unwrap();
    let counts = who
        .call(
            world.addresses.datanet_registry,
            DatanetRegistry::countsCall {},
        )
        .await
        .unwrap();
    let nonce = world.nonce(who, who.sender().unwrap()).await;
    let rows = service.index().contributions(1).unwrap();
    format!(
        "{keys:?} {} {} {nonce} {rows:?}",
        counts.contributions, counts.versions
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_input_is_refused_by_name_and_changes_nothing() {
    let world = World::start().await;
    let policy = Policy {
        max_bytes: 64 * 1024,
        ..Policy::default()
    };
    let service = world.service("service", policy).await;
    let owner = world.account(0).await;
    let (alice, bob, curator) = (
        world.account(1).await,
        world.account(2).await,
        world.account(3).await,
    );
    let datanet = service.create(&owner, &chat_only_datanet(1)).await.unwrap();
    assert_eq!(datanet, 1);
    world.stake_curator(&curator, datanet).await;

    // Accepted data for the duplicate checks to find.
    let dir = world.dir.path();
    let accepted_lines: Vec<String> = (0..30).map(|n| chat_line(n, "accepted")).collect();
    let accepted = dir.join("accepted.jsonl");
    write_jsonl(&accepted, &accepted_lines);
    let first = service
        .contribute(&alice, datanet, &accepted, "CC0-1.0", &[])
        .await
        .unwrap();
    service
        .review(&curator, first.id, true, "good")
        .await
        .unwrap();

    let file = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let good = |n| chat_line(n, "fresh");
    let lines = |v: Vec<String>| (v.join("\n") + "\n").into_bytes();

    let bad_json = file(
        "bad-json.jsonl",
        lines(vec![good(1), good(2), "{\"messages\": [".into()]),
    );
    let bad_schema = file(
        "bad-schema.jsonl",
        lines(vec![
            good(1),
            r#"{"messages": [{"role": "user", "content": "only one"}]}"#.into(),
        ]),
    );
    let mut not_utf8 = lines(vec![good(1)]);
    not_utf8.extend_from_slice(b"{\"messages\": \"\xff\xfe\"}\n");
    let not_utf8 = file("not-utf8.jsonl", not_utf8);
    let oversized = file("big.jsonl", lines((0..400).map(good).collect()));
    // The accepted file's records with one word changed in each: near-duplicates.
    let near = file(
        "near.jsonl",
        lines(
            accepted_lines
                .iter()
                .map(|l| l.replace("attacker", "exploiter"))
                .collect(),
        ),
    );
    let secret = file(
        "secret.jsonl",
        lines(vec![good(1), good(2), good(3), chat_line(4, "my private_key is 0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")]),
    );
    let fine = file("fine.jsonl", lines((1000..1005).map(good).collect()));

    type Case<'a> = (&'a str, &'a Path, u64, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            &bad_json,
            datanet,
            vec!["line 3", "invalid JSON"],
        ),
        (
            "schema",
            &bad_schema,
            datanet,
            vec![
                "line 2",
                "breaks the datanet's schema at '/messages'",
                "has less than 2 items",
            ],
        ),
        (
            "not UTF-8",
            &not_utf8,
            datanet,
            vec!["line 2", "not valid UTF-8"],
        ),
        (
            "oversized",
            &oversized,
            datanet,
            vec!["larger than the limit of 65536 bytes"],
        ),
        (
            "exact duplicate",
            &accepted,
            datanet,
            vec!["already contribution 1 to datanet 1"],
        ),
        (
            "near-duplicate",
            &near,
            datanet,
            vec!["30 of 30 records", "nearly duplicate", "contribution 1"],
        ),
        (
            "secret",
            &secret,
            datanet,
            vec!["line 4", "a hex private key"],
        ),
        (
            "unknown datanet",
            &fine,
            99,
            vec!["datanet 99 does not exist"],
        ),
    ];
    for (name, path, datanet, expected) in cases {
        let before = snapshot(&world, &service, &bob).await;
        let err = service
            .contribute(&bob, datanet, path, "CC0-1.0", &[])
            .await
            .expect_err(name)
            .to_string();
        for part in expected {
            assert!(err.contains(part), "{name}: {err:?} lacks {part:?}");
        }
        assert_eq!(
            snapshot(&world, &service, &bob).await,
            before,
            "{name} changed something"
        );
    }

    // Metadata signed by someone other than the contributor.
    let before = snapshot(&world, &service, &bob).await;
    let mallory = world.account(6).await;
    let key = mallory.signer().unwrap().key().clone();
    let err = service
        .contribute_with(
            &bob,
            datanet,
            &fine,
            "CC0-1.0",
            &[],
            |m: ContributionMetadata, d| SignedMetadata::sign(m, d, &key),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("signed by {}", mallory.sender().unwrap()))
            && err.contains(&format!("not by the contributor {}", bob.sender().unwrap())),
        "{err}"
    );
    assert_eq!(snapshot(&world, &service, &bob).await, before);

    // After all that, the good file still goes in.
    let ok = service
        .contribute(&bob, datanet, &fine, "CC0-1.0", &[])
        .await
        .unwrap();
    assert_eq!(ok.id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_contribution_whose_transaction_never_landed_is_swept() {
    let world = World::start().await;
    let service = world.service("service", Policy::default()).await;
    let owner = world.account(0).await;
    let alice = world.account(1).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    let path = world.dir.path().join("a.jsonl");
    write_jsonl(
        &path,
        &(0..5).map(|n| chat_line(n, "a")).collect::<Vec<_>>(),
    );
    let landed = service
        .contribute(&alice, datanet, &path, "CC0-1.0", &[])
        .await
        .unwrap();

    // A process that stored a contribution and died before its transaction: blob, report,
    // metadata and the pending mark are there, nothing on chain.
    let orphan = alloy_primitives::B256::repeat_byte(0xab);
    let store = service.store();
    store
        .put(&keys::blob(orphan), "orphan bytes")
        .await
        .unwrap();
    store
        .put(&keys::contribution(datanet, orphan, "report.json"), "{}")
        .await
        .unwrap();
    store
        .put_json(
            &keys::pending(datanet, orphan, alice.sender().unwrap()),
            &serde_json::json!({"datanet": datanet, "content_hash": orphan,
                "contributor": alice.sender().unwrap(), "created": 0}),
        )
        .await
        .unwrap();
    // And one whose transaction did land but whose mark was left behind.
    store
        .put_json(
            &keys::pending(datanet, landed.report.content_hash, alice.sender().unwrap()),
            &serde_json::json!({"datanet": datanet, "content_hash": landed.report.content_hash,
                "contributor": alice.sender().unwrap(), "created": 0}),
        )
        .await
        .unwrap();

    // Young marks are left alone (their transaction may still land).
    assert_eq!(
        service
            .sweep(Duration::from_secs(3600 * 24 * 365 * 100))
            .await
            .unwrap(),
        0
    );
    assert!(store.exists(&keys::blob(orphan)).await.unwrap());
    assert_eq!(service.sweep(Duration::from_secs(60)).await.unwrap(), 1);
    assert!(!store.exists(&keys::blob(orphan)).await.unwrap());
    assert!(store.list("pending").await.unwrap().is_empty());
    assert!(store
        .list(&format!("contributions/{datanet}/{orphan:x}"))
        .await
        .unwrap()
        .is_empty());
    // The landed contribution keeps everything.
    assert!(store
        .exists(&keys::blob(landed.report.content_hash))
        .await
        .unwrap());
    // A mark left in the layout from before marks were kept per contributor is swept too.
    let old = format!("pending/{datanet}/{orphan:x}.json");
    store
        .put_json(
            &old,
            &serde_json::json!({"datanet": datanet, "content_hash": orphan,
                "contributor": alice.sender().unwrap(), "created": 0}),
        )
        .await
        .unwrap();
    assert_eq!(service.sweep(Duration::from_secs(60)).await.unwrap(), 1);
    assert!(store.list("pending").await.unwrap().is_empty());
    let _ = U256::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_calls_blobs_are_bounded_and_swept_unless_the_chain_refers_to_them() {
    let world = World::start().await;
    let policy = Policy {
        drafts_total: 3,
        ..Policy::default()
    };
    let service = world.service("service", policy).await;
    let owner = world.account(0).await;
    let curator = world.account(3).await;
    let alice = world.account(1).await;
    let store = service.store();

    // Landed: a datanet created and a review cast through the service.
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    world.stake_curator(&curator, datanet).await;
    let path = world.dir.path().join("a.jsonl");
    write_jsonl(
        &path,
        &(0..5).map(|n| chat_line(n, "a")).collect::<Vec<_>>(),
    );
    let contribution = service
        .contribute(&alice, datanet, &path, "CC0-1.0", &[])
        .await
        .unwrap();
    service
        .review(&curator, contribution.id, true, "clear and sourced")
        .await
        .unwrap();
    assert_eq!(store.list("drafts").await.unwrap().len(), 2);

    // A stranger's prepared datanet that is never sent; the same one again is the same draft.
    let stranger = |n: usize| openledger_datanets::NewDatanet {
        name: format!("never sent {n}"),
        schema: serde_json::json!({"type": "object", "title": format!("schema {n}")}),
        ..chat_datanet(1)
    };
    let call = service.prepare_create(&stranger(1)).await.unwrap();
    service.prepare_create(&stranger(1)).await.unwrap();
    assert_eq!(store.list("drafts").await.unwrap().len(), 3);
    // Past the bound: refused by name, nothing written.
    let before = store.list("").await.unwrap();
    let err = service.prepare_create(&stranger(2)).await.unwrap_err();
    assert!(
        matches!(err, openledger_datanets::DatanetsError::DraftsFull { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("prepared calls"), "{err}");
    assert_eq!(store.list("").await.unwrap(), before);

    // Young drafts stay (a landed datanet loses its mark at once; a review's is looked up on
    // chain only once old); old ones that never landed go, blobs and all; landed ones keep
    // their blobs and lose only their marks.
    let forever = Duration::from_secs(3600 * 24 * 365 * 100);
    assert_eq!(service.sweep_drafts(forever).await.unwrap(), 0);
    assert_eq!(store.list("drafts").await.unwrap().len(), 2);
    let unsent = DatanetRegistry::createDatanetCall::abi_decode(&call.data).unwrap();
    let description = keys::from_metadata_uri(&unsent.metadataURI).unwrap();
    assert!(store.exists(&description).await.unwrap());
    assert_eq!(service.sweep_drafts(Duration::ZERO).await.unwrap(), 1);
    assert!(!store.exists(&description).await.unwrap());
    assert!(!store
        .exists(&keys::schema(unsent.schemaHash))
        .await
        .unwrap());
    assert!(store.list("drafts").await.unwrap().is_empty());
    let row = service.datanet(datanet).unwrap();
    assert!(service.description(&row).await.unwrap().is_some());
    assert!(service.schema(&row).await.is_ok());
    let reasons = format!(
        "contributions/{datanet}/{:x}/reasons",
        contribution.report.content_hash
    );
    assert_eq!(store.list(&reasons).await.unwrap().len(), 1);
    // Room again.
    service.prepare_create(&stranger(2)).await.unwrap();
    // Too long a reason is refused by name before anything is written.
    let before = store.list("").await.unwrap();
    let long = "x".repeat(openledger_datanets::MAX_REASON_BYTES + 1);
    let err = service
        .prepare_review(contribution.id, false, &long)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reason is too large"), "{err}");
    assert_eq!(store.list("").await.unwrap(), before);
}
