// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ProtocolParams
/// @notice The runtime parameters of the OpenLedger protocol: how inference fees are split,
/// the minimum stake of each role, the curator review quorum, the challenge window, the time
/// governance has to rule on a challenge, and the unbonding delay. Its owner is governance (the
/// timelock), so every change goes through a proposal. Every parameter is bounded from above,
/// and the unbonding delay never drops below the challenge window plus the ruling period, so a
/// stake cannot leave before a challenge raised in time has been judged.
contract ProtocolParams is Ownable {
    /// @notice Basis points in a whole: every fee split adds up to exactly this.
    uint16 public constant BPS = 10_000;
    /// @notice The longest any window or delay may be.
    uint64 public constant MAX_DURATION = 365 days;
    /// @notice The largest review quorum (the registry's bound on voters per contribution).
    uint16 public constant MAX_QUORUM = 32;
    /// @notice The largest minimum stake: all the OPEN there is.
    uint256 public constant MAX_STAKE = 1e27;

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
    uint64 private _rulingPeriod;

    /// @notice The shares of a fee split add up to `total` basis points instead of 10,000.
    error SplitDoesNotAddUp(uint256 total);
    /// @notice A review quorum must be at least one curator.
    error ZeroQuorum();
    /// @notice A challenge window, ruling period or unbonding delay must be longer than zero
    /// seconds.
    error ZeroDuration();
    /// @notice A duration of `secondsLong` is over the bound `max`.
    error DurationTooLong(uint64 secondsLong, uint64 max);
    /// @notice A review quorum of `quorum` is over the bound `max`.
    error QuorumTooLarge(uint16 quorum, uint16 max);
    /// @notice A minimum stake of `amount` is over the bound `max`.
    error StakeTooLarge(uint256 amount, uint256 max);
    /// @notice The unbonding delay `unbonding` is shorter than the challenge window plus the
    /// ruling period, `required`: a challenged stake could leave before its ruling.
    error UnbondingTooShort(uint64 unbonding, uint64 required);

    event FeeSplitSet(uint16 contributors, uint16 curators, uint16 modelOwner, uint16 host, uint16 treasury);
    event MinStakeSet(Role indexed role, uint256 amount);
    event ReviewQuorumSet(uint16 quorum);
    event ChallengeWindowSet(uint64 secondsLong);
    event UnbondingDelaySet(uint64 secondsLong);
    event RulingPeriodSet(uint64 secondsLong);

    /// @param governance The owner: the timelock that executes passed proposals.
    /// @param split The initial fee split (must add up to 10,000 basis points).
    /// @param minStakes Minimum stakes in wei, indexed by `Role`.
    /// @param quorum Curator votes needed to accept or reject a contribution.
    /// @param challengeSeconds Seconds during which a settlement or contribution can be challenged.
    /// @param rulingSeconds Seconds governance has to rule on a challenge before it resolves by
    /// default.
    /// @param unbondingSeconds Seconds between asking to withdraw a stake and receiving it; at
    /// least `challengeSeconds + rulingSeconds`.
    constructor(
        address governance,
        FeeSplit memory split,
        uint256[3] memory minStakes,
        uint16 quorum,
        uint64 challengeSeconds,
        uint64 rulingSeconds,
        uint64 unbondingSeconds
    ) Ownable(governance) {
        _setFeeSplit(split);
        for (uint256 i = 0; i < 3; ++i) {
            _setMinStake(Role(i), minStakes[i]);
        }
        _setReviewQuorum(quorum);
        _checkDuration(challengeSeconds);
        _checkDuration(rulingSeconds);
        _checkDuration(unbondingSeconds);
        _checkUnbonding(unbondingSeconds, challengeSeconds, rulingSeconds);
        _challengeWindow = challengeSeconds;
        _rulingPeriod = rulingSeconds;
        _unbondingDelay = unbondingSeconds;
        emit ChallengeWindowSet(challengeSeconds);
        emit RulingPeriodSet(rulingSeconds);
        emit UnbondingDelaySet(unbondingSeconds);
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

    /// @notice Seconds governance has to rule on a challenge; after that it resolves by default.
    function rulingPeriod() external view returns (uint64) {
        return _rulingPeriod;
    }

    /// @notice Sets the fee split. Only governance.
    /// @dev Reverts with `SplitDoesNotAddUp` unless the shares sum to exactly `BPS`.
    function setFeeSplit(FeeSplit calldata split) external onlyOwner {
        _setFeeSplit(split);
    }

    /// @notice Sets the minimum stake for `role`. Only governance.
    function setMinStake(Role role, uint256 amount) external onlyOwner {
        _setMinStake(role, amount);
    }

    /// @notice Sets the review quorum. Only governance.
    function setReviewQuorum(uint16 quorum) external onlyOwner {
        _setReviewQuorum(quorum);
    }

    /// @notice Sets the challenge window. Only governance.
    /// @dev Reverts with `UnbondingTooShort` if the unbonding delay would no longer cover the
    /// window plus the ruling period: lengthen the delay first, in the same proposal.
    function setChallengeWindow(uint64 secondsLong) external onlyOwner {
        _checkDuration(secondsLong);
        _checkUnbonding(_unbondingDelay, secondsLong, _rulingPeriod);
        _challengeWindow = secondsLong;
        emit ChallengeWindowSet(secondsLong);
    }

    /// @notice Sets the time governance has to rule on a challenge. Only governance.
    function setRulingPeriod(uint64 secondsLong) external onlyOwner {
        _checkDuration(secondsLong);
        _checkUnbonding(_unbondingDelay, _challengeWindow, secondsLong);
        _rulingPeriod = secondsLong;
        emit RulingPeriodSet(secondsLong);
    }

    /// @notice Sets the unbonding delay. Only governance.
    function setUnbondingDelay(uint64 secondsLong) external onlyOwner {
        _checkDuration(secondsLong);
        _checkUnbonding(secondsLong, _challengeWindow, _rulingPeriod);
        _unbondingDelay = secondsLong;
        emit UnbondingDelaySet(secondsLong);
    }

    function _setFeeSplit(FeeSplit memory split) private {
        uint256 total = uint256(split.contributors) + split.curators + split.modelOwner + split.host
            + split.treasury;
        if (total != BPS) revert SplitDoesNotAddUp(total);
        _feeSplit = split;
        emit FeeSplitSet(split.contributors, split.curators, split.modelOwner, split.host, split.treasury);
    }

    function _setMinStake(Role role, uint256 amount) private {
        if (amount > MAX_STAKE) revert StakeTooLarge(amount, MAX_STAKE);
        _minStake[role] = amount;
        emit MinStakeSet(role, amount);
    }

    function _setReviewQuorum(uint16 quorum) private {
        if (quorum == 0) revert ZeroQuorum();
        if (quorum > MAX_QUORUM) revert QuorumTooLarge(quorum, MAX_QUORUM);
        _reviewQuorum = quorum;
        emit ReviewQuorumSet(quorum);
    }

    function _checkDuration(uint64 secondsLong) private pure {
        if (secondsLong == 0) revert ZeroDuration();
        if (secondsLong > MAX_DURATION) revert DurationTooLong(secondsLong, MAX_DURATION);
    }

    function _checkUnbonding(uint64 unbonding, uint64 challengeWindow_, uint64 rulingPeriod_) private pure {
        uint64 required = challengeWindow_ + rulingPeriod_;
        if (unbonding < required) revert UnbondingTooShort(unbonding, required);
    }
}
