//! `openledger deploy`, and the dev node's deployment of the protocol at first start.

use anyhow::{Context, Result};
use openledger_protocol::{
    deploy::{Addresses, DeployConfig},
    genesis::dev_deployer,
    ProtocolClient, Signer,
};
use std::path::Path;

/// Which settings a deployment starts with.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Preset {
    /// Public-network settings: days-long votes and windows, large stakes.
    Mainnet,
    /// Dev-network settings: a 20-block vote, a one-minute timelock, small stakes.
    Dev,
}

impl Preset {
    fn config(self) -> DeployConfig {
        match self {
            Preset::Mainnet => DeployConfig::mainnet(),
            Preset::Dev => DeployConfig::dev(),
        }
    }
}

/// Deploys the protocol through `rpc_url` from `key` and writes the addresses to `out`.
pub async fn run(rpc_url: &str, key: &str, out: &Path, preset: Preset) -> Result<()> {
    let signer = Signer::from_hex(key)?;
    let client = ProtocolClient::connect(rpc_url, Some(signer.clone()))
        .await
        .with_context(|| format!("connecting to {rpc_url}"))?;
    eprintln!(
        "deploy: deploying the protocol on chain {} from {}",
        client.chain_id(),
        signer.address()
    );
    let addresses = client
        .deploy(&preset.config(), None, |done, total, label| {
            eprintln!("deploy: [{done:>2}/{total}] {label}");
        })
        .await?;
    addresses.save(out)?;
    print_addresses(&addresses);
    eprintln!("deploy: addresses written to {}", out.display());
    Ok(())
}

fn print_addresses(addresses: &Addresses) {
    for (name, address) in addresses.contracts() {
        println!("{name:<20} {address}");
    }
}

/// On a dev node, makes sure the protocol is deployed: the dev deployer's plan from nonce 0,
/// resumed if an earlier start was interrupted mid-way, with its addresses in `file`.
pub async fn ensure_dev_protocol(rpc_url: &str, file: &Path) -> Result<Addresses> {
    if file.exists() {
        return Ok(Addresses::load(file)?);
    }
    let signer = Signer::from_key(dev_deployer().key);
    let client = ProtocolClient::connect(rpc_url, Some(signer)).await?;
    tracing::info!("deploying the protocol contracts on the dev chain");
    let addresses = client
        .deploy(&DeployConfig::dev(), Some(0), |done, total, label| {
            tracing::debug!(done, total, label, "deployment step confirmed");
        })
        .await
        .context("deploying the protocol on the dev chain")?;
    addresses.save(file)?;
    Ok(addresses)
}
