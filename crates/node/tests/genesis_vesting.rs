//! Vesting wallets in the genesis: a node started from it holds the allocations in
//! `OpenVesting` contracts with the right schedules, releases pay the beneficiaries, and the
//! supply stays exactly 10^27 wei.

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolCall;
use openledger_chain::{
    devkeys::dev_accounts,
    genesis::{allocation_address, TOTAL_SUPPLY},
    rpc, Chain, Genesis,
};
use openledger_protocol::{
    genesis::{place_vesting, vested, Beneficiaries, ALLOCATIONS, MONTH},
    OpenVesting,
};
use serde_json::{json, Value};
use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

async fn call(chain: &Arc<Chain>, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let service = rpc::Rpc::new(chain.clone(), Default::default());
    let response = rpc::handle_body(&service, body.to_string().as_bytes())
        .await
        .unwrap();
    assert!(response.get("error").is_none(), "{method}: {response}");
    response["result"].clone()
}

async fn balance(chain: &Arc<Chain>, who: Address) -> U256 {
    let value = call(chain, "eth_getBalance", json!([who, "latest"])).await;
    value.as_str().unwrap().parse().unwrap()
}

async fn view<C: SolCall>(chain: &Arc<Chain>, to: Address, c: C) -> C::Return {
    let data = Bytes::from(c.abi_encode());
    let out = call(
        chain,
        "eth_call",
        json!([{"to": to, "data": data}, "latest"]),
    )
    .await;
    let bytes: Bytes = serde_json::from_value(out).unwrap();
    C::abi_decode_returns(&bytes).unwrap()
}

#[tokio::test]
async fn genesis_wallets_vest_on_schedule_and_conserve_supply() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dev = dev_accounts();
    let beneficiaries = Beneficiaries {
        treasury: Address::repeat_byte(0x7e),
        investors: dev[8].address,
        team: dev[9].address,
    };
    let mut genesis = Genesis::dev();
    genesis.timestamp = now - 24 * MONTH; // two years in: team half-way through its release
    place_vesting(&mut genesis, beneficiaries).unwrap();
    genesis
        .validate()
        .expect("balances unchanged: the supply is still 10^27");

    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(dir.path(), genesis.clone(), true).unwrap();
    for allocation in ALLOCATIONS.iter().filter(|a| a.vesting.is_some()) {
        let wallet = allocation_address(allocation.name);
        let (cliff, months) = allocation.vesting.unwrap();
        let start = view(&chain, wallet, OpenVesting::startCall {}).await;
        assert_eq!(
            start,
            U256::from(genesis.timestamp + cliff * MONTH),
            "{}",
            allocation.name
        );
        let duration = view(&chain, wallet, OpenVesting::durationCall {}).await;
        assert_eq!(duration, U256::from(months * MONTH));
        let owner = view(&chain, wallet, OpenVesting::ownerCall {}).await;
        let expected_owner = match allocation.name {
            "team" => beneficiaries.team,
            "investors" => beneficiaries.investors,
            _ => beneficiaries.treasury,
        };
        assert_eq!(owner, expected_owner, "{}", allocation.name);
    }

    // Release the team's vested OPEN with a transaction from anyone.
    let team_wallet = allocation_address("team");
    let total = genesis.alloc[&team_wallet].balance;
    let before = balance(&chain, beneficiaries.team).await;
    let data = Bytes::from(OpenVesting::release_1Call {}.abi_encode());
    call(
        &chain,
        "eth_sendTransaction",
        json!([{"from": dev[0].address, "to": team_wallet, "data": data, "gas": "0x30000"}]),
    )
    .await;
    let block = chain.produce_block().unwrap();
    assert_eq!(block.txs.len(), 1);
    let after = balance(&chain, beneficiaries.team).await;
    let expected = vested(
        &ALLOCATIONS[3],
        total,
        genesis.timestamp,
        block.header.timestamp,
    );
    assert_eq!(ALLOCATIONS[3].name, "team");
    assert_eq!(
        after - before,
        expected,
        "released what had vested by the block's time"
    );
    // Twelve of 36 months into the release: a third, plus the seconds since.
    assert!(expected >= total / U256::from(3) && expected < total / U256::from(2));
    assert_eq!(chain.total_balance(), TOTAL_SUPPLY);
}
