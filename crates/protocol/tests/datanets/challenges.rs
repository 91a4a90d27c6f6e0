//! Challenging accepted contributions: bonds, windows, rulings, slashing of approvers, and fee release.

use super::*;

#[test]
fn challenges_need_an_accepted_contribution_the_bond_and_an_open_window() {
    let mut w = world();
    let (bond, window) = (w.config.challenge_bond, w.config.challenge_window_secs);
    let (datanet, id) = w.accepted_contribution(1, open(1));
    let [expiring, challenged, pending, rejected] =
        [2, 3, 4, 5].map(|n| w.contribute(CONTRIBUTOR, datanet, n, open(1)).unwrap());
    w.review(CURATORS[0], expiring, true).unwrap();
    w.review(CURATORS[0], challenged, true).unwrap();
    w.review(CURATORS[0], rejected, false).unwrap();
    for (c, status) in [(pending, PENDING), (rejected, REJECTED)] {
        assert_eq!(w.challenge(c, bond), Err(err!(NotAccepted(c, status))));
    }
    let unknown = err!(UnknownContribution(uint(77)));
    assert_eq!(w.challenge(uint(77), bond), Err(unknown));
    let before = w.evm.balance(CHALLENGER);
    for sent in [bond - uint(1), bond + uint(1), U256::ZERO] {
        assert_eq!(w.challenge(id, sent), Err(err!(WrongBond(bond, sent))));
    }
    assert_eq!(w.evm.balance(CHALLENGER), before);
    w.challenge(challenged, bond).unwrap();
    let again = err!(AlreadyChallenged(challenged));
    assert_eq!(w.challenge(challenged, bond), Err(again));

    // The window's last second still counts; the next one does not.
    let closes_at = w.contribution(id).decidedAt + window;
    w.evm.timestamp = closes_at;
    w.challenge(id, bond).unwrap();
    let open_challenge = w.view(Reg::challengeOfCall::new((id,)));
    let expected = Reg::Challenge::from((CHALLENGER, bond.to(), closes_at));
    assert_eq!(open_challenge, expected);
    let closed_at = w.contribution(expiring).decidedAt + window;
    w.evm.timestamp = closed_at + 1;
    let closed = err!(ChallengeWindowClosed(expiring, closed_at));
    assert_eq!(w.challenge(expiring, bond), Err(closed));
    assert_eq!(w.evm.balance(CHALLENGER), before - bond * uint(2));
    let held = w.evm.balance(w.a.datanet_registry);
    assert_eq!(held, open(5) + bond * uint(2));
}

