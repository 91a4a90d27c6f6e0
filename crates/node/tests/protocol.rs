//! The protocol on a running node through the real binary: the dev node deploys it at first
//! start, `openledger deploy` deploys another copy from any funded key, and `openledger gov`
//! carries a fee-split change from proposal to execution.

use alloy_primitives::U256;
use openledger_protocol::{
    deploy::Addresses, protocol_params::ProtocolParams::FeeSplit, ProtocolClient, ProtocolParams,
    Signer, Staking,
};
use serde_json::json;

mod common;
use common::{dev_key, ok, openledger, start};

const OPEN: u128 = 1_000_000_000_000_000_000;

async fn client(url: &str, addresses: Addresses, key: usize) -> ProtocolClient {
    let signer = Signer::from_hex(&dev_key(key)).unwrap();
    ProtocolClient::connect(url, Some(signer))
        .await
        .unwrap()
        .with_addresses(addresses)
}

async fn assert_deployed(client: &ProtocolClient, addresses: &Addresses) {
    for (name, address) in addresses.contracts() {
        assert!(
            !client.code(address).await.unwrap().is_empty(),
            "{name} has no code"
        );
    }
}

/// Posts a JSON-RPC body and reads the answer to the end (one HTTP/1.1 exchange).
fn post(addr: &str, body: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
}

async fn dev_rpc(client: &ProtocolClient, method: &str, params: serde_json::Value) {
    let _: serde_json::Value = client.rpc().request(method, params).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_governance_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let url = node.rpc_url.clone();
    let dev_file = dir.path().join("protocol.json");
    let dev = Addresses::load(&dev_file).unwrap();
    let alice = client(&url, dev, 0).await;
    assert_eq!(dev.chain_id, 1612);
    assert_deployed(&alice, &dev).await;
    // The dev genesis named this timelock as the treasury before it existed.
    assert_eq!(
        dev.timelock,
        openledger_protocol::deploy::timelock_address(
            openledger_protocol::genesis::dev_deployer().address,
            0
        )
    );

    // A second deployment from an ordinary funded key, as on any EVM chain.
    let out = dir.path().join("other.json");
    let key = dev_key(5);
    let printed = ok(openledger(&[
        "deploy",
        "--rpc-url",
        &url,
        "--key",
        &key,
        "--preset",
        "dev",
        "--out",
        out.to_str().unwrap(),
    ]));
    let other = Addresses::load(&out).unwrap();
    assert_ne!(other.governor, dev.governor);
    assert!(printed.contains(&other.governor.to_string()), "{printed}");
    assert_deployed(&alice, &other).await;

    // Bad input is refused with a message that names it.
    let bad = openledger(&["deploy", "--rpc-url", &url, "--key", "0x1234"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad private key"));
    let unreachable = openledger(&["deploy", "--rpc-url", "http://127.0.0.1:1", "--key", &key]);
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the node"));

    // Voting power is staked OPEN.
    let bob = client(&url, dev, 1).await;
    for (who, amount) in [(&alice, 300u128), (&bob, 100)] {
        who.send(
            dev.staking,
            Staking::stakeCall {
                role: 0,
                subject: U256::ZERO,
            },
            U256::from(amount * OPEN),
        )
        .await
        .unwrap();
    }
    let gov = |key: usize, args: &[&str]| {
        let key = dev_key(key);
        let mut all = vec![
            "gov",
            "--rpc-url",
            &url,
            "--addresses",
            dev_file.to_str().unwrap(),
            "--key",
            &key,
        ];
        all.extend_from_slice(args);
        openledger(&all)
    };
    // A split that does not add up never reaches the chain.
    let refused = gov(
        0,
        &[
            "propose",
            "--fee-split",
            "5000,1000,2000,1000,500",
            "--description",
            "x",
        ],
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add up to 9500"));

    // The chain passes 10,000 blocks, the most one eth_getLogs covers by default: reading the
    // proposals below must page through block ranges.
    let mine: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "evm_mine"}))
        .collect();
    let body = serde_json::to_string(&mine).unwrap();
    let addr = url.trim_start_matches("http://").to_string();
    for _ in 0..11 {
        post(&addr, &body);
    }
    assert!(alice.block_number().await.unwrap() > 10_000);

    let id = ok(gov(
        0,
        &[
            "propose",
            "--fee-split",
            "5000,1000,2000,1000,1000",
            "--description",
            "Raise the contributors' share to 50%",
        ],
    ));
    let id = id.trim().to_string();
    dev_rpc(&alice, "evm_mine", json!([])).await;
    ok(gov(
        0,
        &["vote", &id, "for", "--reason", "data is the product"],
    ));
    ok(gov(1, &["vote", &id, "against"]));
    // The vote lasts 60 s on the dev network (a clock of seconds: mining blocks alone would
    // not end it).
    dev_rpc(&alice, "evm_increaseTime", json!([61])).await;
    dev_rpc(&alice, "evm_mine", json!([])).await;
    let status = ok(gov(0, &["status", &id]));
    assert!(status.contains("state:       succeeded"), "{status}");
    assert!(status.contains(&format!("for {}", 300 * OPEN)), "{status}");
    ok(gov(1, &["queue", &id]));
    // Too early: the timelock's delay has not passed, and the revert says why.
    let early = gov(1, &["execute", &id]);
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("TimelockUnexpectedOperationState"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    dev_rpc(&alice, "evm_increaseTime", json!([61])).await;
    dev_rpc(&alice, "evm_mine", json!([])).await;
    ok(gov(1, &["execute", &id]));
    let status = ok(gov(0, &["status"]));
    assert!(status.contains("state:       executed"), "{status}");
    let split = alice
        .call(dev.protocol_params, ProtocolParams::feeSplitCall {})
        .await
        .unwrap();
    assert_eq!(
        split,
        FeeSplit {
            contributors: 5000,
            curators: 1000,
            modelOwner: 2000,
            host: 1000,
            treasury: 1000
        }
    );
    // The proposer gained no direct power over the parameters.
    let direct = alice
        .send(
            dev.protocol_params,
            ProtocolParams::setReviewQuorumCall { quorum: 9 },
            U256::ZERO,
        )
        .await
        .unwrap_err();
    assert!(
        direct.to_string().contains("OwnableUnauthorizedAccount"),
        "{direct}"
    );
}
