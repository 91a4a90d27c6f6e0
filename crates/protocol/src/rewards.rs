//! What an account earned from inference: its payouts from released settlement batches, as a
//! host, a model owner, a contributor or a curator (the last two per datanet), read from the
//! settlement contract's events, and its claims. `openledger rewards show` prints it; the web
//! app's rewards page draws it.

use crate::{
    inference_settlement::InferenceSettlement::{
        self, BatchPayouts, BatchReleased, BatchSettled, Claimed, ContributionPaid,
    },
    ClientError, DatanetRegistry, ProtocolClient,
};
use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// Everything `who` earned from released batches, and its claims.
pub async fn earnings(client: &ProtocolClient, who: Address) -> Result<Earnings, ClientError> {
    let a = *client.addresses().ok_or(ClientError::NoAddresses)?;
    let is = a.inference_settlement;
    // Five log scans of the whole chain: run them side by side.
    let (released, settled, owners, paid, claims, claimable) = tokio::try_join!(
        client.events::<BatchReleased>(is, 0, None),
        client.events::<BatchSettled>(is, 0, None),
        client.events::<BatchPayouts>(is, 0, None),
        client.events::<ContributionPaid>(is, 0, None),
        client.events::<Claimed>(is, 0, None),
        client.call(is, InferenceSettlement::claimableCall::new((who,))),
    )?;
    // A batch pays only once released: the block of its release dates the payout.
    let released: HashMap<U256, u64> = released
        .into_iter()
        .map(|(block, e)| (e.batchId, block))
        .collect();
    let mut payouts = Vec::new();
    let mut payout = |batch: U256, role, datanet, contribution, amount: U256| {
        if let Some(&block) = released.get(&batch) {
            if !amount.is_zero() {
                payouts.push(Payout {
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
    for (_, e) in settled {
        if e.host == who && released.contains_key(&e.batchId) {
            let batch = client
                .call(is, InferenceSettlement::batchCall::new((e.batchId,)))
                .await?;
            payout(
                e.batchId,
                Role::Host,
                None,
                None,
                U256::from(batch.hostShare),
            );
        }
    }
    for (_, e) in owners {
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
    // A contribution's datanet and approvers do not change once it is paid: read each once.
    let contributions: BTreeSet<U256> = paid
        .iter()
        .filter(|(_, e)| released.contains_key(&e.batchId))
        .map(|(_, e)| e.contributionId)
        .collect();
    let mut known = HashMap::new();
    for id in contributions {
        let standing = DatanetRegistry::standingCall::new((id,));
        let datanet = u64::from(client.call(a.datanet_registry, standing).await?.datanetId);
        let reviewers = DatanetRegistry::reviewersCall::new((id,));
        let approvers = client.call(a.datanet_registry, reviewers).await?.approvers;
        known.insert(id, (datanet, approvers));
    }
    for (_, e) in paid {
        let Some((datanet, approvers)) = known.get(&e.contributionId) else {
            continue;
        };
        let (batch, id) = (e.batchId, Some(e.contributionId));
        if e.contributor == who {
            payout(
                batch,
                Role::Contributor,
                Some(*datanet),
                id,
                e.contributorAmount,
            );
        }
        // The approving curators share equally (the event reports their exact total).
        if approvers.contains(&who) {
            let each = e.curatorsAmount / U256::from(approvers.len());
            payout(batch, Role::Curator, Some(*datanet), id, each);
        }
    }
    payouts.sort_by_key(|p| (p.block, p.batch));
    let claims = claims
        .into_iter()
        .filter(|(_, e)| e.account == who)
        .map(|(block, e)| (block, e.amount))
        .collect();
    Ok(Earnings {
        payouts,
        claims,
        claimable,
    })
}
