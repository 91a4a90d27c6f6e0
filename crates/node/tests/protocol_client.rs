//! `ProtocolClient` against the real node (embedded, in-process): a deployment interrupted
//! after a few steps resumes where it stopped and lands at the planned addresses; deploying
//! again changes nothing; reverts come back as the contract's decoded error; events decode.

use alloy_primitives::{hex, keccak256, B256, U256};
use openledger_chain::{exec::CallRequest, submit::sign_dev, Node, NodeConfig};
use openledger_protocol::{
    client::ClientError,
    datanet_registry::DatanetRegistry::DatanetCreated,
    deploy::{plan, DeployConfig},
    genesis::{dev_deployer, dev_genesis},
    DatanetRegistry, ProtocolClient, Signer,
};
use serde_json::json;
use std::time::Duration;

async fn node(dir: &std::path::Path) -> (Node, String) {
    let node = Node::start(NodeConfig {
        data_dir: dir.join("chain"),
        genesis: dev_genesis(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: None,
        block_time: Duration::ZERO,
        dev: true,
        pool: Default::default(),
        rpc: Default::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", node.http_addr);
    (node, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_deployment_resumes_at_the_planned_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, url) = node(dir.path()).await;
    let deployer = dev_deployer();
    let config = DeployConfig::dev();
    let (planned, steps) = plan(1612, deployer.address, 0, &config);

    // The first five steps go out, as if the deploying process then died.
    let client = ProtocolClient::connect(&url, Some(Signer::from_key(deployer.key.clone())))
        .await
        .unwrap();
    for (nonce, step) in steps[..5].iter().enumerate() {
        let request = CallRequest {
            to: step.to,
            input: step.input.clone(),
            ..Default::default()
        };
        let raw = sign_dev(
            &deployer,
            &request,
            1612,
            nonce as u64,
            step.gas_limit,
            10_000_000_000,
            1_000_000_000,
        );
        let _: B256 = client
            .rpc()
            .request("eth_sendRawTransaction", json!([hex::encode_prefixed(raw)]))
            .await
            .unwrap();
    }

    let mut confirmed = Vec::new();
    let addresses = client
        .deploy(&config, Some(0), |done, total, _| {
            confirmed.push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(addresses, planned);
    // Only the steps not yet sent were sent (and reported).
    let expected: Vec<_> = (6..=steps.len()).map(|d| (d, steps.len())).collect();
    assert_eq!(confirmed, expected);
    for (name, address) in addresses.contracts() {
        assert!(!client.code(address).await.unwrap().is_empty(), "{name}");
    }
    let nonce: alloy_primitives::U64 = client
        .rpc()
        .request(
            "eth_getTransactionCount",
            json!([deployer.address, "latest"]),
        )
        .await
        .unwrap();
    assert_eq!(nonce.to::<usize>(), steps.len());

    // Deploying the same plan again finds everything done and sends nothing.
    let head = client.block_number().await.unwrap();
    let again = client.deploy(&config, Some(0), |_, _, _| {}).await.unwrap();
    assert_eq!(again, planned);
    assert_eq!(client.block_number().await.unwrap(), head);
    let nonce: alloy_primitives::U64 = client
        .rpc()
        .request(
            "eth_getTransactionCount",
            json!([deployer.address, "pending"]),
        )
        .await
        .unwrap();
    assert_eq!(nonce.to::<usize>(), steps.len());
    // A plan that starts past the account's next nonce cannot be carried out.
    let err = client
        .deploy(&config, Some(99), |_, _, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PlanOutOfReach { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverts_are_decoded_and_events_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, url) = node(dir.path()).await;
    let deployer = ProtocolClient::connect(&url, Some(Signer::from_key(dev_deployer().key)))
        .await
        .unwrap();
    let a = deployer
        .deploy(&DeployConfig::dev(), Some(0), |_, _, _| {})
        .await
        .unwrap();
    let owner = openledger_chain::devkeys::dev_accounts()[0].key.clone();
    let client = ProtocolClient::connect(&url, Some(Signer::from_key(owner)))
        .await
        .unwrap()
        .with_addresses(a);

    // A view that reverts: the error names the contract's custom error and its fields.
    let err = client
        .call(
            a.datanet_registry,
            DatanetRegistry::containsCall {
                versionId: U256::from(99),
                contributionId: U256::from(1),
                proof: vec![],
            },
        )
        .await
        .unwrap_err();
    let ClientError::Reverted { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("UnknownVersion"), "{reason}");
    assert!(reason.contains("99"), "{reason}");

    // A write the contract refuses fails before anything is sent.
    let before = client.block_number().await.unwrap();
    let err = client
        .send(
            a.datanet_registry,
            DatanetRegistry::createDatanetCall {
                metadataURI: "ipfs://x".into(),
                schemaHash: B256::ZERO,
                quorum: 99,
                fee: 0,
            },
            U256::ZERO,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("QuorumOutOfRange"), "{err}");
    assert_eq!(client.block_number().await.unwrap(), before);

    let receipt = client
        .send(
            a.datanet_registry,
            DatanetRegistry::createDatanetCall {
                metadataURI: "ipfs://medical-notes".into(),
                schemaHash: keccak256("schema"),
                quorum: 2,
                fee: 5,
            },
            U256::ZERO,
        )
        .await
        .unwrap();
    let events = client
        .events::<DatanetCreated>(a.datanet_registry, 0, None)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let (block, created) = &events[0];
    assert_eq!(*block, receipt.block_number.to::<u64>());
    assert_eq!(created.datanetId, U256::from(1));
    assert_eq!(created.owner, client.sender().unwrap());
    assert_eq!(created.metadataURI, "ipfs://medical-notes");
    assert_eq!((created.quorum, created.fee), (2, 5));
}
