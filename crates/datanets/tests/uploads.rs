//! Uploads belong to their contributor: the REST API stores a file only under the address
//! whose key signed for those bytes, another uploader of the same bytes cannot displace a
//! pending upload, quotas bound what one address can stage, and a datanet's on-chain
//! `metadataURI` reads only keys in the service's own form.

mod common;

use alloy_primitives::{hex, keccak256, Address, U256};
use alloy_sol_types::SolCall;
use common::*;
use openledger_chain::devkeys::dev_accounts;
use openledger_datanets::{
    api, ContributionMetadata, Datanets, Policy, SignedMetadata, UploadRequest,
};
use openledger_protocol::datanet_registry::DatanetRegistry;
use serde_json::Value;
use std::{net::SocketAddr, sync::Arc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(service: Datanets) -> (SocketAddr, Arc<Datanets>) {
    let service = Arc::new(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api::router(service.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, service)
}

/// One HTTP request; returns the status and the body as JSON (or a string).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, body)
}

/// Uploads `bytes` as `contributor`'s JSONL file, signed by `signer` (none: unsigned).
async fn upload(
    addr: SocketAddr,
    service: &Datanets,
    datanet: u64,
    contributor: Address,
    signer: Option<usize>,
    bytes: &[u8],
) -> (u16, Value) {
    let path = format!("/api/datanets/{datanet}/uploads?contributor={contributor}&format=jsonl");
    let mut headers = Vec::new();
    if let Some(i) = signer {
        let request = UploadRequest {
            datanetId: U256::from(datanet),
            contributor,
            fileHash: keccak256(bytes),
            size: bytes.len() as u64,
            deadline: now() + 300,
        };
        let signature = request.sign(service.domain(), &dev_accounts()[i].key);
        headers.push(("x-upload-signature", hex::encode(signature)));
        headers.push(("x-upload-deadline", request.deadline.to_string()));
    }
    http(addr, "PUT", &path, &headers, bytes).await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn pending_marks(service: &Datanets) -> usize {
    service.store().list("pending").await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_contributors_key_stores_an_upload_under_its_address() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let service = world.service("svc", Policy::default()).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    let (addr, service) = serve(service).await;
    let (alice, mallory) = (dev_accounts()[2].address, dev_accounts()[3].address);
    let file = format!("{}\n{}\n", chat_line(1, "a"), chat_line(2, "a"));

    let (status, body) = upload(addr, &service, datanet, alice, None, file.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not signed"),
        "{body}"
    );
    // Mallory signs an upload that claims to be Alice's.
    let (status, body) = upload(addr, &service, datanet, alice, Some(3), file.as_bytes()).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("signed by {mallory}")),
        "{message}"
    );
    // Bytes other than the ones signed for are refused too.
    let request = UploadRequest {
        datanetId: U256::from(datanet),
        contributor: alice,
        fileHash: keccak256(b"something else"),
        size: file.len() as u64,
        deadline: now() + 300,
    };
    let signature = request.sign(service.domain(), &dev_accounts()[2].key);
    let headers = [
        ("x-upload-signature", hex::encode(signature)),
        ("x-upload-deadline", request.deadline.to_string()),
    ];
    let path = format!("/api/datanets/{datanet}/uploads?contributor={alice}&format=jsonl");
    let (status, _) = http(addr, "PUT", &path, &headers, file.as_bytes()).await;
    assert_eq!(status, 403);
    assert_eq!(
        pending_marks(&service).await,
        0,
        "nothing refused was stored"
    );

    let (status, body) = upload(addr, &service, datanet, alice, Some(2), file.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pending_marks(&service).await, 1);
}

