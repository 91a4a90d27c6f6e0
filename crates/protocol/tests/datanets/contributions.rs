//! Creating datanets, contributing, reviewing to a quorum, rejected fees, versions and their Merkle proofs.

use super::*;

#[test]
fn datanets_need_a_quorum_in_range_and_are_numbered_from_one() {
    let mut config = DeployConfig::dev();
    config.review_quorum = 3;
    let mut w = world_with(config);
    for quorum in [0, 2, 33] {
        let out_of_range = err!(QuorumOutOfRange(quorum, 3, 32));
        assert_eq!(w.create(quorum, open(1)), Err(out_of_range));
    }
    assert_eq!(w.view(Reg::countsCall {}).datanets, U256::ZERO);

    let uri = "ipfs://medical".to_string();
    let call = Reg::createDatanetCall::new((uri, content(5), 32, 7)).abi_encode();
    let (out, logs) = (w.evm.call(OWNER, w.a.datanet_registry, call.into())).unwrap();
    let id = Reg::createDatanetCall::abi_decode_returns(&out).unwrap();
    assert_eq!(id, uint(1));
    let e = Reg::DatanetCreated::decode_log_data(&logs[0].data).unwrap();
    let fields = (e.datanetId, e.owner, e.schemaHash, e.quorum, e.fee);
    assert_eq!(fields, (uint(1), OWNER, content(5), 32, 7));
    assert_eq!(e.metadataURI, "ipfs://medical");
    assert_eq!(w.create(3, open(1)), Ok(uint(2)));
    let (d, uri) = w.view(Reg::datanetCall::new((uint(1),))).into();
    assert_eq!((d.owner, d.quorum, d.fee, d.accepted), (OWNER, 32, 7, 0));
    assert_eq!((d.schemaHash, uri.as_str()), (content(5), "ipfs://medical"));
}

#[test]
fn a_contribution_deposits_exactly_the_fee() {
    let mut w = world();
    let fee = open(2);
    let datanet = w.create(1, fee).unwrap();
    let before = w.evm.balance(CONTRIBUTOR);
    let unknown = err!(UnknownDatanet(uint(9)));
    assert_eq!(w.contribute(CONTRIBUTOR, uint(9), 1, fee), Err(unknown));
    for sent in [fee - uint(1), fee + uint(1), U256::ZERO] {
        let wrong = err!(WrongFee(fee, sent));
        assert_eq!(w.contribute(CONTRIBUTOR, datanet, 1, sent), Err(wrong));
    }
    for (hash, size) in [(B256::ZERO, 10), (content(1), 0)] {
        let call = Reg::contributeCall::new((datanet, hash, size, B256::ZERO));
        let empty = w.pay(CONTRIBUTOR, call, fee);
        assert_eq!(empty, Err(err!(EmptyContribution())));
    }
    assert_eq!(w.view(Reg::countsCall {}).contributions, U256::ZERO);
    assert_eq!(w.evm.balance(CONTRIBUTOR), before);

    assert_eq!(w.contribute(CONTRIBUTOR, datanet, 1, fee), Ok(uint(1)));
    assert_eq!(w.contribute(OUTSIDER, datanet, 2, fee), Ok(uint(2)));
    assert_eq!(w.evm.balance(CONTRIBUTOR), before - fee);
    assert_eq!(w.evm.balance(w.a.datanet_registry), fee * uint(2));
    let c = w.contribution(uint(1));
    let fields = (c.contributor, c.datanetId, c.status, c.contentHash);
    assert_eq!(fields, (CONTRIBUTOR, 1, PENDING, content(1)));
    assert_eq!((c.fee, c.decidedAt), (fee.to(), 0));
}