#[test]
fn an_upheld_challenge_poisons_forfeits_the_deposit_and_slashes_frozen_approvers() {
    let mut w = world();
    let total = w.evm.total_balance();
    let (fee, bond, penalty) = (open(3), w.config.challenge_bond, w.config.min_stakes[1]);
    let [c1, c2, c3, c4, c5] = CURATORS;
    let datanet = w.create(3, fee).unwrap();
    w.curate(&CURATORS, datanet);
    // c2 staked more than the penalty and keeps the rest. c3 staked more too, and asked long
    // before to take the extra out: that withdrawal comes due while the challenge is open.
    w.stake(c2, CURATOR, datanet, open(15));
    w.stake(c3, CURATOR, datanet, penalty);
    let early = Staking::requestUnstakeCall::new((CURATOR, datanet, penalty));
    let leaving = w.evm.sol(c3, w.a.staking, early).unwrap();
    w.evm.advance(w.config.unbonding_delay_secs - 100);
    let poison = w.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
    for (curator, approve) in [(c1, true), (c5, false), (c2, true), (c3, true)] {
        w.review(curator, poison, approve).unwrap();
    }
    let good = w.contribute(CONTRIBUTOR, datanet, 2, fee).unwrap();
    for c in [c1, c2, c4] {
        w.review(c, good, true).unwrap();
    }
    let levels = tree(vec![leaf(poison, content(1)), leaf(good, content(2))]);
    let version = w.publish(OWNER, datanet, levels[1][0], 2).unwrap();
    let contains = |id, index| Reg::containsCall::new((version, id, proof(&levels, index)));
    assert!(w.view(contains(poison, 0)));
    w.challenge(poison, bond).unwrap();
    // c1 asks to leave once challenged, but unbonding stake is still at risk.
    let unstake = Staking::requestUnstakeCall::new((CURATOR, datanet, penalty));
    w.evm.sol(c1, w.a.staking, unstake).unwrap();
    // c3's withdrawal is due, but the challenge froze the stake until the ruling.
    w.evm.advance(200);
    let withdraw = Staking::withdrawCall::new((leaving,));
    let Err(frozen) = w.evm.sol(c3, w.a.staking, withdraw.clone()) else {
        panic!("a frozen stake was withdrawn");
    };
    let expected = Staking::StakeFrozen {
        staker: c3,
        role: CURATOR,
        subject: datanet,
    };
    assert_eq!(frozen, Bytes::from(expected.abi_encode()));
    let freezes = Staking::freezesOfCall::new((c3, CURATOR, datanet));
    assert_eq!(
        w.evm.sol(c3, w.a.staking, freezes.clone()).unwrap(),
        uint(1)
    );
    let challenger_before = w.evm.balance(CHALLENGER);
    let treasury_before = w.evm.balance(w.a.timelock);
    let resolve = Reg::resolveChallengeCall::new((poison, true));
    w.govern(resolve).unwrap();

    let c = w.contribution(poison);
    let accepted = w.datanet(datanet).accepted;
    assert_eq!((c.status, c.fee, accepted), (POISONED, 0, 1));
    let bad = err!(BadVersionCount(2, 1));
    assert_eq!(w.publish(OWNER, datanet, content(51), 2), Err(bad));
    // The version still holds its leaf, but `contains` admits only data that stands.
    assert!(
        !w.view(contains(poison, 0)),
        "a poisoned contribution is in no version"
    );
    assert!(w.view(contains(good, 1)));
    // Three approvers lose the curator minimum each. The challenger's share of each slash
    // (20%) comes to the registry; the challenger gets its bond and at most half of the
    // forfeited deposit, and the treasury the deposit and the rest.
    let share = penalty * U256::from(w.config.challenger_share_bps) / uint(10_000);
    assert_eq!(share, open(2));
    let reward = (share * uint(3)).min(fee / uint(2));
    assert_eq!(reward, fee / uint(2));
    assert_eq!(w.owed(CHALLENGER), bond + reward);
    assert_eq!(w.owed(w.a.timelock), fee + share * uint(3) - reward);
    assert_eq!(w.owed(CONTRIBUTOR), U256::ZERO);
    assert_eq!(w.evm.balance(CHALLENGER), challenger_before);
    let treasury_now = treasury_before + (penalty - share) * uint(3);
    assert_eq!(w.evm.balance(w.a.timelock), treasury_now);
    let stakes = CURATORS.map(|c| w.stake_of(c, datanet));
    assert_eq!(stakes, [U256::ZERO, open(15), U256::ZERO, penalty, penalty]);
    let slashable = Staking::slashableOfCall::new((c1, CURATOR, datanet));
    let unbonding_left = w.evm.sol(c1, w.a.staking, slashable).unwrap();
    assert_eq!(
        unbonding_left,
        U256::ZERO,
        "the slash took c1's unbonding stake"
    );
    // The ruling released the freeze: c3's earlier withdrawal pays out now.
    assert_eq!(w.evm.sol(c3, w.a.staking, freezes).unwrap(), U256::ZERO);
    let c3_before = w.evm.balance(c3);
    w.evm.sol(c3, w.a.staking, withdraw).unwrap();
    assert_eq!(w.evm.balance(c3), c3_before + penalty);
    let open_challenge = w.view(Reg::challengeOfCall::new((poison,)));
    assert_eq!(open_challenge.challenger, Address::ZERO);
    let poisoned = err!(NotAccepted(poison, POISONED));
    assert_eq!(w.challenge(poison, bond), Err(poisoned));
    w.claim(CHALLENGER).unwrap();
    assert_eq!(w.evm.balance(CHALLENGER), challenger_before + bond + reward);
    assert_eq!(w.evm.total_balance(), total, "OPEN is conserved");
}

