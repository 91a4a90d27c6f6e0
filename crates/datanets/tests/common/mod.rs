//! A world for datanet tests: the embedded node with the protocol deployed, dev accounts in
//! roles, and the datanet service over a local blob store.

#![allow(dead_code)] // each test file uses part of it

use alloy_primitives::{Address, U256, U64};
use alloy_sol_types::SolCall;
use openledger_chain::{devkeys::dev_accounts, Node, NodeConfig};
use openledger_datanets::{store::Store, Datanets, NewDatanet, Policy};
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    genesis::{dev_deployer, dev_genesis},
    staking::Staking,
    ProtocolClient, Signer,
};
use serde_json::{json, Value};
use std::{path::Path, time::Duration};

pub const OPEN: u128 = 1_000_000_000_000_000_000;
const CURATOR: u8 = 1;

pub struct World {
    pub node: Node,
    pub url: String,
    pub addresses: Addresses,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(NodeConfig {
            data_dir: dir.path().join("chain"),
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
        let deployer = ProtocolClient::connect(&url, Some(Signer::from_key(dev_deployer().key)))
            .await
            .unwrap();
        let addresses = deployer
            .deploy(&DeployConfig::dev(), None, |_, _, _| {})
            .await
            .unwrap();
        Self {
            node,
            url,
            addresses,
            dir,
        }
    }

    /// A client signing as dev account `i`.
    pub async fn account(&self, i: usize) -> ProtocolClient {
        let key = dev_accounts()[i].key.clone();
        ProtocolClient::connect(&self.url, Some(Signer::from_key(key)))
            .await
            .unwrap()
            .with_addresses(self.addresses)
    }

    /// The datanet service with its data under `name`.
    pub async fn service(&self, name: &str, policy: Policy) -> Datanets {
        let client = ProtocolClient::connect(&self.url, None)
            .await
            .unwrap()
            .with_addresses(self.addresses);
        let root = self.dir.path().join(name);
        let store = Store::local(&root.join("blobs")).unwrap();
        Datanets::open(client, store, &root, policy).unwrap()
    }

    /// Stakes the dev curator minimum for `datanet` from `curator`.
    pub async fn stake_curator(&self, curator: &ProtocolClient, datanet: u64) {
        curator
            .send(
                self.addresses.staking,
                Staking::stakeCall::new((CURATOR, U256::from(datanet))),
                U256::from(10 * OPEN),
            )
            .await
            .unwrap();
    }

    /// How many transactions `account` has sent.
    pub async fn nonce(&self, client: &ProtocolClient, account: Address) -> u64 {
        let n: U64 = client
            .rpc()
            .request(
                "eth_getTransactionCount",
                serde_json::json!([account, "latest"]),
            )
            .await
            .unwrap();
        n.to()
    }
}

/// Chat records: `{"messages": [{role, content}…]}` with at least a user and an assistant.
pub fn chat_schema() -> Value {
    json!({
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["system", "user", "assistant"]},
                        "content": {"type": "string", "minLength": 1}
                    }
                }
            }
        }
    })
}

pub fn chat_datanet(quorum: u16) -> NewDatanet {
    NewDatanet {
        name: "exploit-logs".into(),
        description: "Smart-contract exploit post-mortems as Q&A".into(),
        // CSV rows are objects of strings, so they fit a schema that allows either shape.
        schema: json!({"anyOf": [chat_schema(), {
            "type": "object",
            "required": ["question", "answer"],
            "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}
        }]}),
        quorum,
        fee: OPEN / 10,
    }
}

/// A datanet of chat records only.
pub fn chat_only_datanet(quorum: u16) -> NewDatanet {
    NewDatanet {
        schema: chat_schema(),
        ..chat_datanet(quorum)
    }
}

/// A chat record about topic `n`, with enough distinct words not to look like any other.
pub fn chat_line(n: usize, salt: &str) -> String {
    let words = [
        "reentrancy",
        "oracle",
        "flashloan",
        "overflow",
        "signature",
        "proxy",
        "storage",
        "governance",
        "bridge",
        "liquidation",
        "rounding",
        "permit",
        "delegatecall",
        "selfdestruct",
    ];
    let pick = |k: usize| words[(n * 7 + k * 3) % words.len()];
    let question = format!(
        "{salt} case {n}: how did the {} bug in vault {n} lead to the {} loss of {} ETH?",
        pick(1),
        pick(2),
        n * 13 + 7
    );
    let answer = format!(
        "In incident {n} the attacker used {} then {} to drain {} tokens from pool {}; the fix \
         added a {} check before {} and audited {} paths in module {}.",
        pick(3),
        pick(4),
        n * 101,
        n + 17,
        pick(5),
        pick(6),
        pick(7),
        n * 3 + 1
    );
    json!({"messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer}
    ]})
    .to_string()
}

/// Writes `lines` as a JSONL file.
pub fn write_jsonl(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}
