//! Credit, settling batches and their refusals, the release of the escrow to every role, and
//! the receipts root.

use super::*;

#[test]
fn credit_is_deposited_and_withdrawn_after_one_challenge_window() {
    let mut w = world();
    let (c0, c1) = (consumer(9), consumer(8));
    let deposit = IS::depositCall {}.abi_encode();
    assert_eq!(w.fails(c0, w.is, deposit, U256::ZERO), err!(ZeroAmount));
    // Plain OPEN sent unasked would be stuck: only Staking may (a challenger's share).
    let stray = w.fails(c0, w.is, Vec::new(), open(1));
    assert_eq!(stray, err!(UnexpectedPayment, c0));
    let held = w.evm.balance(w.is);
    w.deposit(c0, open(10));
    w.deposit(c0, open(2));
    assert_eq!(w.credit(c0), open(12));
    assert_eq!(w.evm.balance(w.is), held + open(12));

    let withdraw = IS::withdrawCreditCall {}.abi_encode();
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    let request = |amount: u128| IS::requestCreditWithdrawalCall::new((amount,));
    let err = w.fails(c0, w.is, request(0).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(ZeroAmount));
    // A new request replaces the old one, clock and all.
    w.ok(c0, w.is, request(OPEN));
    let asked_at = w.evm.timestamp;
    w.ok(c0, w.is, request(12 * OPEN));
    let ready_at = asked_at + WINDOW;
    let pending = w.view(w.is, IS::creditWithdrawalCall::new((c0,)));
    assert_eq!((pending.amount, pending.readyAt), (12 * OPEN, ready_at));

    // During the delay the credit still pays for inferences already served.
    w.authorize(c0, HOST, open(1));
    let fee = max_fee((1000, 1000));
    w.settle(
        HOST,
        &[receipt(c0, AGENT_A, 1, (1000, 1000), fee, &[])],
        &[],
    );
    let left = open(12) - U256::from(fee);
    assert_eq!(w.credit(c0), left);
    w.evm.timestamp = ready_at - 1;
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(WithdrawalNotReady, ready_at));
    // At readyAt it pays what is left, not the 12 asked.
    let before = w.evm.balance(c0);
    w.evm.timestamp = ready_at;
    w.ok(c0, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c0) - before, left);
    assert_eq!(w.credit(c0), U256::ZERO);
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    // With nothing left to pay the withdrawal fails, and the request stays.
    w.ok(c0, w.is, request(OPEN));
    w.evm.advance(WINDOW);
    assert_eq!(w.fails(c0, w.is, withdraw, U256::ZERO), err!(ZeroAmount));

    // Asking for less than the credit pays exactly what was asked.
    w.ok(c1, w.is, request(4 * OPEN));
    w.evm.advance(WINDOW);
    let before = w.evm.balance(c1);
    w.ok(c1, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c1) - before, open(4));
    assert_eq!(w.credit(c1), open(6));
    // The fee settled stays in the contract, in escrow.
    assert_eq!(w.evm.balance(w.is), held - open(4) + U256::from(fee));
}