/// The attack: a contributor poisons its own datanet entry and challenges it from a second
/// address, hoping the challenger's reward beats the deposit it forfeits. It never does.
#[test]
fn poisoning_and_challenging_ones_own_data_loses_money() {
    let mut w = world();
    let (fee, bond) = (open(3), w.config.challenge_bond);
    let [c1, c2, c3, _, _] = CURATORS;
    let datanet = w.create(3, fee).unwrap();
    w.curate(&CURATORS, datanet);
    let second_address = CHALLENGER;
    let start = w.evm.balance(CONTRIBUTOR) + w.evm.balance(second_address);
    let poison = w.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
    for curator in [c1, c2, c3] {
        w.review(curator, poison, true).unwrap();
    }
    w.challenge(poison, bond).unwrap();
    w.govern(Reg::resolveChallengeCall::new((poison, true)))
        .unwrap();
    for account in [CONTRIBUTOR, second_address] {
        if !w.owed(account).is_zero() {
            w.claim(account).unwrap();
        }
    }
    let end = w.evm.balance(CONTRIBUTOR) + w.evm.balance(second_address);
    // The balance sheet: the deposit is gone, the bond came back, the reward is at most half
    // the deposit (three slashes' shares, 6 OPEN, would have paid twice the deposit).
    let lost = start - end;
    assert_eq!(
        lost,
        fee - fee / uint(2),
        "lost exactly half the deposit (gas is free here)"
    );
    assert!(lost > U256::ZERO);
}

/// A challenge governance never rules on closes by default after the ruling period: not
/// upheld, the bond returned, the approvers' stakes released; a ruling then comes too late.
#[test]
fn an_unruled_challenge_expires_with_its_bond_returned() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let ruling = w.config.ruling_period_secs;
    let (datanet, id) = w.accepted_contribution(1, open(1));
    w.challenge(id, bond).unwrap();
    let opened = w.evm.timestamp - 1;
    let ends_at = opened + ruling;
    let early = err!(RulingPeriodOpen(id, ends_at));
    let expire = Reg::expireChallengeCall::new((id,));
    assert_eq!(w.act(OUTSIDER, expire.clone()), Err(early));
    w.evm.timestamp = ends_at + 1;
    let late = err!(RulingPeriodOver(id, ends_at));
    let ruled = w.govern(Reg::resolveChallengeCall::new((id, true)));
    assert_eq!(error(ruled.unwrap_err()), late);
    w.act(OUTSIDER, expire.clone()).unwrap();
    assert_eq!(w.owed(CHALLENGER), bond);
    assert_eq!(w.contribution(id).status, ACCEPTED);
    let freezes = Staking::freezesOfCall::new((CURATORS[0], CURATOR, datanet));
    assert_eq!(
        w.evm.sol(OUTSIDER, w.a.staking, freezes).unwrap(),
        U256::ZERO
    );
    assert_eq!(w.act(OUTSIDER, expire), Err(err!(NoOpenChallenge(id))));
}

#[test]
fn a_rejected_challenge_forfeits_the_bond_to_the_treasury() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let (datanet, id) = w.accepted_contribution(2, open(1));
    let stakes = CURATORS.map(|c| w.stake_of(c, datanet));
    w.challenge(id, bond).unwrap();
    let resolve = |upheld| Reg::resolveChallengeCall::new((id, upheld));
    w.govern(resolve(false)).unwrap();
    assert_eq!(w.owed(w.a.timelock), bond);
    assert_eq!(w.owed(CHALLENGER), U256::ZERO);
    let (c, accepted) = (w.contribution(id), w.datanet(datanet).accepted);
    assert_eq!((c.status, c.fee, accepted), (ACCEPTED, OPEN, 1));
    assert_eq!(CURATORS.map(|c| w.stake_of(c, datanet)), stakes);
    let none = err!(NoOpenChallenge(id));
    assert_eq!(error(w.govern(resolve(true)).unwrap_err()), none);
    assert_eq!(w.contribution(id).status, ACCEPTED);

    let treasury = w.evm.balance(w.a.timelock);
    w.claim(w.a.timelock).unwrap();
    assert_eq!(w.evm.balance(w.a.timelock), treasury + bond);
    // Still inside the window, so someone may challenge again.
    w.challenge(id, bond).unwrap();
}

