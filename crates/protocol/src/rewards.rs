//! What an account earned from inference: its payouts from released settlement batches, as a
//! host, a model owner, a contributor or a curator (the last two per datanet), read from the
//! settlement contract's events, and its claims. `openledger rewards show` prints it; the web
//! app's rewards page draws it.

use crate::{
    client::Log,
    datanet_registry::DatanetRegistry::{ContributionAccepted, Reviewed},
    deploy::Addresses,
    inference_settlement::InferenceSettlement::{
        self, BatchPayouts, BatchReleased, BatchSettled, Claimed, ContributionPaid,
    },
    ClientError, ProtocolClient,
};
use alloy_primitives::{Address, U256};
use alloy_sol_types::SolEvent;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The role a payout rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Contributor,
    Curator,
    ModelOwner,
    Host,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Contributor => "contributor",
            Role::Curator => "curator",
            Role::ModelOwner => "model owner",
            Role::Host => "host",
        }
    }
}

/// One payout to the account from a released batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// The block that released it.
    pub block: u64,
    pub batch: U256,
    pub role: Role,
    /// The datanet a contributor's or curator's payout came through.
    pub datanet: Option<u64>,
    /// The contribution it paid, for a contributor or curator.
    pub contribution: Option<U256>,
    pub amount: U256,
}

/// An account's rewards.
#[derive(Debug, Clone, Default)]
pub struct Earnings {
    /// Oldest first.
    pub payouts: Vec<Payout>,
    /// (block, amount) of each claim, oldest first.
    pub claims: Vec<(u64, U256)>,
    /// What `claim` would pay now.
    pub claimable: U256,
}

impl Earnings {
    /// Totals per role and datanet, in role order.
    pub fn by_role(&self) -> BTreeMap<(Role, Option<u64>), U256> {
        let mut out = BTreeMap::new();
        for p in &self.payouts {
            *out.entry((p.role, p.datanet)).or_insert(U256::ZERO) += p.amount;
        }
        out
    }

    pub fn total(&self) -> U256 {
        self.payouts.iter().map(|p| p.amount).sum()
    }
}

/// The settlement's and the registry's events the earnings are read from, decoded.
#[derive(Default)]
struct Logs {
    released: Vec<(u64, BatchReleased)>,
    settled: Vec<BatchSettled>,
    payouts: Vec<BatchPayouts>,
    paid: Vec<ContributionPaid>,
    claims: Vec<(u64, Claimed)>,
    accepted: Vec<ContributionAccepted>,
    reviewed: Vec<Reviewed>,
}

impl Logs {
    /// All of them in one pass over the chain up to `head` (one filter, seven events).
    async fn read(client: &ProtocolClient, a: &Addresses, head: u64) -> Result<Self, ClientError> {
        let filter = json!({
            "address": [a.inference_settlement, a.datanet_registry],
            "topics": [[
                BatchReleased::SIGNATURE_HASH, BatchSettled::SIGNATURE_HASH,
                BatchPayouts::SIGNATURE_HASH, ContributionPaid::SIGNATURE_HASH,
                Claimed::SIGNATURE_HASH, ContributionAccepted::SIGNATURE_HASH,
                Reviewed::SIGNATURE_HASH,
            ]],
        });
        let mut out = Self::default();
        for log in client.logs(&filter, 0, head).await? {
            out.add(a, &log)?;
        }
        Ok(out)
    }

    fn add(&mut self, a: &Addresses, log: &Log) -> Result<(), ClientError> {
        let block = log.block();
        let Some(&topic) = log.topics.first() else {
            return Ok(());
        };
        if log.address == a.inference_settlement {
            match topic {
                BatchReleased::SIGNATURE_HASH => self.released.push((block, log.decode()?)),
                BatchSettled::SIGNATURE_HASH => self.settled.push(log.decode()?),
                BatchPayouts::SIGNATURE_HASH => self.payouts.push(log.decode()?),
                ContributionPaid::SIGNATURE_HASH => self.paid.push(log.decode()?),
                Claimed::SIGNATURE_HASH => self.claims.push((block, log.decode()?)),
                _ => {}
            }
        } else if log.address == a.datanet_registry {
            match topic {
                ContributionAccepted::SIGNATURE_HASH => self.accepted.push(log.decode()?),
                Reviewed::SIGNATURE_HASH => self.reviewed.push(log.decode()?),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Everything `who` earned from released batches, and its claims. The work is one pass over
/// the chain's logs, however many batches and contributions there are, read up to one head so
/// that the figures agree with each other.
pub async fn earnings(client: &ProtocolClient, who: Address) -> Result<Earnings, ClientError> {
    let a = *client.addresses().ok_or(ClientError::NoAddresses)?;
    let head = client.block_number().await?;
    let (logs, claimable) = tokio::try_join!(
        Logs::read(client, &a, head),
        client.call(
            a.inference_settlement,
            InferenceSettlement::claimableCall { account: who }
        ),
    )?;
    let Logs {
        released,
        settled,
        payouts,
        paid,
        claims,
        accepted,
        reviewed,
    } = logs;
    // A batch pays only once released: the block of its release dates the payout.
    let released: HashMap<U256, u64> = released
        .into_iter()
        .map(|(block, e)| (e.batchId, block))
        .collect();
    let datanet: HashMap<U256, u64> = accepted
        .into_iter()
        .map(|e| (e.contributionId, e.datanetId.saturating_to()))
        .collect();
    // A contribution's approvers, as `reviewers` lists them: reviews end with the decision.
    let mut approvers: HashMap<U256, (usize, bool)> = HashMap::new();
    for e in reviewed.into_iter().filter(|e| e.approve) {
        let entry = approvers.entry(e.contributionId).or_default();
        entry.0 += 1;
        entry.1 |= e.curator == who;
    }
    let hosted: HashSet<U256> = settled
        .into_iter()
        .filter(|e| e.host == who)
        .map(|e| e.batchId)
        .collect();
    let mut out = Vec::new();
    let mut payout = |batch: U256, role, datanet, contribution, amount: U256| {
        if let Some(&block) = released.get(&batch) {
            if !amount.is_zero() {
                out.push(Payout {
                    block,
                    batch,
                    role,
                    datanet,
                    contribution,
                    amount,
                });
            }
        }
    };
    for e in payouts {
        if hosted.contains(&e.batchId) {
            payout(e.batchId, Role::Host, None, None, e.hostShare);
        }
        for o in e.owners.iter().filter(|o| o.owner == who) {
            payout(
                e.batchId,
                Role::ModelOwner,
                None,
                None,
                U256::from(o.amount),
            );
        }
    }
    for e in paid {
        let (batch, id) = (e.batchId, Some(e.contributionId));
        let place = datanet.get(&e.contributionId).copied();
        if e.contributor == who {
            payout(batch, Role::Contributor, place, id, e.contributorAmount);
        }
        // The approving curators share equally (the event reports their exact total).
        if let Some(&(count, true)) = approvers.get(&e.contributionId) {
            let each = e.curatorsAmount / U256::from(count);
            payout(batch, Role::Curator, place, id, each);
        }
    }
    out.sort_by_key(|p| (p.block, p.batch));
    let claims = claims
        .into_iter()
        .filter(|(_, e)| e.account == who)
        .map(|(block, e)| (block, e.amount))
        .collect();
    Ok(Earnings {
        payouts: out,
        claims,
        claimable,
    })
}