#[test]
fn settle_refuses_bad_batches_with_their_error_and_changes_nothing() {
    let mut w = world();
    w.prove(2, 1, C1);
    let t = (1000, 1000);
    let fee = max_fee(t);
    let good = [
        receipt(consumer(0), AGENT_A, 1, t, fee, &[(0, 6_000), (1, 4_000)]),
        receipt(consumer(1), AGENT_B, 1, t, fee, &[(0, 10_000)]),
    ];
    let list = [C1, C2];
    assert_eq!(
        w.settle_fails(OUTSIDER, &good, &list),
        err!(HostNotStaked, OUTSIDER)
    );
    // A validator stake does not make a host.
    assert_eq!(
        w.settle_fails(VALIDATOR, &good, &list),
        err!(HostNotStaked, VALIDATOR)
    );
    assert_eq!(w.settle_fails(HOST, &[], &list), err!(EmptyBatch));
    // A consumer that comes back after another, and the zero address.
    let mut back = good.to_vec();
    back.push(receipt(consumer(0), AGENT_A, 2, t, fee, &[]));
    assert_eq!(
        w.settle_fails(HOST, &back, &list),
        err!(ReceiptsNotGrouped, u(2))
    );
    let zero = [receipt(Address::ZERO, AGENT_A, 1, t, 0, &[])];
    assert_eq!(
        w.settle_fails(HOST, &zero, &[]),
        err!(ReceiptsNotGrouped, u(0))
    );
    // Another host's agent, one its host never accepted, and agents that do not exist: 0
    // (ids start at 1), first or later in the batch, and 99.
    let theirs = [receipt(consumer(0), AGENT_HOST2, 1, t, fee, &[])];
    let e = w.settle_fails(HOST, &theirs, &[]);
    assert_eq!(e, err!(NotAgentHost, u(AGENT_HOST2), HOST));
    for agent in [AGENT_UNACCEPTED, 0, 99] {
        let r = [receipt(consumer(0), agent, 1, t, fee, &[])];
        assert_eq!(
            w.settle_fails(HOST, &r, &[]),
            err!(AgentNotServable, u(agent))
        );
    }
    let mut later = good.to_vec();
    later[1].agentId = 0;
    assert_eq!(
        w.settle_fails(HOST, &later, &list),
        err!(AgentNotServable, U256::ZERO)
    );
    // Once its host accepts it, agent 4 settles.
    w.ok(
        HOST,
        w.a.model_registry,
        MR::acceptAgentCall::new((u(AGENT_UNACCEPTED),)),
    );
    let accepted = [receipt(consumer(2), AGENT_UNACCEPTED, 1, t, fee, &[])];
    w.settle(HOST, &accepted, &[]);
    // After all that, the good batch goes through.
    let s = w.settle(HOST, &good, &list);
    assert_eq!(s.id, u(2));
}

#[test]
fn a_released_batch_pays_each_role_its_rounded_share_and_the_treasury_the_rest() {
    let mut w = world();
    w.prove(2, 1, C1);
    // Owner A's agent, then B's, then A's again, with fees that leave remainders.
    let r = [
        receipt(
            consumer(0),
            AGENT_A,
            1,
            (1001, 0),
            1001,
            &[(0, 3_333), (1, 6_667)],
        ),
        receipt(consumer(0), AGENT_B, 2, (3, 0), 3, &[(0, 10_000)]),
        receipt(consumer(1), AGENT_A, 1, (1000, 1000), 1003, &[]),
    ];
    let total = fees(&r);
    let claims = |w: &mut World| {
        [
            CONTRIB,
            CONTRIB2,
            CURATOR,
            CURATOR2,
            MODEL_A,
            MODEL_B,
            HOST,
            w.a.timelock,
        ]
        .map(|who| w.claimable(who))
    };
    let before = claims(&mut w);
    let s = w.settle(HOST, &r, &[C1, C2]);
    assert_eq!(w.batch(s.id).fees, total.to::<u128>());
    w.evm.advance(WINDOW + 1);
    // A payout list that is not the batch's is refused.
    let mut forged = s.clone();
    forged.contributions[0].contributors += 1;
    let e = w.fails(OUTSIDER, w.is, World::release_call(&forged), U256::ZERO);
    assert_eq!(e, err!(RecordMismatch, s.id));
    w.release(&s);
    let after = claims(&mut w);
    let gained: Vec<U256> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // Slices (fee × weight): C1 = 1001·3333 + 3·10000, C2 = 1001·6667; receipt 3 credits none.
    let (s1, s2) = (u(1001 * 3333 + 30_000), u(1001 * 6667));
    let share = |slice: U256, part: u64| slice * u(part) / u(100_000_000);
    let (c1, c2) = (share(s1, SPLIT[0]), share(s2, SPLIT[0]));
    let (k1, k2) = (share(s1, SPLIT[1]), share(s2, SPLIT[1]));
    assert_eq!(gained[0], c1, "CONTRIB");
    assert_eq!(gained[1], c2, "CONTRIB2");
    // Each contribution's curators' share is split between its two approvers, rounded down.
    let (e1, e2) = (k1 / u(2), k2 / u(2));
    assert_eq!(gained[2], e1 + e2, "CURATOR");
    assert_eq!(gained[3], e1 + e2, "CURATOR2");
    // The model share is rounded per owner: A's receipts 1001 + 1003, B's 3.
    assert_eq!(gained[4], bps(u(2004), SPLIT[2]), "MODEL_A");
    assert_eq!(gained[5], bps(u(3), SPLIT[2]), "MODEL_B");
    assert_eq!(gained[6], bps(total, SPLIT[3]), "HOST");
    let paid: U256 = gained[..7].iter().copied().sum();
    assert_eq!(gained[7], total - paid, "the treasury takes the rest");
    // Claims: anyone may trigger one, the OPEN goes to the account, and only once.
    let before = w.evm.balance(CONTRIB);
    w.ok(OUTSIDER, w.is, IS::claimCall::new((CONTRIB,)));
    assert_eq!(w.evm.balance(CONTRIB) - before, after[0]);
    let claim = IS::claimCall::new((CONTRIB,)).abi_encode();
    assert_eq!(
        w.fails(OUTSIDER, w.is, claim, U256::ZERO),
        err!(NothingToClaim, CONTRIB)
    );
}

