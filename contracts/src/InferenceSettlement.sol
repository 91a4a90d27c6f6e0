// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {ProtocolParams} from "./ProtocolParams.sol";
import {Staking} from "./Staking.sol";

/// @title InferenceSettlement
/// @notice Pays for inference. Consumers deposit OPEN as prepaid credit; a staked host settles
/// the inferences it served in batches, one receipt per inference. For each batch the contract
/// debits the consumers, computes the Merkle root of the receipts, and splits the fees by the
/// fee split in `ProtocolParams`: the model owner, host and treasury shares it computes itself;
/// the contributors' and curators' shares come from attribution as lists of payouts, which must
/// add up exactly to those roles' shares. Everyone is paid by credit, withdrawn with `claim`.
///
/// Rounding: each role's share is rounded down (the model share per model owner); the treasury
/// receives what is left, so the shares always add up to the batch's fees.
///
/// A validator may challenge a batch within the challenge window by posting the bond;
/// governance (the owner) rules. Upheld: the host loses up to the host minimum stake (staked or
/// still unbonding), the challenger is credited `Staking`'s share and the bond back, and the
/// batch cannot be challenged again. Rejected: the bond goes to the treasury. Consumers leave through a withdrawal delay of one challenge window, during which
/// their credit still pays for inferences already served.
contract InferenceSettlement is Ownable, ReentrancyGuard {
    /// @notice One inference, as the host's receipt commits to it.
    struct Receipt {
        address consumer;
        uint64 agentId;
        uint128 fee;
        bytes32 receiptHash;
    }

    /// @notice An amount credited to an account.
    struct Payout {
        address account;
        uint256 amount;
    }

    /// @notice A settled batch.
    struct Batch {
        address host;
        uint64 submittedAt;
        uint32 count;
        uint128 fees;
        /// An upheld challenge already slashed the host for this batch.
        bool slashed;
        bytes32 receiptsRoot;
    }

    /// @notice A consumer's request to take unspent credit back.
    struct CreditWithdrawal {
        uint128 amount;
        uint64 readyAt;
    }

    /// @notice An open challenge of a batch.
    struct Challenge {
        address challenger;
        uint96 bond;
        uint64 openedAt;
    }

    /// @notice The roles paid from lists of payouts.
    enum PayoutRole {
        Contributors,
        Curators
    }

    /// @dev A batch's fees in total and per model owner (the first `ownerCount` entries).
    struct Tally {
        uint256 fees;
        uint256 ownerCount;
        address[] owners;
        uint256[] ownerFees;
    }

    /// @notice The fee split, minimum stakes and challenge window.
    ProtocolParams public immutable params;
    /// @notice Where hosts and validators stake, and hosts are slashed.
    Staking public immutable staking;
    /// @notice Agents: their hosts and model owners.
    ModelRegistry public immutable models;
    /// @notice OPEN a challenger must post.
    uint256 public challengeBond;

    mapping(address consumer => uint256) private _credit;
    mapping(address consumer => CreditWithdrawal) private _withdrawals;
    mapping(address account => uint256) private _claimable;
    mapping(uint256 batchId => Batch) private _batches;
    mapping(uint256 batchId => Challenge) private _challenges;
    uint256 private _batchCount;

    /// @notice Amounts must be non-zero.
    error ZeroAmount();
    /// @notice The caller has no host stake.
    error HostNotStaked(address host);
    /// @notice The caller has no validator stake.
    error NotValidator(address account);
    /// @notice A batch needs at least one receipt.
    error EmptyBatch();
    /// @notice Receipts must be grouped by consumer, in ascending address order.
    error ReceiptsNotGrouped(uint256 index);
    /// @notice A consumer's credit does not cover its inferences in the batch.
    error InsufficientCredit(address consumer, uint256 credit, uint256 fees);
    /// @notice The caller is not the agent's host.
    error NotAgentHost(uint256 agentId, address host);
    /// @notice The agent is paused, unknown, or on a retired adapter.
    error AgentNotServable(uint256 agentId);
    /// @notice A role's payouts add up to `provided` instead of its share `expected`.
    error ShareMismatch(PayoutRole role, uint256 expected, uint256 provided);
    /// @notice No batch has this id.
    error UnknownBatch(uint256 batchId);
    /// @notice The batch's challenge window closed at `closedAt`.
    error ChallengeWindowClosed(uint256 batchId, uint64 closedAt);
    /// @notice The OPEN sent is not the challenge bond.
    error WrongBond(uint256 required, uint256 sent);
    /// @notice The batch already has an open challenge.
    error AlreadyChallenged(uint256 batchId);
    /// @notice The batch has no open challenge.
    error NoOpenChallenge(uint256 batchId);
    /// @notice The ruling period ended at `endedAt`: the challenge can only be closed by default.
    error RulingPeriodOver(uint256 batchId, uint64 endedAt);
    /// @notice The ruling period runs until `endsAt`: governance may still rule.
    error RulingPeriodOpen(uint256 batchId, uint64 endsAt);
    /// @notice An upheld challenge already slashed the host for this batch.
    error AlreadySlashed(uint256 batchId);
    /// @notice Only `Staking` sends OPEN here outside deposits (a challenger's slash share).
    error UnexpectedPayment(address from);
    /// @notice The consumer has no credit withdrawal waiting.
    error NoWithdrawalRequested(address consumer);
    /// @notice The credit withdrawal is ready at `readyAt`.
    error WithdrawalNotReady(uint64 readyAt);
    /// @notice The account has nothing to claim.
    error NothingToClaim(address account);

    event Deposited(address indexed consumer, uint256 amount);
    event CreditWithdrawalRequested(address indexed consumer, uint256 amount, uint64 readyAt);
    event CreditWithdrawn(address indexed consumer, uint256 amount);
    /// @notice One settled inference; every inference settled on chain has one.
    event InferenceSettled(
        uint256 batchId, address indexed consumer, uint256 indexed agentId, uint256 fee, bytes32 receiptHash
    );
    event BatchSettled(
        uint256 indexed batchId, address indexed host, bytes32 receiptsRoot, uint256 count, uint256 fees
    );
    event Credited(address indexed account, uint256 amount);
    event Claimed(address indexed account, uint256 amount);
    event BatchChallenged(uint256 indexed batchId, address indexed challenger, uint256 bond, bytes32 evidenceHash);
    event ChallengeResolved(uint256 indexed batchId, address indexed challenger, bool upheld);
    /// @notice Governance did not rule within the ruling period: the challenge was closed as
    /// not upheld, the bond returned and the host's stake released.
    event ChallengeExpired(uint256 indexed batchId, address indexed challenger);
    event ChallengeBondSet(uint256 bond);

    /// @param governance The owner: rules on challenges and sets the challenge bond.
    /// @param params_ The protocol parameters.
    /// @param staking_ The staking contract (this contract must hold its slasher role).
    /// @param models_ The model registry.
    /// @param challengeBond_ OPEN a challenger must post.
    constructor(
        address governance,
        ProtocolParams params_,
        Staking staking_,
        ModelRegistry models_,
        uint256 challengeBond_
    ) Ownable(governance) {
        params = params_;
        staking = staking_;
        models = models_;
        challengeBond = challengeBond_;
        emit ChallengeBondSet(challengeBond_);
    }

    /// @notice Adds the OPEN sent to the caller's prepaid credit.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        _credit[msg.sender] += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    /// @notice Asks to take back `amount` of unspent credit after one challenge window; until
    /// then, hosts can still settle inferences against it. A new request replaces the old one.
    function requestCreditWithdrawal(uint128 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint64 readyAt = uint64(block.timestamp) + params.challengeWindow();
        _withdrawals[msg.sender] = CreditWithdrawal({amount: amount, readyAt: readyAt});
        emit CreditWithdrawalRequested(msg.sender, amount, readyAt);
    }

    /// @notice Pays out a ready credit withdrawal: the amount asked, or the credit left if less.
    function withdrawCredit() external nonReentrant {
        CreditWithdrawal memory w = _withdrawals[msg.sender];
        if (w.amount == 0) revert NoWithdrawalRequested(msg.sender);
        if (block.timestamp < w.readyAt) revert WithdrawalNotReady(w.readyAt);
        delete _withdrawals[msg.sender];
        uint256 credit = _credit[msg.sender];
        uint256 amount = w.amount < credit ? w.amount : credit;
        if (amount == 0) revert ZeroAmount();
        _credit[msg.sender] = credit - amount;
        emit CreditWithdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @notice Settles a batch of inferences served by the caller (a staked host, the host of
    /// every agent in it).
    /// @param receipts One per inference, grouped by consumer in ascending address order (so
    /// each consumer's credit is debited once).
    /// @param contributorPayouts The contributors' share, divided by attribution.
    /// @param curatorPayouts The curators' share.
    /// @return batchId The new batch's id (ids start at 1).
    function settle(
        Receipt[] calldata receipts,
        Payout[] calldata contributorPayouts,
        Payout[] calldata curatorPayouts
    ) external returns (uint256 batchId) {
        if (!staking.isStaked(msg.sender, ProtocolParams.Role.Host, 0)) revert HostNotStaked(msg.sender);
        uint256 n = receipts.length;
        if (n == 0) revert EmptyBatch();
        batchId = ++_batchCount;
        (bytes32[] memory leaves, Tally memory t) = _tally(batchId, receipts);
        uint256 fees = t.fees;

        ProtocolParams.FeeSplit memory split = params.feeSplit();
        uint256 paid = _payAll(PayoutRole.Contributors, contributorPayouts, fees * split.contributors / 10_000);
        paid += _payAll(PayoutRole.Curators, curatorPayouts, fees * split.curators / 10_000);
        for (uint256 k = 0; k < t.ownerCount; ++k) {
            uint256 share = t.ownerFees[k] * split.modelOwner / 10_000;
            _pay(t.owners[k], share);
            paid += share;
        }
        uint256 hostShare = fees * split.host / 10_000;
        _pay(msg.sender, hostShare);
        _pay(staking.treasury(), fees - paid - hostShare);

        bytes32 root = _merkleRoot(leaves);
        _batches[batchId] = Batch({
            host: msg.sender,
            submittedAt: uint64(block.timestamp),
            count: uint32(n),
            fees: uint128(fees),
            slashed: false,
            receiptsRoot: root
        });
        emit BatchSettled(batchId, msg.sender, root, n, fees);
    }

    /// @notice Challenges a batch within its challenge window. Only staked validators, posting
    /// the challenge bond.
    /// @param evidenceHash Hash of the evidence for governance to weigh.
    function challenge(uint256 batchId, bytes32 evidenceHash) external payable {
        Batch storage b = _batches[batchId];
        if (b.host == address(0)) revert UnknownBatch(batchId);
        if (!staking.isStaked(msg.sender, ProtocolParams.Role.Validator, 0)) revert NotValidator(msg.sender);
        uint64 closesAt = b.submittedAt + params.challengeWindow();
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(batchId, closesAt);
        if (b.slashed) revert AlreadySlashed(batchId);
        if (msg.value != challengeBond) revert WrongBond(challengeBond, msg.value);
        if (_challenges[batchId].challenger != address(0)) revert AlreadyChallenged(batchId);
        _challenges[batchId] =
            Challenge({challenger: msg.sender, bond: uint96(msg.value), openedAt: uint64(block.timestamp)});
        emit BatchChallenged(batchId, msg.sender, msg.value, evidenceHash);
        // The ruling may slash the host: hold its stake until it comes.
        staking.freeze(ProtocolParams.Role.Host, 0, b.host);
    }

    /// @notice Closes a challenge governance did not rule on within the ruling period, as not
    /// upheld: the bond returns to the challenger and the host's stake is released. Anyone may
    /// call this.
    function expireChallenge(uint256 batchId) external {
        Challenge memory ch = _challenges[batchId];
        if (ch.challenger == address(0)) revert NoOpenChallenge(batchId);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp <= endsAt) revert RulingPeriodOpen(batchId, endsAt);
        delete _challenges[batchId];
        emit ChallengeExpired(batchId, ch.challenger);
        staking.unfreeze(ProtocolParams.Role.Host, 0, _batches[batchId].host);
        _pay(ch.challenger, ch.bond);
    }

    /// @notice Governance's ruling on an open challenge, within the ruling period; the host's
    /// stake is released either way. Only the owner (governance).
    function resolveChallenge(uint256 batchId, bool upheld) external onlyOwner {
        Challenge memory ch = _challenges[batchId];
        if (ch.challenger == address(0)) revert NoOpenChallenge(batchId);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp > endsAt) revert RulingPeriodOver(batchId, endsAt);
        delete _challenges[batchId];
        emit ChallengeResolved(batchId, ch.challenger, upheld);
        staking.unfreeze(ProtocolParams.Role.Host, 0, _batches[batchId].host);
        if (!upheld) {
            _pay(staking.treasury(), ch.bond);
            return;
        }
        Batch storage b = _batches[batchId];
        b.slashed = true;
        address host = b.host;
        // The challenger's share of the slash comes here and is credited, not sent by
        // `Staking`: a challenger that refuses OPEN would otherwise make the ruling revert.
        uint256 balanceBefore = address(this).balance;
        uint256 penalty = params.minStake(ProtocolParams.Role.Host);
        if (penalty != 0 && staking.slashableOf(host, ProtocolParams.Role.Host, 0) != 0) {
            staking.slash(ProtocolParams.Role.Host, 0, host, penalty, payable(address(this)));
        }
        _pay(ch.challenger, ch.bond + address(this).balance - balanceBefore);
    }

    /// @notice Receives the challenger's share of a slash from `Staking` during a ruling; OPEN
    /// from anyone else would be stuck here, so it is refused (consumers use `deposit`).
    receive() external payable {
        if (msg.sender != address(staking)) revert UnexpectedPayment(msg.sender);
    }

    /// @notice Pays `account` everything credited to it. Anyone may call this; the OPEN only
    /// ever goes to `account`.
    function claim(address payable account) external nonReentrant {
        uint256 amount = _claimable[account];
        if (amount == 0) revert NothingToClaim(account);
        _claimable[account] = 0;
        emit Claimed(account, amount);
        Address.sendValue(account, amount);
    }

    /// @notice Sets the bond a challenger posts. Only governance.
    function setChallengeBond(uint256 bond) external onlyOwner {
        challengeBond = bond;
        emit ChallengeBondSet(bond);
    }

    /// @notice A consumer's unspent credit.
    function creditOf(address consumer) external view returns (uint256) {
        return _credit[consumer];
    }

    /// @notice A consumer's pending credit withdrawal.
    function creditWithdrawal(address consumer) external view returns (CreditWithdrawal memory) {
        return _withdrawals[consumer];
    }

    /// @notice OPEN credited to `account` and not yet claimed.
    function claimable(address account) external view returns (uint256) {
        return _claimable[account];
    }

    /// @notice A settled batch.
    function batch(uint256 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice The open challenge of a batch (zero challenger if none).
    function challengeOf(uint256 batchId) external view returns (Challenge memory) {
        return _challenges[batchId];
    }

    /// @notice How many batches have been settled (the highest id).
    function batchCount() external view returns (uint256) {
        return _batchCount;
    }

    /// @notice What the contributors' and curators' payouts must add up to for `fees`, under
    /// the current fee split.
    function payoutTotals(uint256 fees) external view returns (uint256 contributors, uint256 curators) {
        ProtocolParams.FeeSplit memory split = params.feeSplit();
        return (fees * split.contributors / 10_000, fees * split.curators / 10_000);
    }

    /// @dev Checks and debits the receipts' consumers, checks their agents, emits one event
    /// per inference, and returns the receipts' Merkle leaves with the fees per model owner.
    function _tally(uint256 batchId, Receipt[] calldata receipts)
        private
        returns (bytes32[] memory leaves, Tally memory t)
    {
        uint256 n = receipts.length;
        leaves = new bytes32[](n);
        // Batches serve few models, so a short list searched linearly beats a storage map.
        t.owners = new address[](n);
        t.ownerFees = new uint256[](n);
        uint256 ownerIndex = 0;
        // No agent id is this large (they are uint64), so the first receipt is always looked
        // up, even one naming agent 0, which must be refused as unknown rather than skipped.
        uint256 lastAgent = type(uint256).max;
        address consumer = address(0);
        uint256 consumerFees = 0;
        uint256 fees = 0;
        for (uint256 i = 0; i < n;) {
            Receipt calldata r = receipts[i];
            address c = r.consumer;
            if (c != consumer) {
                if (c < consumer) revert ReceiptsNotGrouped(i);
                _debit(consumer, consumerFees);
                consumer = c;
                consumerFees = 0;
            }
            if (r.agentId != lastAgent) {
                lastAgent = r.agentId;
                ownerIndex = _ownerIndex(t, lastAgent);
            }
            uint256 fee = r.fee;
            // Fees are uint128 and a batch holds far fewer than 2^128 receipts, so these sums
            // cannot overflow.
            unchecked {
                t.ownerFees[ownerIndex] += fee;
                consumerFees += fee;
                fees += fee;
                leaves[i] = _record(batchId, r);
                ++i;
            }
        }
        t.fees = fees;
        _debit(consumer, consumerFees);
    }

    /// @dev Emits a receipt's event and returns its Merkle leaf,
    /// `keccak256(bytes.concat(keccak256(abi.encode(consumer, agentId, fee, receiptHash))))`,
    /// hashed past the free memory pointer instead of allocating two buffers per receipt.
    function _record(uint256 batchId, Receipt calldata r) private returns (bytes32 leaf) {
        address consumer = r.consumer;
        uint256 agentId = r.agentId;
        uint256 fee = r.fee;
        bytes32 receiptHash = r.receiptHash;
        emit InferenceSettled(batchId, consumer, agentId, fee, receiptHash);
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, consumer)
            mstore(add(p, 0x20), agentId)
            mstore(add(p, 0x40), fee)
            mstore(add(p, 0x60), receiptHash)
            mstore(0x00, keccak256(p, 0x80))
            leaf := keccak256(0x00, 0x20)
        }
    }

    /// @dev Checks that the caller hosts `agentId` and that it may be settled; returns its
    /// model owner's place in the tally, adding the owner if new.
    function _ownerIndex(Tally memory t, uint256 agentId) private view returns (uint256 k) {
        (address host, address owner, bool servable) = models.agentRoute(agentId);
        if (!servable) revert AgentNotServable(agentId);
        if (host != msg.sender) revert NotAgentHost(agentId, msg.sender);
        while (k < t.ownerCount && t.owners[k] != owner) ++k;
        if (k == t.ownerCount) t.owners[t.ownerCount++] = owner;
    }

    function _debit(address consumer, uint256 fees) private {
        if (fees == 0) return;
        uint256 credit = _credit[consumer];
        if (credit < fees) revert InsufficientCredit(consumer, credit, fees);
        _credit[consumer] = credit - fees;
    }

    function _payAll(PayoutRole role, Payout[] calldata payouts, uint256 expected) private returns (uint256 total) {
        for (uint256 i = 0; i < payouts.length; ++i) {
            _pay(payouts[i].account, payouts[i].amount);
            total += payouts[i].amount;
        }
        if (total != expected) revert ShareMismatch(role, expected, total);
    }

    function _pay(address account, uint256 amount) private {
        if (amount == 0) return;
        _claimable[account] += amount;
        emit Credited(account, amount);
    }

    /// @dev Pairs neighbours level by level with commutative keccak (OpenZeppelin `MerkleProof`
    /// order); an odd node at the end of a level moves up unchanged. Overwrites `nodes`.
    function _merkleRoot(bytes32[] memory nodes) private pure returns (bytes32) {
        uint256 n = nodes.length;
        while (n > 1) {
            uint256 half = n / 2;
            for (uint256 i = 0; i < half; ++i) {
                nodes[i] = Hashes.commutativeKeccak256(nodes[2 * i], nodes[2 * i + 1]);
            }
            if (n % 2 == 1) {
                nodes[half] = nodes[n - 1];
                n = half + 1;
            } else {
                n = half;
            }
        }
        return nodes[0];
    }
}
