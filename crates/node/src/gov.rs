//! `openledger gov propose|vote|queue|execute|status`: governance from the command line.
//!
//! A proposal's actions are not stored by the governor, only hashed; queue and execute find
//! them again in the `ProposalCreated` log, so nothing has to be kept on the side.

use alloy_primitives::{keccak256, U256};
use anyhow::{anyhow, bail, Context, Result};
use openledger_protocol::{
    deploy::Addresses,
    governor::OpenGovernor::{self, ProposalCreated},
    proposal::{self, Action, Change, Timing, STATES},
    ProtocolClient,
};

/// The actions a proposal can carry, each from its own flag.
#[derive(Debug, Default, clap::Args)]
pub struct Actions {
    /// New fee split in basis points: contributors,curators,modelOwner,host,treasury.
    #[arg(long, value_name = "C,CU,MO,H,T")]
    pub fee_split: Option<String>,
    /// New minimum stake for a role, in OPEN: validator=N, curator=N or host=N (repeatable).
    #[arg(long, value_name = "ROLE=OPEN")]
    pub min_stake: Vec<String>,
    /// New curator review quorum floor.
    #[arg(long)]
    pub review_quorum: Option<u16>,
    /// New challenge window, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub challenge_window: Option<u64>,
    /// New unbonding delay, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub unbonding_delay: Option<u64>,
    /// Model progression for an adapter: ID=registered|endorsed|retired (repeatable).
    #[arg(long, value_name = "ID=STATUS")]
    pub adapter_status: Vec<String>,
    /// Model progression for a base model: ID=registered|endorsed|retired (repeatable).
    #[arg(long, value_name = "ID=STATUS")]
    pub base_model_status: Vec<String>,
    /// Any other call, as TARGET:CALLDATA (hex), run by the timelock (repeatable).
    #[arg(long, value_name = "TARGET:HEX")]
    pub call: Vec<String>,
}

impl Actions {
    fn build(&self, a: &Addresses, now: Timing) -> Result<Vec<Action>> {
        let mut changes = Vec::new();
        if let Some(text) = &self.fee_split {
            let parts: Vec<u16> = text
                .split(',')
                .map(|p| p.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--fee-split {text:?}: expected five numbers"))?;
            let shares: [u16; 5] = parts.as_slice().try_into().map_err(|_| {
                anyhow!(
                    "--fee-split {text:?}: expected five shares, got {}",
                    parts.len()
                )
            })?;
            changes
                .push(Change::fee_split(shares).with_context(|| format!("--fee-split {text:?}"))?);
        }
        for entry in &self.min_stake {
            let (role, amount) = entry
                .split_once('=')
                .ok_or_else(|| anyhow!("--min-stake {entry:?}: expected ROLE=OPEN"))?;
            changes.push(Change::min_stake(role, parse_open(amount)?).context("--min-stake")?);
        }
        if let Some(quorum) = self.review_quorum {
            changes.push(Change::ReviewQuorum(quorum));
        }
        if let Some(seconds) = self.challenge_window {
            changes.push(Change::ChallengeWindow(seconds));
        }
        if let Some(seconds) = self.unbonding_delay {
            changes.push(Change::UnbondingDelay(seconds));
        }
        for entry in &self.adapter_status {
            let (adapter, status) = parse_status(entry)?;
            changes.push(Change::AdapterStatus { adapter, status });
        }
        for entry in &self.base_model_status {
            let (base_model, status) = parse_status(entry)?;
            changes.push(Change::BaseModelStatus { base_model, status });
        }
        let changes = proposal::plan(changes, now)?;
        let mut out: Vec<Action> = changes.iter().map(|c| c.action(a)).collect();
        for entry in &self.call {
            let (target, data) = entry
                .split_once(':')
                .ok_or_else(|| anyhow!("--call {entry:?}: expected TARGET:HEX"))?;
            out.push(Action {
                target: target
                    .parse()
                    .with_context(|| format!("--call target {target:?}"))?,
                calldata: data
                    .parse()
                    .with_context(|| format!("--call data {data:?}"))?,
            });
        }
        if out.is_empty() {
            bail!("a proposal needs at least one action (e.g. --fee-split or --call)");
        }
        Ok(out)
    }
}

/// Whole or fractional OPEN ("1.5") in wei.
pub fn parse_open(text: &str) -> Result<U256> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 18 || whole.is_empty() && frac.is_empty() {
        bail!("{text:?} is not an amount of OPEN");
    }
    let digits = format!("{whole}{frac:0<18}");
    U256::from_str_radix(&digits, 10).map_err(|_| anyhow!("{text:?} is not an amount of OPEN"))
}

fn parse_status(entry: &str) -> Result<(U256, u8)> {
    let (id, status) = entry
        .split_once('=')
        .ok_or_else(|| anyhow!("{entry:?}: expected ID=STATUS"))?;
    let status = Change::status(status)?;
    Ok((id.parse().with_context(|| format!("id {id:?}"))?, status))
}

/// Submits a proposal and prints its id.
pub async fn propose(client: &ProtocolClient, actions: &Actions, description: &str) -> Result<()> {
    let a = *client.addresses().expect("addresses loaded");
    let actions = actions.build(&a, proposal::timing(client).await?)?;
    let call = OpenGovernor::proposeCall {
        targets: actions.iter().map(|x| x.target).collect(),
        values: vec![U256::ZERO; actions.len()],
        calldatas: actions.iter().map(|x| x.calldata.clone()).collect(),
        description: description.to_string(),
    };
    let id = client.call(a.governor, call.clone()).await?;
    let receipt = client.send(a.governor, call, U256::ZERO).await?;
    println!("{id}");
    eprintln!(
        "gov: proposal {id} created in block {}",
        receipt.block_number
    );
    Ok(())
}

