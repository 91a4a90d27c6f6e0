//! Challenging batches, rulings that slash the host, and the gas of a batch of 100 receipts.

use super::*;

#[test]
fn challenges_need_a_validator_the_bond_and_an_open_window() {
    let mut w = world();
    w.deposit(consumer(0), open(1));
    let [b1, b2, b3] = [AGENT_A, AGENT_B, AGENT_A]
        .map(|agent| w.settle_ok(HOST, &[receipt(consumer(0), agent, 1000)]).0);
    let bond = open(1);
    for id in [U256::ZERO, u(4)] {
        let err = w.fails(VALIDATOR, w.is, challenge(id), bond);
        assert_eq!(err, err!(UnknownBatch, id));
    }
    let err = w.fails(OUTSIDER, w.is, challenge(b1), bond);
    assert_eq!(err, err!(NotValidator, OUTSIDER));
    // A host stake does not make a validator.
    let err = w.fails(HOST2, w.is, challenge(b1), bond);
    assert_eq!(err, err!(NotValidator, HOST2));
    for sent in [U256::ZERO, open(2)] {
        let err = w.fails(VALIDATOR, w.is, challenge(b1), sent);
        assert_eq!(err, err!(WrongBond, bond, sent));
    }

    // Only governance sets the bond.
    let set = |bond| IS::setChallengeBondCall::new((bond,));
    let err = w.fails(OUTSIDER, w.is, set(open(2)).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(OwnableUnauthorizedAccount, OUTSIDER));
    w.govern(w.is, set(open(2)));
    let err = w.fails(VALIDATOR, w.is, challenge(b1), bond);
    assert_eq!(err, err!(WrongBond, open(2), bond));
    w.govern(w.is, set(bond));

    let held = w.evm.balance(w.is);
    w.challenge(VALIDATOR, b2);
    assert_eq!(w.evm.balance(w.is) - held, bond);
    let ch = w.view(w.is, IS::challengeOfCall::new((b2,)));
    assert_eq!((ch.challenger, U256::from(ch.bond)), (VALIDATOR, bond));
    let err = w.fails(VALIDATOR2, w.is, challenge(b2), bond);
    assert_eq!(err, err!(AlreadyChallenged, b2));

    // The window's last second is still inside it; the next is not.
    w.evm.timestamp = w.batch(b1).submittedAt + WINDOW;
    w.challenge(VALIDATOR2, b1);
    let closed_at = w.batch(b3).submittedAt + WINDOW;
    w.evm.timestamp = closed_at + 1;
    let err = w.fails(VALIDATOR2, w.is, challenge(b3), bond);
    assert_eq!(err, err!(ChallengeWindowClosed, b3, closed_at));
}

#[test]
fn an_upheld_challenge_slashes_the_host_and_a_rejected_one_forfeits_the_bond() {
    let mut w = world();
    let total = w.evm.total_balance();
    let (bond, treasury) = (open(1), w.a.timelock);
    w.deposit(consumer(0), open(1));
    let (b1, _) = w.settle_ok(HOST, &[receipt(consumer(0), AGENT_A, 1000)]);
    let (b2, _) = w.settle_ok(HOST, &[receipt(consumer(0), AGENT_B, 1000)]);
    let (b3, _) = w.settle_ok(HOST2, &[receipt(consumer(0), AGENT_HOST2, 1000)]);
    for b in [b1, b2, b3] {
        w.challenge(VALIDATOR, b);
    }
    let resolve = |id: U256, upheld| IS::resolveChallengeCall::new((id, upheld));
    let err = w.fails(VALIDATOR, w.is, resolve(b1, true).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(OwnableUnauthorizedAccount, VALIDATOR));
    let err = w.govern_fails(resolve(u(9), true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, u(9)));

    // Upheld: the host loses the host minimum (50), a fifth credited to the challenger with
    // its bond (a challenger that refuses OPEN cannot block the ruling) and the rest to the
    // treasury.
    let before = (
        w.evm.balance(VALIDATOR),
        w.evm.balance(treasury),
        w.claimable(treasury),
    );
    w.govern(w.is, resolve(b1, true));
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(w.evm.balance(treasury) - before.1, open(40));
    assert_eq!(w.claimable(VALIDATOR), bond + open(10));
    assert_eq!(w.claimable(treasury), before.2);
    let ch = w.view(w.is, IS::challengeOfCall::new((b1,)));
    assert_eq!(ch.challenger, Address::ZERO);
    assert!(w.batch(b1).slashed);
    let err = w.govern_fails(resolve(b1, true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, b1));
    // One slash per batch: it cannot be challenged again.
    let err = w.fails(VALIDATOR2, w.is, challenge(b1), bond);
    assert_eq!(err, err!(AlreadySlashed, b1));

    // Rejected: the bond is the treasury's, and the host keeps its stake.
    let before = (w.evm.balance(VALIDATOR), w.claimable(treasury));
    w.govern(w.is, resolve(b2, false));
    assert_eq!(w.claimable(treasury) - before.1, bond);
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(
        w.claimable(VALIDATOR),
        bond + open(10),
        "only the upheld bond came back"
    );

    // A host staked at exactly the minimum loses it all and can no longer settle; asking to
    // unstake before the ruling does not save it, since unbonding stake is still slashable.
    let unstake = Staking::requestUnstakeCall::new((2, U256::ZERO, open(50)));
    w.evm.sol(HOST2, w.a.staking, unstake).unwrap();
    assert_eq!(w.host_stake(HOST2), U256::ZERO);
    let treasury_before = w.evm.balance(treasury);
    w.govern(w.is, resolve(b3, true));
    assert_eq!(w.evm.balance(treasury) - treasury_before, open(40));
    let slashable = Staking::slashableOfCall::new((HOST2, 2, U256::ZERO));
    assert_eq!(
        w.evm.sol(HOST2, w.a.staking, slashable).unwrap(),
        U256::ZERO
    );
    let r = [receipt(consumer(0), AGENT_HOST2, 1000)];
    let (c, k) = w.totals(u(1000));
    let err = w.settle_fails(HOST2, &r, spread(c, &[CONTRIB]), spread(k, &[CURATOR]));
    assert_eq!(err, err!(HostNotStaked, HOST2));
    assert_eq!(w.evm.total_balance(), total, "OPEN is conserved");
}

