// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ProtocolParams} from "./ProtocolParams.sol";
import {Staking} from "./Staking.sol";

/// @title DatanetRegistry
/// @notice Datanets: community datasets whose every contribution has a known contributor, a
/// content hash, a curator verdict and a place in published versions.
///
/// A contributor pays the datanet's contribution fee with each contribution; the fee is a
/// deposit. Curators (who stake for the datanet in `Staking`) vote once each; `quorum` votes on
/// one side decide. A rejected contribution's fee goes to the curators who rejected it; an
/// accepted one's returns to the contributor once the challenge window has passed unchallenged.
/// During the window anyone may challenge an accepted contribution as poisoned by posting a
/// bond; the approving curators' stakes are frozen until governance (the owner) rules, within
/// the ruling period. Upheld: the contribution is poisoned, the contributor's deposit is
/// forfeit to the treasury, every approving curator is slashed, and the challenger gets its
/// bond back plus the challenger share of the slashes, capped at half of the forfeited deposit,
/// so poisoning one's own data and challenging it from another address always loses money.
/// Rejected: the bond goes to the treasury. Not ruled in time: anyone may close the challenge,
/// which then counts as not upheld, with the bond returned (governance's silence is nobody's
/// fault but governance's).
///
/// Curators are paid for reviewing, whatever their vote: `REVIEW_REWARD_BPS` of a decided
/// contribution's deposit is shared by every curator who voted on it, paid at once for a
/// rejection (the rest of the deposit goes to the treasury) and after the challenge window for
/// an acceptance (the rest returns to the contributor); a poisoned contribution pays its
/// reviewers nothing. A datanet's owner may restrict curating to the curators it names. A
/// contribution still pending after the review period can be withdrawn by its contributor with
/// its whole deposit.
///
/// A datanet's owner may make it permissioned: training on it then needs an access grant.
/// An account requests access paying the datanet's access fee, which the registry holds until
/// the owner grants (the fee goes to the owner) or denies (it returns to the requester); the
/// requester may withdraw a request not yet answered. A grant is permanent.
///
/// Payments are credited and withdrawn with `claim`, so no vote or ruling can be blocked by a
/// recipient that refuses OPEN. Every state change emits an event, so an indexer can rebuild
/// the registry from logs alone.
contract DatanetRegistry is Ownable, ReentrancyGuard {
    /// @notice The most curator votes a datanet may require, which bounds every loop over voters.
    uint16 public constant MAX_QUORUM = 32;
    /// @notice The share of a decided contribution's deposit paid to the curators who reviewed
    /// it, whatever they voted.
    uint16 public constant REVIEW_REWARD_BPS = 2_000;
    /// @notice The most a successful challenger earns beyond its bond, as a share of the
    /// deposit the contributor forfeits: below a whole, so self-challenging never pays.
    uint16 public constant CHALLENGER_REWARD_CAP_BPS = 5_000;

    /// @notice Where a contribution stands.
    enum Status {
        None,
        Pending,
        Accepted,
        Rejected,
        Poisoned,
        Withdrawn
    }

    /// @notice A datanet's settings.
    struct Datanet {
        address owner;
        uint16 quorum;
        /// Contributions accepted and not found poisoned.
        uint64 accepted;
        uint128 fee;
        bytes32 schemaHash;
    }

    /// @notice One contribution (its size and metadata hash live in its event).
    struct Contribution {
        address contributor;
        uint32 datanetId;
        Status status;
        uint16 approvals;
        uint16 rejections;
        /// The fee still held as its deposit.
        uint128 fee;
        uint64 submittedAt;
        uint64 decidedAt;
        bytes32 contentHash;
    }

    /// @notice A published version: a Merkle root over accepted contributions.
    struct Version {
        uint32 datanetId;
        uint64 count;
        uint64 publishedAt;
        bytes32 root;
    }

    /// @notice Who may train on a datanet: anyone, or (permissioned) the owner and the accounts
    /// it granted access, each of which paid `fee` for it.
    struct AccessPolicy {
        bool permissioned;
        uint128 fee;
    }

    /// @notice An account's standing with a permissioned datanet.
    enum AccessStatus {
        None,
        Requested,
        Granted
    }

    /// @notice An account's access request or grant, with the fee held for a request.
    struct AccessRequest {
        AccessStatus status;
        uint128 fee;
    }

    /// @notice An open challenge of a contribution.
    struct Challenge {
        address challenger;
        uint96 bond;
        uint64 openedAt;
    }

    /// @notice Staked curators, and where slashes go.
    Staking public immutable staking;
    /// @notice Review quorum floor and challenge window.
    ProtocolParams public immutable params;
    /// @notice OPEN a challenger must post.
    uint256 public challengeBond;
    /// @notice Seconds a contribution waits for its quorum before its contributor may withdraw
    /// it.
    uint64 public reviewPeriod;

    mapping(uint256 id => Datanet) private _datanets;
    mapping(uint256 id => string) private _metadataURIs;
    mapping(uint256 id => Contribution) private _contributions;
    /// Voters by contribution and position; the counts live in the contribution, so a vote
    /// writes one new slot instead of an array element and its length.
    mapping(uint256 id => mapping(uint256 index => address)) private _approvers;
    mapping(uint256 id => mapping(uint256 index => address)) private _rejecters;
    mapping(uint256 id => Version) private _versions;
    mapping(uint256 contributionId => Challenge) private _challenges;
    mapping(address account => uint256) private _owed;
    /// Datanets whose owner names their curators, and the curators named.
    mapping(uint256 datanetId => bool) private _restricted;
    mapping(uint256 datanetId => mapping(address curator => bool)) private _curatorAllowed;
    /// Access policies and each account's standing with a permissioned datanet.
    mapping(uint256 datanetId => AccessPolicy) private _access;
    mapping(uint256 datanetId => mapping(address account => AccessRequest)) private _accessOf;
    uint32 private _datanetCount;
    uint256 private _contributionCount;
    uint256 private _versionCount;

    /// @notice No datanet has this id.
    error UnknownDatanet(uint256 datanetId);
    /// @notice No contribution has this id.
    error UnknownContribution(uint256 contributionId);
    /// @notice No version has this id.
    error UnknownVersion(uint256 versionId);
    /// @notice A datanet's quorum must be between the protocol's minimum and `MAX_QUORUM`.
    error QuorumOutOfRange(uint16 quorum, uint16 minimum, uint16 maximum);
    /// @notice The OPEN sent is not the datanet's contribution fee.
    error WrongFee(uint256 required, uint256 sent);
    /// @notice A contribution needs a content hash and a non-zero size.
    error EmptyContribution();
    /// @notice The caller has no curator stake for the datanet.
    error NotCurator(uint256 datanetId, address account);
    /// @notice A contributor may not review their own contribution.
    error SelfReview(uint256 contributionId);
    /// @notice This curator already voted on the contribution.
    error AlreadyReviewed(uint256 contributionId, address curator);
    /// @notice The contribution has already been decided.
    error NotPending(uint256 contributionId, Status status);
    /// @notice Only the datanet's owner may do this.
    error NotDatanetOwner(uint256 datanetId, address account);
    /// @notice A version must hold between one and all of the datanet's accepted contributions.
    error BadVersionCount(uint64 count, uint64 accepted);
    /// @notice A version needs a Merkle root.
    error EmptyRoot();
    /// @notice Only accepted contributions can be challenged or have their fee released.
    error NotAccepted(uint256 contributionId, Status status);
    /// @notice The challenge window closed at `closedAt`.
    error ChallengeWindowClosed(uint256 contributionId, uint64 closedAt);
    /// @notice The challenge window is open until `closesAt`, so the fee stays held.
    error ChallengeWindowOpen(uint256 contributionId, uint64 closesAt);
    /// @notice The OPEN sent is not the challenge bond.
    error WrongBond(uint256 required, uint256 sent);
    /// @notice The contribution already has an open challenge.
    error AlreadyChallenged(uint256 contributionId);
    /// @notice The contribution has no open challenge.
    error NoOpenChallenge(uint256 contributionId);
    /// @notice The datanet's owner has not named `curator` as one of its curators.
    error CuratorNotAllowed(uint256 datanetId, address curator);
    /// @notice The review period runs until `endsAt`: the contribution may still be decided.
    error ReviewPeriodOpen(uint256 contributionId, uint64 endsAt);
    /// @notice Only the contributor withdraws its contribution.
    error NotContributor(uint256 contributionId, address account);
    /// @notice The ruling period ended at `endedAt`: the challenge can only be closed by default.
    error RulingPeriodOver(uint256 contributionId, uint64 endedAt);
    /// @notice The ruling period runs until `endsAt`: governance may still rule.
    error RulingPeriodOpen(uint256 contributionId, uint64 endsAt);
    /// @notice The contribution's fee has already been released.
    error FeeAlreadyReleased(uint256 contributionId);
    /// @notice The account has nothing to claim.
    error NothingToClaim(address account);
    /// @notice The datanet is open to all: there is no access to request.
    error NotPermissioned(uint256 datanetId);
    /// @notice The account already holds access to the datanet.
    error AlreadyHasAccess(uint256 datanetId, address account);
    /// @notice The account already has a request waiting for the owner.
    error AccessAlreadyRequested(uint256 datanetId, address account);
    /// @notice The account has no request waiting.
    error NoAccessRequest(uint256 datanetId, address account);
    /// @notice Only `Staking` sends OPEN here unasked (a challenger's share of a slash).
    error UnexpectedPayment(address from);

    event DatanetCreated(
        uint256 indexed datanetId,
        address indexed owner,
        bytes32 schemaHash,
        uint16 quorum,
        uint128 fee,
        string metadataURI
    );
    event ContributionSubmitted(
        uint256 indexed contributionId,
        uint256 indexed datanetId,
        address indexed contributor,
        bytes32 contentHash,
        uint64 size,
        bytes32 metadataHash,
        uint128 fee
    );
    event Reviewed(uint256 indexed contributionId, address indexed curator, bool approve, bytes32 reasonHash);
    event ContributionAccepted(uint256 indexed contributionId, uint256 indexed datanetId);
    event ContributionRejected(uint256 indexed contributionId, uint256 indexed datanetId);
    event VersionPublished(
        uint256 indexed versionId, uint256 indexed datanetId, bytes32 root, uint64 count, string uri
    );
    event ContributionChallenged(
        uint256 indexed contributionId, address indexed challenger, uint256 bond, bytes32 evidenceHash
    );
    event ChallengeResolved(uint256 indexed contributionId, address indexed challenger, bool upheld);
    /// @notice Governance did not rule within the ruling period; the challenge was closed as not
    /// upheld and the bond returned.
    event ChallengeExpired(uint256 indexed contributionId, address indexed challenger);
    event ContributionPoisoned(uint256 indexed contributionId, uint256 indexed datanetId);
    event FeeReleased(uint256 indexed contributionId, address indexed contributor, uint256 amount);
    event Credited(address indexed account, uint256 amount);
    event Claimed(address indexed account, uint256 amount);
    event ChallengeBondSet(uint256 bond);
    event ReviewPeriodSet(uint64 secondsLong);
    event CuratorsRestricted(uint256 indexed datanetId, bool restricted);
    event CuratorAllowed(uint256 indexed datanetId, address indexed curator, bool allowed);
    event ContributionWithdrawn(uint256 indexed contributionId, uint256 indexed datanetId);
    event ReviewersPaid(uint256 indexed contributionId, uint256 amount, uint256 reviewers);
    event AccessPolicySet(uint256 indexed datanetId, bool permissioned, uint128 fee);
    event AccessRequested(uint256 indexed datanetId, address indexed account, uint128 fee);
    event AccessGranted(uint256 indexed datanetId, address indexed account, uint128 fee);
    event AccessDenied(uint256 indexed datanetId, address indexed account);
    event AccessRequestWithdrawn(uint256 indexed datanetId, address indexed account);

    /// @param governance The owner: rules on challenges and sets the challenge bond.
    /// @param staking_ Where curators stake and where approvers of poisoned data are slashed.
    /// @param params_ The protocol parameters (review quorum floor, challenge window).
    /// @param challengeBond_ OPEN a challenger must post.
    /// @param reviewPeriod_ Seconds a contribution waits for its quorum before it may be
    /// withdrawn.
    constructor(
        address governance,
        Staking staking_,
        ProtocolParams params_,
        uint256 challengeBond_,
        uint64 reviewPeriod_
    ) Ownable(governance) {
        staking = staking_;
        params = params_;
        challengeBond = challengeBond_;
        reviewPeriod = reviewPeriod_;
        emit ChallengeBondSet(challengeBond_);
        emit ReviewPeriodSet(reviewPeriod_);
    }

    /// @notice Creates a datanet owned by the caller.
    /// @param metadataURI Where its description lives.
    /// @param schemaHash Hash of the record schema every contribution must follow.
    /// @param quorum Curator votes on one side that decide a contribution.
    /// @param fee OPEN (wei) each contribution deposits.
    /// @return datanetId The new datanet's id (ids start at 1).
    function createDatanet(string calldata metadataURI, bytes32 schemaHash, uint16 quorum, uint128 fee)
        external
        returns (uint256 datanetId)
    {
        uint16 minimum = params.reviewQuorum();
        if (quorum < minimum || quorum > MAX_QUORUM) revert QuorumOutOfRange(quorum, minimum, MAX_QUORUM);
        datanetId = ++_datanetCount;
        _datanets[datanetId] =
            Datanet({owner: msg.sender, quorum: quorum, accepted: 0, fee: fee, schemaHash: schemaHash});
        _metadataURIs[datanetId] = metadataURI;
        emit DatanetCreated(datanetId, msg.sender, schemaHash, quorum, fee, metadataURI);
    }

    /// @notice Submits a contribution to a datanet, depositing its fee (send exactly the fee).
    /// @param contentHash keccak256 of the contribution's canonical bytes.
    /// @param size Its size in bytes.
    /// @param metadataHash Hash of the contributor's signed metadata.
    /// @return contributionId The new contribution's id (ids start at 1).
    function contribute(uint256 datanetId, bytes32 contentHash, uint64 size, bytes32 metadataHash)
        external
        payable
        returns (uint256 contributionId)
    {
        Datanet storage d = _datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
        if (msg.value != d.fee) revert WrongFee(d.fee, msg.value);
        if (contentHash == bytes32(0) || size == 0) revert EmptyContribution();
        contributionId = ++_contributionCount;
        _contributions[contributionId] = Contribution({
            contributor: msg.sender,
            datanetId: uint32(datanetId),
            status: Status.Pending,
            approvals: 0,
            rejections: 0,
            fee: uint128(msg.value),
            submittedAt: uint64(block.timestamp),
            decidedAt: 0,
            contentHash: contentHash
        });
        emit ContributionSubmitted(
            contributionId, datanetId, msg.sender, contentHash, size, metadataHash, uint128(msg.value)
        );
    }

    /// @notice A curator's vote on a pending contribution; the vote that reaches the datanet's
    /// quorum on either side decides it.
    /// @param reasonHash Hash of the curator's written reason.
    function review(uint256 contributionId, bool approve, bytes32 reasonHash) external {
        Contribution storage c = _contributions[contributionId];
        Status status = c.status;
        if (status == Status.None) revert UnknownContribution(contributionId);
        if (status != Status.Pending) revert NotPending(contributionId, status);
        uint256 datanetId = c.datanetId;
        if (!staking.isStaked(msg.sender, ProtocolParams.Role.Curator, datanetId)) {
            revert NotCurator(datanetId, msg.sender);
        }
        if (_restricted[datanetId] && !_curatorAllowed[datanetId][msg.sender]) {
            revert CuratorNotAllowed(datanetId, msg.sender);
        }
        if (msg.sender == c.contributor) revert SelfReview(contributionId);
        mapping(uint256 => address) storage approvers = _approvers[contributionId];
        mapping(uint256 => address) storage rejecters = _rejecters[contributionId];
        uint16 approvalsBefore = c.approvals;
        uint16 rejectionsBefore = c.rejections;
        if (_contains(approvers, approvalsBefore, msg.sender) || _contains(rejecters, rejectionsBefore, msg.sender))
        {
            revert AlreadyReviewed(contributionId, msg.sender);
        }
        emit Reviewed(contributionId, msg.sender, approve, reasonHash);
        uint16 quorum = _datanets[datanetId].quorum;
        if (approve) {
            approvers[approvalsBefore] = msg.sender;
            uint16 approvals = approvalsBefore + 1;
            c.approvals = approvals;
            if (approvals == quorum) {
                c.status = Status.Accepted;
                c.decidedAt = uint64(block.timestamp);
                _datanets[datanetId].accepted += 1;
                emit ContributionAccepted(contributionId, datanetId);
            }
        } else {
            rejecters[rejectionsBefore] = msg.sender;
            uint16 rejections = rejectionsBefore + 1;
            c.rejections = rejections;
            if (rejections == quorum) {
                c.status = Status.Rejected;
                c.decidedAt = uint64(block.timestamp);
                uint256 fee = c.fee;
                c.fee = 0;
                emit ContributionRejected(contributionId, datanetId);
                // Every reviewer is paid the same whatever its vote; the rest of the deposit,
                // forfeit by a rejected contributor, goes to the treasury.
                uint256 paid = _payReviewers(contributionId, c, fee);
                _credit(staking.treasury(), fee - paid);
            }
        }
    }

    /// @notice Publishes a version of a datanet: the Merkle root over `count` accepted
    /// contributions. Only the datanet's owner.
    /// @dev Leaves are `keccak256(bytes.concat(keccak256(abi.encode(contributionId, contentHash))))`,
    /// paired with sorted (commutative) hashing, so OpenZeppelin's `MerkleProof` verifies them.
    /// @return versionId The new version's id (ids start at 1, shared by all datanets).
    function publishVersion(uint256 datanetId, bytes32 root, uint64 count, string calldata uri)
        external
        returns (uint256 versionId)
    {
        Datanet storage d = _datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
        if (d.owner != msg.sender) revert NotDatanetOwner(datanetId, msg.sender);
        if (root == bytes32(0)) revert EmptyRoot();
        if (count == 0 || count > d.accepted) revert BadVersionCount(count, d.accepted);
        versionId = ++_versionCount;
        _versions[versionId] = Version({
            datanetId: uint32(datanetId), count: count, publishedAt: uint64(block.timestamp), root: root
        });
        emit VersionPublished(versionId, datanetId, root, count, uri);
    }

    /// @notice Challenges an accepted contribution as poisoned, posting the challenge bond.
    /// @param evidenceHash Hash of the evidence for governance to weigh.
    function challenge(uint256 contributionId, bytes32 evidenceHash) external payable {
        Contribution storage c = _contributions[contributionId];
        if (c.status == Status.None) revert UnknownContribution(contributionId);
        if (c.status != Status.Accepted) revert NotAccepted(contributionId, c.status);
        uint64 closesAt = c.decidedAt + params.challengeWindow();
        if (block.timestamp > closesAt) revert ChallengeWindowClosed(contributionId, closesAt);
        if (msg.value != challengeBond) revert WrongBond(challengeBond, msg.value);
        if (_challenges[contributionId].challenger != address(0)) revert AlreadyChallenged(contributionId);
        _challenges[contributionId] =
            Challenge({challenger: msg.sender, bond: uint96(msg.value), openedAt: uint64(block.timestamp)});
        emit ContributionChallenged(contributionId, msg.sender, msg.value, evidenceHash);
        // The ruling may slash the approvers: hold their stakes until it comes.
        _forEachApprover(contributionId, c, staking.freeze);
    }

    /// @notice Governance's ruling on an open challenge, within the ruling period. Upheld: the
    /// contribution is poisoned, the contributor's deposit goes to the treasury, each approving
    /// curator loses up to the curator minimum stake, and the challenger is credited its bond
    /// plus the challenger share of the slashes, at most `CHALLENGER_REWARD_CAP_BPS` of the
    /// forfeited deposit (the rest goes to the treasury). Rejected: the bond goes to the
    /// treasury, and the challenge window (and the fee's release) moves later by as long as the
    /// challenge was open. Either way the approvers' stakes are released. Only the owner
    /// (governance).
    function resolveChallenge(uint256 contributionId, bool upheld) external onlyOwner {
        Challenge memory ch = _challenges[contributionId];
        if (ch.challenger == address(0)) revert NoOpenChallenge(contributionId);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp > endsAt) revert RulingPeriodOver(contributionId, endsAt);
        delete _challenges[contributionId];
        emit ChallengeResolved(contributionId, ch.challenger, upheld);
        Contribution storage c = _contributions[contributionId];
        _forEachApprover(contributionId, c, staking.unfreeze);
        if (!upheld) {
            _extendWindow(c, ch);
            _credit(staking.treasury(), ch.bond);
            return;
        }
        uint256 datanetId = c.datanetId;
        c.status = Status.Poisoned;
        _datanets[datanetId].accepted -= 1;
        uint256 forfeit = c.fee;
        c.fee = 0;
        emit ContributionPoisoned(contributionId, datanetId);
        uint256 shares = _slashApprovers(contributionId, c, datanetId);
        uint256 cap = forfeit * CHALLENGER_REWARD_CAP_BPS / 10_000;
        uint256 reward = shares < cap ? shares : cap;
        _credit(ch.challenger, ch.bond + reward);
        _credit(staking.treasury(), forfeit + shares - reward);
    }

    /// @notice Closes a challenge governance did not rule on within the ruling period, as not
    /// upheld: the bond returns to the challenger and the approvers' stakes are released; the
    /// challenge window does not move, so the stakes are held at most the window plus one
    /// ruling period. Anyone may call this.
    function expireChallenge(uint256 contributionId) external {
        Challenge memory ch = _challenges[contributionId];
        if (ch.challenger == address(0)) revert NoOpenChallenge(contributionId);
        uint64 endsAt = ch.openedAt + params.rulingPeriod();
        if (block.timestamp <= endsAt) revert RulingPeriodOpen(contributionId, endsAt);
        delete _challenges[contributionId];
        emit ChallengeExpired(contributionId, ch.challenger);
        Contribution storage c = _contributions[contributionId];
        _forEachApprover(contributionId, c, staking.unfreeze);
        // The window does not move: expire-and-challenge-again could otherwise hold the
        // approvers' stakes frozen for ever, for no more than a returned bond.
        _credit(ch.challenger, ch.bond);
    }

    /// The window stood still while the challenge was open, so a frivolous challenge (perhaps by
    /// the contributor) cannot run out the clock for genuine ones.
    function _extendWindow(Contribution storage c, Challenge memory ch) private {
        c.decidedAt += uint64(block.timestamp) - ch.openedAt;
    }

    /// Slashes each approver of a poisoned contribution; returns the challenger shares that
    /// `Staking` sent here (credited by the caller, not sent by `Staking`: a challenger that
    /// refuses OPEN would otherwise make the ruling revert).
    function _slashApprovers(uint256 contributionId, Contribution storage c, uint256 datanetId)
        private
        returns (uint256 shares)
    {
        uint256 penalty = params.minStake(ProtocolParams.Role.Curator);
        // With no minimum stake there is no penalty, and a slash of nothing would revert.
        if (penalty == 0) return 0;
        mapping(uint256 => address) storage approvers = _approvers[contributionId];
        uint256 balanceBefore = address(this).balance;
        for (uint256 i = 0; i < c.approvals; ++i) {
            address curator = approvers[i];
            // A curator who has already withdrawn everything has nothing left to take.
            if (staking.slashableOf(curator, ProtocolParams.Role.Curator, datanetId) != 0) {
                staking.slash(ProtocolParams.Role.Curator, datanetId, curator, penalty, payable(address(this)));
            }
        }
        shares = address(this).balance - balanceBefore;
    }

    /// Calls `action` (freeze or unfreeze) on each approver's curator stake.
    function _forEachApprover(
        uint256 contributionId,
        Contribution storage c,
        function(ProtocolParams.Role, uint256, address) external action
    ) private {
        mapping(uint256 => address) storage approvers = _approvers[contributionId];
        for (uint256 i = 0; i < c.approvals; ++i) {
            action(ProtocolParams.Role.Curator, c.datanetId, approvers[i]);
        }
    }

    /// @notice Receives the challenger's share of a slash from `Staking` during a ruling; OPEN
    /// from anyone else would be stuck here, so it is refused.
    receive() external payable {
        if (msg.sender != address(staking)) revert UnexpectedPayment(msg.sender);
    }

    /// @notice Returns an accepted contribution's fee to its contributor once its challenge
    /// window has closed with no open challenge. Anyone may call this.
    function releaseFee(uint256 contributionId) external {
        Contribution storage c = _contributions[contributionId];
        if (c.status == Status.None) revert UnknownContribution(contributionId);
        if (c.status != Status.Accepted) revert NotAccepted(contributionId, c.status);
        uint64 closesAt = c.decidedAt + params.challengeWindow();
        if (block.timestamp <= closesAt) revert ChallengeWindowOpen(contributionId, closesAt);
        if (_challenges[contributionId].challenger != address(0)) revert AlreadyChallenged(contributionId);
        uint256 fee = c.fee;
        if (fee == 0) revert FeeAlreadyReleased(contributionId);
        c.fee = 0;
        // The reviewers are paid now that the acceptance stands; the rest returns.
        uint256 paid = _payReviewers(contributionId, c, fee);
        emit FeeReleased(contributionId, c.contributor, fee - paid);
        _credit(c.contributor, fee - paid);
    }

    /// @notice Withdraws a contribution that did not reach its quorum within the review
    /// period, returning its whole deposit. Only its contributor.
    function withdrawContribution(uint256 contributionId) external {
        Contribution storage c = _contributions[contributionId];
        Status status = c.status;
        if (status == Status.None) revert UnknownContribution(contributionId);
        if (msg.sender != c.contributor) revert NotContributor(contributionId, msg.sender);
        if (status != Status.Pending) revert NotPending(contributionId, status);
        uint64 endsAt = c.submittedAt + reviewPeriod;
        if (block.timestamp <= endsAt) revert ReviewPeriodOpen(contributionId, endsAt);
        c.status = Status.Withdrawn;
        uint256 fee = c.fee;
        c.fee = 0;
        emit ContributionWithdrawn(contributionId, c.datanetId);
        _credit(c.contributor, fee);
    }

    /// @notice Restricts (or opens) curating a datanet to the curators its owner names. Only
    /// the datanet's owner.
    function setCuratorsRestricted(uint256 datanetId, bool restricted) external {
        _onlyDatanetOwner(datanetId);
        _restricted[datanetId] = restricted;
        emit CuratorsRestricted(datanetId, restricted);
    }

    /// @notice Names (or un-names) a curator of a restricted datanet. Only its owner.
    function setCuratorAllowed(uint256 datanetId, address curator, bool allowed) external {
        _onlyDatanetOwner(datanetId);
        _curatorAllowed[datanetId][curator] = allowed;
        emit CuratorAllowed(datanetId, curator, allowed);
    }

    /// @notice Whether `curator` may review a datanet's contributions (given a stake).
    function mayCurate(uint256 datanetId, address curator) external view returns (bool) {
        return !_restricted[datanetId] || _curatorAllowed[datanetId][curator];
    }

    /// @notice Makes a datanet permissioned (training needs a grant) or open, and sets the fee
    /// an access request pays. Only the datanet's owner. Requests already made keep the fee
    /// they paid.
    function setAccessPolicy(uint256 datanetId, bool permissioned, uint128 fee) external {
        _onlyDatanetOwner(datanetId);
        _access[datanetId] = AccessPolicy({permissioned: permissioned, fee: fee});
        emit AccessPolicySet(datanetId, permissioned, fee);
    }

    /// @notice Asks a permissioned datanet's owner for access, paying its access fee, which
    /// the registry holds until the owner answers or the request is withdrawn.
    function requestAccess(uint256 datanetId) external payable {
        if (_datanets[datanetId].owner == address(0)) revert UnknownDatanet(datanetId);
        AccessPolicy memory policy = _access[datanetId];
        if (!policy.permissioned) revert NotPermissioned(datanetId);
        AccessRequest storage r = _accessOf[datanetId][msg.sender];
        if (r.status == AccessStatus.Granted || _datanets[datanetId].owner == msg.sender) {
            revert AlreadyHasAccess(datanetId, msg.sender);
        }
        if (r.status == AccessStatus.Requested) revert AccessAlreadyRequested(datanetId, msg.sender);
        if (msg.value != policy.fee) revert WrongFee(policy.fee, msg.value);
        r.status = AccessStatus.Requested;
        r.fee = policy.fee;
        emit AccessRequested(datanetId, msg.sender, policy.fee);
    }

    /// @notice Grants `account` access: the fee its request holds goes to the owner; an
    /// account that made no request is granted free. Only the datanet's owner.
    function grantAccess(uint256 datanetId, address account) external {
        _onlyDatanetOwner(datanetId);
        AccessRequest storage r = _accessOf[datanetId][account];
        if (r.status == AccessStatus.Granted) revert AlreadyHasAccess(datanetId, account);
        uint128 fee = r.fee;
        r.status = AccessStatus.Granted;
        r.fee = 0;
        emit AccessGranted(datanetId, account, fee);
        _credit(msg.sender, fee);
    }

    /// @notice Turns down a waiting request; its fee returns to the requester. Only the
    /// datanet's owner.
    function denyAccess(uint256 datanetId, address account) external {
        _onlyDatanetOwner(datanetId);
        uint128 fee = _closeRequest(datanetId, account);
        emit AccessDenied(datanetId, account);
        _credit(account, fee);
    }

    /// @notice Withdraws the caller's waiting request, with its fee.
    function withdrawAccessRequest(uint256 datanetId) external {
        uint128 fee = _closeRequest(datanetId, msg.sender);
        emit AccessRequestWithdrawn(datanetId, msg.sender);
        _credit(msg.sender, fee);
    }

    function _closeRequest(uint256 datanetId, address account) private returns (uint128 fee) {
        AccessRequest storage r = _accessOf[datanetId][account];
        if (r.status != AccessStatus.Requested) revert NoAccessRequest(datanetId, account);
        fee = r.fee;
        delete _accessOf[datanetId][account];
    }

    /// @notice Whether `account` may train on the datanet: it is open, or `account` owns it
    /// or was granted access.
    function hasAccess(uint256 datanetId, address account) external view returns (bool) {
        return !_access[datanetId].permissioned || _datanets[datanetId].owner == account
            || _accessOf[datanetId][account].status == AccessStatus.Granted;
    }

    /// @notice A datanet's access policy.
    function accessPolicy(uint256 datanetId) external view returns (AccessPolicy memory) {
        return _access[datanetId];
    }

    /// @notice An account's access request or grant.
    function accessOf(uint256 datanetId, address account) external view returns (AccessRequest memory) {
        return _accessOf[datanetId][account];
    }

    /// @notice Sets the review period. Only governance.
    function setReviewPeriod(uint64 secondsLong) external onlyOwner {
        reviewPeriod = secondsLong;
        emit ReviewPeriodSet(secondsLong);
    }

    function _onlyDatanetOwner(uint256 datanetId) private view {
        address owner_ = _datanets[datanetId].owner;
        if (owner_ == address(0)) revert UnknownDatanet(datanetId);
        if (owner_ != msg.sender) revert NotDatanetOwner(datanetId, msg.sender);
    }

    /// Credits `REVIEW_REWARD_BPS` of `fee` to everyone who voted on the contribution, equally,
    /// the first voter also taking the indivisible remainder; returns what was paid.
    function _payReviewers(uint256 contributionId, Contribution storage c, uint256 fee)
        private
        returns (uint256 paid)
    {
        uint256 approvals = c.approvals;
        uint256 voters = approvals + c.rejections;
        if (voters == 0) return 0;
        paid = fee * REVIEW_REWARD_BPS / 10_000;
        uint256 each = paid / voters;
        uint256 remainder = paid - each * voters;
        for (uint256 i = 0; i < voters; ++i) {
            address reviewer = i < approvals ? _approvers[contributionId][i] : _rejecters[contributionId][i - approvals];
            _credit(reviewer, i == 0 ? each + remainder : each);
        }
        emit ReviewersPaid(contributionId, paid, voters);
    }

    /// @notice Pays `account` everything credited to it. Anyone may call this; the OPEN only
    /// ever goes to `account`.
    function claim(address payable account) external nonReentrant {
        uint256 amount = _owed[account];
        if (amount == 0) revert NothingToClaim(account);
        _owed[account] = 0;
        emit Claimed(account, amount);
        Address.sendValue(account, amount);
    }

    /// @notice Sets the bond a challenger posts. Only governance.
    function setChallengeBond(uint256 bond) external onlyOwner {
        challengeBond = bond;
        emit ChallengeBondSet(bond);
    }

    /// @notice Whether `contributionId` is in version `versionId`, given its Merkle proof, and
    /// is still accepted (not found poisoned since).
    function contains(uint256 versionId, uint256 contributionId, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Version memory v = _versions[versionId];
        if (v.datanetId == 0) revert UnknownVersion(versionId);
        Contribution storage c = _contributions[contributionId];
        // Only data that stands: a poisoned (or never accepted) contribution is in no version.
        if (c.datanetId != v.datanetId || c.status != Status.Accepted) return false;
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(contributionId, c.contentHash))));
        return MerkleProof.verifyCalldata(proof, v.root, leaf);
    }

    /// @notice A datanet's settings and metadata URI.
    function datanet(uint256 datanetId) external view returns (Datanet memory, string memory metadataURI) {
        return (_datanets[datanetId], _metadataURIs[datanetId]);
    }

    /// @notice A contribution.
    function contribution(uint256 contributionId) external view returns (Contribution memory) {
        return _contributions[contributionId];
    }

    /// @notice A contribution's contributor, datanet and status: what settlement reads, in one
    /// storage slot.
    function standing(uint256 contributionId)
        external
        view
        returns (address contributor, uint32 datanetId, Status status)
    {
        Contribution storage c = _contributions[contributionId];
        return (c.contributor, c.datanetId, c.status);
    }

    /// @notice The curators who approved and who rejected a contribution, in voting order.
    function reviewers(uint256 contributionId)
        external
        view
        returns (address[] memory approvers, address[] memory rejecters)
    {
        Contribution storage c = _contributions[contributionId];
        approvers = new address[](c.approvals);
        rejecters = new address[](c.rejections);
        for (uint256 i = 0; i < approvers.length; ++i) {
            approvers[i] = _approvers[contributionId][i];
        }
        for (uint256 i = 0; i < rejecters.length; ++i) {
            rejecters[i] = _rejecters[contributionId][i];
        }
    }

    /// @notice A published version.
    function version(uint256 versionId) external view returns (Version memory) {
        return _versions[versionId];
    }

    /// @notice The open challenge of a contribution (zero challenger if none).
    function challengeOf(uint256 contributionId) external view returns (Challenge memory) {
        return _challenges[contributionId];
    }

    /// @notice OPEN credited to `account` and not yet claimed.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice How many datanets, contributions and versions exist (each the highest id).
    function counts() external view returns (uint256 datanets, uint256 contributions, uint256 versions) {
        return (_datanetCount, _contributionCount, _versionCount);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        _owed[account] += amount;
        emit Credited(account, amount);
    }

    function _contains(mapping(uint256 => address) storage voters, uint256 count, address account)
        private
        view
        returns (bool)
    {
        for (uint256 i = 0; i < count; ++i) {
            if (voters[i] == account) return true;
        }
        return false;
    }
}
