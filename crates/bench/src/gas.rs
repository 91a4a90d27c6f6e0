//! `protocol-gas`: the gas the protocol's busiest transactions cost, measured from real
//! receipts of the real node.
//!
//! Starts an embedded dev node in a temporary directory (one block per transaction), deploys
//! the protocol through `ProtocolClient` exactly as `openledger deploy` does, and then runs
//! the flows whose cost users pay most often: `contribute`, `review` (a vote that does not
//! decide, and the vote that reaches the quorum), proving a contribution's place in an
//! adapter's lineage, and settling batches of inferences (`settle`, then `release` once the
//! challenge window has passed). Each figure is the receipt's `gasUsed`, so it includes the
//! 21,000 base cost and calldata.
//!
//! Settlement batches: receipts of one agent from `--consumers` consumers (grouped, as the
//! contract requires), each crediting `--credits` contributions proven in the adapter's
//! lineage. The first batch of 256 releases into empty balances; the next batches of 256, 16
//! and 1 pay the same recipients again, the steady state of a running network. Per-inference
//! gas is a transaction's gas over its receipt count.
//!
//! Usage: `cargo run --release -p openledger-bench --bin protocol-gas [-- --consumers 16 --credits 20]`.

use alloy_primitives::{keccak256, Bytes, U256};
use alloy_sol_types::SolEvent;
use anyhow::{Context, Result};
use clap::Parser;
use openledger_chain::{devkeys::dev_accounts, Node, NodeConfig};
use openledger_datanets::merkle::VersionTree;
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    genesis::{dev_deployer, dev_genesis},
    inference_settlement::{pack_receipts, InferenceSettlement::Receipt},
    DatanetRegistry, InferenceSettlement, ModelRegistry, ProtocolClient, Signer, Staking,
};
use std::time::Duration;

const OPEN: u128 = 1_000_000_000_000_000_000;

#[derive(Parser)]
#[command(about = "Gas of contribute, review and settlement batches on the embedded node")]
struct Args {
    /// Consumers sharing each batch's receipts.
    #[arg(long, default_value_t = 16)]
    consumers: usize,
    /// Contributions each receipt credits.
    #[arg(long, default_value_t = 20)]
    credits: usize,
}

fn signer(i: usize) -> Signer {
    Signer::from_key(dev_accounts()[i].key.clone())
}

async fn client(url: &str, addresses: Addresses, who: Signer) -> Result<ProtocolClient> {
    Ok(ProtocolClient::connect(url, Some(who))
        .await?
        .with_addresses(addresses))
}

