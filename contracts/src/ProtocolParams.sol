// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ProtocolParams
/// @notice The runtime parameters of the OpenLedger protocol: how inference fees are split,
/// the minimum stake of each role, the curator review quorum, and the challenge and unbonding
/// windows. Its owner is governance (the timelock), so every change goes through a proposal.
contract ProtocolParams is Ownable {
    /// @notice Basis points in a whole: every fee split adds up to exactly this.
    uint16 public constant BPS = 10_000;

    /// @notice The share of an inference fee each party receives, in basis points.
    struct FeeSplit {
        uint16 contributors;
        uint16 curators;
        uint16 modelOwner;
        uint16 host;
        uint16 treasury;
    }

    /// @notice The roles that stake OPEN.
    enum Role {
        Validator,
        Curator,
        Host
    }

    FeeSplit private _feeSplit;
    mapping(Role role => uint256 amount) private _minStake;
    uint16 private _reviewQuorum;
    uint64 private _challengeWindow;
    uint64 private _unbondingDelay;

    /// @notice The shares of a fee split add up to `total` basis points instead of 10,000.
    error SplitDoesNotAddUp(uint256 total);
    /// @notice A review quorum must be at least one curator.
    error ZeroQuorum();
    /// @notice A challenge window or unbonding delay must be longer than zero seconds.
    error ZeroDuration();

    event FeeSplitSet(uint16 contributors, uint16 curators, uint16 modelOwner, uint16 host, uint16 treasury);
    event MinStakeSet(Role indexed role, uint256 amount);
    event ReviewQuorumSet(uint16 quorum);
    event ChallengeWindowSet(uint64 secondsLong);
    event UnbondingDelaySet(uint64 secondsLong);

    /// @param governance The owner: the timelock that executes passed proposals.
    /// @param split The initial fee split (must add up to 10,000 basis points).
    /// @param minStakes Minimum stakes in wei, indexed by `Role`.
    /// @param quorum Curator votes needed to accept or reject a contribution.
    /// @param challengeSeconds Seconds during which a settlement or contribution can be challenged.
    /// @param unbondingSeconds Seconds between asking to withdraw a stake and receiving it.
    constructor(
        address governance,
        FeeSplit memory split,
        uint256[3] memory minStakes,
        uint16 quorum,
        uint64 challengeSeconds,
        uint64 unbondingSeconds
    ) Ownable(governance) {
        _setFeeSplit(split);
        for (uint256 i = 0; i < 3; ++i) {
            _minStake[Role(i)] = minStakes[i];
            emit MinStakeSet(Role(i), minStakes[i]);
        }
        _setReviewQuorum(quorum);
        _setChallengeWindow(challengeSeconds);
        _setUnbondingDelay(unbondingSeconds);
    }

    /// @notice The current fee split.
    function feeSplit() external view returns (FeeSplit memory) {
        return _feeSplit;
    }

    /// @notice The minimum stake, in wei, for `role`.
    function minStake(Role role) external view returns (uint256) {
        return _minStake[role];
    }

    /// @notice Curator votes needed to decide a contribution.
    function reviewQuorum() external view returns (uint16) {
        return _reviewQuorum;
    }

    /// @notice Seconds during which a settlement or contribution can be challenged.
    function challengeWindow() external view returns (uint64) {
        return _challengeWindow;
    }

    /// @notice Seconds between a withdrawal request and the stake's release.
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    /// @notice Sets the fee split. Only governance.
    /// @dev Reverts with `SplitDoesNotAddUp` unless the shares sum to exactly `BPS`.
    function setFeeSplit(FeeSplit calldata split) external onlyOwner {
        _setFeeSplit(split);
    }

    /// @notice Sets the minimum stake for `role`. Only governance.
    function setMinStake(Role role, uint256 amount) external onlyOwner {
        _minStake[role] = amount;
        emit MinStakeSet(role, amount);
    }

    /// @notice Sets the review quorum. Only governance.
    function setReviewQuorum(uint16 quorum) external onlyOwner {
        _setReviewQuorum(quorum);
    }

    /// @notice Sets the challenge window. Only governance.
    function setChallengeWindow(uint64 secondsLong) external onlyOwner {
        _setChallengeWindow(secondsLong);
    }

    /// @notice Sets the unbonding delay. Only governance.
    function setUnbondingDelay(uint64 secondsLong) external onlyOwner {
        _setUnbondingDelay(secondsLong);
    }

    function _setFeeSplit(FeeSplit memory split) private {
        uint256 total = uint256(split.contributors) + split.curators + split.modelOwner + split.host
            + split.treasury;
        if (total != BPS) revert SplitDoesNotAddUp(total);
        _feeSplit = split;
        emit FeeSplitSet(split.contributors, split.curators, split.modelOwner, split.host, split.treasury);
    }

    function _setReviewQuorum(uint16 quorum) private {
        if (quorum == 0) revert ZeroQuorum();
        _reviewQuorum = quorum;
        emit ReviewQuorumSet(quorum);
    }

    function _setChallengeWindow(uint64 secondsLong) private {
        if (secondsLong == 0) revert ZeroDuration();
        _challengeWindow = secondsLong;
        emit ChallengeWindowSet(secondsLong);
    }

    function _setUnbondingDelay(uint64 secondsLong) private {
        if (secondsLong == 0) revert ZeroDuration();
        _unbondingDelay = secondsLong;
        emit UnbondingDelaySet(secondsLong);
    }
}
