//! `openledger token supply`: total, circulating, locked and vested OPEN per allocation at a
//! date, and the month-by-month unlock schedule as CSV, computed from the genesis allocations
//! and their vesting schedules.

use alloy_primitives::U256;
use anyhow::{bail, Context, Result};
use openledger_chain::genesis::{allocation_address, Genesis, ONE_OPEN, TOTAL_SUPPLY};
use openledger_protocol::genesis::{vested, ALLOCATIONS, MONTH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The date of a day count since 1970-01-01, as `YYYY-MM-DD`.
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Parses `YYYY-MM-DD` or unix seconds.
pub fn parse_date(text: &str) -> Result<u64> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!("date {text:?} is neither YYYY-MM-DD nor unix seconds");
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().with_context(|| format!("year in {text:?}"))?,
        m.parse().with_context(|| format!("month in {text:?}"))?,
        d.parse().with_context(|| format!("day in {text:?}"))?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        bail!("date {text:?} is out of range");
    }
    Ok(days_from_civil(y, m, d) as u64 * 86_400)
}

fn date(seconds: u64) -> String {
    civil((seconds / 86_400) as i64)
}

/// OPEN with two decimals.
fn open(wei: U256) -> String {
    let one = U256::from(ONE_OPEN);
    let cents = (wei % one) / U256::from(ONE_OPEN / 100);
    format!("{}.{:02}", wei / one, cents.to::<u64>())
}

/// One row of the schedule: vested OPEN per allocation, then free genesis accounts.
struct Snapshot {
    totals: Vec<U256>,
    vested: Vec<U256>,
    genesis_accounts: U256,
}

fn snapshot(genesis: &Genesis, time: u64) -> Snapshot {
    let totals: Vec<U256> = ALLOCATIONS
        .iter()
        .map(|a| {
            genesis
                .alloc
                .get(&allocation_address(a.name))
                .map_or(U256::ZERO, |acc| acc.balance)
        })
        .collect();
    let vested = ALLOCATIONS
        .iter()
        .zip(&totals)
        .map(|(a, total)| vested(a, *total, genesis.timestamp, time))
        .collect();
    let genesis_accounts = TOTAL_SUPPLY - totals.iter().copied().sum::<U256>();
    Snapshot {
        totals,
        vested,
        genesis_accounts,
    }
}

impl Snapshot {
    fn circulating(&self) -> U256 {
        self.vested.iter().copied().sum::<U256>() + self.genesis_accounts
    }
}

/// The supply report at `time`.
pub fn report(genesis: &Genesis, time: u64) -> String {
    let s = snapshot(genesis, time);
    let mut out = format!(
        "OPEN supply on {} (genesis {})\n\n{:<18}{:>24}{:>24}{:>24}\n",
        date(time),
        date(genesis.timestamp),
        "allocation",
        "total",
        "vested",
        "locked"
    );
    for ((a, total), vested) in ALLOCATIONS.iter().zip(&s.totals).zip(&s.vested) {
        out += &format!(
            "{:<18}{:>24}{:>24}{:>24}\n",
            a.name,
            open(*total),
            open(*vested),
            open(*total - *vested)
        );
    }
    out += &format!(
        "{:<18}{:>24}{:>24}{:>24}\n\ntotal        {}\ncirculating  {}\nlocked       {}\n",
        "genesis accounts",
        open(s.genesis_accounts),
        open(s.genesis_accounts),
        open(U256::ZERO),
        open(TOTAL_SUPPLY),
        open(s.circulating()),
        open(TOTAL_SUPPLY - s.circulating()),
    );
    out
}

/// The unlock schedule month by month until everything has vested, as CSV.
pub fn schedule_csv(genesis: &Genesis) -> String {
    let last = ALLOCATIONS
        .iter()
        .filter_map(|a| a.vesting.map(|(cliff, months)| cliff + months))
        .max()
        .unwrap_or(0);
    let names: Vec<&str> = ALLOCATIONS.iter().map(|a| a.name).collect();
    let mut out = format!(
        "month,date,{},genesis_accounts,circulating,locked\n",
        names.join(",")
    );
    for month in 0..=last {
        let time = genesis.timestamp + month * MONTH;
        let s = snapshot(genesis, time);
        let vested: Vec<String> = s.vested.iter().map(|v| open(*v)).collect();
        out += &format!(
            "{month},{},{},{},{},{}\n",
            date(time),
            vested.join(","),
            open(s.genesis_accounts),
            open(s.circulating()),
            open(TOTAL_SUPPLY - s.circulating())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openledger_protocol::genesis::{dev_genesis, DEV_GENESIS_TIME};

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("2026-01-01").unwrap(), DEV_GENESIS_TIME);
        assert_eq!(date(DEV_GENESIS_TIME), "2026-01-01");
        assert_eq!(date(parse_date("2028-02-29").unwrap()), "2028-02-29");
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn supply_is_locked_at_genesis_and_circulating_at_the_end() {
        let genesis = dev_genesis();
        let start = snapshot(&genesis, genesis.timestamp);
        // At genesis only liquidity and the dev accounts circulate.
        assert_eq!(
            start.circulating(),
            U256::from(50_000_000u64) * U256::from(ONE_OPEN) + start.genesis_accounts
        );
        let end = snapshot(&genesis, genesis.timestamp + 48 * MONTH);
        assert_eq!(end.circulating(), TOTAL_SUPPLY);
        let csv = schedule_csv(&genesis);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 49, "header and months 0..=48");
        assert!(lines[49].ends_with(",1000000000.00,0.00"), "{}", lines[49]);
        let report = report(&genesis, parse_date("2027-01-01").unwrap());
        assert!(report.contains("total        1000000000.00"), "{report}");
    }
}
