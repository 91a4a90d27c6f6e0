//! `openledger stake`: stake OPEN for a role (validator, host, or curator of a datanet),
//! unstake, withdraw once the unbonding delay has passed, and show where an account's stakes
//! stand. Curating a datanet and voting in governance both need a stake.

use crate::gov::parse_open;
use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Result};
use openledger_protocol::{
    staking::Staking::{Staked, UnstakeRequested},
    ProtocolClient, Staking,
};
use std::collections::BTreeSet;

/// A staking role, as `ProtocolParams.Role` numbers them.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Validator,
    Curator,
    Host,
}

impl Role {
    fn id(self) -> u8 {
        match self {
            Role::Validator => 0,
            Role::Curator => 1,
            Role::Host => 2,
        }
    }

    fn name(id: u8) -> &'static str {
        ["validator", "curator", "host"]
            .get(id as usize)
            .copied()
            .unwrap_or("unknown role")
    }

    /// The stake's subject: the datanet for a curator, nothing for the other roles.
    fn subject(self, datanet: Option<u64>) -> Result<U256> {
        match (self, datanet) {
            (Role::Curator, Some(id)) => Ok(U256::from(id)),
            (Role::Curator, None) => bail!("a curator stakes for one datanet: pass --datanet ID"),
            (_, None) => Ok(U256::ZERO),
            (role, Some(_)) => bail!("--datanet is for curators only, not {role:?} stakes"),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum StakeCommand {
    /// Stake OPEN for a role; the total must reach the role's minimum.
    Add {
        #[arg(value_enum)]
        role: Role,
        /// The datanet a curator stakes for.
        #[arg(long)]
        datanet: Option<u64>,
        /// OPEN to stake ("10", "2.5").
        #[arg(long)]
        amount: String,
    },
    /// Start unbonding part or all of a stake; withdraw it after the unbonding delay.
    Unstake {
        #[arg(value_enum)]
        role: Role,
        #[arg(long)]
        datanet: Option<u64>,
        /// OPEN to unstake.
        #[arg(long)]
        amount: String,
    },
    /// Pay out an unbonded withdrawal (its id is printed by `unstake` and `status`).
    Withdraw { id: U256 },
    /// Stakes, pending withdrawals and voting power of an account [default: the signer's].
    Status {
        #[arg(long)]
        address: Option<Address>,
    },
}

impl StakeCommand {
    /// Whether the command sends a transaction.
    pub fn sends(&self) -> bool {
        !matches!(self, StakeCommand::Status { .. })
    }
}

/// Runs a stake command with a client that knows the protocol's addresses.
pub async fn run(client: &ProtocolClient, command: StakeCommand) -> Result<()> {
    let staking = client.addresses().expect("addresses loaded").staking;
    match command {
        StakeCommand::Add {
            role,
            datanet,
            amount,
        } => {
            let (subject, value) = (role.subject(datanet)?, parse_open(&amount)?);
            let call = Staking::stakeCall::new((role.id(), subject));
            client.send(staking, call, value).await?;
            eprintln!(
                "stake: staked {amount} OPEN as {}",
                describe(role.id(), subject)
            );
        }
        StakeCommand::Unstake {
            role,
            datanet,
            amount,
        } => {
            let (subject, value) = (role.subject(datanet)?, parse_open(&amount)?);
            let call = Staking::requestUnstakeCall::new((role.id(), subject, value));
            let id = client.call(staking, call.clone()).await?;
            client.send(staking, call, U256::ZERO).await?;
            let w = client
                .call(staking, Staking::withdrawalCall::new((id,)))
                .await?;
            println!("{id}");
            eprintln!(
                "stake: unbonding {amount} OPEN as {}; withdrawal {id} is ready at unix time {}",
                describe(role.id(), subject),
                w.readyAt
            );
        }
        StakeCommand::Withdraw { id } => {
            client
                .send(staking, Staking::withdrawCall::new((id,)), U256::ZERO)
                .await?;
            eprintln!("stake: withdrawal {id} paid out");
        }
        StakeCommand::Status { address } => {
            let Some(who) = address.or(client.sender()) else {
                bail!("whose stakes? pass --address or a signing key");
            };
            print!("{}", status(client, staking, who).await?);
        }
    }
    Ok(())
}

fn describe(role: u8, subject: U256) -> String {
    if role == Role::Curator.id() {
        format!("curator of datanet {subject}")
    } else {
        Role::name(role).to_string()
    }
}

/// OPEN with up to 18 decimals, trailing zeros dropped.
pub fn open(wei: U256) -> String {
    let one = U256::from(10u64).pow(U256::from(18));
    let frac = format!("{:018}", wei % one);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{} OPEN", wei / one)
    } else {
        format!("{}.{frac} OPEN", wei / one)
    }
}

async fn status(client: &ProtocolClient, staking: Address, who: Address) -> Result<String> {
    let mut out = format!("account {who}\n");
    let stakes: BTreeSet<(u8, U256)> = client
        .events::<Staked>(staking, 0, None)
        .await?
        .into_iter()
        .filter(|(_, e)| e.staker == who)
        .map(|(_, e)| (e.role, e.subject))
        .collect();
    if stakes.is_empty() {
        out.push_str("no stakes\n");
    }
    for (role, subject) in stakes {
        let amount = client
            .call(staking, Staking::stakeOfCall::new((who, role, subject)))
            .await?;
        out.push_str(&format!(
            "{:<24} {}\n",
            describe(role, subject),
            open(amount)
        ));
    }
    let requested: BTreeSet<U256> = client
        .events::<UnstakeRequested>(staking, 0, None)
        .await?
        .into_iter()
        .filter(|(_, e)| e.staker == who)
        .map(|(_, e)| e.withdrawalId)
        .collect();
    let now = client.latest_timestamp().await?;
    for id in requested {
        let w = client
            .call(staking, Staking::withdrawalCall::new((id,)))
            .await?;
        if w.amount.is_zero() {
            continue; // paid out
        }
        let when = if w.readyAt <= now {
            "ready to withdraw".to_string()
        } else {
            format!("unbonding for {} s more", w.readyAt - now)
        };
        out.push_str(&format!(
            "withdrawal {id}: {} as {}, {when}\n",
            open(w.amount),
            describe(w.role, w.subject)
        ));
    }
    let votes = client
        .call(staking, Staking::getVotesCall::new((who,)))
        .await?;
    out.push_str(&format!("voting power {}\n", open(votes)));
    Ok(out)
}
