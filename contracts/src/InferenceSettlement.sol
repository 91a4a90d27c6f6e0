// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {ProtocolParams} from "./ProtocolParams.sol";
import {Staking} from "./Staking.sol";

/// @title InferenceSettlement
/// @notice Pays for inference so that no party has to trust another further than it chose to.
///
/// Consumers deposit OPEN as credit and authorise each host separately, up to an allowance: a
/// host can take at most what the consumer authorised for it. Lowering an allowance, like
/// withdrawing credit, takes one challenge window, so what was served can still be settled. A staked host settles the
/// inferences it served in batches, one receipt each; every receipt carries a sequence number
/// per consumer and host, which must rise, so no receipt is settled twice; its fee may not
/// exceed the agent's prices times the tokens it states. A receipt credits contributions by id
/// with weights (its attribution); each must be accepted in its datanet, not poisoned, and
/// proven once (`proveLineage`) to belong to a datanet version the agent's adapter was trained
/// on, or belong to the datanet the agent retrieves passages from (its knowledge datanet).
/// The contract looks up contributors and curators itself: the host names no payee.
///
/// A batch's fees stay in escrow for the challenge window. Staked validators, and any consumer
/// with a receipt in the batch, may challenge it, posting the bond, each account once per batch;
/// several challenges may be open at once, and no number of them keeps another challenger out.
/// Governance rules. The first upheld challenge slashes the host and turns the
/// batch's escrow back into its consumers' credit (`refundBatch`). A batch with no open
/// challenge whose window has closed is released (`release`, by anyone): the contributors,
/// the curators who approved their contributions, the model owners, the host and the treasury
/// are credited, and claim with `claim`.
///
/// Rounding: each share is rounded down; the treasury receives what is left, so a batch's
/// payouts always add up to its fees.
contract InferenceSettlement is Ownable, ReentrancyGuard {
    using SafeCast for uint256;

    /// @notice One inference, as the host's receipt commits to it.
    struct Receipt {
        address consumer;
        uint64 agentId;
        /// Rises with each receipt of this consumer settled by this host.
        uint64 seq;
        uint32 inputTokens;
        uint32 outputTokens;
        uint128 fee;
        /// Hash of the attribution receipt (the explanation a validator recomputes).
        bytes32 attributionHash;
        /// Packed credits, four bytes each: a big-endian uint16 index into the batch's
        /// contribution list, then a uint16 weight in basis points. Weights add up to 10,000;
        /// a receipt without credits pays its attribution shares to the treasury.
        bytes credits;
    }

    /// @notice What a consumer lets one host take, and the last receipt that host settled. A
    /// lowered allowance takes effect one challenge window later (`lowersAt`), so a consumer
    /// cannot take back, just before settlement, what it authorised for answers already served.
    struct Authorization {
        uint128 allowance;
        uint64 lastSeq;
        /// When the pending lowering takes effect (0: none pending).
        uint64 lowersAt;
        /// What the allowance lowers to then (if it is still higher).
        uint128 lowerTo;
    }

    /// @notice A contribution's part of a batch: its contributor's and its curators' shares.
    struct ContributionPayout {
        uint64 contributionId;
        uint128 contributors;
        uint128 curators;
    }

    /// @notice A model owner's part of a batch.
    struct OwnerPayout {
        address owner;
        uint128 amount;
    }

    /// @notice What a batch took from one consumer.
    struct Debit {
        address consumer;
        uint128 amount;
    }

    /// @notice Where a batch stands.
    enum BatchState {
        None,
        /// Settled; its fees are held.
        Escrowed,
        /// Paid out to its payees.
        Released,
        /// A challenge was upheld: its fees go back to its consumers.
        Upheld,
        /// Its fees went back to its consumers.
        Refunded
    }

    /// @notice A settled batch.
    struct Batch {
        address host;
        uint64 settledAt;
        BatchState state;
        /// Challenges raised, and of those, still open.
        uint32 challenges;
        uint32 openChallenges;
        uint128 fees;
        uint128 hostShare;
        bytes32 receiptsRoot;
        /// `keccak256(abi.encode(ContributionPayout[], OwnerPayout[], hostShare))`.
        bytes32 payoutsHash;
        /// Chained over its debits: `h = keccak256(abi.encode(h, consumer, amount))` from zero.
        bytes32 debitsHash;
    }

    /// @notice A consumer's request to take unspent credit back.
    struct CreditWithdrawal {
        uint128 amount;
        uint64 readyAt;
    }

    /// @notice A challenge of a batch.
    struct Challenge {
        address challenger;
        uint96 bond;
        uint64 openedAt;
        bool open;
    }

    /// @dev A receipt read from a packed batch: the leaf's first seven words in its order, then
    /// where its credits lie in calldata. One is reused for every receipt of a batch.
    struct Packed {
        address consumer;
        uint256 agentId;
        uint256 seq;
        uint256 inputTokens;
        uint256 outputTokens;
        uint256 fee;
        bytes32 attributionHash;
        uint256 creditsOffset;
        uint256 creditsLength;
    }

    /// @dev A batch being settled: running totals, the agent in hand and the consumer in hand.
    struct Tally {
        uint256 batchId;
        uint256 fees;
        uint256 agentId;
        uint256 adapterId;
        uint256 priceIn;
        uint256 priceOut;
        uint256 ownerIndex;
        uint256 ownerCount;
        address[] owners;
        uint256[] ownerFees;
        /// Per listed contribution: the sum of fee × weight over the receipts crediting it.
        uint256[] slices;
        /// Per listed contribution: the adapter whose lineage it was last checked against.
        uint256[] checkedFor;
        /// Per listed contribution: its datanet.
        uint256[] datanetOf;
        /// The datanet the agent in hand retrieves passages from (0: none).
        uint256 knowledgeDatanetId;
        address consumer;
        uint256 consumerFees;
        uint64 lastSeq;
        bytes32 debitsHash;
    }

    /// @notice Bytes of a packed receipt before its credits: consumer (20), agentId (8), seq
    /// (8), inputTokens (4), outputTokens (4), fee (16), attributionHash (32) and the number of
    /// credits (2), big-endian; then four bytes per credit as in `Receipt.credits`.
    uint256 public constant RECEIPT_HEADER = 94;
    /// @notice A receipt's credit weights add up to this.
    uint256 public constant WEIGHT_TOTAL = 10_000;

    /// @notice The fee split, minimum stakes and challenge window.
    ProtocolParams public immutable params;
    /// @notice Where hosts and validators stake, and hosts are slashed.
    Staking public immutable staking;
    /// @notice Agents, adapters and their lineage.
    ModelRegistry public immutable models;
    /// @notice Contributions, their contributors and curators.
    DatanetRegistry public immutable datanets;
    /// @notice OPEN a challenger must post.
    uint256 public challengeBond;

    mapping(address consumer => uint256) private _credit;
    mapping(address consumer => mapping(address host => Authorization)) private _authorizations;
    mapping(address consumer => CreditWithdrawal) private _withdrawals;
    mapping(address account => uint256) private _claimable;
    mapping(uint256 adapterId => mapping(uint256 contributionId => bool)) private _inLineage;
    mapping(uint256 batchId => Batch) private _batches;
    mapping(uint256 batchId => mapping(uint256 index => Challenge)) private _challenges;
    mapping(uint256 batchId => mapping(address challenger => bool)) private _challengedBy;
    uint256 private _batchCount;

    error ZeroAmount();
    /// @notice The caller has no host stake.
    error HostNotStaked(address host);
    /// @notice The caller has no validator stake.
    error NotValidator(address account);
    /// @notice A batch needs at least one receipt.
    error EmptyBatch();
    /// @notice Receipts must be grouped by consumer, in ascending address order, none from zero.
    error ReceiptsNotGrouped(uint256 index);
    /// @notice Receipt `index` does not come after the last one settled for its consumer and host.
    error ReceiptReplayed(uint256 index, address consumer, uint64 seq, uint64 lastSeq);
    /// @notice The consumer authorised this host for less than its receipts' fees.
    error NotAuthorized(address consumer, address host, uint256 allowance, uint256 fees);
    /// @notice A consumer's credit does not cover its inferences in the batch.
    error InsufficientCredit(address consumer, uint256 credit, uint256 fees);
    /// @notice The caller is not the agent's host.
    error NotAgentHost(uint256 agentId, address host);
    /// @notice The agent is not accepted by its host, paused, unknown, or on a retired adapter.
    error AgentNotServable(uint256 agentId);
    /// @notice Receipt `index` charges more than the agent's prices allow for its tokens.
    error FeeAbovePrice(uint256 index, uint256 fee, uint256 maximum);
    /// @notice The packed receipts end inside receipt `index`.
    error TruncatedReceipt(uint256 index);
    /// @notice Receipt `index` credits a position past the batch's contribution list.
    error UnknownCredit(uint256 index, uint256 position);
    /// @notice Receipt `index`'s credit weights add up to `total`, not 10,000.
    error CreditWeights(uint256 index, uint256 total);
    /// @notice The batch's contribution list must be in ascending id order without repeats.
    error ContributionsNotSorted(uint256 position);
    /// @notice The contribution is not accepted (pending, rejected, poisoned or withdrawn).
    error ContributionNotAccepted(uint256 contributionId, DatanetRegistry.Status status);
    /// @notice The contribution has not been proven part of the adapter's lineage.
    error NotInLineage(uint256 adapterId, uint256 contributionId);
    /// @notice No adapter has this id.
    error UnknownAdapter(uint256 adapterId);
    /// @notice The adapter was not trained on this datanet version.
    error VersionNotInLineage(uint256 adapterId, uint256 versionId);
    /// @notice The proof does not place the contribution in the version.
    error NotInVersion(uint256 versionId, uint256 contributionId);
    /// @notice No batch has this id.
    error UnknownBatch(uint256 batchId);
    /// @notice The batch is not in the state this needs.
    error WrongBatchState(uint256 batchId, BatchState state);
    /// @notice The batch's challenge window closed at `closedAt`.
    error ChallengeWindowClosed(uint256 batchId, uint64 closedAt);
    /// @notice The batch's challenge window is open until `closesAt`.
    error ChallengeWindowOpen(uint256 batchId, uint64 closesAt);
    /// @notice The batch has challenges waiting for a ruling.
    error ChallengesOpen(uint256 batchId, uint256 open);
    /// @notice The account already challenged this batch.
    error AlreadyChallenged(uint256 batchId, address challenger);
    /// @notice The OPEN sent is not the challenge bond.
    error WrongBond(uint256 required, uint256 sent);
    /// @notice Only a receipt's consumer may dispute it.
    error NotReceiptConsumer(address caller, address consumer);
    /// @notice The receipt is not in the batch.
    error ReceiptNotInBatch(uint256 batchId);
    /// @notice The challenge is not open.
    error NoOpenChallenge(uint256 batchId, uint256 index);
    /// @notice The ruling period ended at `endedAt`: the challenge can only be closed by default.
    error RulingPeriodOver(uint256 batchId, uint64 endedAt);
    /// @notice The ruling period runs until `endsAt`: governance may still rule.
    error RulingPeriodOpen(uint256 batchId, uint64 endsAt);
    /// @notice The payouts or debits given are not the ones the batch recorded.
    error RecordMismatch(uint256 batchId);
    /// @notice Only `Staking` sends OPEN here outside deposits (a challenger's slash share).
    error UnexpectedPayment(address from);
    /// @notice The consumer has no credit withdrawal waiting.
    error NoWithdrawalRequested(address consumer);
    /// @notice The credit withdrawal is ready at `readyAt`.
    error WithdrawalNotReady(uint64 readyAt);
    /// @notice The account has nothing to claim.
    error NothingToClaim(address account);

    event Deposited(address indexed consumer, uint256 amount);
    /// @notice The allowance `host` may take from `consumer`, in effect from `effectiveAt`.
    event Authorized(address indexed consumer, address indexed host, uint256 allowance, uint64 effectiveAt);
    event CreditWithdrawalRequested(address indexed consumer, uint256 amount, uint64 readyAt);
    event CreditWithdrawn(address indexed consumer, uint256 amount);
    event LineageProved(uint256 indexed adapterId, uint256 indexed contributionId, uint256 versionId);
    event BatchSettled(
        uint256 indexed batchId, address indexed host, bytes32 receiptsRoot, uint256 count, uint256 fees
    );
    /// @notice What a batch took from a consumer (the list `refundBatch` takes).
    event Debited(uint256 indexed batchId, address indexed consumer, uint256 amount);
    /// @notice A batch's payouts (the lists `release` takes).
    event BatchPayouts(uint256 indexed batchId, ContributionPayout[] contributions, OwnerPayout[] owners, uint256 hostShare);
    event BatchReleased(uint256 indexed batchId);
    event BatchRefunded(uint256 indexed batchId);
    /// @notice A released batch paid a contribution's contributor and its approving curators.
    event ContributionPaid(
        uint256 indexed batchId, uint256 indexed contributionId, address contributor, uint256 contributorAmount, uint256 curatorsAmount
    );
    event Credited(address indexed account, uint256 amount);
    event Claimed(address indexed account, uint256 amount);
    event BatchChallenged(
        uint256 indexed batchId, uint256 index, address indexed challenger, uint256 bond, bytes32 evidenceHash
    );
    event ChallengeResolved(uint256 indexed batchId, uint256 index, address indexed challenger, bool upheld);
    /// @notice Governance did not rule within the ruling period: the challenge was closed as
    /// not upheld, the bond returned and the host's stake released.
    event ChallengeExpired(uint256 indexed batchId, uint256 index, address indexed challenger);
    event ChallengeBondSet(uint256 bond);

    /// @param governance The owner: rules on challenges and sets the challenge bond.
    /// @param params_ The protocol parameters.
    /// @param staking_ The staking contract (this contract must hold its slasher role).
    /// @param models_ The model registry (and through it, the datanet registry).
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
        datanets = models_.datanets();
        challengeBond = challengeBond_;
        emit ChallengeBondSet(challengeBond_);
    }

    // ---------------------------------------------------------------- consumers

    /// @notice Adds the OPEN sent to the caller's credit.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        _credit[msg.sender] += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    /// @notice Lets `host` take up to `allowance` of the caller's credit for inferences it
    /// serves, replacing any earlier allowance for it: at once if higher, after one challenge
    /// window if lower (zero revokes), so answers already served can still be settled.
    function authorize(address host, uint128 allowance) external {
        Authorization storage a = _authorizations[msg.sender][host];
        _applyLowering(a);
        uint64 effectiveAt = uint64(block.timestamp);
        if (allowance >= a.allowance) {
            a.allowance = allowance;
            a.lowersAt = 0;
            a.lowerTo = 0;
        } else {
            effectiveAt += params.challengeWindow();
            a.lowersAt = effectiveAt;
            a.lowerTo = allowance;
        }
        emit Authorized(msg.sender, host, allowance, effectiveAt);
    }

    /// @notice Asks to take back `amount` of unspent credit after one challenge window; until
    /// then, authorised hosts can still settle inferences against it. A new request replaces
    /// the old one.
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

    // ---------------------------------------------------------------- lineage

    /// @notice Records that `contributionId` is in datanet version `versionId`, which adapter
    /// `adapterId` was trained on, so receipts of its agents may credit it. Anyone may prove it.
    /// @param proof The contribution's Merkle proof in the version (see the datanets crate).
    function proveLineage(uint256 adapterId, uint256 versionId, uint256 contributionId, bytes32[] calldata proof)
        external
    {
        (ModelRegistry.Adapter memory ad, uint256[] memory versions) = models.adapter(adapterId);
        if (ad.status == ModelRegistry.Status.None) revert UnknownAdapter(adapterId);
        bool listed = false;
        for (uint256 i = 0; i < versions.length && !listed; ++i) {
            listed = versions[i] == versionId;
        }
        if (!listed) revert VersionNotInLineage(adapterId, versionId);
        DatanetRegistry.Version memory v = datanets.version(versionId);
        DatanetRegistry.Contribution memory c = datanets.contribution(contributionId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(contributionId, c.contentHash))));
        if (c.datanetId != v.datanetId || !MerkleProof.verifyCalldata(proof, v.root, leaf)) {
            revert NotInVersion(versionId, contributionId);
        }
        _inLineage[adapterId][contributionId] = true;
        emit LineageProved(adapterId, contributionId, versionId);
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Settles a batch of inferences served by the caller (a staked host, the accepted
    /// host of every agent in it) and holds their fees in escrow.
    /// @param receipts The receipts, packed one after another (see `RECEIPT_HEADER`), grouped by
    /// consumer in ascending address order, each consumer's in rising `seq` order.
    /// @param contributions The contributions the receipts credit, ascending, each accepted;
    /// credits name them by position.
    /// @return batchId The new batch's id (ids start at 1).
    function settle(bytes calldata receipts, uint64[] calldata contributions) external returns (uint256 batchId) {
        if (!staking.isStaked(msg.sender, ProtocolParams.Role.Host, 0)) revert HostNotStaked(msg.sender);
        if (receipts.length == 0) revert EmptyBatch();
        batchId = ++_batchCount;
        uint256 most = receipts.length / RECEIPT_HEADER;
        Tally memory t = _newTally(batchId, most, contributions.length);
        _checkContributions(contributions, t.datanetOf);
        bytes32[] memory leaves = new bytes32[](most);
        Packed memory r;
        uint256 n = 0;
        for (uint256 at = 0; at < receipts.length; ++n) {
            at = _unpack(receipts, at, r, n);
            leaves[n] = _take(t, r, n, contributions);
        }
        assembly ("memory-safe") {
            mstore(leaves, n) // shorten to the receipts read
        }
        _closeConsumer(t);
        bytes32 root = _merkleRoot(leaves);
        _record(t, root, contributions);
        emit BatchSettled(batchId, msg.sender, root, n, t.fees);
    }

    /// @notice Pays out a batch whose challenge window closed without an open or upheld
    /// challenge. Anyone may call this, with the lists of its `BatchPayouts` event. A
    /// contribution poisoned (or otherwise no longer accepted) since settlement is not paid:
    /// its shares go to the treasury.
    function release(uint256 batchId, ContributionPayout[] calldata contributions, OwnerPayout[] calldata owners)
        external
    {
        Batch storage b = _batches[batchId];
        if (b.state != BatchState.Escrowed) revert WrongBatchState(batchId, b.state);
        uint64 closesAt = b.settledAt + params.challengeWindow();
        if (block.timestamp <= closesAt) revert ChallengeWindowOpen(batchId, closesAt);
        if (b.openChallenges != 0) revert ChallengesOpen(batchId, b.openChallenges);
        if (keccak256(abi.encode(contributions, owners, b.hostShare)) != b.payoutsHash) {
            revert RecordMismatch(batchId);
        }
        b.state = BatchState.Released;
        uint256 paid = 0;
        for (uint256 i = 0; i < contributions.length; ++i) {
            paid += _payContribution(batchId, contributions[i]);
        }
        for (uint256 i = 0; i < owners.length; ++i) {
            _pay(owners[i].owner, owners[i].amount);
            paid += owners[i].amount;
        }
        _pay(b.host, b.hostShare);
        _pay(staking.treasury(), b.fees - paid - b.hostShare);
        emit BatchReleased(batchId);
    }

    /// @notice Returns a batch's fees to its consumers' credit after a challenge of it was
    /// upheld. Anyone may call this, with the list of its `Debited` events in order.
    function refundBatch(uint256 batchId, Debit[] calldata debits) external {
        Batch storage b = _batches[batchId];
        if (b.state != BatchState.Upheld) revert WrongBatchState(batchId, b.state);
        bytes32 h = 0;
        for (uint256 i = 0; i < debits.length; ++i) {
            h = keccak256(abi.encode(h, debits[i].consumer, debits[i].amount));
        }
        if (h != b.debitsHash) revert RecordMismatch(batchId);
        b.state = BatchState.Refunded;
        for (uint256 i = 0; i < debits.length; ++i) {
            _credit[debits[i].consumer] += debits[i].amount;
        }
        emit BatchRefunded(batchId);
    }

    // ---------------------------------------------------------------- challenges

    /// @notice Challenges a batch within its challenge window. Only staked validators, posting
    /// the challenge bond.
    /// @param evidenceHash Hash of the evidence for governance to weigh (for attribution, the
    /// receipt and the recomputed attribution that differs from it).
    /// @return index The challenge's place among the batch's challenges.
    function challenge(uint256 batchId, bytes32 evidenceHash) external payable returns (uint256 index) {
        if (!staking.isStaked(msg.sender, ProtocolParams.Role.Validator, 0)) revert NotValidator(msg.sender);
        return _openChallenge(batchId, evidenceHash);
    }

    /// @notice A consumer disputes a batch holding one of its receipts, within the challenge
    /// window, posting the challenge bond.
    /// @param receipt The receipt, as settled.
    /// @param proof Its Merkle proof in the batch's receipts root.
    /// @return index The challenge's place among the batch's challenges.
    function dispute(uint256 batchId, Receipt calldata receipt, bytes32[] calldata proof, bytes32 evidenceHash)
        external
        payable
        returns (uint256 index)
    {
        if (receipt.consumer != msg.sender) revert NotReceiptConsumer(msg.sender, receipt.consumer);
        if (!MerkleProof.verifyCalldata(proof, _batches[batchId].receiptsRoot, _leaf(receipt))) {
            revert ReceiptNotInBatch(batchId);
        }
        return _openChallenge(batchId, evidenceHash);
    }

    /// @notice Closes a challenge governance did not rule on within the ruling period, as not
    /// upheld: the bond returns to the challenger and the host's stake is released. Anyone may
    /// call this.
    function expireChallenge(uint256 batchId, uint256 index) external {
        Challenge storage ch = _challenges[batchId][index];
        if (!ch.open) revert NoOpenChallenge(batchId, index);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp <= endsAt) revert RulingPeriodOpen(batchId, endsAt);
        Batch storage b = _batches[batchId];
        ch.open = false;
        b.openChallenges -= 1;
        emit ChallengeExpired(batchId, index, ch.challenger);
        staking.unfreeze(ProtocolParams.Role.Host, 0, b.host);
        _pay(ch.challenger, ch.bond);
    }

    /// @notice Governance's ruling on an open challenge, within the ruling period; the host's
    /// stake is released either way. The first upheld challenge of a batch slashes its host and
    /// sends the batch's escrow back to its consumers; the challenger gets its bond and the
    /// challenger's share of the slash (a later upheld challenge, its bond back). Rejected, the
    /// bond goes to the treasury. Only the owner (governance).
    function resolveChallenge(uint256 batchId, uint256 index, bool upheld) external onlyOwner {
        Challenge storage ch = _challenges[batchId][index];
        if (!ch.open) revert NoOpenChallenge(batchId, index);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp > endsAt) revert RulingPeriodOver(batchId, endsAt);
        Batch storage b = _batches[batchId];
        ch.open = false;
        b.openChallenges -= 1;
        address challenger = ch.challenger;
        emit ChallengeResolved(batchId, index, challenger, upheld);
        staking.unfreeze(ProtocolParams.Role.Host, 0, b.host);
        if (!upheld) {
            _pay(staking.treasury(), ch.bond);
            return;
        }
        uint256 reward = ch.bond;
        if (b.state == BatchState.Escrowed) {
            b.state = BatchState.Upheld;
            // The challenger's share of the slash comes here and is credited, not sent by
            // `Staking`: a challenger that refuses OPEN would otherwise make the ruling revert.
            uint256 balanceBefore = address(this).balance;
            uint256 penalty = params.minStake(ProtocolParams.Role.Host);
            if (penalty != 0 && staking.slashableOf(b.host, ProtocolParams.Role.Host, 0) != 0) {
                staking.slash(ProtocolParams.Role.Host, 0, b.host, penalty, payable(address(this)));
            }
            reward += address(this).balance - balanceBefore;
        }
        _pay(challenger, reward);
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

    // ---------------------------------------------------------------- views

    /// @notice A consumer's unspent credit.
    function creditOf(address consumer) external view returns (uint256) {
        return _credit[consumer];
    }

    /// @notice What `consumer` lets `host` take (a pending lowering included, which takes
    /// effect at `lowersAt`), and the last receipt it settled.
    function authorization(address consumer, address host) external view returns (Authorization memory) {
        return _authorizations[consumer][host];
    }

    /// @notice A consumer's pending credit withdrawal.
    function creditWithdrawal(address consumer) external view returns (CreditWithdrawal memory) {
        return _withdrawals[consumer];
    }

    /// @notice OPEN credited to `account` and not yet claimed.
    function claimable(address account) external view returns (uint256) {
        return _claimable[account];
    }

    /// @notice Whether `contributionId` is proven part of `adapterId`'s lineage.
    function inLineage(uint256 adapterId, uint256 contributionId) external view returns (bool) {
        return _inLineage[adapterId][contributionId];
    }

    /// @notice A settled batch.
    function batch(uint256 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice Challenge `index` of a batch (zero challenger if none).
    function challengeOf(uint256 batchId, uint256 index) external view returns (Challenge memory) {
        return _challenges[batchId][index];
    }

    /// @notice How many batches have been settled (the highest id).
    function batchCount() external view returns (uint256) {
        return _batchCount;
    }

    /// @notice A receipt's Merkle leaf: `keccak256(bytes.concat(keccak256(abi.encode(consumer,
    /// agentId, seq, inputTokens, outputTokens, fee, attributionHash, keccak256(credits)))))`.
    function receiptLeaf(Receipt calldata receipt) external pure returns (bytes32) {
        return _leaf(receipt);
    }

    // ---------------------------------------------------------------- internals

    function _newTally(uint256 batchId, uint256 n, uint256 listed) private pure returns (Tally memory t) {
        t.batchId = batchId;
        // No agent id is this large (they are uint64), so the first receipt's agent is always
        // looked up, even agent 0, which must be refused as unknown rather than skipped.
        t.agentId = type(uint256).max;
        // Batches serve few models, so a short list searched linearly beats a storage map.
        t.owners = new address[](n);
        t.ownerFees = new uint256[](n);
        t.slices = new uint256[](listed);
        t.checkedFor = new uint256[](listed);
        t.datanetOf = new uint256[](listed);
    }

    /// @dev The batch's contribution list: ascending, each accepted now; notes their datanets.
    function _checkContributions(uint64[] calldata contributions, uint256[] memory datanetOf) private view {
        uint256 previous = 0;
        for (uint256 i = 0; i < contributions.length; ++i) {
            uint256 id = contributions[i];
            if (id <= previous) revert ContributionsNotSorted(i);
            previous = id;
            (, uint32 datanetId, DatanetRegistry.Status status) = datanets.standing(id);
            if (status != DatanetRegistry.Status.Accepted) revert ContributionNotAccepted(id, status);
            datanetOf[i] = datanetId;
        }
    }

    /// @dev Reads the packed receipt at `at` into `r`; returns where the next one starts.
    function _unpack(bytes calldata data, uint256 at, Packed memory r, uint256 index)
        private
        pure
        returns (uint256 next)
    {
        if (data.length - at < RECEIPT_HEADER) revert TruncatedReceipt(index);
        uint256 count;
        assembly ("memory-safe") {
            let p := add(data.offset, at)
            mstore(r, shr(96, calldataload(p)))
            mstore(add(r, 0x20), shr(192, calldataload(add(p, 20))))
            mstore(add(r, 0x40), shr(192, calldataload(add(p, 28))))
            mstore(add(r, 0x60), shr(224, calldataload(add(p, 36))))
            mstore(add(r, 0x80), shr(224, calldataload(add(p, 40))))
            mstore(add(r, 0xa0), shr(128, calldataload(add(p, 44))))
            mstore(add(r, 0xc0), calldataload(add(p, 60)))
            count := shr(240, calldataload(add(p, 92)))
            mstore(add(r, 0xe0), add(p, 94))
            mstore(add(r, 0x100), shl(2, count))
        }
        next = at + RECEIPT_HEADER + 4 * count;
        if (next > data.length) revert TruncatedReceipt(index);
    }

    /// @dev Checks one receipt into the tally and returns its leaf.
    function _take(Tally memory t, Packed memory r, uint256 i, uint64[] calldata contributions)
        private
        returns (bytes32)
    {
        address consumer = r.consumer;
        if (consumer == address(0)) revert ReceiptsNotGrouped(i);
        if (consumer != t.consumer) {
            if (consumer < t.consumer) revert ReceiptsNotGrouped(i);
            _closeConsumer(t);
            t.consumer = consumer;
            t.consumerFees = 0;
            t.lastSeq = _authorizations[consumer][msg.sender].lastSeq;
        }
        // `seq` is eight bytes in the packing: it fits.
        uint64 seq = uint64(r.seq);
        if (seq <= t.lastSeq) revert ReceiptReplayed(i, consumer, seq, t.lastSeq);
        t.lastSeq = seq;
        if (r.agentId != t.agentId) _loadAgent(t, r.agentId);
        uint256 fee = r.fee;
        uint256 maximum = (r.inputTokens * t.priceIn + r.outputTokens * t.priceOut) / 1000;
        if (fee > maximum) revert FeeAbovePrice(i, fee, maximum);
        // Fees are sixteen bytes and a batch holds far fewer than 2^128 receipts: no overflow.
        unchecked {
            t.ownerFees[t.ownerIndex] += fee;
            t.consumerFees += fee;
            t.fees += fee;
        }
        if (r.creditsLength != 0) _attribute(t, r, i, contributions);
        return _packedLeaf(r);
    }

    /// @dev Adds a receipt's credits to the listed contributions' slices.
    function _attribute(Tally memory t, Packed memory r, uint256 i, uint64[] calldata contributions) private view {
        (uint256 total, uint256 failed) = _creditLoop(r.creditsOffset, r.creditsLength, r.fee, t, contributions);
        if (failed >> 255 != 0) {
            revert NotInLineage(t.adapterId, contributions[(failed & type(uint128).max) - 1]);
        }
        if (failed != 0) revert UnknownCredit(i, failed - 1);
        if (total != WEIGHT_TOTAL) revert CreditWeights(i, total);
    }

    /// @dev The hot loop of a settlement (a batch of 256 receipts crediting 20 contributions
    /// each runs it 5,120 times), written against the packed credits, the tally's arrays and
    /// the lineage mapping's storage layout directly. Returns the weights' total, and on
    /// failure one past the failing position (with the top bit set if it is not proven in the
    /// lineage rather than outside the list).
    function _creditLoop(
        uint256 offset,
        uint256 length,
        uint256 fee,
        Tally memory t,
        uint64[] calldata contributions
    ) private view returns (uint256 total, uint256 failed) {
        uint256 adapterId = t.adapterId;
        uint256 knowledge = t.knowledgeDatanetId;
        uint256[] memory slices = t.slices;
        uint256[] memory checkedFor = t.checkedFor;
        uint256[] memory datanetOf = t.datanetOf;
        assembly ("memory-safe") {
            let end := add(offset, length)
            for { let p := offset } lt(p, end) { p := add(p, 4) } {
                let word := shr(224, calldataload(p))
                let at := shr(16, word)
                if iszero(lt(at, contributions.length)) {
                    failed := add(at, 1)
                    break
                }
                let id := calldataload(add(contributions.offset, shl(5, at)))
                at := shl(5, add(at, 1))
                if iszero(eq(mload(add(checkedFor, at)), adapterId)) {
                    // `_inLineage[adapterId][id]`: keccak(id . keccak(adapterId . slot)). The
                    // list's ids were read, and so validated, by `_checkContributions`.
                    mstore(0x00, adapterId)
                    mstore(0x20, _inLineage.slot)
                    mstore(0x20, keccak256(0x00, 0x40))
                    mstore(0x00, id)
                    switch sload(keccak256(0x00, 0x40))
                    case 0 {
                        // Outside the lineage, a contribution of the agent's knowledge datanet
                        // (a passage retrieved for the answer) may still be credited. Not
                        // remembered: it is the agent's, and the cache is the adapter's.
                        if iszero(and(iszero(iszero(knowledge)), eq(mload(add(datanetOf, at)), knowledge))) {
                            failed := or(shl(255, 1), shr(5, at))
                            break
                        }
                    }
                    default { mstore(add(checkedFor, at), adapterId) }
                }
                // No overflow: a slice sums fee (< 2^128) × weight (< 2^16) over fewer credits
                // than calldata has bytes.
                word := and(word, 0xffff)
                at := add(slices, at)
                mstore(at, add(mload(at), mul(fee, word)))
                total := add(total, word)
            }
        }
    }

    /// @dev Checks that the caller hosts `agentId` and that it may be settled; takes its prices
    /// and adapter, and its model owner's place in the tally, adding the owner if new.
    function _loadAgent(Tally memory t, uint256 agentId) private view {
        (
            address host,
            address owner,
            uint256 adapterId,
            uint128 priceIn,
            uint128 priceOut,
            bool servable,
            uint256 knowledgeDatanetId
        ) = models.agentRoute(agentId);
        if (!servable) revert AgentNotServable(agentId);
        if (host != msg.sender) revert NotAgentHost(agentId, msg.sender);
        t.agentId = agentId;
        t.adapterId = adapterId;
        t.priceIn = priceIn;
        t.priceOut = priceOut;
        t.knowledgeDatanetId = knowledgeDatanetId;
        uint256 k = 0;
        while (k < t.ownerCount && t.owners[k] != owner) ++k;
        if (k == t.ownerCount) t.owners[t.ownerCount++] = owner;
        t.ownerIndex = k;
    }

    /// @dev Debits the consumer in hand within its authorisation of the caller and its credit.
    function _closeConsumer(Tally memory t) private {
        address consumer = t.consumer;
        if (consumer == address(0)) return;
        uint256 fees = t.consumerFees;
        Authorization storage auth = _authorizations[consumer][msg.sender];
        _applyLowering(auth);
        uint256 allowance = auth.allowance;
        if (fees > allowance) revert NotAuthorized(consumer, msg.sender, allowance, fees);
        uint256 credit = _credit[consumer];
        if (fees > credit) revert InsufficientCredit(consumer, credit, fees);
        auth.allowance = uint128(allowance - fees);
        auth.lastSeq = t.lastSeq;
        _credit[consumer] = credit - fees;
        t.debitsHash = keccak256(abi.encode(t.debitsHash, consumer, fees));
        emit Debited(t.batchId, consumer, fees);
    }

    /// @dev Puts a due lowering of an allowance into effect.
    function _applyLowering(Authorization storage a) private {
        uint64 at = a.lowersAt;
        if (at == 0 || block.timestamp < at) return;
        if (a.lowerTo < a.allowance) a.allowance = a.lowerTo;
        a.lowersAt = 0;
        a.lowerTo = 0;
    }

    /// @dev Works out and records the batch's payouts, and stores the batch.
    function _record(Tally memory t, bytes32 root, uint64[] calldata contributions) private {
        ProtocolParams.FeeSplit memory split = params.feeSplit();
        ContributionPayout[] memory cp = new ContributionPayout[](contributions.length);
        for (uint256 j = 0; j < cp.length; ++j) {
            // A slice is fee × weight summed; weights are in basis points, as are the shares.
            uint256 slice = t.slices[j];
            cp[j] = ContributionPayout({
                contributionId: contributions[j],
                contributors: (slice * split.contributors / 1e8).toUint128(),
                curators: (slice * split.curators / 1e8).toUint128()
            });
        }
        OwnerPayout[] memory op = new OwnerPayout[](t.ownerCount);
        for (uint256 k = 0; k < op.length; ++k) {
            op[k] = OwnerPayout({owner: t.owners[k], amount: (t.ownerFees[k] * split.modelOwner / 10_000).toUint128()});
        }
        uint128 hostShare = (t.fees * split.host / 10_000).toUint128();
        _batches[t.batchId] = Batch({
            host: msg.sender,
            settledAt: uint64(block.timestamp),
            state: BatchState.Escrowed,
            challenges: 0,
            openChallenges: 0,
            fees: t.fees.toUint128(),
            hostShare: hostShare,
            receiptsRoot: root,
            payoutsHash: keccak256(abi.encode(cp, op, hostShare)),
            debitsHash: t.debitsHash
        });
        emit BatchPayouts(t.batchId, cp, op, hostShare);
    }

    /// @dev Credits a contribution's contributor and the curators who approved it, if it is
    /// still accepted; returns what was paid.
    function _payContribution(uint256 batchId, ContributionPayout calldata p) private returns (uint256 paid) {
        if (p.contributors == 0 && p.curators == 0) return 0;
        (address contributor,, DatanetRegistry.Status status) = datanets.standing(p.contributionId);
        if (status != DatanetRegistry.Status.Accepted) return 0;
        _pay(contributor, p.contributors);
        (address[] memory approvers,) = datanets.reviewers(p.contributionId);
        uint256 each = approvers.length == 0 ? 0 : p.curators / approvers.length;
        for (uint256 k = 0; k < approvers.length; ++k) {
            _pay(approvers[k], each);
        }
        paid = p.contributors + each * approvers.length;
        emit ContributionPaid(batchId, p.contributionId, contributor, p.contributors, each * approvers.length);
    }

    function _openChallenge(uint256 batchId, bytes32 evidenceHash) private returns (uint256 index) {
        Batch storage b = _batches[batchId];
        if (b.state == BatchState.None) revert UnknownBatch(batchId);
        if (b.state != BatchState.Escrowed) revert WrongBatchState(batchId, b.state);
        uint64 closesAt = b.settledAt + params.challengeWindow();
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(batchId, closesAt);
        if (msg.value != challengeBond) revert WrongBond(challengeBond, msg.value);
        if (_challengedBy[batchId][msg.sender]) revert AlreadyChallenged(batchId, msg.sender);
        _challengedBy[batchId][msg.sender] = true;
        index = b.challenges;
        b.challenges += 1;
        b.openChallenges += 1;
        _challenges[batchId][index] =
            Challenge({challenger: msg.sender, bond: uint96(msg.value), openedAt: uint64(block.timestamp), open: true});
        emit BatchChallenged(batchId, index, msg.sender, msg.value, evidenceHash);
        // The ruling may slash the host: hold its stake until it comes.
        staking.freeze(ProtocolParams.Role.Host, 0, b.host);
    }

    function _leaf(Receipt calldata r) private pure returns (bytes32) {
        bytes32 inner = keccak256(
            abi.encode(
                r.consumer,
                r.agentId,
                r.seq,
                r.inputTokens,
                r.outputTokens,
                r.fee,
                r.attributionHash,
                keccak256(r.credits)
            )
        );
        return keccak256(bytes.concat(inner));
    }

    /// @dev `_leaf` of a packed receipt, hashed in scratch memory past the free pointer.
    function _packedLeaf(Packed memory r) private pure returns (bytes32 leaf) {
        assembly ("memory-safe") {
            let buf := mload(0x40)
            let length := mload(add(r, 0x100))
            calldatacopy(buf, mload(add(r, 0xe0)), length)
            let creditsHash := keccak256(buf, length)
            mcopy(buf, r, 0xe0)
            mstore(add(buf, 0xe0), creditsHash)
            mstore(0x00, keccak256(buf, 0x100))
            leaf := keccak256(0x00, 0x20)
        }
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
