// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {VestingWallet} from "@openzeppelin/contracts/finance/VestingWallet.sol";

/// @title OpenVesting
/// @notice Holds an allocation of native OPEN and releases it linearly to its beneficiary from
/// `releaseStart` over `releaseSeconds`; nothing is releasable before `releaseStart`.
/// Team and investor allocations start releasing at the 12-month cliff and release over the
/// following 36 months; the community and ecosystem allocations release over 48 months from
/// genesis to the governance treasury. Anyone may call `release()`; OPEN only ever goes to the
/// beneficiary.
contract OpenVesting is VestingWallet {
    /// @param beneficiary Receives the released OPEN (and owns the wallet).
    /// @param releaseStart Unix time of the first releasable second (the cliff's end).
    /// @param releaseSeconds Length of the linear release.
    constructor(address beneficiary, uint64 releaseStart, uint64 releaseSeconds)
        payable
        VestingWallet(beneficiary, releaseStart, releaseSeconds)
    {}
}
