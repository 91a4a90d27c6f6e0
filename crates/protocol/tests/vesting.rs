//! OpenVesting: nothing before the cliff's end, nothing at its very second, a linear release
//! after it, everything at the end, paid only to the beneficiary, and no OPEN created or lost.

mod evm;

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use evm::{Evm, OPEN};
use openledger_protocol::vesting::OpenVesting;

const DEPLOYER: Address = Address::repeat_byte(0xde);
const TEAM: Address = Address::repeat_byte(0x7a);
const MONTH: u64 = 30 * 24 * 3600;

#[test]
fn team_allocation_releases_after_the_cliff_over_36_months() {
    let mut evm = Evm::new(&[DEPLOYER]);
    let genesis = evm.timestamp;
    let cliff_end = genesis + 12 * MONTH;
    let release = 36 * MONTH;
    let allocation = U256::from(360 * OPEN);
    let args = OpenVesting::constructorCall {
        beneficiary: TEAM,
        releaseStart: cliff_end,
        releaseSeconds: release,
    };
    let code = [OpenVesting::BYTECODE.as_ref(), &args.abi_encode()].concat();
    let wallet = evm.deploy(DEPLOYER, code.into()).unwrap();
    // Fund it the way genesis will: a plain transfer of the allocation.
    evm.send(DEPLOYER, wallet, Default::default(), allocation)
        .unwrap();
    let total = evm.balance(DEPLOYER) + evm.balance(wallet) + evm.balance(TEAM);

    let vested_at = |evm: &mut Evm, t: u64| -> U256 {
        evm.sol(
            DEPLOYER,
            wallet,
            OpenVesting::vestedAmount_0Call { timestamp: t },
        )
        .unwrap()
    };
    assert_eq!(vested_at(&mut evm, genesis), U256::ZERO);
    assert_eq!(
        vested_at(&mut evm, cliff_end - 1),
        U256::ZERO,
        "the second before the cliff"
    );
    assert_eq!(
        vested_at(&mut evm, cliff_end),
        U256::ZERO,
        "the cliff second itself"
    );
    assert_eq!(
        vested_at(&mut evm, cliff_end + 1),
        allocation / U256::from(release)
    );
    assert_eq!(
        vested_at(&mut evm, cliff_end + release / 2),
        allocation / U256::from(2)
    );
    // The schedule rounds down: allocation * elapsed / length.
    assert_eq!(
        vested_at(&mut evm, cliff_end + release - 1),
        allocation * U256::from(release - 1) / U256::from(release)
    );
    assert_eq!(
        vested_at(&mut evm, cliff_end + release),
        allocation,
        "everything at the end"
    );
    assert_eq!(vested_at(&mut evm, cliff_end + 10 * release), allocation);

    // Releasing before the cliff pays nothing; anyone may trigger it, only TEAM is paid.
    // `release()` for native OPEN (overload 1; overload 0 takes an ERC-20 token).
    let release_call = OpenVesting::release_1Call {}.abi_encode();
    evm.call(DEPLOYER, wallet, release_call.clone().into())
        .unwrap();
    assert_eq!(evm.balance(TEAM), U256::ZERO);
    // Halfway through the release, half has vested.
    evm.timestamp = cliff_end + release / 2;
    evm.call(DEPLOYER, wallet, release_call.clone().into())
        .unwrap();
    assert_eq!(evm.balance(TEAM), allocation / U256::from(2));
    // At the end, the rest; a second release at the same time pays nothing more.
    evm.timestamp = cliff_end + release;
    evm.call(DEPLOYER, wallet, release_call.clone().into())
        .unwrap();
    assert_eq!(evm.balance(TEAM), allocation);
    evm.call(DEPLOYER, wallet, release_call.into()).unwrap();
    assert_eq!(evm.balance(TEAM), allocation);
    assert_eq!(evm.balance(wallet), U256::ZERO);
    assert_eq!(
        evm.balance(DEPLOYER) + evm.balance(wallet) + evm.balance(TEAM),
        total,
        "OPEN is conserved"
    );
}
