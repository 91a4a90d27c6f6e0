//! The demo's closing table: who earned what, read from the chain (the `Credited` events of
//! the release transactions, the `Claimed` amounts), and the checks that make the story true:
//! the payouts are the receipts' fees, each claim is what its claimant earned, the consumer's
//! credit went down by exactly the fees, and OPEN's total supply did not move.

use super::{cast::Cast, open_text, story::Made};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use anyhow::{bail, Context, Result};
use openledger_protocol::{InferenceSettlement, ProtocolClient, Staking};
use serde_json::json;
use std::collections::BTreeMap;

/// The transaction that emitted event `E` for `batch` (its first indexed argument).
pub async fn transaction_of<E: SolEvent>(client: &ProtocolClient, batch: u64) -> Result<B256> {
    let settlement = client
        .addresses()
        .context("addresses")?
        .inference_settlement;
    let filter = json!({"address": settlement,
                        "topics": [E::SIGNATURE_HASH, B256::from(U256::from(batch))]});
    let head = client.block_number().await?;
    let mut from = 0;
    while from <= head {
        let (logs, end) = client.logs_page(&filter, from, head).await?;
        if let Some(hash) = logs.iter().find_map(|l| l.transaction_hash) {
            return Ok(hash);
        }
        from = end + 1;
    }
    bail!("no {} for batch {batch}", E::SIGNATURE)
}

/// OPEN's total supply, as the node counts it (every account's balance).
pub async fn total_supply(client: &ProtocolClient) -> Result<U256> {
    Ok(client
        .rpc()
        .request("openledger_totalSupply", json!([]))
        .await?)
}

/// Prints the closing table and fails unless every check holds.
pub async fn close(cast: &Cast, made: &Made, supply_before: U256) -> Result<()> {
    let client = &cast.owner.client;
    let a = *client.addresses().context("addresses")?;
    let mut earned: BTreeMap<Address, U256> = BTreeMap::new();
    for (_, _, released) in &made.batches {
        let receipt = client.wait("the release", *released).await?;
        for log in receipt
            .logs
            .iter()
            .filter(|l| l.address == a.inference_settlement)
        {
            let topics = log.topics.iter().copied();
            if let Ok(e) = InferenceSettlement::Credited::decode_raw_log(topics, &log.data) {
                *earned.entry(e.account).or_default() += e.amount;
            }
        }
    }
    let claimed: BTreeMap<Address, U256> = made.claims.iter().map(|&(w, a, _)| (w, a)).collect();
    let treasury = client
        .call(a.staking, Staking::treasuryCall::new(()))
        .await?;
    println!();
    println!(
        "{:<9} {:<14} {:<44} {:>16} {:>16}",
        "who", "role", "account", "earned", "claimed"
    );
    let mut rows: Vec<(String, &str, Address)> = cast
        .everyone()
        .into_iter()
        .map(|actor| (actor.name.to_string(), actor.role, actor.address()))
        .collect();
    rows.push(("treasury".into(), "governance", treasury));
    for (name, role, address) in &rows {
        let earned = earned.get(address).copied().unwrap_or_default();
        let claimed = claimed.get(address).copied().unwrap_or_default();
        println!(
            "{name:<9} {role:<14} {address:<44} {:>16} {:>16}",
            amount(earned),
            amount(claimed)
        );
    }
    let fees = made
        .receipts
        .iter()
        .map(super::story::fee_of)
        .sum::<Result<U256>>()?;
    let paid_out: U256 = earned.values().copied().sum();
    let credit = client
        .call(
            a.inference_settlement,
            InferenceSettlement::creditOfCall::new((cast.consumer.address(),)),
        )
        .await?;
    let supply = total_supply(client).await?;
    println!();
    let mut failed = Vec::new();
    let mut check = |holds: bool, what: String| {
        println!("{} {what}", if holds { "ok  " } else { "FAIL" });
        if !holds {
            failed.push(what);
        }
    };
    check(
        paid_out == fees,
        format!(
            "paid out {} = the {} receipts' fees {}",
            open_text(paid_out),
            made.receipts.len(),
            open_text(fees)
        ),
    );
    // Everyone but the treasury (governance claims its share) claimed exactly what they earned.
    for who in cast.everyone().iter().map(|a| a.address()) {
        let due = earned.get(&who).copied().unwrap_or_default();
        let amount = claimed.get(&who).copied().unwrap_or_default();
        check(
            amount == due,
            format!(
                "{} claimed {} and earned {}",
                cast.name_of(who),
                open_text(amount),
                open_text(due)
            ),
        );
    }
    check(
        credit + fees == U256::from(super::story::DEPOSIT),
        format!(
            "{}'s credit is the deposit less the fees: {}",
            cast.consumer.name,
            open_text(credit)
        ),
    );
    check(
        supply == supply_before,
        format!(
            "total supply {} before and {} after (OPEN only moved: fees, stakes, payouts)",
            open_text(supply_before),
            open_text(supply)
        ),
    );
    if !failed.is_empty() {
        bail!("the demo's ledger does not add up: {}", failed.join("; "));
    }
    Ok(())
}

/// An amount for the table: OPEN with six decimals.
fn amount(wei: U256) -> String {
    let (whole, micro) = super::micro_open(wei);
    format!("{whole}.{micro:06}")
}

/// What the links at the end point at.
pub fn links(web: &str, cast: &Cast, made: &Made) -> Vec<(String, String)> {
    let mut out = vec![
        ("the web app".to_string(), format!("{web}/")),
        ("the datanets".to_string(), format!("{web}/datanets")),
        ("the explorer".to_string(), format!("{web}/explorer")),
    ];
    if let Some((batch, settled, _)) = made.batches.first() {
        out.push((
            format!("batch {batch}'s settlement"),
            format!("{web}/explorer/tx/{settled}"),
        ));
    }
    for c in &cast.contributors {
        out.push((
            format!("{}'s account", c.name),
            format!("{web}/explorer/address/{}", c.address()),
        ));
    }
    out
}