/// A fresh key for the `i`th consumer (consumers need keys to deposit).
fn consumer(i: usize) -> Signer {
    let seed = keccak256(format!("protocol-gas consumer {i}"));
    Signer::from_hex(&seed.to_string()).expect("a keccak output is a valid key")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let node = Node::start(NodeConfig {
        data_dir: dir.path().join("chain"),
        genesis: dev_genesis(),
        http_addr: "127.0.0.1:0".parse()?,
        metrics_addr: None,
        block_time: Duration::ZERO,
        dev: true,
        pool: Default::default(),
        rpc: Default::default(),
    })
    .await?;
    let url = format!("http://{}", node.http_addr);
    let deployer =
        ProtocolClient::connect(&url, Some(Signer::from_key(dev_deployer().key))).await?;
    let a = deployer
        .deploy(&DeployConfig::dev(), Some(0), |_, _, _| {})
        .await
        .context("deploying")?;

    let owner = client(&url, a, signer(0)).await?;
    let curators = [
        client(&url, a, signer(1)).await?,
        client(&url, a, signer(2)).await?,
        client(&url, a, signer(3)).await?,
    ];
    let contributor = client(&url, a, signer(4)).await?;
    let host = client(&url, a, signer(5)).await?;

    let fee = U256::from(OPEN / 100);
    owner
        .send(
            a.datanet_registry,
            DatanetRegistry::createDatanetCall {
                metadataURI: "ipfs://datanet".into(),
                schemaHash: keccak256("schema"),
                quorum: 3,
                fee: fee.to(),
            },
            U256::ZERO,
        )
        .await?;
    for c in &curators {
        c.send(
            a.staking,
            Staking::stakeCall {
                role: 1,
                subject: U256::from(1),
            },
            U256::from(10 * OPEN),
        )
        .await?;
    }
    // Rows: what, gas, and the inferences it covers (for the per-inference column).
    let mut rows: Vec<(String, u64, Option<usize>)> = Vec::new();
    for i in 1..=3u64 {
        let receipt = contributor
            .send(
                a.datanet_registry,
                DatanetRegistry::contributeCall {
                    datanetId: U256::from(1),
                    contentHash: keccak256(i.to_be_bytes()),
                    size: 4096,
                    metadataHash: keccak256((i + 100).to_be_bytes()),
                },
                fee,
            )
            .await?;
        if i == 2 {
            rows.push(("`contribute`".into(), receipt.gas_used.to(), None));
        }
    }
    let labels = [
        "review (first vote)",
        "review (second vote)",
        "review (vote reaching quorum 3, accepts)",
    ];
    for (c, label) in curators.iter().zip(labels) {
        let receipt = c
            .send(
                a.datanet_registry,
                DatanetRegistry::reviewCall {
                    contributionId: U256::from(2),
                    approve: true,
                    reasonHash: keccak256(label),
                },
                U256::ZERO,
            )
            .await?;
        rows.push((format!("`{label}`"), receipt.gas_used.to(), None));
    }

    // A datanet of contributions to credit, a version of them, an adapter trained on it and an
    // agent on that adapter, its host's consent, and each contribution proven in the lineage.
    let credited = args.credits as u64;
    owner
        .send(
            a.datanet_registry,
            DatanetRegistry::createDatanetCall {
                metadataURI: "ipfs://wide".into(),
                schemaHash: keccak256("schema"),
                quorum: 1,
                fee: 0,
            },
            U256::ZERO,
        )
        .await?;
    curators[0]
        .send(
            a.staking,
            Staking::stakeCall {
                role: 1,
                subject: U256::from(2),
            },
            U256::from(10 * OPEN),
        )
        .await?;
    let first = 4u64; // contributions 1-3 are the quorum-3 datanet's
    let mut members = Vec::new();
    for id in first..first + credited {
        let content = keccak256(format!("record {id}"));
        contributor
            .send(
                a.datanet_registry,
                DatanetRegistry::contributeCall {
                    datanetId: U256::from(2),
                    contentHash: content,
                    size: 4096,
                    metadataHash: content,
                },
                U256::ZERO,
            )
            .await?;
        curators[0]
            .send(
                a.datanet_registry,
                DatanetRegistry::reviewCall {
                    contributionId: U256::from(id),
                    approve: true,
                    reasonHash: content,
                },
                U256::ZERO,
            )
            .await?;
        members.push((id, content));
    }
    let tree = VersionTree::build(members).context("the version's tree")?;
    owner
        .send(
            a.datanet_registry,
            DatanetRegistry::publishVersionCall {
                datanetId: U256::from(2),
                root: tree.root(),
                count: credited,
                uri: "ipfs://version".into(),
            },
            U256::ZERO,
        )
        .await?;
    owner
        .send(
            a.model_registry,
            ModelRegistry::registerBaseModelCall {
                weightsHash: keccak256("base"),
                uri: "ipfs://base".into(),
                licence: "Apache-2.0".into(),
            },
            U256::ZERO,
        )
        .await?;
    owner
        .send(
            a.model_registry,
            ModelRegistry::registerAdapterCall {
                baseModelId: U256::from(1),
                datanetVersions: vec![U256::from(1)],
                trainingConfigHash: keccak256("config"),
                weightsHash: keccak256("adapter"),
                manifestHash: keccak256("manifest"),
                uri: "ipfs://adapter".into(),
            },
            U256::ZERO,
        )
        .await?;
    host.send(
        a.staking,
        Staking::stakeCall {
            role: 2,
            subject: U256::ZERO,
        },
        U256::from(50 * OPEN),
    )
    .await?;
    let price = OPEN / 1000;
    owner
        .send(
            a.model_registry,
            ModelRegistry::deployAgentCall {
                adapterId: U256::from(1),
                host: host.sender().unwrap(),
                priceIn: price,
                priceOut: price,
                knowledgeDatanetId: 0,
                metadataURI: "ipfs://agent".into(),
            },
            U256::ZERO,
        )
        .await?;
    host.send(
        a.model_registry,
        ModelRegistry::acceptAgentCall {
            agentId: U256::from(1),
        },
        U256::ZERO,
    )
    .await?;
    for id in first..first + credited {
        let receipt = host
            .send(
                a.inference_settlement,
                InferenceSettlement::proveLineageCall {
                    adapterId: U256::from(1),
                    versionId: U256::from(1),
                    contributionId: U256::from(id),
                    proof: tree.proof(id).expect("a member"),
                },
                U256::ZERO,
            )
            .await?;
        if id == first {
            rows.push((
                format!(
                    "`proveLineage`, once per contribution and adapter (a proof of {} hashes)",
                    tree.proof(id).map_or(0, |p| p.len())
                ),
                receipt.gas_used.to(),
                None,
            ));
        }
    }

    // Consumers with credit, each authorising the host.
    let mut consumers: Vec<Signer> = (0..args.consumers).map(consumer).collect();
    consumers.sort_by_key(Signer::address);
    for c in &consumers {
        owner.transfer(c.address(), U256::from(2 * OPEN)).await?;
        let c = client(&url, a, c.clone()).await?;
        c.send(
            a.inference_settlement,
            InferenceSettlement::depositCall {},
            U256::from(OPEN),
        )
        .await?;
        c.send(
            a.inference_settlement,
            InferenceSettlement::authorizeCall {
                host: host.sender().unwrap(),
                allowance: OPEN,
            },
            U256::ZERO,
        )
        .await?;
    }

    // The first batch pays into empty balances; the rest are the steady state.
    let credits: Bytes = (0..args.credits as u16)
        .flat_map(|p| {
            let weight =
                (10_000 / args.credits as u16) + u16::from(p == 0) * (10_000 % args.credits as u16);
            [p.to_be_bytes(), weight.to_be_bytes()].concat()
        })
        .collect::<Vec<u8>>()
        .into();
    let listed: Vec<u64> = (first..first + credited).collect();
    let mut seq = vec![0u64; consumers.len()];
    let sizes = [
        (256usize, "recipients' balances empty"),
        (256, "steady state"),
        (16, "steady state"),
        (1, "steady state"),
    ];
    for (round, (n, label)) in sizes.into_iter().enumerate() {
        let per_consumer = n.div_ceil(args.consumers);
        let receipts: Vec<Receipt> = (0..n)
            .map(|i| {
                let c = i / per_consumer;
                seq[c] += 1;
                Receipt {
                    consumer: consumers[c].address(),
                    agentId: 1,
                    seq: seq[c],
                    inputTokens: 1000,
                    outputTokens: 1000,
                    fee: OPEN / 1000 + round as u128,
                    attributionHash: keccak256(format!("receipt {round} {i}")),
                    credits: credits.clone(),
                }
            })
            .collect();
        let consumers_in = n.div_ceil(per_consumer);
        let settled = host
            .send(
                a.inference_settlement,
                InferenceSettlement::settleCall {
                    receipts: pack_receipts(&receipts),
                    contributions: listed.clone(),
                },
                U256::ZERO,
            )
            .await?;
        let payouts = settled
            .logs
            .iter()
            .find_map(|l| {
                InferenceSettlement::BatchPayouts::decode_raw_log(l.topics.iter().copied(), &l.data)
                    .ok()
            })
            .context("the batch's payouts")?;
        node.chain
            .increase_time(DeployConfig::dev().challenge_window_secs + 1);
        let released = host
            .send(
                a.inference_settlement,
                InferenceSettlement::releaseCall {
                    batchId: payouts.batchId,
                    contributions: payouts.contributions,
                    owners: payouts.owners,
                },
                U256::ZERO,
            )
            .await?;
        let plural = |k: usize, word: &str| format!("{k} {word}{}", if k == 1 { "" } else { "s" });
        let what = format!(
            "{}, {}, {credited} credits each, {label}",
            plural(n, "inference"),
            plural(consumers_in, "consumer")
        );
        let (s, r): (u64, u64) = (settled.gas_used.to(), released.gas_used.to());
        rows.push((format!("`settle` {what}"), s, Some(n)));
        rows.push((format!("`release` {what}"), r, Some(n)));
        rows.push((format!("settle + release, {what}"), s + r, Some(n)));
    }

    println!("| Transaction | Gas | Gas per inference |");
    println!("|---|---:|---:|");
    for (label, gas, n) in rows {
        let per = n.map_or(String::new(), |n| format!("{}", gas / n as u64));
        println!("| {label} | {gas} | {per} |");
    }
    Ok(())
}
