//! The OPEN token: supply, what is locked in the vesting wallets and what circulates, and the
//! unlock schedule as a chart, all read from the chain: each `OpenVesting` wallet's balance,
//! released amount, start and duration (an allocation is its balance plus what it released).

use crate::{format, Failure, Web};
use alloy_primitives::{Address, U256};
use axum::{extract::State, response::Response, routing::get, Router};
use minijinja::{context, Value};
use openledger_genesis::genesis::{allocation_address, TOTAL_SUPPLY};
use openledger_protocol::{genesis::ALLOCATIONS, vesting::OpenVesting};
use serde_json::json;
use std::{sync::Arc, time::Instant};

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/token", get(token))
}

/// One vesting wallet as the chain holds it.
struct Wallet {
    name: &'static str,
    address: Address,
    beneficiary: Address,
    start: u64,
    duration: u64,
    /// Balance plus released: what the allocation was.
    allocation: U256,
    released: U256,
    releasable: U256,
    vested: U256,
}

impl Wallet {
    /// Not yet vested. Saturating: the reads are separate calls, and a deposit landing between
    /// them can show more vested than the balance read before it.
    fn locked(&self) -> U256 {
        self.allocation.saturating_sub(self.vested)
    }

    /// What this wallet has unlocked by `time` (linear from `start` over `duration`).
    fn unlocked_at(&self, time: u64) -> U256 {
        if time < self.start {
            return U256::ZERO;
        }
        let elapsed = time - self.start;
        if self.duration == 0 || elapsed >= self.duration {
            return self.allocation;
        }
        self.allocation * U256::from(elapsed) / U256::from(self.duration)
    }
}

impl Web {
    async fn wallet(&self, name: &'static str, now: u64) -> Result<Option<Wallet>, Failure> {
        let address = allocation_address(name);
        let c = &self.client;
        let code = c.code(address).await.map_err(Failure::chain)?;
        if code.is_empty() {
            return Ok(None); // a genesis without this vesting wallet
        }
        let (beneficiary, start, duration, released, releasable, vested, balance) =
            futures_util::try_join!(
                c.call(address, OpenVesting::ownerCall {}),
                c.call(address, OpenVesting::startCall {}),
                c.call(address, OpenVesting::durationCall {}),
                c.call(address, OpenVesting::released_0Call {}),
                c.call(address, OpenVesting::releasable_1Call {}),
                c.call(address, OpenVesting::vestedAmount_0Call { timestamp: now }),
                c.balance(address),
            )
            .map_err(Failure::chain)?;
        Ok(Some(Wallet {
            name,
            address,
            beneficiary,
            start: start.saturating_to(),
            duration: duration.saturating_to(),
            allocation: balance + released,
            released,
            releasable,
            vested,
        }))
    }
}

async fn token(State(web): State<Arc<Web>>) -> Response {
    let started = Instant::now();
    match token_page(&web).await {
        Ok(ctx) => web.page(started, "token", "token.html", ctx),
        Err(f) => web.error(started, f),
    }
}

async fn token_page(web: &Web) -> Result<Value, Failure> {
    let now = web
        .client
        .latest_timestamp()
        .await
        .map_err(Failure::chain)?;
    let reads = ALLOCATIONS
        .iter()
        .filter(|a| a.vesting.is_some())
        .map(|a| web.wallet(a.name, now));
    let wallets: Vec<Wallet> = futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect();
    // A dev node sums every balance; elsewhere the supply is the genesis total, which every
    // genesis must add up to and the chain never changes.
    let supply = web
        .client
        .rpc()
        .request::<U256>("openledger_totalSupply", json!([]))
        .await
        .unwrap_or(TOTAL_SUPPLY);
    let locked: U256 = wallets.iter().map(Wallet::locked).sum();
    let rows: Vec<Value> = wallets
        .iter()
        .map(|w| {
            context! {
                name => w.name,
                address => w.address.to_string(),
                beneficiary => w.beneficiary.to_string(),
                allocation => format::open(w.allocation),
                released => format::open(w.released),
                releasable => format::open(w.releasable),
                locked => format::open(w.locked()),
                starts => format::iso(w.start),
                ends => format::iso(w.start.saturating_add(w.duration)),
            }
        })
        .collect();
    Ok(context! {
        supply => format::open(supply),
        locked => format::open(locked),
        circulating => format::open(supply.saturating_sub(locked)),
        wallets => rows,
        chart => chart(&wallets, supply, now),
        now => format::iso(now),
    })
}

