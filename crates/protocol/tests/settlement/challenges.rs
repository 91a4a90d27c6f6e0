//! Challenging batches and disputing receipts, rulings that slash the host, expiry, and the
//! gas of a batch of 256 receipts crediting 20 contributions each.

use super::*;

fn one(w: &mut World, agent: u64, host: Address, seq: u64) -> (Settled, Receipt) {
    let t = (1000, 1000);
    let r = receipt(consumer(0), agent, seq, t, max_fee(t), &[(0, 10_000)]);
    (w.settle(host, std::slice::from_ref(&r), &[C1]), r)
}

#[test]
fn challenges_need_a_validator_or_the_receipts_consumer_the_bond_and_an_open_window() {
    let mut w = world();
    let (b1, r1) = one(&mut w, AGENT_A, HOST, 1);
    let (b2, _) = one(&mut w, AGENT_A, HOST, 2);
    let bond = open(1);
    for id in [U256::ZERO, u(4)] {
        let err = w.fails(VALIDATOR, w.is, challenge_call(id), bond);
        assert_eq!(err, err!(UnknownBatch, id));
    }
    let err = w.fails(OUTSIDER, w.is, challenge_call(b1.id), bond);
    assert_eq!(err, err!(NotValidator, OUTSIDER));
    // A host stake does not make a validator.
    let err = w.fails(HOST2, w.is, challenge_call(b1.id), bond);
    assert_eq!(err, err!(NotValidator, HOST2));
    for sent in [U256::ZERO, open(2)] {
        let err = w.fails(VALIDATOR, w.is, challenge_call(b1.id), sent);
        assert_eq!(err, err!(WrongBond, bond, sent));
    }
    // A consumer disputes only its own receipts, and only ones in the batch.
    let dispute = |id: U256, r: &Receipt| {
        IS::disputeCall::new((id, r.clone(), vec![], h("overcharged"))).abi_encode()
    };
    let err = w.fails(consumer(1), w.is, dispute(b1.id, &r1), bond);
    assert_eq!(err, err!(NotReceiptConsumer, consumer(1), consumer(0)));
    let err = w.fails(consumer(0), w.is, dispute(b2.id, &r1), bond);
    assert_eq!(err, err!(ReceiptNotInBatch, b2.id));
    let mut altered = r1.clone();
    altered.fee -= 1;
    let err = w.fails(consumer(0), w.is, dispute(b1.id, &altered), bond);
    assert_eq!(err, err!(ReceiptNotInBatch, b1.id));
    let index = w.pay(
        consumer(0),
        w.is,
        IS::disputeCall::new((b1.id, r1, vec![], h("x"))),
        bond,
    );
    assert_eq!(index, U256::ZERO);

    // Only governance sets the bond.
    let set = |bond| IS::setChallengeBondCall::new((bond,));
    let err = w.fails(OUTSIDER, w.is, set(open(2)).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(OwnableUnauthorizedAccount, OUTSIDER));
    w.govern(w.is, set(open(2)));
    let err = w.fails(VALIDATOR, w.is, challenge_call(b2.id), bond);
    assert_eq!(err, err!(WrongBond, open(2), bond));
    w.govern(w.is, set(bond));
    // (The proposals took longer than the window: new batches for the rest.)
    let (b4, _) = one(&mut w, AGENT_A, HOST, 3);
    let held = w.evm.balance(w.is);
    // Several challenges per batch, one per account: no one can fill a batch's challenges to
    // keep an honest challenger out.
    assert_eq!(w.challenge(VALIDATOR, b4.id), U256::ZERO);
    let err = w.fails(VALIDATOR, w.is, challenge_call(b4.id), bond);
    assert_eq!(err, err!(AlreadyChallenged, b4.id, VALIDATOR));
    assert_eq!(w.challenge(VALIDATOR2, b4.id), u(1));
    assert_eq!(w.evm.balance(w.is) - held, open(2));
    let ch = w.view(w.is, IS::challengeOfCall::new((b4.id, u(1))));
    assert_eq!(
        (ch.challenger, U256::from(ch.bond), ch.open),
        (VALIDATOR2, bond, true)
    );
    let freezes = Staking::freezesOfCall::new((HOST, 2, U256::ZERO));
    assert_eq!(
        w.view(w.a.staking, freezes),
        u(3),
        "each open challenge holds the host's stake"
    );

    // The window's last second is still inside it; the next is not.
    let (b5, _) = one(&mut w, AGENT_A, HOST, 4);
    let (b6, _) = one(&mut w, AGENT_A, HOST, 5);
    w.evm.timestamp = w.batch(b5.id).settledAt + WINDOW;
    w.challenge(VALIDATOR2, b5.id);
    let closed_at = w.batch(b6.id).settledAt + WINDOW;
    w.evm.timestamp = closed_at + 1;
    let err = w.fails(VALIDATOR2, w.is, challenge_call(b6.id), bond);
    assert_eq!(err, err!(ChallengeWindowClosed, b6.id, closed_at));
}

