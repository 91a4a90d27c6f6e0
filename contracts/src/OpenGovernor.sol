// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {GovernorSettings} from "@openzeppelin/contracts/governance/extensions/GovernorSettings.sol";
import {GovernorCountingSimple} from "@openzeppelin/contracts/governance/extensions/GovernorCountingSimple.sol";
import {GovernorVotes} from "@openzeppelin/contracts/governance/extensions/GovernorVotes.sol";
import {GovernorVotesQuorumFraction} from
    "@openzeppelin/contracts/governance/extensions/GovernorVotesQuorumFraction.sol";
import {GovernorPreventLateQuorum} from
    "@openzeppelin/contracts/governance/extensions/GovernorPreventLateQuorum.sol";
import {GovernorTimelockControl} from "@openzeppelin/contracts/governance/extensions/GovernorTimelockControl.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";

/// @title OpenGovernor
/// @notice OpenLedger's governance: proposals voted on with staked OPEN (voting power from
/// `Staking`), simple for/against/abstain counting, and execution through the timelock that
/// owns the protocol's parameters. Time is measured in seconds (the `Staking` clock is the
/// block timestamp), so producing empty blocks cannot shorten a vote. The quorum is a fraction
/// of all staked OPEN but never below an absolute floor, and a quorum reached late extends the
/// vote, so that a last-minute swing leaves time to answer.
contract OpenGovernor is
    Governor,
    GovernorSettings,
    GovernorCountingSimple,
    GovernorVotes,
    GovernorVotesQuorumFraction,
    GovernorPreventLateQuorum,
    GovernorTimelockControl
{
    /// @notice The least voting power a quorum ever is, whatever the fraction gives.
    uint256 public immutable quorumFloor;

    /// @param staking The voting-power source (the `Staking` contract).
    /// @param timelock Executes passed proposals after its delay.
    /// @param delaySeconds Seconds between proposing and voting.
    /// @param periodSeconds Seconds the vote stays open.
    /// @param threshold Voting power needed to propose.
    /// @param quorumPercent Percent of all voting power that must take part.
    /// @param quorumFloor_ The least voting power a quorum ever is.
    /// @param lateQuorumExtension Seconds a vote stays open after a late quorum.
    constructor(
        IVotes staking,
        TimelockController timelock,
        uint48 delaySeconds,
        uint32 periodSeconds,
        uint256 threshold,
        uint256 quorumPercent,
        uint256 quorumFloor_,
        uint48 lateQuorumExtension
    )
        Governor("OpenLedger Governor")
        GovernorSettings(delaySeconds, periodSeconds, threshold)
        GovernorVotes(staking)
        GovernorVotesQuorumFraction(quorumPercent)
        GovernorPreventLateQuorum(lateQuorumExtension)
        GovernorTimelockControl(timelock)
    {
        quorumFloor = quorumFloor_;
    }

    /// @inheritdoc Governor
    function votingDelay() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingDelay();
    }

    /// @inheritdoc Governor
    function votingPeriod() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingPeriod();
    }

    /// @inheritdoc Governor
    function proposalThreshold() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.proposalThreshold();
    }

    /// @notice The quorum at `timepoint`: the fraction of all staked OPEN, at least the floor.
    function quorum(uint256 timepoint) public view override(Governor, GovernorVotesQuorumFraction) returns (uint256) {
        uint256 fraction = super.quorum(timepoint);
        return fraction > quorumFloor ? fraction : quorumFloor;
    }

    /// @inheritdoc Governor
    function proposalDeadline(uint256 proposalId)
        public
        view
        override(Governor, GovernorPreventLateQuorum)
        returns (uint256)
    {
        return super.proposalDeadline(proposalId);
    }

    function _tallyUpdated(uint256 proposalId) internal override(Governor, GovernorPreventLateQuorum) {
        super._tallyUpdated(proposalId);
    }

    /// @inheritdoc Governor
    function state(uint256 proposalId) public view override(Governor, GovernorTimelockControl) returns (ProposalState) {
        return super.state(proposalId);
    }

    /// @inheritdoc Governor
    function proposalNeedsQueuing(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (bool)
    {
        return super.proposalNeedsQueuing(proposalId);
    }

    function _queueOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint48) {
        return super._queueOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) {
        super._executeOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _cancel(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint256) {
        return super._cancel(targets, values, calldatas, descriptionHash);
    }

    function _executor() internal view override(Governor, GovernorTimelockControl) returns (address) {
        return super._executor();
    }
}
