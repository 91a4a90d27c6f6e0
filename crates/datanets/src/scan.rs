//! Flags for text that should not be in a shared dataset: likely secrets (private keys, API
//! tokens) and personal data (e-mail addresses, phone numbers).
//!
//! These are heuristics for curators' attention, not proof: a 64-hex-digit string may be a
//! transaction hash rather than a key, so hex keys are only flagged next to words that name
//! a key. Each pattern is a plain `regex` (linear time, no backtracking).

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// What a finding looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    PrivateKeyBlock,
    HexPrivateKey,
    AwsAccessKey,
    GithubToken,
    SlackToken,
    ApiKey,
    Email,
    Phone,
}

impl FindingKind {
    /// Whether this is a secret (as opposed to personal data).
    pub fn is_secret(self) -> bool {
        !matches!(self, Self::Email | Self::Phone)
    }

    /// A name for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::PrivateKeyBlock => "a PEM private key",
            Self::HexPrivateKey => "a hex private key",
            Self::AwsAccessKey => "an AWS access key",
            Self::GithubToken => "a GitHub token",
            Self::SlackToken => "a Slack token",
            Self::ApiKey => "an API key",
            Self::Email => "an e-mail address",
            Self::Phone => "a phone number",
        }
    }
}

fn patterns() -> &'static [(FindingKind, Regex)] {
    static PATTERNS: OnceLock<Vec<(FindingKind, Regex)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let p = |kind, re: &str| (kind, Regex::new(re).expect("valid pattern"));
        vec![
            p(
                FindingKind::PrivateKeyBlock,
                r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
            ),
            p(
                FindingKind::HexPrivateKey,
                r"(?i)(?:private[_ ]?key|secret|priv)[^0-9a-f\n]{0,12}(?:0x)?[0-9a-f]{64}\b",
            ),
            p(FindingKind::AwsAccessKey, r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
            p(FindingKind::GithubToken, r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
            p(FindingKind::SlackToken, r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
            p(FindingKind::ApiKey, r"\bsk-[A-Za-z0-9_-]{32,}\b"),
            p(
                FindingKind::Email,
                r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            ),
            p(
                FindingKind::Phone,
                r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b",
            ),
        ]
    })
}

/// The kinds of finding in `text`, each once.
pub fn scan(text: &str) -> Vec<FindingKind> {
    let mut found = Vec::new();
    for (kind, re) in patterns() {
        // Cheap rejections first: most text has no '@', no '-----', few digits.
        let plausible = match kind {
            FindingKind::Email => text.contains('@'),
            FindingKind::PrivateKeyBlock => text.contains("-----BEGIN"),
            FindingKind::Phone => text.bytes().filter(u8::is_ascii_digit).count() >= 7,
            _ => true,
        };
        if plausible && re.is_match(text) {
            found.push(*kind);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingKind::*;

    #[test]
    fn flags_what_it_should_and_not_ordinary_text() {
        let cases: &[(&str, &[FindingKind])] = &[
            ("write to alice.smith@example.org today", &[Email]),
            ("call +44 20 7946 0958 after six", &[Phone]),
            ("call (555) 123-4567", &[Phone]),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", &[PrivateKeyBlock]),
            (
                "private_key = 0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
                &[HexPrivateKey],
            ),
            ("aws AKIAIOSFODNN7EXAMPLE", &[AwsAccessKey]),
            (
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789AB",
                &[GithubToken],
            ),
            ("the reentrancy bug drained 3,600 ETH in 2016", &[]),
            (
                "tx 0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318 reverted",
                &[],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&scan(text), expected, "{text}");
        }
    }
}