#[test]
fn only_governance_rules_on_challenges_and_sets_the_bond() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let (_, id) = w.accepted_contribution(1, open(1));
    w.challenge(id, bond).unwrap();
    for who in [OUTSIDER, OWNER, DEPLOYER] {
        let unauthorized = err!(OwnableUnauthorizedAccount(who));
        let resolve = Reg::resolveChallengeCall::new((id, true));
        assert_eq!(w.act(who, resolve), Err(unauthorized.clone()));
        let set = Reg::setChallengeBondCall::new((U256::ZERO,));
        assert_eq!(w.act(who, set), Err(unauthorized));
    }
    assert_eq!(w.contribution(id).status, ACCEPTED);
    assert_eq!(w.view(Reg::challengeBondCall {}), bond);

    w.govern(Reg::setChallengeBondCall::new((open(5),)))
        .unwrap();
    assert_eq!(w.view(Reg::challengeBondCall {}), open(5));
    let (_, fresh) = w.accepted_contribution(1, open(1));
    let wrong = err!(WrongBond(open(5), bond));
    assert_eq!(w.challenge(fresh, bond), Err(wrong));
    w.challenge(fresh, open(5)).unwrap();
}

#[test]
fn the_fee_returns_to_the_contributor_after_an_unchallenged_window() {
    let mut w = world();
    let (fee, window) = (open(2), w.config.challenge_window_secs);
    let (datanet, id) = w.accepted_contribution(1, fee);
    let challenged = w.contribute(CONTRIBUTOR, datanet, 2, fee).unwrap();
    w.review(CURATORS[0], challenged, true).unwrap();
    let pending = w.contribute(CONTRIBUTOR, datanet, 3, fee).unwrap();
    let not_accepted = err!(NotAccepted(pending, PENDING));
    assert_eq!(w.release(pending), Err(not_accepted));
    let unknown = err!(UnknownContribution(uint(99)));
    assert_eq!(w.release(uint(99)), Err(unknown));
    w.challenge(challenged, w.config.challenge_bond).unwrap();

    let closes_at = w.contribution(id).decidedAt + window;
    w.evm.timestamp = closes_at;
    let window_open = err!(ChallengeWindowOpen(id, closes_at));
    assert_eq!(w.release(id), Err(window_open));
    assert_eq!(w.contribution(id).fee, fee.to::<u128>());
    w.evm.timestamp = w.contribution(challenged).decidedAt + window + 1;
    w.release(id).unwrap();
    // The approver is paid its share now that the acceptance stands; the rest returns.
    let reviewers = fee / uint(5);
    assert_eq!(
        (w.contribution(id).fee, w.owed(CONTRIBUTOR)),
        (0, fee - reviewers)
    );
    assert_eq!(w.owed(CURATORS[0]), reviewers);
    assert_eq!(w.release(id), Err(err!(FeeAlreadyReleased(id))));
    // An open challenge holds the fee past the window until governance rules.
    let held = err!(AlreadyChallenged(challenged));
    assert_eq!(w.release(challenged), Err(held));
    assert_eq!(w.contribution(challenged).fee, fee.to::<u128>());
    let before = w.evm.balance(CONTRIBUTOR);
    w.claim(CONTRIBUTOR).unwrap();
    assert_eq!(w.evm.balance(CONTRIBUTOR), before + fee - reviewers);
    assert_eq!(w.owed(CONTRIBUTOR), U256::ZERO);
}