#[test]
fn an_upheld_challenge_slashes_the_host_and_a_rejected_one_forfeits_the_bond() {
    let mut w = world();
    let total = w.evm.total_balance();
    let (bond, treasury) = (open(1), w.a.timelock);
    w.authorize(consumer(0), HOST2, open(1));
    let (b1, _) = one(&mut w, AGENT_A, HOST, 1);
    let (b2, _) = one(&mut w, AGENT_A, HOST, 2);
    let (b3, _) = one(&mut w, AGENT_HOST2, HOST2, 1);
    for b in [&b1, &b2, &b3] {
        w.challenge(VALIDATOR, b.id);
    }
    let resolve = |id: U256, upheld| IS::resolveChallengeCall::new((id, U256::ZERO, upheld));
    let err = w.fails(
        VALIDATOR,
        w.is,
        resolve(b1.id, true).abi_encode(),
        U256::ZERO,
    );
    assert_eq!(err, err!(OwnableUnauthorizedAccount, VALIDATOR));
    let err = w.govern_fails(resolve(u(9), true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, u(9), U256::ZERO));

    // Upheld: the host loses the host minimum (50), a fifth credited to the challenger with
    // its bond (a challenger that refuses OPEN cannot block the ruling) and the rest to the
    // treasury.
    let before = (
        w.evm.balance(VALIDATOR),
        w.evm.balance(treasury),
        w.claimable(treasury),
    );
    w.govern(w.is, resolve(b1.id, true));
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(w.evm.balance(treasury) - before.1, open(40));
    assert_eq!(w.claimable(VALIDATOR), bond + open(10));
    assert_eq!(w.claimable(treasury), before.2);
    let ch = w.view(w.is, IS::challengeOfCall::new((b1.id, U256::ZERO)));
    assert!(!ch.open);
    assert_eq!(w.batch(b1.id).state, 3, "Upheld");
    let err = w.govern_fails(resolve(b1.id, true).abi_encode());
    assert_eq!(err, err!(NoOpenChallenge, b1.id, U256::ZERO));
    // An upheld batch takes no more challenges: its fees are its consumers' again.
    let err = w.fails(VALIDATOR2, w.is, challenge_call(b1.id), bond);
    assert_eq!(err, err!(WrongBatchState, b1.id, 3));

    // Rejected: the bond is the treasury's, the host keeps its stake, and once the window is
    // past the batch is released as usual.
    let before = (w.evm.balance(VALIDATOR), w.claimable(treasury));
    w.govern(w.is, resolve(b2.id, false));
    assert_eq!(w.host_stake(HOST), open(70));
    assert_eq!(w.evm.balance(VALIDATOR), before.0);
    assert_eq!(
        w.claimable(VALIDATOR),
        bond + open(10),
        "only the upheld bond came back"
    );
    w.evm.advance(WINDOW);
    w.release(&b2);
    let fee = U256::from(max_fee((1000, 1000)));
    let host_share = bps(fee, SPLIT[3]);
    assert_eq!(w.claimable(HOST), host_share);
    assert!(w.claimable(treasury) - before.1 > bond);

    // A host staked at exactly the minimum loses it all and can no longer settle; asking to
    // unstake before the ruling does not save it, since unbonding stake is still slashable.
    let unstake = Staking::requestUnstakeCall::new((2, U256::ZERO, open(50)));
    w.evm.sol(HOST2, w.a.staking, unstake).unwrap();
    assert_eq!(w.host_stake(HOST2), U256::ZERO);
    let treasury_before = w.evm.balance(treasury);
    w.govern(w.is, resolve(b3.id, true));
    assert_eq!(w.evm.balance(treasury) - treasury_before, open(40));
    let slashable = Staking::slashableOfCall::new((HOST2, 2, U256::ZERO));
    assert_eq!(
        w.evm.sol(HOST2, w.a.staking, slashable).unwrap(),
        U256::ZERO
    );
    let r = [receipt(consumer(0), AGENT_HOST2, 2, (1000, 1000), 1, &[])];
    assert_eq!(w.settle_fails(HOST2, &r, &[]), err!(HostNotStaked, HOST2));
    assert_eq!(w.evm.total_balance(), total, "OPEN is conserved");
}

/// A challenge governance never rules on closes by default after the ruling period: the bond
/// returns and the host's frozen stake is released; a ruling then comes too late.
#[test]
fn an_unruled_batch_challenge_expires_and_releases_the_host() {
    let mut w = world();
    let (b1, _) = one(&mut w, AGENT_A, HOST, 1);
    w.challenge(VALIDATOR, b1.id);
    let opened = w.evm.timestamp - 1;
    let params = openledger_protocol::protocol_params::ProtocolParams::rulingPeriodCall {};
    let ruling = w.view(w.a.protocol_params, params);
    let ends_at = opened + ruling;
    let freezes = Staking::freezesOfCall::new((HOST, 2, U256::ZERO));
    assert_eq!(
        w.view(w.a.staking, freezes.clone()),
        u(1),
        "the host's stake is frozen"
    );
    let expire = IS::expireChallengeCall::new((b1.id, U256::ZERO)).abi_encode();
    let early = w.fails(OUTSIDER, w.is, expire.clone(), U256::ZERO);
    assert_eq!(early, err!(RulingPeriodOpen, b1.id, ends_at));
    w.evm.timestamp = ends_at + 1;
    let resolve = IS::resolveChallengeCall::new((b1.id, U256::ZERO, true)).abi_encode();
    let late = w.govern_fails(resolve);
    assert_eq!(late, err!(RulingPeriodOver, b1.id, ends_at));
    let claimable = w.claimable(VALIDATOR);
    w.ok(
        OUTSIDER,
        w.is,
        IS::expireChallengeCall::new((b1.id, U256::ZERO)),
    );
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
    assert_eq!(again, err!(NoOpenChallenge, b1.id, U256::ZERO));
    // With no challenge open the batch is released.
    w.release(&b1);
}