/// Casts the signer's vote.
pub async fn vote(client: &ProtocolClient, id: U256, support: &str, reason: &str) -> Result<()> {
    let a = client.addresses().expect("addresses loaded");
    let support = match support {
        "against" => 0,
        "for" => 1,
        "abstain" => 2,
        other => bail!("vote {other:?}: expected for, against or abstain"),
    };
    let call = OpenGovernor::castVoteWithReasonCall {
        proposalId: id,
        support,
        reason: reason.to_string(),
    };
    let weight = client.call(a.governor, call.clone()).await?;
    client.send(a.governor, call, U256::ZERO).await?;
    eprintln!("gov: voted with {weight} wei of staked OPEN");
    Ok(())
}

/// Queues a succeeded proposal in the timelock, or executes a queued one.
pub async fn queue_or_execute(client: &ProtocolClient, id: U256, execute: bool) -> Result<()> {
    let a = client.addresses().expect("addresses loaded");
    let p = find_proposal(client, id).await?;
    let description_hash = keccak256(p.description.as_bytes());
    if execute {
        let call = OpenGovernor::executeCall {
            targets: p.targets,
            values: p.values,
            calldatas: p.calldatas,
            descriptionHash: description_hash,
        };
        client.send(a.governor, call, U256::ZERO).await?;
        eprintln!("gov: proposal {id} executed");
    } else {
        let call = OpenGovernor::queueCall {
            targets: p.targets,
            values: p.values,
            calldatas: p.calldatas,
            descriptionHash: description_hash,
        };
        client.send(a.governor, call, U256::ZERO).await?;
        let eta = client
            .call(a.governor, OpenGovernor::proposalEtaCall { proposalId: id })
            .await?;
        eprintln!("gov: proposal {id} queued; executable from unix time {eta}");
    }
    Ok(())
}

/// Prints one proposal's state and votes, or every proposal's.
pub async fn status(client: &ProtocolClient, id: Option<U256>) -> Result<()> {
    let a = client.addresses().expect("addresses loaded");
    let proposals = match id {
        Some(id) => vec![find_proposal(client, id).await?],
        None => all_proposals(client).await?,
    };
    if proposals.is_empty() {
        println!("no proposals");
    }
    for p in proposals {
        let id = p.proposalId;
        let state = client
            .call(a.governor, OpenGovernor::stateCall { proposalId: id })
            .await?;
        let votes = client
            .call(
                a.governor,
                OpenGovernor::proposalVotesCall { proposalId: id },
            )
            .await?;
        let eta = client
            .call(a.governor, OpenGovernor::proposalEtaCall { proposalId: id })
            .await?;
        println!("proposal {id}");
        println!(
            "  state:       {}",
            STATES.get(state as usize).unwrap_or(&"unknown")
        );
        println!("  description: {}", p.description);
        println!("  proposer:    {}", p.proposer);
        let deadline = client
            .call(
                a.governor,
                OpenGovernor::proposalDeadlineCall { proposalId: id },
            )
            .await?;
        println!(
            "  voting:      from unix time {} to {deadline}",
            p.voteStart
        );
        println!(
            "  votes:       for {} / against {} / abstain {} (wei of staked OPEN)",
            votes.forVotes, votes.againstVotes, votes.abstainVotes
        );
        if !eta.is_zero() {
            println!("  executable:  from unix time {eta}");
        }
        for (target, data) in p.targets.iter().zip(&p.calldatas) {
            println!("  action:      {target} {data}");
        }
    }
    Ok(())
}

async fn all_proposals(client: &ProtocolClient) -> Result<Vec<ProposalCreated>> {
    let a = client.addresses().expect("addresses loaded");
    let events = client
        .events::<ProposalCreated>(a.governor, 0, None)
        .await?;
    Ok(events.into_iter().map(|(_, p)| p).collect())
}

async fn find_proposal(client: &ProtocolClient, id: U256) -> Result<ProposalCreated> {
    all_proposals(client)
        .await?
        .into_iter()
        .find(|p| p.proposalId == id)
        .ok_or_else(|| anyhow!("no proposal {id} on this chain"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    #[test]
    fn amounts_of_open_parse_to_wei() {
        assert_eq!(parse_open("1").unwrap(), U256::from(10u128.pow(18)));
        assert_eq!(parse_open("1.5").unwrap(), U256::from(15 * 10u128.pow(17)));
        assert!(parse_open("1.2.3").is_err());
        assert!(parse_open("").is_err());
        assert!(parse_open("abc").is_err());
    }

    #[test]
    fn a_fee_split_that_does_not_add_up_is_refused_before_anything_is_sent() {
        let actions = Actions {
            fee_split: Some("5000,1000,2000,1000,500".into()),
            ..Default::default()
        };
        let a = Addresses {
            chain_id: 1,
            timelock: Address::ZERO,
            protocol_params: Address::ZERO,
            staking: Address::ZERO,
            governor: Address::ZERO,
            datanet_registry: Address::ZERO,
            model_registry: Address::ZERO,
            inference_settlement: Address::ZERO,
            model_factory: Address::ZERO,
        };
        let now = Timing {
            challenge_window: 600,
            ruling_period: 600,
            unbonding_delay: 1200,
        };
        let err = format!("{:#}", actions.build(&a, now).err().unwrap());
        assert!(err.contains("9500"), "{err}");
    }
}
