//! `openledger rewards`: what an account earned from inference, per role (contributor,
//! curator, model owner, host) and per datanet, read from the settlement contract's events of
//! released batches; what is claimable now; and `claim`, which pays it out.

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Result};
use openledger_protocol::{
    inference_settlement::InferenceSettlement::{
        BatchPayouts, BatchReleased, BatchSettled, ContributionPaid,
    },
    DatanetRegistry, InferenceSettlement, ProtocolClient,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(clap::Subcommand)]
pub enum RewardsCommand {
    /// Earnings per role and datanet, and what is claimable [default: the signer's].
    Show {
        #[arg(long)]
        address: Option<Address>,
    },
    /// Pay out everything claimable to the account [default: the signer's].
    Claim {
        #[arg(long)]
        address: Option<Address>,
    },
}

impl RewardsCommand {
    pub fn sends(&self) -> bool {
        matches!(self, RewardsCommand::Claim { .. })
    }
}

pub async fn run(client: &ProtocolClient, command: RewardsCommand) -> Result<()> {
    let a = *client.addresses().expect("addresses loaded");
    match command {
        RewardsCommand::Claim { address } => {
            let Some(who) = address.or(client.sender()) else {
                bail!("whose rewards? pass --address or a signing key");
            };
            let amount = client
                .call(
                    a.inference_settlement,
                    InferenceSettlement::claimableCall::new((who,)),
                )
                .await?;
            if amount.is_zero() {
                bail!(
                    "{who} has nothing to claim (payouts wait for their batch's challenge window)"
                );
            }
            let call = InferenceSettlement::claimCall::new((who,));
            client
                .send(a.inference_settlement, call, U256::ZERO)
                .await?;
            println!("{amount}");
            eprintln!("rewards: paid {} to {who}", crate::stake::open(amount));
        }
        RewardsCommand::Show { address } => {
            let Some(who) = address.or(client.sender()) else {
                bail!("whose rewards? pass --address or a signing key");
            };
            print!("{}", show(client, who).await?);
        }
    }
    Ok(())
}

/// Earnings of `who` from released batches, by role and datanet.
async fn show(client: &ProtocolClient, who: Address) -> Result<String> {
    let a = *client.addresses().expect("addresses loaded");
    let is = a.inference_settlement;
    let released: BTreeSet<U256> = client
        .events::<BatchReleased>(is, 0, None)
        .await?
        .into_iter()
        .map(|(_, e)| e.batchId)
        .collect();
    // (role, datanet) → wei; datanet 0 for the roles not tied to one.
    let mut earned: BTreeMap<(&str, u64), U256> = BTreeMap::new();
    for (_, e) in client.events::<BatchSettled>(is, 0, None).await? {
        if e.host == who && released.contains(&e.batchId) {
            let batch = client
                .call(is, InferenceSettlement::batchCall::new((e.batchId,)))
                .await?;
            *earned.entry(("host", 0)).or_default() += U256::from(batch.hostShare);
        }
    }
    for (_, e) in client.events::<BatchPayouts>(is, 0, None).await? {
        if !released.contains(&e.batchId) {
            continue;
        }
        for o in e.owners.iter().filter(|o| o.owner == who) {
            *earned.entry(("model owner", 0)).or_default() += U256::from(o.amount);
        }
    }
    for (_, e) in client.events::<ContributionPaid>(is, 0, None).await? {
        let standing = DatanetRegistry::standingCall::new((e.contributionId,));
        let datanet = u64::from(client.call(a.datanet_registry, standing).await?.datanetId);
        if e.contributor == who {
            *earned.entry(("contributor", datanet)).or_default() += e.contributorAmount;
        }
        let reviewers = DatanetRegistry::reviewersCall::new((e.contributionId,));
        let approvers = client.call(a.datanet_registry, reviewers).await?.approvers;
        if approvers.contains(&who) && !approvers.is_empty() {
            let each = e.curatorsAmount / U256::from(approvers.len());
            *earned.entry(("curator", datanet)).or_default() += each;
        }
    }
    let claimable = client
        .call(is, InferenceSettlement::claimableCall::new((who,)))
        .await?;
    let mut out = format!("account {who}\n");
    if earned.is_empty() {
        out.push_str("nothing earned from released batches yet\n");
    }
    for ((role, datanet), amount) in &earned {
        let place = if *datanet == 0 {
            String::new()
        } else {
            format!(" in datanet {datanet}")
        };
        out.push_str(&format!("{role}{place}: {}\n", crate::stake::open(*amount)));
    }
    out.push_str(&format!(
        "claimable now: {}\n",
        crate::stake::open(claimable)
    ));
    Ok(out)
}