#[test]
fn only_staked_curators_of_the_datanet_review_and_only_once() {
    let mut w = world();
    let datanet = w.create(3, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let [c1, c2, c3, ..] = CURATORS;
    w.curate(&[c1, c2, CONTRIBUTOR], datanet);
    w.curate(&[c3], other);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    let outsider = err!(NotCurator(datanet, OUTSIDER));
    assert_eq!(w.review(OUTSIDER, id, true), Err(outsider));
    // A stake for another datanet does not make a curator of this one.
    assert_eq!(w.review(c3, id, true), Err(err!(NotCurator(datanet, c3))));
    let own = err!(SelfReview(id));
    assert_eq!(w.review(CONTRIBUTOR, id, true), Err(own));
    w.review(c1, id, true).unwrap();
    let again = err!(AlreadyReviewed(id, c1));
    assert_eq!(w.review(c1, id, true), Err(again.clone()));
    assert_eq!(w.review(c1, id, false), Err(again));
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (PENDING, 1, 0));
    let voters = w.view(Reg::reviewersCall::new((id,)));
    assert_eq!((voters.approvers, voters.rejecters), (vec![c1], vec![]));
    let unknown = err!(UnknownContribution(uint(42)));
    assert_eq!(w.review(c1, uint(42), true), Err(unknown));
}

#[test]
fn a_contribution_is_decided_when_one_side_reaches_the_quorum() {
    let mut w = world();
    let datanet = w.create(3, open(1)).unwrap();
    let [c1, c2, c3, c4, c5] = CURATORS;
    w.curate(&CURATORS, datanet);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    for (curator, approve) in [(c1, true), (c2, false), (c3, true), (c4, false)] {
        w.review(curator, id, approve).unwrap();
    }
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (PENDING, 2, 2));
    assert_eq!(w.datanet(datanet).accepted, 0);

    let decided_at = w.evm.timestamp;
    w.review(c5, id, true).unwrap();
    let c = w.contribution(id);
    assert_eq!((c.status, c.approvals, c.rejections), (ACCEPTED, 3, 2));
    assert_eq!((c.decidedAt, w.datanet(datanet).accepted), (decided_at, 1));
    // The deposit stays held until the challenge window has passed.
    assert_eq!((c.fee, w.owed(CONTRIBUTOR)), (OPEN, U256::ZERO));
    let decided = w.contribute(CONTRIBUTOR, datanet, 2, open(1)).unwrap();
    for c in [c1, c2, c3] {
        w.review(c, decided, false).unwrap();
    }
    for (id, status) in [(id, ACCEPTED), (decided, REJECTED)] {
        assert_eq!(w.review(c4, id, true), Err(err!(NotPending(id, status))));
    }

    // With quorum 1 the first vote decides, either way.
    let quick = w.create(1, open(1)).unwrap();
    w.curate(&[c5], quick);
    let yes = w.contribute(CONTRIBUTOR, quick, 3, open(1)).unwrap();
    let no = w.contribute(CONTRIBUTOR, quick, 4, open(1)).unwrap();
    w.review(c5, yes, true).unwrap();
    w.review(c5, no, false).unwrap();
    assert_eq!(w.contribution(yes).status, ACCEPTED);
    assert_eq!(w.contribution(no).status, REJECTED);
    assert_eq!(w.datanet(quick).accepted, 1);
    // The lone reviewer is paid its 20% of the deposit; the rest goes to the treasury.
    assert_eq!(w.owed(c5), open(1) / uint(5), "the reviewer's share");
    // The treasury holds the rest of both rejected deposits (this one and `decided`'s).
    assert_eq!(
        w.owed(w.a.timelock),
        (open(1) - open(1) / uint(5)) * uint(2)
    );
}

