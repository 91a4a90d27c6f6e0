//! Credit, settling batches and their refusals, the split of fees, and the receipts root.

use super::*;

#[test]
fn credit_is_deposited_and_withdrawn_after_one_challenge_window() {
    let mut w = world();
    let (c0, c1) = (consumer(0), consumer(1));
    let deposit = IS::depositCall {}.abi_encode();
    assert_eq!(w.fails(c0, w.is, deposit, U256::ZERO), err!(ZeroAmount));
    // Plain OPEN sent unasked would be stuck: only Staking may (a challenger's share).
    let stray = w.fails(c0, w.is, Vec::new(), open(1));
    assert_eq!(stray, err!(UnexpectedPayment, c0));
    w.deposit(c0, open(10));
    w.deposit(c0, open(2));
    assert_eq!(w.credit(c0), open(12));
    assert_eq!(w.evm.balance(w.is), open(12));

    let withdraw = IS::withdrawCreditCall {}.abi_encode();
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    let request = |amount: u128| IS::requestCreditWithdrawalCall::new((amount,));
    let err = w.fails(c0, w.is, request(0).abi_encode(), U256::ZERO);
    assert_eq!(err, err!(ZeroAmount));
    // A new request replaces the old one, clock and all.
    w.ok(c0, w.is, request(OPEN));
    let asked_at = w.evm.timestamp;
    w.ok(c0, w.is, request(10 * OPEN));
    let ready_at = asked_at + WINDOW;
    let pending = w.view(w.is, IS::creditWithdrawalCall::new((c0,)));
    assert_eq!((pending.amount, pending.readyAt), (10 * OPEN, ready_at));

    // During the delay the credit still pays for inferences already served.
    w.settle_ok(HOST, &[receipt(c0, AGENT_A, 5 * OPEN)]);
    assert_eq!(w.credit(c0), open(7));
    w.evm.timestamp = ready_at - 1;
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(WithdrawalNotReady, ready_at));
    // At readyAt it pays what is left (7), not the 10 asked.
    let before = w.evm.balance(c0);
    w.evm.timestamp = ready_at;
    w.ok(c0, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c0) - before, open(7));
    assert_eq!(w.credit(c0), U256::ZERO);
    let err = w.fails(c0, w.is, withdraw.clone(), U256::ZERO);
    assert_eq!(err, err!(NoWithdrawalRequested, c0));
    // With nothing left to pay the withdrawal fails, and the request stays.
    w.ok(c0, w.is, request(OPEN));
    w.evm.advance(WINDOW);
    assert_eq!(w.fails(c0, w.is, withdraw, U256::ZERO), err!(ZeroAmount));

    // Asking for less than the credit pays exactly what was asked.
    w.deposit(c1, open(10));
    w.ok(c1, w.is, request(4 * OPEN));
    w.evm.advance(WINDOW);
    let before = w.evm.balance(c1);
    w.ok(c1, w.is, IS::withdrawCreditCall {});
    assert_eq!(w.evm.balance(c1) - before, open(4));
    assert_eq!(w.credit(c1), open(6));
    // The 5 OPEN settled stay in the contract as claimable payouts.
    assert_eq!(w.evm.balance(w.is), open(6 + 5));
}

