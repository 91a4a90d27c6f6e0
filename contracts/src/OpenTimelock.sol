// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title OpenTimelock
/// @notice Executes what governance passed, after a delay that gives everyone time to react.
/// It owns `ProtocolParams`, administers `Staking`'s slasher role, and holds the treasury.
contract OpenTimelock is TimelockController {
    /// @param minDelay Seconds between queueing and executing a passed proposal.
    /// @param proposers May queue operations (the governor).
    /// @param executors May execute ready operations (`address(0)`: anyone).
    /// @param admin Optional bootstrap admin that wires roles and then renounces (or zero).
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}
}