/// Curators are paid for reviewing, not for rejecting: a rejected deposit pays every voter on
/// either side the same, and the treasury the rest.
#[test]
fn a_rejected_deposit_pays_every_reviewer_alike_and_the_treasury_the_rest() {
    let mut w = world();
    // A fifth of the fee split five ways leaves a remainder, which the first voter takes.
    let fee = U256::from(OPEN + 7);
    let datanet = w.create(3, fee).unwrap();
    let [c1, c2, c3, c4, c5] = CURATORS;
    w.curate(&CURATORS, datanet);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, fee).unwrap();
    let votes = [
        (c4, false),
        (c1, true),
        (c2, false),
        (c5, true),
        (c3, false),
    ];
    for (curator, approve) in votes {
        w.review(curator, id, approve).unwrap();
    }
    let c = w.contribution(id);
    assert_eq!((c.status, c.fee), (REJECTED, 0));
    let paid = fee * uint(2_000) / uint(10_000);
    let each = paid / uint(5);
    let remainder = paid - each * uint(5);
    // Approvers first, in voting order, then rejecters: c1 takes the remainder.
    let shares = [
        (c1, each + remainder),
        (c5, each),
        (c4, each),
        (c2, each),
        (c3, each),
    ];
    assert_eq!(shares.iter().map(|s| s.1).sum::<U256>(), paid);
    for (curator, share) in shares {
        assert_eq!(w.owed(curator), share);
    }
    assert_eq!(w.owed(w.a.timelock), fee - paid);
    for (curator, share) in shares {
        let before = w.evm.balance(curator);
        w.claim(curator).unwrap();
        assert_eq!(w.evm.balance(curator), before + share);
        assert_eq!(w.claim(curator), Err(err!(NothingToClaim(curator))));
    }
    w.claim(w.a.timelock).unwrap();
    assert_eq!(w.evm.balance(w.a.datanet_registry), U256::ZERO);
}

/// A datanet's owner may restrict curating to curators it names.
#[test]
fn an_owner_may_restrict_who_curates() {
    let mut w = world();
    let datanet = w.create(1, open(1)).unwrap();
    let [c1, c2, ..] = CURATORS;
    w.curate(&[c1, c2], datanet);
    let restrict = Reg::setCuratorsRestrictedCall::new((datanet, true));
    assert_eq!(
        w.act(OUTSIDER, restrict.clone()),
        Err(err!(NotDatanetOwner(datanet, OUTSIDER)))
    );
    w.act(OWNER, restrict).unwrap();
    w.act(OWNER, Reg::setCuratorAllowedCall::new((datanet, c1, true)))
        .unwrap();
    assert!(w.view(Reg::mayCurateCall::new((datanet, c1))));
    assert!(!w.view(Reg::mayCurateCall::new((datanet, c2))));
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    assert_eq!(
        w.review(c2, id, true),
        Err(err!(CuratorNotAllowed(datanet, c2)))
    );
    w.review(c1, id, true).unwrap();
    assert_eq!(w.contribution(id).status, ACCEPTED);
}

/// A contribution nobody decides within the review period can be withdrawn, deposit and all,
/// by its contributor only.
#[test]
fn an_undecided_contribution_is_withdrawn_with_its_deposit_after_the_review_period() {
    let mut w = world();
    let datanet = w.create(2, open(1)).unwrap();
    w.curate(&CURATORS, datanet);
    let id = w.contribute(CONTRIBUTOR, datanet, 1, open(1)).unwrap();
    let submitted = w.contribution(id).submittedAt;
    w.review(CURATORS[0], id, true).unwrap();
    let withdraw = Reg::withdrawContributionCall::new((id,));
    let ends_at = submitted + w.config.review_period_secs;
    assert_eq!(
        w.act(CONTRIBUTOR, withdraw.clone()),
        Err(err!(ReviewPeriodOpen(id, ends_at)))
    );
    w.evm.timestamp = ends_at + 1;
    assert_eq!(
        w.act(OUTSIDER, withdraw.clone()),
        Err(err!(NotContributor(id, OUTSIDER)))
    );
    w.act(CONTRIBUTOR, withdraw.clone()).unwrap();
    let c = w.contribution(id);
    assert_eq!((c.status, c.fee), (WITHDRAWN, 0));
    assert_eq!(w.owed(CONTRIBUTOR), open(1));
    assert_eq!(
        w.review(CURATORS[1], id, true),
        Err(err!(NotPending(id, WITHDRAWN)))
    );
    assert_eq!(
        w.act(CONTRIBUTOR, withdraw),
        Err(err!(NotPending(id, WITHDRAWN)))
    );
}

