//! Sign-In with Ethereum (EIP-4361): the message an account signs to get API keys, parsed
//! strictly, and its EIP-191 signature checked against the address it names.

use alloy_primitives::{Address, Signature};

/// Why a sign-in message or its signature is refused. Each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiweError {
    #[error("the message is not an EIP-4361 sign-in message: {0}")]
    Malformed(String),
    #[error("the message is for {found}, not {expected}")]
    WrongDomain { expected: String, found: String },
    #[error("the message is for chain {found}, not {expected}")]
    WrongChain { expected: u64, found: u64 },
    #[error("the message's version is {0}, not 1")]
    WrongVersion(String),
    #[error("the message expired at {0} (unix seconds)")]
    Expired(i64),
    #[error("the message is not valid before {0} (unix seconds)")]
    NotYetValid(i64),
    #[error("the message was issued at {0}, too far from now")]
    IssuedAtOutOfRange(i64),
    #[error("the signature is not 65 bytes of r, s and v")]
    BadSignature,
    #[error("the message is signed by {signer}, not by {address}")]
    WrongSigner { address: Address, signer: Address },
}

/// A parsed sign-in message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub domain: String,
    pub address: Address,
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: u64,
    pub nonce: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expiration: Option<i64>,
    pub not_before: Option<i64>,
}

/// What a message must match to be accepted.
pub struct Expected<'a> {
    pub domain: &'a str,
    pub chain_id: u64,
    /// Unix seconds.
    pub now: i64,
    /// How far `Issued At` may be from now, in seconds.
    pub skew: i64,
}

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

fn malformed(what: impl Into<String>) -> SiweError {
    SiweError::Malformed(what.into())
}

impl Message {
    /// Parses the EIP-4361 text form (fields in the standard's order; unknown or repeated
    /// fields are refused, so two parties never read one message differently).
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        let mut lines = text.split('\n');
        let mut next = |what: &str| {
            lines
                .next()
                .ok_or_else(|| malformed(format!("{what} is missing")))
        };
        let first = next("the first line")?;
        let domain = first
            .strip_suffix(PREAMBLE)
            .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
            .ok_or_else(|| malformed(format!("the first line must be `DOMAIN{PREAMBLE}`")))?
            .to_string();
        let address_line = next("the address line")?;
        let address: Address = address_line
            .parse()
            .map_err(|_| malformed(format!("`{address_line}` is not an address")))?;
        if !next("the blank line after the address")?.is_empty() {
            return Err(malformed("a blank line must follow the address"));
        }
        let mut line = next("the URI field")?;
        let mut statement = None;
        if !line.starts_with("URI: ") {
            statement = Some(line.to_string());
            if !next("the blank line after the statement")?.is_empty() {
                return Err(malformed("a blank line must follow the statement"));
            }
            line = next("the URI field")?;
        }
        let field = |line: &str, name: &str| -> Result<String, SiweError> {
            line.strip_prefix(&format!("{name}: "))
                .map(str::to_string)
                .ok_or_else(|| malformed(format!("expected the `{name}` field, found `{line}`")))
        };
        let uri = field(line, "URI")?;
        let version = field(next("the Version field")?, "Version")?;
        let chain = field(next("the Chain ID field")?, "Chain ID")?;
        let chain_id = chain
            .parse()
            .map_err(|_| malformed(format!("`{chain}` is not a chain id")))?;
        let nonce = field(next("the Nonce field")?, "Nonce")?;
        if nonce.len() < 8 || !nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(malformed("the nonce must be at least 8 letters or digits"));
        }
        let issued_at = timestamp(&field(next("the Issued At field")?, "Issued At")?)?;
        let (mut expiration, mut not_before) = (None, None);
        for line in lines {
            if let Some(t) = line.strip_prefix("Expiration Time: ") {
                if expiration.replace(timestamp(t)?).is_some() || not_before.is_some() {
                    return Err(malformed("`Expiration Time` repeated or out of order"));
                }
            } else if let Some(t) = line.strip_prefix("Not Before: ") {
                if not_before.replace(timestamp(t)?).is_some() {
                    return Err(malformed("`Not Before` repeated"));
                }
            } else if !line.is_empty() {
                return Err(malformed(format!("unexpected line `{line}`")));
            }
        }
        Ok(Message {
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration,
            not_before,
        })
    }

    /// Checks the message against what this server expects (the nonce is the caller's to
    /// check: it must be one it issued and has not seen used).
    pub fn check(&self, expected: &Expected) -> Result<(), SiweError> {
        if self.domain != expected.domain {
            return Err(SiweError::WrongDomain {
                expected: expected.domain.to_string(),
                found: self.domain.clone(),
            });
        }
        if self.chain_id != expected.chain_id {
            return Err(SiweError::WrongChain {
                expected: expected.chain_id,
                found: self.chain_id,
            });
        }
        if self.version != "1" {
            return Err(SiweError::WrongVersion(self.version.clone()));
        }
        if let Some(at) = self.expiration.filter(|&at| at <= expected.now) {
            return Err(SiweError::Expired(at));
        }
        if let Some(at) = self.not_before.filter(|&at| at > expected.now) {
            return Err(SiweError::NotYetValid(at));
        }
        if (self.issued_at - expected.now).abs() > expected.skew {
            return Err(SiweError::IssuedAtOutOfRange(self.issued_at));
        }
        Ok(())
    }
}