#[test]
fn settle_refuses_bad_batches_with_their_error_and_changes_nothing() {
    let mut w = world();
    let (c0, c1, c2) = (consumer(0), consumer(1), consumer(2));
    w.deposit(c0, open(1));
    w.deposit(c1, open(1));
    let good = [receipt(c0, AGENT_A, 1000), receipt(c1, AGENT_B, 3000)];
    let (c, k) = w.totals(u(4000));
    let (cp, kp) = (spread(c, &[CONTRIB]), spread(k, &[CURATOR]));

    let err = w.settle_fails(OUTSIDER, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(HostNotStaked, OUTSIDER));
    // A validator stake does not make a host.
    let err = w.settle_fails(VALIDATOR, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(HostNotStaked, VALIDATOR));
    assert_eq!(w.settle_fails(HOST, &[], vec![], vec![]), err!(EmptyBatch));
    let swapped = [good[1].clone(), good[0].clone()];
    let err = w.settle_fails(HOST, &swapped, cp.clone(), kp.clone());
    assert_eq!(err, err!(ReceiptsNotGrouped, u(1)));
    // A consumer that comes back after another would be debited twice.
    let split_up = [good[0].clone(), good[1].clone(), receipt(c0, AGENT_A, 1)];
    let err = w.settle_fails(HOST, &split_up, vec![], vec![]);
    assert_eq!(err, err!(ReceiptsNotGrouped, u(2)));

    // Fees are summed per consumer before the credit check.
    let over = [
        receipt(c1, AGENT_A, OPEN / 2),
        receipt(c1, AGENT_B, OPEN / 2 + 1),
    ];
    let err = w.settle_fails(HOST, &over, vec![], vec![]);
    assert_eq!(err, err!(InsufficientCredit, c1, open(1), open(1) + u(1)));
    let r = [good[0].clone(), receipt(c2, AGENT_A, 5)];
    let err = w.settle_fails(HOST, &r, vec![], vec![]);
    assert_eq!(err, err!(InsufficientCredit, c2, U256::ZERO, u(5)));

    let err = w.settle_fails(HOST2, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(NotAgentHost, u(AGENT_A), HOST2));
    let mixed = [receipt(c0, AGENT_HOST2, 1000), receipt(c1, AGENT_B, 3000)];
    let err = w.settle_fails(HOST2, &mixed, cp.clone(), kp.clone());
    assert_eq!(err, err!(NotAgentHost, u(AGENT_B), HOST2));

    // Agents that do not exist: 0 (ids start at 1), first or later in the batch, and 99.
    for (first, second, unknown) in [(0, AGENT_B, 0), (AGENT_B, 0, 0), (99, AGENT_B, 99)] {
        let r = [receipt(c0, first, 1000), receipt(c1, second, 3000)];
        let err = w.settle_fails(HOST, &r, cp.clone(), kp.clone());
        assert_eq!(err, err!(AgentNotServable, u(unknown)));
    }
    let pause = |active| MR::updateAgentCall::new((u(AGENT_B), active, 1000));
    w.ok(MODEL_B, w.a.model_registry, pause(false));
    let err = w.settle_fails(HOST, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(AgentNotServable, u(AGENT_B)));
    w.ok(MODEL_B, w.a.model_registry, pause(true));
    let status = |status| MR::setAdapterStatusCall::new((u(1), status));
    w.govern(w.a.model_registry, status(3)); // Retired
    let err = w.settle_fails(HOST, &good, cp.clone(), kp.clone());
    assert_eq!(err, err!(AgentNotServable, u(AGENT_A)));
    w.govern(w.a.model_registry, status(2)); // Endorsed

    // One wei too little or too much, for each role (0 contributors, 1 curators).
    for more in [false, true] {
        let shift = |x: U256| if more { x + u(1) } else { x - u(1) };
        let err = w.settle_fails(HOST, &good, spread(shift(c), &[CONTRIB]), kp.clone());
        assert_eq!(err, err!(ShareMismatch, 0, c, shift(c)));
        let err = w.settle_fails(HOST, &good, cp.clone(), spread(shift(k), &[CURATOR]));
        assert_eq!(err, err!(ShareMismatch, 1, k, shift(k)));
    }
    let err = w.settle_fails(HOST, &good, vec![], kp.clone());
    assert_eq!(err, err!(ShareMismatch, 0, c, U256::ZERO));

    // After all that, the same batch goes through.
    let (id, _) = w.settle(HOST, &good, cp, kp);
    assert_eq!(id, u(1));
}

