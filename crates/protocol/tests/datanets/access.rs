//! Permissioned datanets: the owner's access policy, paid requests held in escrow, grants that
//! pay the owner, denials and withdrawals that refund the requester.

use super::*;

const REQUESTER: Address = CONTRIBUTOR;

fn access_of(w: &mut World, datanet: U256, who: Address) -> Reg::AccessRequest {
    w.view(Reg::accessOfCall::new((datanet, who)))
}

fn has_access(w: &mut World, datanet: U256, who: Address) -> bool {
    w.view(Reg::hasAccessCall::new((datanet, who)))
}

fn permissioned(w: &mut World, fee: U256) -> U256 {
    let datanet = w.create(1, U256::ZERO).unwrap();
    let call = Reg::setAccessPolicyCall::new((datanet, true, fee.to()));
    w.act(OWNER, call).unwrap();
    datanet
}

#[test]
fn an_open_datanet_needs_no_access_and_takes_no_requests() {
    let mut w = world();
    let datanet = w.create(1, U256::ZERO).unwrap();
    assert!(has_access(&mut w, datanet, OUTSIDER));
    let request = Reg::requestAccessCall::new((datanet,));
    assert_eq!(
        w.act(REQUESTER, request.clone()),
        Err(err!(NotPermissioned(datanet)))
    );
    assert_eq!(
        w.act(REQUESTER, Reg::requestAccessCall::new((uint(9),))),
        Err(err!(UnknownDatanet(uint(9))))
    );
    // Only the owner sets the policy.
    let policy = Reg::setAccessPolicyCall::new((datanet, true, 0));
    assert_eq!(
        w.act(OUTSIDER, policy),
        Err(err!(NotDatanetOwner(datanet, OUTSIDER)))
    );
}

#[test]
fn a_granted_request_pays_the_owner_its_fee() {
    let mut w = world();
    let fee = open(3);
    let datanet = permissioned(&mut w, fee);
    let policy = w.view(Reg::accessPolicyCall::new((datanet,)));
    assert!(policy.permissioned && U256::from(policy.fee) == fee);
    assert!(!has_access(&mut w, datanet, REQUESTER));
    assert!(has_access(&mut w, datanet, OWNER));
    let request = Reg::requestAccessCall::new((datanet,));
    assert_eq!(
        w.pay(REQUESTER, request.clone(), open(1)).map(|_| ()),
        Err(err!(WrongFee(fee, open(1))))
    );
    assert_eq!(
        w.act(OWNER, request.clone()),
        Err(err!(AlreadyHasAccess(datanet, OWNER)))
    );
    let before = w.evm.balance(REQUESTER);
    let (_, logs) = w
        .evm
        .send(
            REQUESTER,
            w.a.datanet_registry,
            request.abi_encode().into(),
            fee,
        )
        .unwrap();
    assert!(logs
        .iter()
        .any(|l| Reg::AccessRequested::decode_log(l).is_ok_and(|e| e.fee == fee.to::<u128>())));
    assert_eq!(w.evm.balance(REQUESTER), before - fee);
    assert_eq!(
        w.pay(REQUESTER, request.clone(), fee).map(|_| ()),
        Err(err!(AccessAlreadyRequested(datanet, REQUESTER)))
    );
    // A stranger cannot answer it; the owner grants and is credited the fee.
    let grant = Reg::grantAccessCall::new((datanet, REQUESTER));
    assert_eq!(
        w.act(OUTSIDER, grant.clone()),
        Err(err!(NotDatanetOwner(datanet, OUTSIDER)))
    );
    w.act(OWNER, grant.clone()).unwrap();
    assert!(has_access(&mut w, datanet, REQUESTER));
    assert_eq!(w.owed(OWNER), fee);
    assert_eq!(
        w.act(OWNER, grant),
        Err(err!(AlreadyHasAccess(datanet, REQUESTER)))
    );
    assert_eq!(
        w.pay(REQUESTER, request, fee).map(|_| ()),
        Err(err!(AlreadyHasAccess(datanet, REQUESTER)))
    );
    // A later fee change does not touch what was paid; the owner claims it.
    w.act(OWNER, Reg::setAccessPolicyCall::new((datanet, true, 1)))
        .unwrap();
    let owner_before = w.evm.balance(OWNER);
    w.claim(OWNER).unwrap();
    assert_eq!(w.evm.balance(OWNER), owner_before + fee);
}

#[test]
fn a_denied_or_withdrawn_request_returns_its_fee() {
    let mut w = world();
    let fee = open(2);
    let datanet = permissioned(&mut w, fee);
    let request = Reg::requestAccessCall::new((datanet,));
    w.pay(REQUESTER, request.clone(), fee).unwrap();
    w.act(OWNER, Reg::denyAccessCall::new((datanet, REQUESTER)))
        .unwrap();
    assert!(!has_access(&mut w, datanet, REQUESTER));
    assert_eq!(w.owed(REQUESTER), fee);
    assert_eq!(access_of(&mut w, datanet, REQUESTER).status, 0);
    assert_eq!(
        w.act(OWNER, Reg::denyAccessCall::new((datanet, REQUESTER))),
        Err(err!(NoAccessRequest(datanet, REQUESTER)))
    );
    // Asking again and withdrawing before the owner answers.
    w.pay(REQUESTER, request, fee).unwrap();
    assert_eq!(access_of(&mut w, datanet, REQUESTER).status, 1);
    w.act(REQUESTER, Reg::withdrawAccessRequestCall::new((datanet,)))
        .unwrap();
    assert_eq!(w.owed(REQUESTER), fee * uint(2));
    assert_eq!(
        w.act(REQUESTER, Reg::withdrawAccessRequestCall::new((datanet,))),
        Err(err!(NoAccessRequest(datanet, REQUESTER)))
    );
    // The owner may grant without a request, free; the registry holds nothing it owes no one.
    w.act(OWNER, Reg::grantAccessCall::new((datanet, OUTSIDER)))
        .unwrap();
    assert!(has_access(&mut w, datanet, OUTSIDER));
    w.claim(REQUESTER).unwrap();
    assert_eq!(w.evm.balance(w.a.datanet_registry), U256::ZERO);
}
