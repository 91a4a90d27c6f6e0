//! Numbers and times as pages show them.

use alloy_primitives::U256;

/// Wei as OPEN, with at most six decimals (trailing zeros dropped): `1.5`, `0.000002`.
pub fn open(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18));
    let whole = wei / unit;
    let micro = (wei % unit) / U256::from(1_000_000_000_000u64);
    if micro.is_zero() {
        return whole.to_string();
    }
    let fraction = format!("{:06}", micro.to::<u64>());
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// An amount with its unit, small ones in wei: a single answer's share of its fee is often
/// far below the micro-OPEN that [`open`] shows (`0.5 OPEN`, `1234 wei`).
pub fn open_or_wei(wei: U256) -> String {
    if !wei.is_zero() && wei < U256::from(1_000_000_000_000u64) {
        return format!("{wei} wei");
    }
    format!("{} OPEN", open(wei))
}

/// Wei as OPEN with every decimal it has (`1.000000000000000001`): what a form may send back.
pub fn open_exact(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18));
    let (whole, fraction) = (wei / unit, wei % unit);
    if fraction.is_zero() {
        return whole.to_string();
    }
    let fraction = format!("{:0>18}", fraction.to_string());
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `text` cut to `chars` characters, with an ellipsis when cut.
pub fn short(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Unix seconds as an ISO 8601 UTC time.
pub fn iso(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// How long ago `then` was, at `now` (Unix seconds): `12 s`, `5 min`, `3 h`, `2 d`.
pub fn age(then: u64, now: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3_599 => format!("{} min ago", s / 60),
        3_600..=86_399 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_times_and_ages_read_plainly() {
        let wei = |w: u128| U256::from(w);
        assert_eq!(open(wei(0)), "0");
        assert_eq!(open(wei(1_500_000_000_000_000_000)), "1.5");
        assert_eq!(open(wei(2_000_000_000_000)), "0.000002");
        assert_eq!(open(wei(10u128.pow(27))), "1000000000");
        assert_eq!(
            open_exact(wei(1_000_000_000_000_000_001)),
            "1.000000000000000001"
        );
        assert_eq!(open_exact(wei(2_500_000_000_000_000_000)), "2.5");
        assert_eq!(open_exact(wei(7)), "0.000000000000000007");
        assert_eq!(open_exact(wei(0)), "0");
        assert_eq!(open_or_wei(wei(1234)), "1234 wei");
        assert_eq!(open_or_wei(wei(0)), "0 OPEN");
        assert_eq!(open_or_wei(wei(1_500_000_000_000_000_000)), "1.5 OPEN");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso(1_796_515_200 + 3_723), "2026-12-06T01:02:03Z");
        assert_eq!(age(100, 130), "30 s ago");
        assert_eq!(age(0, 7_200), "2 h ago");
        assert_eq!(short("abcdef", 3), "abc…");
        assert_eq!(short("ab", 3), "ab");
    }
}
