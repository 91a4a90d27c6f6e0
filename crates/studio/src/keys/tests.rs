use super::*;
use crate::siwe::{
    rfc3339,
    tests::{address, sign},
};
use k256::ecdsa::SigningKey;

fn message(domain: &str, account: Address, nonce: &str) -> String {
    format!(
        "{domain} wants you to sign in with your Ethereum account:\n{account}\n\n\
         Get an API key.\n\nURI: http://{domain}\nVersion: 1\nChain ID: 1612\n\
         Nonce: {nonce}\nIssued At: {}",
        rfc3339(now())
    )
}

fn keys() -> (tempfile::TempDir, Arc<Keys>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("studio.redb")).unwrap());
    (dir, Keys::new(store, "127.0.0.1:8080", 1612))
}

#[test]
fn an_account_signs_in_once_per_nonce_and_its_key_works_until_revoked() {
    let (_dir, keys) = keys();
    let wallet = SigningKey::from_slice(&[3u8; 32]).unwrap();
    let account = address(&wallet);
    let nonce = keys.nonce().unwrap();
    let text = message("127.0.0.1:8080", account, &nonce);
    let limits = Limits {
        label: Some("laptop".into()),
        spend_limit: Some(5_000),
        rate_per_minute: None,
    };
    let (row, secret) = keys.login(&text, &sign(&wallet, &text), limits).unwrap();
    assert_eq!(
        (row.account, row.label.as_str(), row.spend_limit),
        (account, "laptop", Some(5_000))
    );
    assert!(secret.starts_with(KEY_PREFIX));
    let consumer = keys.authenticate(&secret).unwrap();
    assert_eq!(
        consumer,
        Consumer {
            account,
            key_id: row.id
        }
    );
    // The secret itself is nowhere in the store: only its hash finds the row.
    assert!(keys.store.key(&hash(&secret)).unwrap().is_some());
    assert!(matches!(
        keys.authenticate("olk_0000"),
        Err(KeyError::Unknown)
    ));
    assert!(matches!(
        keys.authenticate("sk-anything"),
        Err(KeyError::Unknown)
    ));
    // The same signed message again: its nonce is spent.
    let again = keys.login(&text, &sign(&wallet, &text), Limits::default());
    assert!(matches!(again, Err(KeyError::Nonce)));
    // A nonce this process did not issue (made up, or another server's) is refused.
    let (_other_dir, other) = self::keys();
    let foreign = other.nonce().unwrap();
    let mut forged = keys.nonce().unwrap();
    forged.replace_range(..2, if forged.starts_with("ff") { "00" } else { "ff" });
    for nonce in [foreign, forged, "0123456789abcdef".into()] {
        let text = message("127.0.0.1:8080", account, &nonce);
        let e = keys.login(&text, &sign(&wallet, &text), Limits::default());
        assert!(matches!(e, Err(KeyError::Nonce)), "{nonce}: {e:?}");
    }
    // A message for another server, or signed by someone else, is refused, and keeps its
    // nonce for a corrected retry.
    let nonce = keys.nonce().unwrap();
    let elsewhere = message("evil.example", account, &nonce);
    let e = keys.login(&elsewhere, &sign(&wallet, &elsewhere), Limits::default());
    assert!(matches!(
        e,
        Err(KeyError::SignIn(SiweError::WrongDomain { .. }))
    ));
    let text = message("127.0.0.1:8080", account, &nonce);
    let thief = SigningKey::from_slice(&[4u8; 32]).unwrap();
    let e = keys.login(&text, &sign(&thief, &text), Limits::default());
    assert!(matches!(
        e,
        Err(KeyError::SignIn(SiweError::WrongSigner { .. }))
    ));
    let (second, other_secret) = keys
        .login(&text, &sign(&wallet, &text), Limits::default())
        .unwrap();
    assert_eq!(keys.list(account).unwrap().len(), 2);
    // Another account cannot revoke it; its owner can, and it stops working at once.
    assert!(matches!(
        keys.revoke(address(&thief), second.id),
        Err(KeyError::NoSuchKey(_))
    ));
    let revoked = keys.revoke(account, second.id).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        keys.authenticate(&other_secret),
        Err(KeyError::Revoked)
    ));
    assert!(
        keys.authenticate(&secret).is_ok(),
        "the other key still works"
    );
}

#[test]
fn a_key_over_its_rate_is_refused_until_the_minute_turns() {
    let (_dir, keys) = keys();
    let limits = Limits {
        rate_per_minute: Some(2),
        ..Limits::default()
    };
    let (_, secret) = keys.create(Address::repeat_byte(9), limits).unwrap();
    keys.authenticate(&secret).unwrap();
    keys.authenticate(&secret).unwrap();
    assert!(matches!(
        keys.authenticate(&secret),
        Err(KeyError::RateLimited(2))
    ));
    // The window is a minute long: move it back as if a minute had passed.
    keys.windows
        .lock()
        .values_mut()
        .for_each(|w| w.started -= 60);
    keys.authenticate(&secret).unwrap();
    let long = Limits {
        label: Some("x".repeat(65)),
        ..Limits::default()
    };
    assert!(matches!(
        keys.create(Address::ZERO, long),
        Err(KeyError::LongLabel)
    ));
}
