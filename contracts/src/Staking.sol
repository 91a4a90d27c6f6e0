// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Votes} from "@openzeppelin/contracts/governance/utils/Votes.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ProtocolParams} from "./ProtocolParams.sol";

/// @title Staking
/// @notice Native OPEN staked for a role: validator, curator of one datanet, or inference host.
/// Each stake must meet the role's minimum from `ProtocolParams`; leaving goes through the
/// unbonding delay; only authorised slashers (protocol modules and governance) can slash, and a
/// slashed amount is split between the treasury and the party whose challenge succeeded. While a
/// challenge that could slash a stake is open, the slasher that holds it freezes the stake:
/// nothing of it can be withdrawn until the ruling.
/// Staked OPEN carries voting power with checkpoints (OpenZeppelin `Votes`), which the
/// governor reads; a staker votes for itself unless it delegates.
contract Staking is AccessControl, Votes, ReentrancyGuard {
    /// @notice May call `slash`: the protocol modules and governance.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice Where governance's share of slashed stake goes.
    address payable public immutable treasury;
    /// @notice The protocol's parameters (minimum stakes, unbonding delay).
    ProtocolParams public immutable params;
    /// @notice The share of a slash paid to the successful challenger, in basis points.
    uint16 public immutable challengerShareBps;

    /// @notice A stake on its way out: still slashable until it is withdrawn.
    struct Withdrawal {
        address staker;
        uint64 readyAt;
        ProtocolParams.Role role;
        uint256 subject;
        uint256 amount;
    }

    mapping(address staker => mapping(ProtocolParams.Role role => mapping(uint256 subject => uint256))) private
        _stakes;
    mapping(address staker => uint256) private _votingUnits;
    mapping(uint256 id => Withdrawal) private _withdrawals;
    /// One pending withdrawal per stake, so a slash finds everything still at risk; id + 1.
    mapping(address staker => mapping(ProtocolParams.Role role => mapping(uint256 subject => uint256))) private
        _pending;
    /// Open challenges that may slash the stake; withdrawals wait while non-zero.
    mapping(address staker => mapping(ProtocolParams.Role role => mapping(uint256 subject => uint256))) private
        _freezes;
    uint256 private _nextWithdrawal;

    /// @notice The stake would be `provided`, below the role's minimum `required`.
    error InsufficientStake(uint256 required, uint256 provided);
    /// @notice Only curators stake for a subject (a datanet); other roles use subject 0.
    error SubjectNotAllowed(ProtocolParams.Role role, uint256 subject);
    /// @notice Asked to unstake `requested` with only `staked` staked.
    error NotEnoughStaked(uint256 staked, uint256 requested);
    /// @notice No withdrawal has this id (or it was already paid out).
    error UnknownWithdrawal(uint256 id);
    /// @notice The caller does not own the withdrawal.
    error NotYourWithdrawal(uint256 id);
    /// @notice The stake is still unbonding until `readyAt`.
    error StillUnbonding(uint64 readyAt);
    /// @notice Amounts must be non-zero.
    error ZeroAmount();
    /// @notice The challenger share must be at most 10,000 basis points.
    error ShareTooLarge(uint16 bps);
    /// @notice An open challenge may slash this stake: it cannot be withdrawn until the ruling.
    error StakeFrozen(address staker, ProtocolParams.Role role, uint256 subject);
    /// @notice `unfreeze` without a matching `freeze`.
    error NotFrozen(address staker, ProtocolParams.Role role, uint256 subject);

    event Staked(address indexed staker, ProtocolParams.Role indexed role, uint256 indexed subject, uint256 amount);
    event UnstakeRequested(
        address indexed staker,
        ProtocolParams.Role indexed role,
        uint256 indexed subject,
        uint256 amount,
        uint256 withdrawalId,
        uint64 readyAt
    );
    event Withdrawn(address indexed staker, uint256 indexed withdrawalId, uint256 amount);
    event Frozen(address indexed staker, ProtocolParams.Role indexed role, uint256 indexed subject, uint256 freezes);
    event Unfrozen(
        address indexed staker, ProtocolParams.Role indexed role, uint256 indexed subject, uint256 freezes
    );
    event Slashed(
        address indexed staker,
        ProtocolParams.Role indexed role,
        uint256 indexed subject,
        uint256 amount,
        address challenger,
        uint256 challengerAmount
    );

    /// @param admin Grants and revokes the slasher role: the deployer while it wires the
    /// protocol modules in, after which it hands the role to governance and renounces it.
    /// @param governance May slash (the timelock).
    /// @param treasury_ Receives the governance share of slashes.
    /// @param params_ The protocol parameters contract.
    /// @param challengerShareBps_ The challenger's share of a slash, in basis points.
    constructor(
        address admin,
        address governance,
        address payable treasury_,
        ProtocolParams params_,
        uint16 challengerShareBps_
    ) EIP712("OpenLedger Staking", "1") {
        if (challengerShareBps_ > 10_000) revert ShareTooLarge(challengerShareBps_);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SLASHER_ROLE, governance);
        treasury = treasury_;
        params = params_;
        challengerShareBps = challengerShareBps_;
    }

    /// @notice Stakes the OPEN sent for `role` (and `subject`, the datanet id, for curators).
    /// @dev Reverts with `InsufficientStake` if the resulting stake is below the role minimum.
    function stake(ProtocolParams.Role role, uint256 subject) external payable {
        if (msg.value == 0) revert ZeroAmount();
        if (role != ProtocolParams.Role.Curator && subject != 0) revert SubjectNotAllowed(role, subject);
        uint256 total = _stakes[msg.sender][role][subject] + msg.value;
        uint256 required = params.minStake(role);
        if (total < required) revert InsufficientStake(required, total);
        _stakes[msg.sender][role][subject] = total;
        // Self-delegate before adding units: delegation moves the units already held, so the
        // new ones must be added afterwards or they would count twice.
        if (delegates(msg.sender) == address(0)) _delegate(msg.sender, msg.sender);
        _votingUnits[msg.sender] += msg.value;
        _transferVotingUnits(address(0), msg.sender, msg.value);
        emit Staked(msg.sender, role, subject, msg.value);
    }

    /// @notice Starts unbonding `amount` of a stake; it can be withdrawn after the unbonding
    /// delay, and stays slashable until then, so that leaving cannot outrun a challenge. What
    /// stays staked must still meet the minimum, unless nothing stays. A stake has at most one
    /// pending withdrawal: a second request adds to it and restarts its delay.
    /// @return id The withdrawal to claim with `withdraw`.
    function requestUnstake(ProtocolParams.Role role, uint256 subject, uint256 amount) external returns (uint256 id) {
        if (amount == 0) revert ZeroAmount();
        uint256 staked = _stakes[msg.sender][role][subject];
        if (amount > staked) revert NotEnoughStaked(staked, amount);
        uint256 remaining = staked - amount;
        uint256 required = params.minStake(role);
        if (remaining != 0 && remaining < required) revert InsufficientStake(required, remaining);
        _stakes[msg.sender][role][subject] = remaining;
        _votingUnits[msg.sender] -= amount;
        _transferVotingUnits(msg.sender, address(0), amount);
        uint64 readyAt = uint64(block.timestamp) + params.unbondingDelay();
        uint256 pending = _pending[msg.sender][role][subject];
        if (pending != 0) {
            id = pending - 1;
            Withdrawal storage w = _withdrawals[id];
            w.amount += amount;
            w.readyAt = readyAt;
        } else {
            id = _nextWithdrawal++;
            _withdrawals[id] = Withdrawal({
                staker: msg.sender, readyAt: readyAt, role: role, subject: subject, amount: amount
            });
            _pending[msg.sender][role][subject] = id + 1;
        }
        emit UnstakeRequested(msg.sender, role, subject, amount, id, readyAt);
    }

    /// @notice Pays out an unbonded withdrawal to its staker.
    function withdraw(uint256 id) external nonReentrant {
        Withdrawal memory w = _withdrawals[id];
        if (w.amount == 0) revert UnknownWithdrawal(id);
        if (w.staker != msg.sender) revert NotYourWithdrawal(id);
        if (block.timestamp < w.readyAt) revert StillUnbonding(w.readyAt);
        if (_freezes[msg.sender][w.role][w.subject] != 0) revert StakeFrozen(msg.sender, w.role, w.subject);
        delete _withdrawals[id];
        delete _pending[msg.sender][w.role][w.subject];
        emit Withdrawn(msg.sender, id, w.amount);
        Address.sendValue(payable(msg.sender), w.amount);
    }

    /// @notice Slashes up to `amount` of a stake, taking what is staked first and then what is
    /// unbonding; `challenger` receives its share, the treasury the rest. Only slashers.
    /// @return slashed What was actually taken (at most the stake plus its pending withdrawal).
    function slash(ProtocolParams.Role role, uint256 subject, address staker, uint256 amount, address payable challenger)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
        returns (uint256 slashed)
    {
        uint256 staked = _stakes[staker][role][subject];
        uint256 fromStake = amount < staked ? amount : staked;
        uint256 fromUnbonding = 0;
        uint256 pending = _pending[staker][role][subject];
        if (fromStake < amount && pending != 0) {
            Withdrawal storage w = _withdrawals[pending - 1];
            uint256 rest = amount - fromStake;
            fromUnbonding = rest < w.amount ? rest : w.amount;
            w.amount -= fromUnbonding;
            if (w.amount == 0) {
                delete _withdrawals[pending - 1];
                delete _pending[staker][role][subject];
            }
        }
        slashed = fromStake + fromUnbonding;
        if (slashed == 0) revert ZeroAmount();
        _stakes[staker][role][subject] = staked - fromStake;
        // Unbonding stake already gave up its votes.
        _votingUnits[staker] -= fromStake;
        _transferVotingUnits(staker, address(0), fromStake);
        uint256 toChallenger = challenger == address(0) ? 0 : slashed * challengerShareBps / 10_000;
        emit Slashed(staker, role, subject, slashed, challenger, toChallenger);
        if (toChallenger != 0) Address.sendValue(challenger, toChallenger);
        Address.sendValue(treasury, slashed - toChallenger);
    }

    /// @notice Holds a stake for an open challenge that may slash it: until the matching
    /// `unfreeze`, none of it can be withdrawn. Challenges count: two freezes need two
    /// unfreezes. Only slashers (the modules that rule on challenges).
    function freeze(ProtocolParams.Role role, uint256 subject, address staker) external onlyRole(SLASHER_ROLE) {
        uint256 freezes = ++_freezes[staker][role][subject];
        emit Frozen(staker, role, subject, freezes);
    }

    /// @notice Releases one freeze once its challenge is ruled on. Only slashers.
    function unfreeze(ProtocolParams.Role role, uint256 subject, address staker) external onlyRole(SLASHER_ROLE) {
        uint256 freezes = _freezes[staker][role][subject];
        if (freezes == 0) revert NotFrozen(staker, role, subject);
        _freezes[staker][role][subject] = freezes - 1;
        emit Unfrozen(staker, role, subject, freezes - 1);
    }

    /// @notice How many open challenges hold the stake of `staker` for `role` and `subject`.
    function freezesOf(address staker, ProtocolParams.Role role, uint256 subject) external view returns (uint256) {
        return _freezes[staker][role][subject];
    }

    /// @notice The stake of `staker` for `role` and `subject`.
    function stakeOf(address staker, ProtocolParams.Role role, uint256 subject) external view returns (uint256) {
        return _stakes[staker][role][subject];
    }

    /// @notice What a slash of `staker` for `role` and `subject` could take: the stake plus
    /// its pending withdrawal.
    function slashableOf(address staker, ProtocolParams.Role role, uint256 subject) external view returns (uint256) {
        uint256 pending = _pending[staker][role][subject];
        return _stakes[staker][role][subject] + (pending == 0 ? 0 : _withdrawals[pending - 1].amount);
    }

    /// @notice Whether `staker` currently meets the minimum stake for `role` and `subject`.
    function isStaked(address staker, ProtocolParams.Role role, uint256 subject) external view returns (bool) {
        uint256 staked = _stakes[staker][role][subject];
        return staked != 0 && staked >= params.minStake(role);
    }

    /// @notice A pending withdrawal.
    function withdrawal(uint256 id) external view returns (Withdrawal memory) {
        return _withdrawals[id];
    }

    /// @notice Voting power is checkpointed by time, not by block (ERC-6372): making empty
    /// blocks cannot move a vote's snapshot or shorten it.
    function clock() public view override returns (uint48) {
        return uint48(block.timestamp);
    }

    /// @notice The clock's mode, as ERC-6372 describes it.
    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() public pure override returns (string memory) {
        return "mode=timestamp";
    }

    function _getVotingUnits(address account) internal view override returns (uint256) {
        return _votingUnits[account];
    }
}