/// A challenge governance never rules on closes by default after the ruling period: the bond
/// returns and the host's frozen stake is released; a ruling then comes too late.
#[test]
fn an_unruled_batch_challenge_expires_and_releases_the_host() {
    let mut w = world();
    w.deposit(consumer(0), open(1));
    let (b1, _) = w.settle_ok(HOST, &[receipt(consumer(0), AGENT_A, 1000)]);
    w.challenge(VALIDATOR, b1);
    let opened = w.evm.timestamp - 1;
    let params = openledger_protocol::ProtocolParams::rulingPeriodCall {};
    let ruling = w.view(w.a.protocol_params, params);
    let ends_at = opened + ruling;
    let freezes = Staking::freezesOfCall::new((HOST, 2, U256::ZERO));
    assert_eq!(
        w.view(w.a.staking, freezes.clone()),
        u(1),
        "the host's stake is frozen"
    );
    let expire = IS::expireChallengeCall::new((b1,)).abi_encode();
    let early = w.fails(OUTSIDER, w.is, expire.clone(), U256::ZERO);
    assert_eq!(early, err!(RulingPeriodOpen, b1, ends_at));
    w.evm.timestamp = ends_at + 1;
    let late = w.govern_fails(IS::resolveChallengeCall::new((b1, true)).abi_encode());
    assert_eq!(late, err!(RulingPeriodOver, b1, ends_at));
    let claimable = w.claimable(VALIDATOR);
    w.ok(OUTSIDER, w.is, IS::expireChallengeCall::new((b1,)));
    assert_eq!(
        w.claimable(VALIDATOR),
        claimable + open(1),
        "the bond comes back"
    );
    assert_eq!(
        w.view(w.a.staking, freezes),
        U256::ZERO,
        "the host's stake is released"
    );
    let again = w.fails(OUTSIDER, w.is, expire, U256::ZERO);
    assert_eq!(again, err!(NoOpenChallenge, b1));
}

#[test]
fn settling_100_receipts_fits_the_gas_budget() {
    let mut w = world();
    for i in 0..10 {
        w.deposit(consumer(i), open(1));
    }
    let r: Vec<Receipt> = (0..100u128)
        .map(|i| receipt(consumer(i as u8 / 10), AGENT_A, 1_000_003 + 7919 * i))
        .collect();
    let contributors: Vec<Address> = (0..20)
        .map(|i| Address::left_padding_from(&[0xa5, i]))
        .collect();
    let (c, k) = w.totals(fees(&r));
    let (cp, kp) = (
        spread(c, &contributors),
        spread(k, &[CURATOR, CURATOR2, CURATOR3]),
    );
    let (id, logs) = w.settle(HOST, &r, cp, kp);
    let gas = w.evm.last_gas;
    println!(
        "settle: 100 receipts (10 consumers, 1 agent, 20 contributor and 3 curator payouts) \
         used {gas} gas, {} per receipt",
        gas / 100
    );
    assert!(gas < 2_000_000, "settle of 100 receipts used {gas} gas");
    assert_eq!(w.batch(id).receiptsRoot, merkle_root(&r));
    // One log per inference, one per credited account (20 + 3 + owner, host, treasury) and
    // the batch's.
    assert_eq!(logs.len(), 100 + 26 + 1);
}
