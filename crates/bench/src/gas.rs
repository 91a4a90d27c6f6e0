//! `protocol-gas`: the gas the protocol's busiest transactions cost, measured from real
//! receipts of the real node.
//!
//! Starts an embedded dev node in a temporary directory (one block per transaction), deploys
//! the protocol through `ProtocolClient` exactly as `openledger deploy` does, and then runs
//! the flows whose cost users pay most often: `contribute`, `review` (a vote that does not
//! decide, and the vote that reaches the quorum), and `settle` for batches of inferences. Each
//! figure is the receipt's `gasUsed`, so it includes the 21,000 base cost and calldata.
//!
//! Settlement batches: receipts from `--consumers` consumers (grouped, as the contract
//! requires), one agent, payouts to `--contributors` contributors and the three curators.
//! The first batch pays into empty balances; the second pays the same recipients again, which
//! is the steady state of a running network. Per-inference gas is the batch's gas over its
//! receipt count.
//!
//! Usage: `cargo run --release -p openledger-bench --bin protocol-gas [-- --inferences 100]`.

use alloy_primitives::{keccak256, Address, B256, U256};
use anyhow::{Context, Result};
use clap::Parser;
use openledger_chain::{devkeys::dev_accounts, Node, NodeConfig};
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    genesis::{dev_deployer, dev_genesis},
    inference_settlement::InferenceSettlement::{Payout, Receipt},
    DatanetRegistry, InferenceSettlement, ModelRegistry, ProtocolClient, Signer, Staking,
};
use std::time::Duration;

const OPEN: u128 = 1_000_000_000_000_000_000;

#[derive(Parser)]
#[command(about = "Gas of contribute, review and settlement batches on the embedded node")]
struct Args {
    /// Inferences per settlement batch.
    #[arg(long, default_value_t = 100)]
    inferences: usize,
    /// Distinct consumers in a batch.
    #[arg(long, default_value_t = 10)]
    consumers: usize,
    /// Contributors paid in a batch.
    #[arg(long, default_value_t = 20)]
    contributors: usize,
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
    let mut rows: Vec<(String, u64)> = Vec::new();
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
            rows.push(("contribute".into(), receipt.gas_used.to()));
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
        rows.push((label.into(), receipt.gas_used.to()));
    }

    // An agent to settle for.
    owner
        .send(
            a.datanet_registry,
            DatanetRegistry::publishVersionCall {
                datanetId: U256::from(1),
                root: keccak256("root"),
                count: 1,
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
    owner
        .send(
            a.model_registry,
            ModelRegistry::deployAgentCall {
                adapterId: U256::from(1),
                host: host.sender().unwrap(),
                pricePer1kTokens: OPEN / 1000,
                metadataURI: "ipfs://agent".into(),
            },
            U256::ZERO,
        )
        .await?;

    // Consumers with credit.
    let mut consumers: Vec<Signer> = (0..args.consumers).map(consumer).collect();
    consumers.sort_by_key(Signer::address);
    for c in &consumers {
        owner.transfer(c.address(), U256::from(2 * OPEN)).await?;
        client(&url, a, c.clone())
            .await?
            .send(
                a.inference_settlement,
                InferenceSettlement::depositCall {},
                U256::from(OPEN),
            )
            .await?;
    }

    let per_consumer = args.inferences.div_ceil(args.consumers);
    let contributors: Vec<Address> = (0..args.contributors)
        .map(|i| Address::from_word(keccak256(format!("contributor {i}"))))
        .collect();
    for batch in 0..2u64 {
        let fee_each = 1_000_000_000_000_000u128 + u128::from(batch); // 0.001 OPEN
        let receipts: Vec<Receipt> = (0..args.inferences)
            .map(|i| Receipt {
                consumer: consumers[i / per_consumer].address(),
                agentId: 1,
                fee: fee_each,
                receiptHash: B256::from(keccak256(format!("receipt {batch} {i}"))),
            })
            .collect();
        let fees = U256::from(fee_each) * U256::from(args.inferences);
        let totals = host
            .call(
                a.inference_settlement,
                InferenceSettlement::payoutTotalsCall { fees },
            )
            .await?;
        let contributor_payouts = split(&contributors, totals.contributors);
        let curator_addresses: Vec<Address> =
            curators.iter().map(|c| c.sender().unwrap()).collect();
        let curator_payouts = split(&curator_addresses, totals.curators);
        let receipt = host
            .send(
                a.inference_settlement,
                InferenceSettlement::settleCall {
                    receipts,
                    contributorPayouts: contributor_payouts,
                    curatorPayouts: curator_payouts,
                },
                U256::ZERO,
            )
            .await?;
        let label = if batch == 0 {
            "first batch, recipients' balances empty"
        } else {
            "second batch, same recipients (steady state)"
        };
        rows.push((
            format!(
                "settle {} inferences ({} consumers, {} contributors, 3 curators), {label}",
                args.inferences, args.consumers, args.contributors
            ),
            receipt.gas_used.to(),
        ));
    }

    println!("| Transaction | Gas | Gas per inference |");
    println!("|---|---:|---:|");
    for (label, gas) in rows {
        let per = if label.starts_with("settle") {
            format!("{}", gas / args.inferences as u64)
        } else {
            "".into()
        };
        println!("| {label} | {gas} | {per} |");
    }
    Ok(())
}

/// `total` divided among `accounts`, the first taking the remainder.
fn split(accounts: &[Address], total: U256) -> Vec<Payout> {
    let n = U256::from(accounts.len());
    let each = total / n;
    let remainder = total - each * n;
    accounts
        .iter()
        .enumerate()
        .map(|(i, &account)| Payout {
            account,
            amount: if i == 0 { each + remainder } else { each },
        })
        .collect()
}