/// The chart's drawing area, in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;

/// The unlocked share of the supply month by month, from the earliest wallet start to the
/// latest end, as SVG path data, with a marker at `now` and the axis labels.
fn chart(wallets: &[Wallet], supply: U256, now: u64) -> Value {
    let (Some(first), Some(last)) = (
        wallets.iter().map(|w| w.start).min(),
        wallets
            .iter()
            .map(|w| w.start.saturating_add(w.duration))
            .max(),
    ) else {
        return Value::from(());
    };
    // Before the first start, only what no wallet holds circulates.
    let held: U256 = wallets.iter().map(|w| w.allocation).sum();
    let free = supply.saturating_sub(held);
    let month = openledger_protocol::genesis::MONTH;
    let months = (last.saturating_sub(first)).div_ceil(month).max(1);
    let share = |time: u64| -> f64 {
        let unlocked: U256 = free + wallets.iter().map(|w| w.unlocked_at(time)).sum::<U256>();
        ratio(unlocked, supply)
    };
    let x = |time: u64| (time.saturating_sub(first)) as f64 / (last - first).max(1) as f64 * WIDTH;
    let mut path = String::new();
    for m in 0..=months {
        let time = (first + m * month).min(last);
        let command = if m == 0 { 'M' } else { 'L' };
        path.push_str(&format!(
            "{command}{:.1},{:.1} ",
            x(time),
            HEIGHT * (1.0 - share(time))
        ));
    }
    let marker = (first..=last)
        .contains(&now)
        .then(|| format!("{:.1}", x(now)));
    context! {
        path, marker, width => WIDTH, height => HEIGHT,
        from => format::iso(first).get(..10).unwrap_or_default().to_string(),
        to => format::iso(last).get(..10).unwrap_or_default().to_string(),
        now_share => format!("{:.1}", share(now) * 100.0),
        start_share => format!("{:.1}", share(first) * 100.0),
    }
}

/// `part / whole` as a float, for drawing.
fn ratio(part: U256, whole: U256) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    // Millionths keep the float exact enough for a chart and the division in integers.
    let millionths: u64 = (part * U256::from(1_000_000u64) / whole).saturating_to();
    millionths as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(start: u64, duration: u64, allocation: u64) -> Wallet {
        Wallet {
            name: "w",
            address: Address::ZERO,
            beneficiary: Address::ZERO,
            start,
            duration,
            allocation: U256::from(allocation),
            released: U256::ZERO,
            releasable: U256::ZERO,
            vested: U256::ZERO,
        }
    }

    #[test]
    fn a_wallet_unlocks_linearly_between_its_start_and_end() {
        let w = wallet(100, 1_000, 5_000);
        assert_eq!(w.unlocked_at(99), U256::ZERO);
        assert_eq!(w.unlocked_at(100), U256::ZERO);
        assert_eq!(w.unlocked_at(600), U256::from(2_500));
        assert_eq!(w.unlocked_at(1_100), U256::from(5_000));
        assert_eq!(w.unlocked_at(u64::MAX), U256::from(5_000));
    }

    #[test]
    fn the_chart_climbs_from_the_free_share_to_all_of_the_supply() {
        let month = openledger_protocol::genesis::MONTH;
        let wallets = [wallet(0, 4 * month, 600), wallet(month, 2 * month, 300)];
        let chart = chart(&wallets, U256::from(1_000), 2 * month);
        let path = chart.get_attr("path").unwrap().to_string();
        // 10% free at the start; everything at the end; one point per month.
        assert!(path.starts_with("M0.0,216.0 "), "{path}");
        assert!(
            path.trim_end().ends_with(&format!("L{WIDTH:.1},0.0")),
            "{path}"
        );
        assert_eq!(path.matches(['M', 'L']).count(), 5, "{path}");
        assert_eq!(chart.get_attr("marker").unwrap().to_string(), "360.0");
        assert!(super::chart(&[], U256::from(1), 0).is_none());
    }
}
