//! The gas of settling 256 receipts that credit 20 contributions each, and of releasing them.

use super::*;

/// Datanet 3 with `n` accepted contributions in version 3, adapter 3 trained on it, agent 5
/// on adapter 3 served by HOST, and every contribution proven part of adapter 3's lineage.
/// Returns the contribution ids.
pub fn wide_lineage(w: &mut World, n: u64) -> Vec<u64> {
    let (dr, mr) = (w.a.datanet_registry, w.a.model_registry);
    w.ok(
        DATA_OWNER,
        dr,
        DR::createDatanetCall::new(("d3".into(), h("s"), 1, 0)),
    );
    w.stake(CURATOR, 1, 3, open(10));
    let first = 5;
    let ids: Vec<u64> = (first..first + n).collect();
    for &id in &ids {
        let who = if id % 2 == 0 { CONTRIB } else { CONTRIB2 };
        w.ok(
            who,
            dr,
            DR::contributeCall::new((u(3), content(id), 100, h("m"))),
        );
        w.ok(CURATOR, dr, DR::reviewCall::new((u(id), true, h("ok"))));
    }
    let leaves: Vec<B256> = ids.iter().map(|&i| version_leaf(i, content(i))).collect();
    let publish = DR::publishVersionCall::new((u(3), root(leaves.clone()), n, "v3".into()));
    w.ok(DATA_OWNER, dr, publish);
    let adapter = MR::registerAdapterCall::new((
        u(1),
        vec![u(3)],
        h("cfg"),
        h("lora3"),
        h("manifest"),
        "".into(),
    ));
    w.ok(MODEL_A, mr, adapter);
    let agent = MR::deployAgentCall::new((u(3), HOST, PRICE_IN, PRICE_OUT, 0, "".into()));
    w.ok(MODEL_A, mr, agent);
    w.ok(HOST, mr, MR::acceptAgentCall::new((u(5),)));
    for (i, &id) in ids.iter().enumerate() {
        let call = IS::proveLineageCall::new((u(3), u(3), u(id), proof(leaves.clone(), i)));
        w.ok(OUTSIDER, w.is, call);
    }
    ids
}

#[test]
fn settling_256_receipts_crediting_20_contributions_each_fits_the_gas_budget() {
    let mut w = world();
    let ids = wide_lineage(&mut w, 20);
    let credit: Vec<(u16, u16)> = (0..20).map(|p| (p, 500)).collect();
    // 256 receipts from 8 consumers, 32 each; twice, to see the steady state.
    let batch = |round: u64| -> Vec<Receipt> {
        (0..256u64)
            .map(|i| {
                let (c, seq) = ((i / 32) as u8, round * 100 + i % 32 + 1);
                let fee = 1_000_003 + 7919 * i as u128;
                receipt(consumer(c), 5, seq, (1000, 1000), fee, &credit)
            })
            .collect()
    };
    let mut figures = vec![];
    for round in 0..2 {
        let r = batch(round);
        let s = w.settle(HOST, &r, &ids);
        let settle = w.evm.last_gas;
        assert_eq!(
            w.batch(s.id).receiptsRoot,
            root(r.iter().map(leaf).collect())
        );
        w.evm.advance(WINDOW + 1);
        w.release(&s);
        let release = w.evm.last_gas;
        println!(
            "round {round}: settle {settle} gas ({} per receipt), release {release} gas ({} per \
             receipt)",
            settle / 256,
            release / 256
        );
        figures.push((settle, release));
    }
    let (settle, release) = figures[1];
    assert!(
        (settle + release) / 256 <= 15_000,
        "steady state: settle {settle} + release {release} gas for 256 receipts"
    );
}