/// Creation code of a contract that forwards any call with calldata to `target` (passing the
/// value on and bubbling the result) and refuses plain OPEN transfers.
fn refuser(target: Address) -> Bytes {
    // Runtime: no calldata → revert; else copy it, CALL target with it and the value, and
    // return or revert with what came back. The init code copies the 0x37 runtime bytes out.
    let runtime_head = hex!("3615603357365f5f375f5f365f3473");
    let runtime_tail = hex!("5af13d5f5f3e602f573d5ffd5b3d5ff35b5f5ffd");
    let init = hex!("60378060095f395ff3");
    let runtime = [&runtime_head[..], target.as_slice(), &runtime_tail].concat();
    assert_eq!(runtime.len(), 0x37);
    [&init[..], &runtime].concat().into()
}

#[test]
fn a_challenger_that_refuses_open_cannot_block_an_upheld_ruling() {
    let mut w = world();
    let (fee, bond, penalty) = (open(3), w.config.challenge_bond, w.config.min_stakes[1]);
    let (_, id) = w.accepted_contribution(2, fee);
    let registry = w.a.datanet_registry;
    let challenger = w.evm.deploy(OUTSIDER, refuser(registry)).unwrap();
    let challenge = Reg::challengeCall::new((id, content(7))).abi_encode();
    (w.evm.send(OUTSIDER, challenger, challenge.into(), bond)).unwrap();
    let open_challenge = w.view(Reg::challengeOfCall::new((id,)));
    assert_eq!(open_challenge.challenger, challenger);
    let treasury = w.evm.balance(w.a.timelock);

    let resolve = Reg::resolveChallengeCall::new((id, true));
    w.govern(resolve).unwrap();
    assert_eq!(w.contribution(id).status, POISONED);
    // Its reward (the slashes' shares, at most half the deposit) is credited with the bond,
    // like every payment.
    let share = penalty * U256::from(w.config.challenger_share_bps) / uint(10_000);
    let reward = (share * uint(2)).min(fee / uint(2));
    assert_eq!(w.owed(challenger), bond + reward);
    assert_eq!(w.evm.balance(challenger), U256::ZERO);
    let treasury_now = treasury + (penalty - share) * uint(2);
    assert_eq!(w.evm.balance(w.a.timelock), treasury_now);
    // Only Staking may send OPEN unasked, or it would be stuck here for good.
    let stray = w.evm.send(OUTSIDER, registry, Bytes::new(), open(1));
    let refused = err!(UnexpectedPayment(OUTSIDER));
    assert_eq!(stray.map(|_| ()).map_err(error), Err(refused));
}

#[test]
fn a_rejected_challenge_gives_back_the_window_it_held_open() {
    let mut w = world();
    let bond = w.config.challenge_bond;
    let window = w.config.challenge_window_secs;
    let (_, id) = w.accepted_contribution(1, open(1));
    let decided = w.contribution(id).decidedAt;
    // A challenge with a tenth of the window left, then ruled out after the window, late in
    // the ruling period.
    w.evm.timestamp = decided + window - window / 10;
    w.challenge(id, bond).unwrap();
    let opened = w.evm.timestamp - 1;
    w.evm.advance(w.config.ruling_period_secs - 200);
    w.govern(Reg::resolveChallengeCall::new((id, false)))
        .unwrap();
    let ruled = w.evm.timestamp - 1;
    // The window moved by exactly as long as the challenge was open.
    assert_eq!(w.contribution(id).decidedAt, decided + (ruled - opened));
    let closes_at = decided + (ruled - opened) + window;
    // A second challenge with 100 seconds left: after its rejection 100 seconds remain.
    w.evm.timestamp = closes_at - 100;
    w.challenge(id, bond).unwrap();
    w.govern(Reg::resolveChallengeCall::new((id, false)))
        .unwrap();
    let ruled = w.evm.timestamp - 1;
    let closes_at = w.contribution(id).decidedAt + window;
    assert_eq!(closes_at, ruled + 100);
    assert_eq!(w.release(id), Err(err!(ChallengeWindowOpen(id, closes_at))));
    w.evm.timestamp = closes_at + 1;
    let closed = err!(ChallengeWindowClosed(id, closes_at));
    assert_eq!(w.challenge(id, bond), Err(closed));
    w.release(id).unwrap();
}
