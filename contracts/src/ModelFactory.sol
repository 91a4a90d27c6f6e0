// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title ModelFactory
/// @notice The fee for a fine-tuning job (the network's gas for fine-tuning), held in escrow
/// between the account that pays for the job and the operator whose factory runs it.
///
/// An operator sets the fee it charges per job. The factory names each job by a key; the payer
/// funds that key with exactly the operator's fee, which makes the payer the job's account (the
/// factory checks its datanet access grants). The fee is held until the job ends: the operator
/// starts the job (from then on the payer can no longer cancel), then completes it (the fee is
/// the operator's) or refunds it (the fee returns to the payer) — a factory refunds a job whose
/// validation fails or that is cancelled before it starts. The payer may cancel a funded job
/// the operator has not started, and reclaim the fee of a job the operator neither started
/// within `startTimeout` nor finished within `runTimeout` of starting, so an operator that
/// disappears never keeps anyone's OPEN.
///
/// Payments are credited and withdrawn with `claim`, so no transition can be blocked by a
/// recipient that refuses OPEN.
contract ModelFactory is ReentrancyGuard {
    /// @notice Where a job's fee stands.
    enum JobStatus {
        None,
        Funded,
        Running,
        Completed,
        Refunded
    }

    /// @notice A job's escrow.
    struct Job {
        address payer;
        JobStatus status;
        uint64 fundedAt;
        uint64 startedAt;
        uint128 fee;
    }

    /// @notice Seconds an operator has to start a funded job before its payer may reclaim it.
    uint64 public immutable startTimeout;
    /// @notice Seconds an operator has to finish a started job before its payer may reclaim it.
    uint64 public immutable runTimeout;

    mapping(address operator => uint128) private _fees;
    mapping(address operator => mapping(bytes32 jobKey => Job)) private _jobs;
    mapping(address account => uint256) private _owed;

    /// @notice The OPEN sent is not the operator's job fee.
    error WrongFee(uint256 required, uint256 sent);
    /// @notice The job key is already funded.
    error AlreadyFunded(address operator, bytes32 jobKey);
    /// @notice The job is not in the state this needs.
    error WrongJobStatus(address operator, bytes32 jobKey, JobStatus status);
    /// @notice Only the job's payer may do this.
    error NotPayer(address operator, bytes32 jobKey, address account);
    /// @notice The operator still has until `until` to act on the job.
    error TooEarly(address operator, bytes32 jobKey, uint64 until);
    /// @notice The account has nothing to claim.
    error NothingToClaim(address account);

    event OperatorFeeSet(address indexed operator, uint128 fee);
    event JobFunded(address indexed operator, bytes32 indexed jobKey, address indexed payer, uint128 fee);
    event JobStarted(address indexed operator, bytes32 indexed jobKey);
    event JobCompleted(address indexed operator, bytes32 indexed jobKey, uint128 fee);
    event JobRefunded(address indexed operator, bytes32 indexed jobKey, address indexed payer, uint128 fee);
    event JobCancelled(address indexed operator, bytes32 indexed jobKey, address indexed payer, uint128 fee);
    event JobReclaimed(address indexed operator, bytes32 indexed jobKey, address indexed payer, uint128 fee);
    event Credited(address indexed account, uint256 amount);
    event Claimed(address indexed account, uint256 amount);

    /// @param startTimeout_ Seconds an operator has to start a funded job.
    /// @param runTimeout_ Seconds an operator has to finish a started job.
    constructor(uint64 startTimeout_, uint64 runTimeout_) {
        startTimeout = startTimeout_;
        runTimeout = runTimeout_;
    }

    /// @notice Sets the fee the caller, as an operator, charges per job (jobs already funded
    /// keep theirs).
    function setFee(uint128 fee) external {
        _fees[msg.sender] = fee;
        emit OperatorFeeSet(msg.sender, fee);
    }

    /// @notice Pays for the job `jobKey` of `operator` with exactly its fee; the caller
    /// becomes the job's payer.
    function fund(address operator, bytes32 jobKey) external payable {
        uint128 fee = _fees[operator];
        if (msg.value != fee) revert WrongFee(fee, msg.value);
        Job storage j = _jobs[operator][jobKey];
        if (j.status != JobStatus.None) revert AlreadyFunded(operator, jobKey);
        j.payer = msg.sender;
        j.status = JobStatus.Funded;
        j.fundedAt = uint64(block.timestamp);
        j.fee = fee;
        emit JobFunded(operator, jobKey, msg.sender, fee);
    }

    /// @notice Starts a funded job of the caller (the operator): its payer can no longer cancel.
    function start(bytes32 jobKey) external {
        Job storage j = _expect(msg.sender, jobKey, JobStatus.Funded);
        j.status = JobStatus.Running;
        j.startedAt = uint64(block.timestamp);
        emit JobStarted(msg.sender, jobKey);
    }

    /// @notice Completes a running job of the caller (the operator): the fee is the operator's.
    function complete(bytes32 jobKey) external {
        Job storage j = _expect(msg.sender, jobKey, JobStatus.Running);
        j.status = JobStatus.Completed;
        emit JobCompleted(msg.sender, jobKey, j.fee);
        _credit(msg.sender, j.fee);
    }

    /// @notice Returns the fee of a funded or running job of the caller (the operator) to its
    /// payer.
    function refund(bytes32 jobKey) external {
        Job storage j = _jobs[msg.sender][jobKey];
        if (j.status != JobStatus.Funded && j.status != JobStatus.Running) {
            revert WrongJobStatus(msg.sender, jobKey, j.status);
        }
        j.status = JobStatus.Refunded;
        emit JobRefunded(msg.sender, jobKey, j.payer, j.fee);
        _credit(j.payer, j.fee);
    }

    /// @notice Cancels a job the operator has not started; the fee returns to the caller, its
    /// payer.
    function cancel(address operator, bytes32 jobKey) external {
        Job storage j = _expect(operator, jobKey, JobStatus.Funded);
        if (j.payer != msg.sender) revert NotPayer(operator, jobKey, msg.sender);
        j.status = JobStatus.Refunded;
        emit JobCancelled(operator, jobKey, msg.sender, j.fee);
        _credit(msg.sender, j.fee);
    }

    /// @notice Takes back the fee of a job its operator neither started within `startTimeout`
    /// nor finished within `runTimeout` of starting. Only the payer.
    function reclaim(address operator, bytes32 jobKey) external {
        Job storage j = _jobs[operator][jobKey];
        if (j.payer != msg.sender) revert NotPayer(operator, jobKey, msg.sender);
        uint64 until;
        if (j.status == JobStatus.Funded) {
            until = j.fundedAt + startTimeout;
        } else if (j.status == JobStatus.Running) {
            until = j.startedAt + runTimeout;
        } else {
            revert WrongJobStatus(operator, jobKey, j.status);
        }
        if (block.timestamp < until) revert TooEarly(operator, jobKey, until);
        j.status = JobStatus.Refunded;
        emit JobReclaimed(operator, jobKey, msg.sender, j.fee);
        _credit(msg.sender, j.fee);
    }

    /// @notice Pays `account` everything credited to it.
    function claim(address payable account) external nonReentrant {
        uint256 amount = _owed[account];
        if (amount == 0) revert NothingToClaim(account);
        _owed[account] = 0;
        emit Claimed(account, amount);
        Address.sendValue(account, amount);
    }

    /// @notice The fee `operator` charges per job.
    function feeOf(address operator) external view returns (uint128) {
        return _fees[operator];
    }

    /// @notice A job's escrow.
    function job(address operator, bytes32 jobKey) external view returns (Job memory) {
        return _jobs[operator][jobKey];
    }

    /// @notice OPEN credited to `account` and not yet claimed.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    function _expect(address operator, bytes32 jobKey, JobStatus status) private view returns (Job storage j) {
        j = _jobs[operator][jobKey];
        if (j.status != status) revert WrongJobStatus(operator, jobKey, j.status);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _owed[account] += amount;
        emit Credited(account, amount);
    }
}
