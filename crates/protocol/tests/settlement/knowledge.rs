//! Knowledge datanets: an agent that retrieves passages from a datanet may credit that
//! datanet's accepted contributions beside its adapter's lineage; no other agent may, and the
//! permission never sticks to the adapter.

use super::*;

/// Agent 5: MODEL_A's, on adapter 1 (trained on version 1), retrieving from datanet 2.
const AGENT_KNOWING: u64 = 5;

fn knowing_world() -> World {
    let mut w = world();
    let mr = w.a.model_registry;
    let deploy = MR::deployAgentCall::new((u(1), HOST, PRICE_IN, PRICE_OUT, 2, "".into()));
    w.ok(MODEL_A, mr, deploy);
    w.ok(HOST, mr, MR::acceptAgentCall::new((u(AGENT_KNOWING),)));
    let route = w.view(mr, MR::agentRouteCall::new((u(AGENT_KNOWING),)));
    assert_eq!((route.adapterId, route.knowledgeDatanetId), (u(1), u(2)));
    w
}

#[test]
fn an_agent_credits_its_knowledge_datanets_passages_and_no_other_agent_can() {
    let mut w = knowing_world();
    let t = (1000, 1000);
    let fee = max_fee(t);
    // C_OTHER is in datanet 2, outside adapter 1's lineage and never proven for it.
    assert!(!w.view(w.is, IS::inLineageCall::new((u(1), u(C_OTHER)))));
    // Agent A runs the same adapter without a knowledge datanet: refused, even right after a
    // receipt of the knowing agent credited C_OTHER in the same batch.
    let r = [
        receipt(consumer(0), AGENT_KNOWING, 1, t, fee, &[(1, 10_000)]),
        receipt(consumer(1), AGENT_A, 1, t, fee, &[(1, 10_000)]),
    ];
    let e = w.settle_fails(HOST, &r, &[C1, C_OTHER]);
    assert_eq!(e, err!(NotInLineage, u(1), u(C_OTHER)));
    // Alone, the knowing agent's receipt settles: half to its lineage, half to a passage.
    let r = [receipt(
        consumer(0),
        AGENT_KNOWING,
        1,
        t,
        fee,
        &[(0, 5_000), (1, 5_000)],
    )];
    let before = w.claimable(CONTRIB2);
    let settled = w.settle(HOST, &r, &[C1, C_OTHER]);
    // Nothing was remembered for the adapter: agent A still may not credit C_OTHER.
    assert!(!w.view(w.is, IS::inLineageCall::new((u(1), u(C_OTHER)))));
    let r = [receipt(consumer(1), AGENT_A, 1, t, fee, &[(0, 10_000)])];
    let e = w.settle_fails(HOST, &r, &[C_OTHER]);
    assert_eq!(e, err!(NotInLineage, u(1), u(C_OTHER)));
    // After the window, C_OTHER's contributor is paid its share of the half, to the wei.
    w.evm.timestamp += WINDOW + 1;
    w.release(&settled);
    let slice = U256::from(fee) * U256::from(5_000u64);
    let due = slice * U256::from(SPLIT[0]) / U256::from(100_000_000u64);
    assert_eq!(w.claimable(CONTRIB2) - before, due);
}

#[test]
fn a_knowledge_agent_cannot_credit_another_datanet_outside_its_lineage() {
    let mut w = knowing_world();
    let mr = w.a.model_registry;
    // Agent 6: adapter 1, knowledge datanet 1 (already its lineage's): C_OTHER stays refused.
    let deploy = MR::deployAgentCall::new((u(1), HOST, PRICE_IN, PRICE_OUT, 1, "".into()));
    w.ok(MODEL_A, mr, deploy);
    w.ok(HOST, mr, MR::acceptAgentCall::new((u(6),)));
    let t = (1000, 1000);
    let r = [receipt(consumer(0), 6, 1, t, max_fee(t), &[(0, 10_000)])];
    let e = w.settle_fails(HOST, &r, &[C_OTHER]);
    assert_eq!(e, err!(NotInLineage, u(1), u(C_OTHER)));
}
