//! The attacks the redesign exists to stop. Each one went through on the contract before it:
//! any staked host could debit any consumer's credit, replay a receipt, charge any fee, name
//! any payee, be paid before a challenge could land, and an upheld challenge refunded no one.

use super::*;

/// A host takes only what the consumer authorised for that host, and never more in total.
#[test]
fn a_host_cannot_debit_a_consumer_that_did_not_authorise_it() {
    let mut w = world();
    let tokens = (1000, 1000);
    let fee = max_fee(tokens); // 4,000,000 wei
                               // Consumer 9 has credit but authorised nobody: HOST gets nothing of it.
    w.deposit(consumer(9), U256::from(2 * fee));
    let r = [receipt(consumer(9), AGENT_A, 1, tokens, fee, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(
        e,
        err!(
            NotAuthorized,
            consumer(9),
            HOST,
            U256::ZERO,
            U256::from(fee)
        )
    );
    // Consumer 0 authorised HOST, not HOST2.
    let r = [receipt(consumer(0), AGENT_HOST2, 1, tokens, fee, &[])];
    let e = w.settle_fails(HOST2, &r, &[]);
    assert_eq!(
        e,
        err!(
            NotAuthorized,
            consumer(0),
            HOST2,
            U256::ZERO,
            U256::from(fee)
        )
    );
    // Within the allowance it goes through, and the allowance shrinks by what was taken.
    w.authorize(consumer(9), HOST, U256::from(fee * 3 / 2));
    let r = [receipt(consumer(9), AGENT_A, 1, tokens, fee, &[])];
    w.settle(HOST, &r, &[]);
    assert_eq!(w.allowance(consumer(9), HOST), U256::from(fee / 2));
    assert_eq!(w.credit(consumer(9)), U256::from(fee));
    // A second batch past what is left is refused, summed over the consumer's receipts.
    let r = [
        receipt(consumer(9), AGENT_A, 2, tokens, fee / 4, &[]),
        receipt(consumer(9), AGENT_A, 3, tokens, fee / 4 + 1, &[]),
    ];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(
        e,
        err!(
            NotAuthorized,
            consumer(9),
            HOST,
            U256::from(fee / 2),
            U256::from(fee / 2 + 1)
        )
    );
    // Revoking (allowance zero) takes one challenge window: what was served just before can
    // still be settled, and nothing after.
    w.authorize(consumer(9), HOST, U256::ZERO);
    let a = w.view(w.is, IS::authorizationCall::new((consumer(9), HOST)));
    let lowers_at = a.lowersAt;
    assert_eq!((a.allowance, a.lowerTo), (fee / 2, 0));
    assert!(lowers_at > w.evm.timestamp);
    w.settle(
        HOST,
        &[receipt(consumer(9), AGENT_A, 2, tokens, 1, &[])],
        &[],
    );
    w.evm.timestamp = lowers_at;
    let r = [receipt(consumer(9), AGENT_A, 3, tokens, 1, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(
        e,
        err!(NotAuthorized, consumer(9), HOST, U256::ZERO, U256::from(1))
    );
    // Raising takes effect at once. An allowance is not credit: authorised beyond what it
    // holds, the credit still bounds it.
    w.authorize(consumer(9), HOST, open(100));
    let r = [receipt(consumer(9), AGENT_A, 3, (2000, 2000), fee + 1, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    let left = U256::from(fee) - u(1);
    assert_eq!(
        e,
        err!(InsufficientCredit, consumer(9), left, U256::from(fee + 1))
    );
}

/// Every receipt carries a sequence number per consumer and host that must rise.
#[test]
fn a_receipt_is_settled_once() {
    let mut w = world();
    let t = (100, 100);
    let fee = max_fee(t);
    let r = [
        receipt(consumer(0), AGENT_A, 1, t, fee, &[]),
        receipt(consumer(0), AGENT_A, 2, t, fee, &[]),
        receipt(consumer(1), AGENT_A, 7, t, fee, &[]),
    ];
    w.settle(HOST, &r, &[]);
    // The same batch again: its first receipt is a replay.
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(e, err!(ReceiptReplayed, u(0), consumer(0), 1, 2));
    // So is one receipt of it alone, or a later one numbered at or under the last settled.
    let e = w.settle_fails(HOST, &r[2..], &[]);
    assert_eq!(e, err!(ReceiptReplayed, u(0), consumer(1), 7, 7));
    // Within a batch the numbers must rise too: the same receipt twice is refused.
    let twice = [r[0].clone(), r[0].clone()];
    let mut twice = twice.map(|mut x| {
        x.seq = 3;
        x
    });
    let e = w.settle_fails(HOST, &twice, &[]);
    assert_eq!(e, err!(ReceiptReplayed, u(1), consumer(0), 3, 3));
    twice[1].seq = 4;
    w.settle(HOST, &twice, &[]);
    let auth = w.view(w.is, IS::authorizationCall::new((consumer(0), HOST)));
    assert_eq!(auth.lastSeq, 4);
    // Another host keeps its own numbers.
    w.authorize(consumer(0), HOST2, open(1));
    let other = [receipt(consumer(0), AGENT_HOST2, 1, t, fee, &[])];
    w.settle(HOST2, &other, &[]);
}

/// A receipt's fee is at most the agent's prices times the tokens it states.
#[test]
fn a_fee_above_the_price_of_its_tokens_is_refused() {
    let mut w = world();
    let t = (1234, 567);
    let most = max_fee(t);
    let r = [receipt(consumer(0), AGENT_A, 1, t, most + 1, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(
        e,
        err!(FeeAbovePrice, u(0), U256::from(most + 1), U256::from(most))
    );
    // No tokens, no fee.
    let r = [receipt(consumer(0), AGENT_A, 1, (0, 0), 1, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(e, err!(FeeAbovePrice, u(0), u(1), U256::ZERO));
    // At the price exactly it goes through.
    let r = [receipt(consumer(0), AGENT_A, 1, t, most, &[])];
    w.settle(HOST, &r, &[]);
    // The owner lowers the price: later receipts are held to the new one.
    let update = MR::updateAgentCall::new((u(AGENT_A), true, PRICE_IN / 2, PRICE_OUT / 2));
    w.ok(MODEL_A, w.a.model_registry, update);
    // New prices need the host's acceptance before anything of the agent settles.
    let r = [receipt(consumer(0), AGENT_A, 2, t, 1, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    assert_eq!(e, err!(AgentNotServable, u(AGENT_A)));
    w.ok(
        HOST,
        w.a.model_registry,
        MR::acceptAgentCall::new((u(AGENT_A),)),
    );
    let r = [receipt(consumer(0), AGENT_A, 2, t, most, &[])];
    let e = w.settle_fails(HOST, &r, &[]);
    let halved = (t.0 as u128 * (PRICE_IN / 2) + t.1 as u128 * (PRICE_OUT / 2)) / 1000;
    assert_eq!(
        e,
        err!(FeeAbovePrice, u(0), U256::from(most), U256::from(halved))
    );
}

/// Credits go only to accepted contributions proven part of the agent's adapter's lineage, and
/// the contract pays their contributors and curators itself.
#[test]
fn a_payout_outside_the_lineage_or_to_poisoned_data_is_refused() {
    let mut w = world();
    let t = (1000, 1000);
    let fee = max_fee(t);
    // Contribution 4 is accepted but in version 2, which adapter 1 was not trained on.
    let r = [receipt(consumer(0), AGENT_A, 1, t, fee, &[(0, 10_000)])];
    let e = w.settle_fails(HOST, &r, &[C_OTHER]);
    assert_eq!(e, err!(NotInLineage, u(1), u(C_OTHER)));
    // Nor can it be proven: version 2 is not in adapter 1's lineage.
    let e = w.fails(OUTSIDER, w.is, World::prove_call(1, 2, C_OTHER), U256::ZERO);
    assert_eq!(e, err!(VersionNotInLineage, u(1), u(2)));
    // A proof through the wrong version, or for an adapter that does not exist, fails too.
    let e = w.fails(OUTSIDER, w.is, World::prove_call(2, 1, C_OTHER), U256::ZERO);
    assert_eq!(e, err!(NotInVersion, u(1), u(C_OTHER)));
    let e = w.fails(OUTSIDER, w.is, World::prove_call(99, 1, C1), U256::ZERO);
    assert_eq!(e, err!(UnknownAdapter, u(99)));
    // Adapter 2 was trained on version 2: there the proof holds, and agent B may credit it.
    w.prove(2, 2, C_OTHER);
    let r = [receipt(consumer(0), AGENT_B, 1, t, fee, &[(0, 10_000)])];
    w.settle(HOST, &r, &[C_OTHER]);
    // The poisoned contribution is in version 1 and provable, but never payable.
    w.prove(1, 1, C_POISONED);
    let r = [receipt(
        consumer(1),
        AGENT_A,
        1,
        t,
        fee,
        &[(0, 5_000), (1, 5_000)],
    )];
    let e = w.settle_fails(HOST, &r, &[C1, C_POISONED]);
    assert_eq!(e, err!(ContributionNotAccepted, u(C_POISONED), 4));
    // Credits are positions in the batch's own list, checked, weighted to exactly 10,000.
    let bad = [receipt(consumer(1), AGENT_A, 1, t, fee, &[(1, 10_000)])];
    let e = w.settle_fails(HOST, &bad, &[C1]);
    assert_eq!(e, err!(UnknownCredit, u(0), u(1)));
    let bad = [receipt(consumer(1), AGENT_A, 1, t, fee, &[(0, 9_999)])];
    let e = w.settle_fails(HOST, &bad, &[C1]);
    assert_eq!(e, err!(CreditWeights, u(0), u(9_999)));
    // Packed receipts that end early, in the header or in the credits, are refused whole.
    let one = [receipt(consumer(1), AGENT_A, 1, t, fee, &[(0, 10_000)])];
    let packed = pack_receipts(&one);
    for cut in [1, 5] {
        let call = IS::settleCall::new((packed.slice(..packed.len() - cut), vec![C1]));
        let e = w.fails(HOST, w.is, call.abi_encode(), U256::ZERO);
        assert_eq!(e, err!(TruncatedReceipt, U256::ZERO));
    }
    let e = w.settle_fails(HOST, &r, &[C2, C1]);
    assert_eq!(e, err!(ContributionsNotSorted, u(1)));
    let e = w.settle_fails(HOST, &r, &[C1, C1]);
    assert_eq!(e, err!(ContributionsNotSorted, u(1)));
}

/// Payouts wait in escrow until the challenge window closes.
#[test]
fn nothing_is_claimable_before_the_window_closes() {
    let mut w = world();
    let t = (1000, 1000);
    let fee = max_fee(t);
    let r = [receipt(consumer(0), AGENT_A, 1, t, fee, &[(0, 10_000)])];
    let s = w.settle(HOST, &r, &[C1]);
    let settled_at = w.batch(s.id).settledAt;
    for who in [CONTRIB, CURATOR, MODEL_A, HOST] {
        assert_eq!(w.claimable(who), U256::ZERO);
        let e = w.fails(
            OUTSIDER,
            w.is,
            IS::claimCall::new((who,)).abi_encode(),
            U256::ZERO,
        );
        assert_eq!(e, err!(NothingToClaim, who));
    }
    // The window's last second is still inside it.
    w.evm.timestamp = settled_at + WINDOW;
    let e = w.fails(OUTSIDER, w.is, World::release_call(&s), U256::ZERO);
    assert_eq!(e, err!(ChallengeWindowOpen, s.id, settled_at + WINDOW));
    w.evm.timestamp = settled_at + WINDOW + 1;
    w.release(&s);
    let contributors = bps(U256::from(fee), SPLIT[0]);
    assert_eq!(w.claimable(CONTRIB), contributors);
    // Released once only.
    let e = w.fails(OUTSIDER, w.is, World::release_call(&s), U256::ZERO);
    assert_eq!(e, err!(WrongBatchState, s.id, 2));
}

/// An upheld challenge slashes the host and gives every consumer of the batch its fees back.
#[test]
fn an_upheld_challenge_refunds_the_consumers_from_the_escrow() {
    let mut w = world();
    let t = (1000, 1000);
    let fee = max_fee(t);
    let r = [
        receipt(consumer(0), AGENT_A, 1, t, fee, &[(0, 10_000)]),
        receipt(
            consumer(1),
            AGENT_A,
            1,
            t,
            fee / 2,
            &[(0, 2_500), (1, 7_500)],
        ),
    ];
    let before = [w.credit(consumer(0)), w.credit(consumer(1))];
    let s = w.settle(HOST, &r, &[C1, C2]);
    assert_eq!(w.credit(consumer(0)), before[0] - U256::from(fee));
    // A validator challenges it, and consumer 1 disputes its own receipt in it too.
    w.challenge(VALIDATOR, s.id);
    let leaves: Vec<B256> = r.iter().map(leaf).collect();
    let dispute = IS::disputeCall::new((s.id, r[1].clone(), proof(leaves, 1), h("not mine")));
    let index = w.pay(consumer(1), w.is, dispute, open(1));
    assert_eq!(index, u(1));
    // Nothing is released while challenges are open, even after the window.
    w.evm.advance(WINDOW + 1);
    let e = w.fails(OUTSIDER, w.is, World::release_call(&s), U256::ZERO);
    assert_eq!(e, err!(ChallengesOpen, s.id, u(2)));
    // Governance upholds the validator's challenge: the host is slashed its minimum stake.
    let stake = w.host_stake(HOST);
    w.govern(
        w.is,
        IS::resolveChallengeCall::new((s.id, U256::ZERO, true)),
    );
    assert_eq!(w.host_stake(HOST), stake - open(50));
    assert_eq!(w.batch(s.id).state, 3, "Upheld");
    // The escrow goes back to the consumers, in full, to the wei.
    let e = w.fails(OUTSIDER, w.is, World::release_call(&s), U256::ZERO);
    assert_eq!(e, err!(WrongBatchState, s.id, 3));
    let mut forged = s.clone();
    forged.debits[0].consumer = OUTSIDER;
    let e = w.fails(OUTSIDER, w.is, World::refund_call(&forged), U256::ZERO);
    assert_eq!(e, err!(RecordMismatch, s.id));
    w.evm
        .call(OUTSIDER, w.is, World::refund_call(&s).into())
        .unwrap();
    assert_eq!(w.credit(consumer(0)), before[0]);
    assert_eq!(w.credit(consumer(1)), before[1]);
    let e = w.fails(OUTSIDER, w.is, World::refund_call(&s), U256::ZERO);
    assert_eq!(e, err!(WrongBatchState, s.id, 4));
    // The consumer's dispute, upheld too, returns its bond without a second slash.
    let stake = w.host_stake(HOST);
    let claimable = w.claimable(consumer(1));
    w.govern(w.is, IS::resolveChallengeCall::new((s.id, u(1), true)));
    assert_eq!(w.host_stake(HOST), stake);
    assert_eq!(w.claimable(consumer(1)), claimable + open(1));
    for who in [CONTRIB, CONTRIB2, CURATOR, MODEL_A, HOST] {
        assert_eq!(
            w.claimable(who),
            U256::ZERO,
            "{who} was paid from a refunded batch"
        );
    }
}
