//! `openledger rewards`: what an account earned from inference, per role (contributor,
//! curator, model owner, host) and per datanet, read from the settlement contract's events of
//! released batches; what is claimable now; and `claim`, which pays it out.

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Result};
use openledger_protocol::{rewards, InferenceSettlement, ProtocolClient};

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
    let earnings = rewards::earnings(client, who).await?;
    let mut out = format!("account {who}\n");
    let by_role = earnings.by_role();
    if by_role.is_empty() {
        out.push_str("nothing earned from released batches yet\n");
    }
    for ((role, datanet), amount) in by_role {
        let place = datanet
            .map(|d| format!(" in datanet {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{}{place}: {}\n",
            role.name(),
            crate::stake::open(amount)
        ));
    }
    out.push_str(&format!(
        "claimable now: {}\n",
        crate::stake::open(earnings.claimable)
    ));
    Ok(out)
}