#[test]
fn a_batch_pays_each_role_its_rounded_share_and_the_treasury_the_rest() {
    let mut w = world();
    let (c0, c1, treasury) = (consumer(0), consumer(1), w.a.timelock);
    w.deposit(c0, open(1));
    w.deposit(c1, u(10));
    // Owner A's agent, then B's, then A's again: 1002 wei for each owner, 2004 in all.
    let r = [
        receipt(c0, AGENT_A, 1001),
        receipt(c0, AGENT_B, 1002),
        receipt(c1, AGENT_A, 1),
    ];
    let total = fees(&r);
    assert_eq!(total, u(2004));
    let (c, k) = w.totals(total);
    // 40% of 2004 is 801.6 and 10% is 200.4: both round down.
    assert_eq!((c, k), (u(801), u(200)));
    assert_eq!((c, k), (bps(total, SPLIT[0]), bps(total, SPLIT[1])));
    let cp = vec![
        Payout::from((CONTRIB, u(500))),
        Payout::from((CONTRIB2, u(301))),
    ];
    let kp = vec![
        Payout::from((CURATOR, u(199))),
        Payout::from((CURATOR2, u(1))),
    ];
    let credit_before = [w.credit(c0), w.credit(c1)];
    let (id, logs) = w.settle(HOST, &r, cp, kp);

    // The model share is rounded per owner, 250.5 → 250 twice, so the owners get 500 where
    // 25% of the whole batch would round to 501.
    assert_eq!(bps(total, SPLIT[2]), u(501));
    let expected = [
        (CONTRIB, 500),
        (CONTRIB2, 301),
        (CURATOR, 199),
        (CURATOR2, 1),
        (MODEL_A, 250),
        (MODEL_B, 250),
        (HOST, 300), // 300.6
        // 2004 − 801 − 200 − 500 − 300: the nominal 200.4 plus every rounding remainder.
        (treasury, 203),
    ];
    for (who, amount) in expected {
        assert_eq!(w.claimable(who), u(amount), "{who}");
    }
    assert_eq!(u(expected.iter().map(|e| e.1).sum()), total);
    assert_eq!(credit_before[0] - w.credit(c0), u(2003));
    assert_eq!(credit_before[1] - w.credit(c1), u(1));

    assert_eq!(
        count_logs(&logs, IS::InferenceSettled::SIGNATURE_HASH),
        r.len()
    );
    let settled = logs
        .iter()
        .filter_map(|l| IS::InferenceSettled::decode_log(l).ok());
    for (e, r) in settled.zip(&r) {
        assert_eq!(
            (e.batchId, e.consumer, e.agentId),
            (id, r.consumer, u(r.agentId))
        );
        assert_eq!((e.fee, e.receiptHash), (U256::from(r.fee), r.receiptHash));
    }
    let e = logs
        .iter()
        .find_map(|l| IS::BatchSettled::decode_log(l).ok())
        .expect("a BatchSettled event");
    assert_eq!(
        (e.batchId, e.host, e.count, e.fees),
        (id, HOST, u(3), total)
    );
    assert_eq!(e.receiptsRoot, merkle_root(&r));
    let b = w.batch(id);
    assert_eq!((b.host, b.count, b.fees), (HOST, 3, 2004));
    assert_eq!(b.receiptsRoot, e.receiptsRoot);

    // Claims: anyone may trigger one, the OPEN goes to the account, and only once.
    let before = w.evm.balance(CONTRIB);
    w.ok(OUTSIDER, w.is, IS::claimCall::new((CONTRIB,)));
    assert_eq!(w.evm.balance(CONTRIB) - before, u(500));
    assert_eq!(w.claimable(CONTRIB), U256::ZERO);
    let again = IS::claimCall::new((CONTRIB,)).abi_encode();
    let err = w.fails(CONTRIB, w.is, again, U256::ZERO);
    assert_eq!(err, err!(NothingToClaim, CONTRIB));
    let before = w.evm.balance(treasury);
    w.ok(OUTSIDER, w.is, IS::claimCall::new((treasury,)));
    assert_eq!(w.evm.balance(treasury) - before, u(203));
    // Settling moved OPEN from credit to claimable inside the contract; only claims took it out.
    assert_eq!(w.evm.balance(w.is), open(1) + u(10) - u(500 + 203));
}

#[test]
fn the_stored_receipts_root_is_the_merkle_root_of_the_batch() {
    let mut w = world();
    for i in 0..4 {
        w.deposit(consumer(i), open(1));
    }
    for n in [1usize, 2, 3, 7] {
        // Consumers in ascending groups; fees and agents vary so every leaf differs.
        let r: Vec<Receipt> = (0..n)
            .map(|i| {
                let agent = if i % 3 == 0 { AGENT_B } else { AGENT_A };
                let fee = 1_000 + 37 * i as u128 + n as u128;
                receipt(consumer(i as u8 / 2), agent, fee)
            })
            .collect();
        let (id, logs) = w.settle_ok(HOST, &r);
        let stored = w.batch(id).receiptsRoot;
        assert_eq!(stored, merkle_root(&r), "batch of {n}");
        if n == 1 {
            assert_eq!(stored, leaf(&r[0]), "one receipt is its own root");
        }
        assert_eq!(count_logs(&logs, IS::InferenceSettled::SIGNATURE_HASH), n);
        assert_eq!(count_logs(&logs, IS::BatchSettled::SIGNATURE_HASH), 1);
    }
}