#[test]
fn a_contribution_poisoned_during_the_window_is_not_paid() {
    let mut w = world();
    w.prove(1, 1, C_POISONED);
    // Contribution 2 is challenged right after settlement and found poisoned in the window.
    let t = (1000, 1000);
    let fee = max_fee(t);
    let r = [receipt(
        consumer(0),
        AGENT_A,
        1,
        t,
        fee,
        &[(0, 5_000), (1, 5_000)],
    )];
    let s = w.settle(HOST, &r, &[C1, C2]);
    let dr = w.a.datanet_registry;
    w.pay(
        OUTSIDER,
        dr,
        DR::challengeCall::new((u(C2), h("poison"))),
        open(1),
    );
    w.govern(dr, DR::resolveChallengeCall::new((u(C2), true)));
    w.evm.advance(WINDOW + 1);
    let treasury = w.claimable(w.a.timelock);
    w.release(&s);
    assert_eq!(w.claimable(CONTRIB2), U256::ZERO);
    let half = u(fee as u64 * 5_000);
    let contributor = half * u(SPLIT[0]) / u(100_000_000);
    assert_eq!(w.claimable(CONTRIB), contributor);
    // The poisoned half's contributor and curator shares went to the treasury.
    let lost = half * u(SPLIT[0] + SPLIT[1]) / u(100_000_000);
    let host = bps(U256::from(fee), SPLIT[3]);
    let curators = half * u(SPLIT[1]) / u(100_000_000) / u(2) * u(2);
    let rest = U256::from(fee) - contributor - curators - bps(U256::from(fee), SPLIT[2]) - host;
    assert_eq!(w.claimable(w.a.timelock) - treasury, rest);
    assert!(rest >= lost);
}

#[test]
fn the_stored_receipts_root_is_the_merkle_root_of_the_batch() {
    let mut w = world();
    for n in [1u64, 2, 3, 5, 8] {
        let r: Vec<Receipt> = (0..n as u8)
            .map(|i| receipt(consumer(i), AGENT_A, 10 + n, (100, 100), 7, &[(0, 10_000)]))
            .collect();
        let s = w.settle(HOST, &r, &[C1]);
        let leaves: Vec<B256> = r.iter().map(leaf).collect();
        assert_eq!(
            w.batch(s.id).receiptsRoot,
            root(leaves.clone()),
            "{n} receipts"
        );
        let count = count_logs(&s.logs, IS::BatchSettled::SIGNATURE_HASH);
        assert_eq!(count, 1);
        assert_eq!(count_logs(&s.logs, IS::Debited::SIGNATURE_HASH), n as usize);
        // The contract's own leaf agrees with ours.
        let ours = w.view(w.is, IS::receiptLeafCall::new((r[0].clone(),)));
        assert_eq!(ours, leaves[0]);
    }
}