/// Checks that `signature` (65 bytes, `personal_sign`) over `text` comes from `address`.
pub fn verify_signature(text: &str, signature: &[u8], address: Address) -> Result<(), SiweError> {
    let signature = Signature::try_from(signature).map_err(|_| SiweError::BadSignature)?;
    let signer = signature
        .recover_address_from_msg(text.as_bytes())
        .map_err(|_| SiweError::BadSignature)?;
    if signer != address {
        return Err(SiweError::WrongSigner { address, signer });
    }
    Ok(())
}

/// A sign-in message for `account` on `domain` (the API's host and port, as its nonce
/// endpoint names it), issued now: what a program signing in on its own behalf signs.
pub fn sign_in_message(
    domain: &str,
    account: Address,
    chain_id: u64,
    nonce: &str,
    statement: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{domain}{PREAMBLE}\n{account}\n\n{statement}\n\nURI: http://{domain}\nVersion: 1\n\
         Chain ID: {chain_id}\nNonce: {nonce}\nIssued At: {}",
        rfc3339(now)
    )
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-07T10:00:00Z`).
pub(crate) fn rfc3339(t: u64) -> String {
    let (days, rest) = ((t / 86_400) as i64, t % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// RFC 3339 (`2026-12-07T10:00:00Z`, `…:00.123+02:00`) to unix seconds.
fn timestamp(text: &str) -> Result<i64, SiweError> {
    let bad = || malformed(format!("`{text}` is not an RFC 3339 time"));
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, SiweError> {
        let s = text.get(range).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloy_primitives::{eip191_hash_message, keccak256};
    use k256::ecdsa::SigningKey;

    pub(crate) fn sign(key: &SigningKey, text: &str) -> Vec<u8> {
        let hash = eip191_hash_message(text.as_bytes());
        let (sig, recovery) = key.sign_prehash_recoverable(hash.as_slice()).unwrap();
        let mut out = sig.to_bytes().to_vec();
        out.push(27 + recovery.to_byte());
        out
    }

    pub(crate) fn address(key: &SigningKey) -> Address {
        let point = key.verifying_key().to_encoded_point(false);
        Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
    }

    fn message(addr: Address, extra: &str) -> String {
        format!(
            "api.example.org wants you to sign in with your Ethereum account:\n{addr}\n\n\
             Get an API key for OpenLedger.\n\nURI: https://api.example.org\nVersion: 1\n\
             Chain ID: 1612\nNonce: abcdef123456\nIssued At: 2026-12-07T10:00:00Z{extra}"
        )
    }

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            domain: "api.example.org",
            chain_id: 1612,
            now,
            skew: 300,
        }
    }

    #[test]
    fn a_programs_own_sign_in_message_parses_and_checks_now() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let text = sign_in_message("127.0.0.1:8080", address(&key), 1612, "n0nce1234", "Hi.");
        let parsed = Message::parse(&text).unwrap();
        assert_eq!(parsed.address, address(&key));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expected = Expected {
            domain: "127.0.0.1:8080",
            chain_id: 1612,
            now,
            skew: 60,
        };
        parsed.check(&expected).unwrap();
        verify_signature(&text, &sign(&key, &text), address(&key)).unwrap();
    }

    #[test]
    fn a_signed_message_is_accepted_and_every_tampering_refused() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let addr = address(&key);
        let text = message(addr, "\nExpiration Time: 2026-12-07T11:00:00.5+01:00");
        let m = Message::parse(&text).unwrap();
        let now = timestamp("2026-12-07T10:01:00Z").unwrap();
        assert_eq!(m.address, addr);
        assert_eq!(
            m.expiration,
            Some(timestamp("2026-12-07T10:00:00Z").unwrap())
        );
        assert_eq!(
            m.statement.as_deref(),
            Some("Get an API key for OpenLedger.")
        );
        // Expired an hour-offset earlier: 11:00+01:00 is 10:00Z.
        assert_eq!(m.check(&expected(now)), Err(SiweError::Expired(now - 60)));
        let text = message(addr, "");
        let m = Message::parse(&text).unwrap();
        m.check(&expected(now)).unwrap();
        verify_signature(&text, &sign(&key, &text), addr).unwrap();
        // Another key's signature, or the same signature on altered text, names the signer.
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let e = verify_signature(&text, &sign(&other, &text), addr).unwrap_err();
        assert_eq!(
            e,
            SiweError::WrongSigner {
                address: addr,
                signer: address(&other)
            }
        );
        let altered = text.replace("1612", "1613");
        assert!(verify_signature(&altered, &sign(&key, &text), addr).is_err());
        assert_eq!(
            verify_signature(&text, &[1, 2, 3], addr),
            Err(SiweError::BadSignature)
        );
        // Wrong domain, chain, and a stale message.
        let e = Message::parse(&text.replace("api.example.org wants", "evil.org wants")).unwrap();
        assert!(matches!(
            e.check(&expected(now)),
            Err(SiweError::WrongDomain { .. })
        ));
        let e = Message::parse(&altered).unwrap();
        assert_eq!(
            e.check(&expected(now)),
            Err(SiweError::WrongChain {
                expected: 1612,
                found: 1613
            })
        );
        assert!(matches!(
            m.check(&expected(now + 3600)),
            Err(SiweError::IssuedAtOutOfRange(_))
        ));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let addr = Address::repeat_byte(1);
        let good = message(addr, "");
        for (bad, needle) in [
            (good.replace(" wants you", " would like you"), "first line"),
            (good.replace(&addr.to_string(), "0x1234"), "not an address"),
            (good.replace("Nonce: abcdef123456", "Nonce: short"), "nonce"),
            (
                good.replace("2026-12-07T10:00:00Z", "yesterday"),
                "RFC 3339",
            ),
            (format!("{good}\nRequest ID: 7"), "unexpected line"),
            (good.replace("Version: 1\n", ""), "Version"),
        ] {
            match Message::parse(&bad) {
                Err(SiweError::Malformed(why)) => assert!(why.contains(needle), "{why}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        // Without a statement the URI follows the blank line.
        let plain = good.replace("Get an API key for OpenLedger.\n\n", "");
        assert_eq!(Message::parse(&plain).unwrap().statement, None);
        assert_eq!(timestamp("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(timestamp("2000-03-01T00:00:00Z").unwrap(), 951_868_800);
    }
}