#[test]
fn only_the_owner_publishes_versions_within_the_accepted_count() {
    let mut w = world();
    let datanet = w.create(1, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let c1 = CURATORS[0];
    w.curate(&[c1], datanet);
    w.curate(&[c1], other);
    for (n, d) in [(1, datanet), (2, datanet), (3, other)] {
        let id = w.contribute(CONTRIBUTOR, d, n, open(1)).unwrap();
        w.review(c1, id, true).unwrap();
    }
    let root = content(77);
    let unknown = err!(UnknownDatanet(uint(9)));
    assert_eq!(w.publish(OWNER, uint(9), root, 1), Err(unknown));
    let not_owner = err!(NotDatanetOwner(datanet, OUTSIDER));
    assert_eq!(w.publish(OUTSIDER, datanet, root, 1), Err(not_owner));
    let empty = err!(EmptyRoot());
    assert_eq!(w.publish(OWNER, datanet, B256::ZERO, 1), Err(empty));
    for count in [0, 3] {
        let bad = err!(BadVersionCount(count, 2));
        assert_eq!(w.publish(OWNER, datanet, root, count), Err(bad));
    }
    assert_eq!(w.view(Reg::countsCall {}).versions, U256::ZERO);

    let published_at = w.evm.timestamp;
    assert_eq!(w.publish(OWNER, datanet, root, 2), Ok(uint(1)));
    // Version ids are shared by all datanets.
    assert_eq!(w.publish(OWNER, other, content(78), 1), Ok(uint(2)));
    assert_eq!(w.publish(OWNER, datanet, content(79), 1), Ok(uint(3)));
    let v = w.view(Reg::versionCall::new((uint(1),)));
    let fields = (v.datanetId, v.count, v.root, v.publishedAt);
    assert_eq!(fields, (1, 2, root, published_at));
}

#[test]
fn contains_checks_merkle_proofs_against_a_published_version() {
    let mut w = world();
    let datanet = w.create(1, open(1)).unwrap();
    let other = w.create(1, open(1)).unwrap();
    let c1 = CURATORS[0];
    w.curate(&[c1], datanet);
    w.curate(&[c1], other);
    let mut leaves = Vec::new();
    for n in 1..=6 {
        let d = if n <= 5 { datanet } else { other };
        let id = w.contribute(CONTRIBUTOR, d, n, open(1)).unwrap();
        w.review(c1, id, true).unwrap();
        leaves.push(leaf(id, content(n)));
    }
    // The owner slips the other datanet's contribution (id 6) into the tree as a sixth leaf.
    let levels = tree(leaves);
    let root = levels.last().unwrap()[0];
    let version = w.publish(OWNER, datanet, root, 5).unwrap();

    let mut contains =
        |id: u64, path: Vec<B256>| w.view(Reg::containsCall::new((version, uint(id), path)));
    for id in 1..=5 {
        assert!(contains(id, proof(&levels, id as usize - 1)), "member {id}");
    }
    assert!(!contains(1, proof(&levels, 1)), "someone else's proof");
    assert!(!contains(5, vec![]), "no proof");
    // A valid path, but the contribution belongs to another datanet.
    assert!(!contains(6, proof(&levels, 5)));
    assert!(!contains(99, proof(&levels, 0)), "no such contribution");
    let call = Reg::containsCall::new((uint(9), uint(1), proof(&levels, 0)));
    assert_eq!(w.reg(OUTSIDER, call), Err(err!(UnknownVersion(uint(9)))));
}