/// Mallory uploads Alice's file as her own after Alice did: each has its own pending upload,
/// and Alice's signed metadata still attaches to hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uploader_of_the_same_bytes_cannot_displace_a_pending_upload() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let service = world.service("svc", Policy::default()).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    let (addr, service) = serve(service).await;
    let alice = dev_accounts()[2].address;
    let mallory = dev_accounts()[3].address;
    let file = format!("{}\n{}\n", chat_line(3, "b"), chat_line(4, "b"));
    let (status, first) = upload(addr, &service, datanet, alice, Some(2), file.as_bytes()).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = upload(addr, &service, datanet, mallory, Some(3), file.as_bytes()).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(pending_marks(&service).await, 2);

    let hash: alloy_primitives::B256 =
        serde_json::from_value(first["content_hash"].clone()).unwrap();
    let report = &first["report"];
    let metadata = ContributionMetadata {
        datanetId: U256::from(datanet),
        contentHash: hash,
        size: report["bytes"].as_u64().unwrap(),
        records: report["records"].as_u64().unwrap(),
        licence: "CC-BY-4.0".into(),
        tags: vec![],
        time: now(),
    };
    let signed = SignedMetadata::sign(metadata, service.domain(), &dev_accounts()[2].key);
    let path = format!("/api/datanets/{datanet}/uploads/{hash}/metadata");
    let body = serde_json::to_vec(&signed).unwrap();
    let headers = [("content-type", "application/json".to_string())];
    let (status, call) = http(addr, "POST", &path, &headers, &body).await;
    assert_eq!(status, 200, "{call}");
    let data: alloy_primitives::Bytes = serde_json::from_value(call["data"].clone()).unwrap();
    let decoded = DatanetRegistry::contributeCall::abi_decode(&data).unwrap();
    assert_eq!(decoded.metadataHash, signed.hash(service.domain()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_bound_what_one_address_can_stage() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let policy = Policy {
        pending_per_contributor: 2,
        ..Policy::default()
    };
    let service = world.service("svc", policy).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    let (addr, service) = serve(service).await;
    let alice = dev_accounts()[2].address;
    for n in 0..2 {
        let file = format!("{}\n", chat_line(10 + n, "q"));
        let (status, body) = upload(addr, &service, datanet, alice, Some(2), file.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
    }
    let file = format!("{}\n", chat_line(20, "q"));
    let (status, body) = upload(addr, &service, datanet, alice, Some(2), file.as_bytes()).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("2 uploads"),
        "{body}"
    );
    // Another contributor is not held back by Alice's quota.
    let bob = dev_accounts()[4].address;
    let (status, body) = upload(addr, &service, datanet, bob, Some(4), file.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
}

/// Fresh addresses cost nothing, so all contributors together are bounded in bytes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_addresses_is_bounded_in_bytes() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let file = format!("{}\n", chat_line(30, "c"));
    let policy = Policy {
        pending_bytes_total: 2 * file.len() as u64 + 10,
        ..Policy::default()
    };
    let service = world.service("svc", policy).await;
    let datanet = service.create(&owner, &chat_datanet(1)).await.unwrap();
    let (addr, service) = serve(service).await;
    for (i, signer) in [2usize, 3].into_iter().enumerate() {
        let file = format!("{}\n", chat_line(30 + i, "c"));
        let who = dev_accounts()[signer].address;
        let (status, body) =
            upload(addr, &service, datanet, who, Some(signer), file.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
    }
    let who = dev_accounts()[4].address;
    let (status, body) = upload(addr, &service, datanet, who, Some(4), file.as_bytes()).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("most bytes"),
        "{body}"
    );
}

/// A datanet created on chain with a metadataURI pointing anywhere else in the store reads
/// nothing; the service's own form still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_uri_reads_only_the_services_own_keys() {
    let world = World::start().await;
    let owner = world.account(1).await;
    let service = world.service("svc", Policy::default()).await;
    let honest = service.create(&owner, &chat_datanet(1)).await.unwrap();
    service.sync().await.unwrap();
    let row = service.datanet(honest).unwrap();
    assert!(service.description(&row).await.unwrap().is_some());
    for uri in [
        "openledger:pending/1".to_string(),
        format!("openledger:schemas/{:x}.json", row.schema_hash),
        "openledger:datanets/../blobs/x.json".to_string(),
    ] {
        let call = DatanetRegistry::createDatanetCall {
            metadataURI: uri.clone(),
            schemaHash: row.schema_hash,
            quorum: 1,
            fee: 0,
        };
        let registry = world.addresses.datanet_registry;
        owner.send(registry, call, U256::ZERO).await.unwrap();
        service.sync().await.unwrap();
        let row = service.index().datanets().unwrap().pop().unwrap();
        assert_eq!(row.metadata_uri, uri);
        assert_eq!(service.description(&row).await.unwrap(), None, "{uri}");
    }
}
