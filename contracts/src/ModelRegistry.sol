// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {ProtocolParams} from "./ProtocolParams.sol";
import {Staking} from "./Staking.sol";

/// @title ModelRegistry
/// @notice Base models, the LoRA adapters fine-tuned on them (with their lineage: the datanet
/// versions they were trained on, the training configuration and the weights), and the agents
/// that serve an adapter through a staked host at prices per 1,000 input and output tokens.
///
/// Anyone may register a model or adapter and deploy an agent; the adapter's owner is the
/// "model owner" paid by inference settlement. An agent names its host, and the host must accept
/// it before it can be settled: no host serves, or answers for, an agent it did not agree to. Model progression (endorsed, retired) is a
/// governance action: only the owner (the timelock) sets it. A retired adapter, or any adapter
/// on a retired base model, takes no new agents and its agents can no longer be settled.
contract ModelRegistry is Ownable {
    /// @notice Where a base model or adapter stands.
    enum Status {
        None,
        Registered,
        Endorsed,
        Retired
    }

    /// @notice A base model.
    struct BaseModel {
        address owner;
        Status status;
        bytes32 weightsHash;
    }

    /// @notice An adapter on a base model, and what it was trained from.
    struct Adapter {
        address owner;
        Status status;
        uint64 baseModelId;
        bytes32 trainingConfigHash;
        bytes32 weightsHash;
        /// Hash of the training manifest: each training example's contribution and tokens, and
        /// the checkpoints (what Proof of Attribution builds its indexes from).
        bytes32 manifestHash;
    }

    /// @notice An agent: an adapter served by a host at a price, optionally answering from a
    /// knowledge datanet (retrieval), with its system prompt and sampling defaults in its metadata.
    struct Agent {
        address host;
        uint64 adapterId;
        bool active;
        /// The host agreed to serve it.
        bool accepted;
        address owner;
        /// The datanet it retrieves passages from (0: none).
        uint32 knowledgeDatanetId;
        /// OPEN (wei) per 1,000 input tokens and per 1,000 output tokens.
        uint128 priceIn;
        uint128 priceOut;
    }

    /// @notice Where datanet versions (an adapter's lineage) are published.
    DatanetRegistry public immutable datanets;
    /// @notice Where hosts stake.
    Staking public immutable staking;

    mapping(uint256 id => BaseModel) private _baseModels;
    mapping(uint256 id => Adapter) private _adapters;
    mapping(uint256 id => uint256[]) private _lineage;
    mapping(uint256 id => Agent) private _agents;
    uint64 private _baseModelCount;
    uint64 private _adapterCount;
    uint64 private _agentCount;

    /// @notice No base model has this id.
    error UnknownBaseModel(uint256 baseModelId);
    /// @notice No adapter has this id.
    error UnknownAdapter(uint256 adapterId);
    /// @notice No agent has this id.
    error UnknownAgent(uint256 agentId);
    /// @notice No datanet version has this id.
    error UnknownDatanetVersion(uint256 versionId);
    /// @notice The model or adapter has been retired by governance.
    error Retired();
    /// @notice A model needs its weights hash.
    error EmptyWeightsHash();
    /// @notice An adapter's lineage must name at least one datanet version.
    error EmptyLineage();
    /// @notice The host has no host stake.
    error HostNotStaked(address host);
    /// @notice Only the agent's owner may do this.
    error NotAgentOwner(uint256 agentId, address account);
    /// @notice Only the agent's host may do this.
    error NotAgentHost(uint256 agentId, address account);
    /// @notice The host already accepted this agent.
    error AlreadyAccepted(uint256 agentId);
    /// @notice The host has not accepted this agent (or not its current prices).
    error NotAccepted(uint256 agentId);
    /// @notice No datanet has this id.
    error UnknownDatanet(uint256 datanetId);
    /// @notice Governance sets a status of Registered, Endorsed or Retired.
    error InvalidStatus();

    event BaseModelRegistered(
        uint256 indexed baseModelId, address indexed owner, bytes32 weightsHash, string uri, string licence
    );
    event AdapterRegistered(
        uint256 indexed adapterId,
        uint256 indexed baseModelId,
        address indexed owner,
        uint256[] datanetVersions,
        bytes32 trainingConfigHash,
        bytes32 weightsHash,
        bytes32 manifestHash,
        string uri
    );
    event AgentDeployed(
        uint256 indexed agentId,
        uint256 indexed adapterId,
        address indexed host,
        address owner,
        uint128 priceIn,
        uint128 priceOut,
        uint32 knowledgeDatanetId,
        string metadataURI
    );
    event AgentAccepted(uint256 indexed agentId, address indexed host);
    event AgentReleased(uint256 indexed agentId, address indexed host);
    event AgentUpdated(uint256 indexed agentId, bool active, uint128 priceIn, uint128 priceOut);
    event BaseModelStatusSet(uint256 indexed baseModelId, Status status);
    event AdapterStatusSet(uint256 indexed adapterId, Status status);

    /// @param governance The owner: sets model and adapter status.
    /// @param datanets_ The datanet registry whose versions adapters cite.
    /// @param staking_ Where hosts must be staked to serve agents.
    constructor(address governance, DatanetRegistry datanets_, Staking staking_) Ownable(governance) {
        datanets = datanets_;
        staking = staking_;
    }

    /// @notice Registers a base model owned by the caller.
    /// @param weightsHash Hash of the weights file.
    /// @param uri Where the weights can be fetched.
    /// @param licence The weights' licence (an SPDX id or a URI).
    /// @return baseModelId The new model's id (ids start at 1).
    function registerBaseModel(bytes32 weightsHash, string calldata uri, string calldata licence)
        external
        returns (uint256 baseModelId)
    {
        if (weightsHash == bytes32(0)) revert EmptyWeightsHash();
        baseModelId = ++_baseModelCount;
        _baseModels[baseModelId] =
            BaseModel({owner: msg.sender, status: Status.Registered, weightsHash: weightsHash});
        emit BaseModelRegistered(baseModelId, msg.sender, weightsHash, uri, licence);
    }

    /// @notice Registers an adapter on a base model, owned by the caller, with its lineage.
    /// @param datanetVersions The datanet versions it was trained on.
    /// @param trainingConfigHash Hash of the training configuration.
    /// @param weightsHash Hash of the adapter's weights.
    /// @param manifestHash Hash of its training manifest (zero if it has none).
    /// @param uri Where the adapter can be fetched.
    /// @return adapterId The new adapter's id (ids start at 1).
    function registerAdapter(
        uint256 baseModelId,
        uint256[] calldata datanetVersions,
        bytes32 trainingConfigHash,
        bytes32 weightsHash,
        bytes32 manifestHash,
        string calldata uri
    ) external returns (uint256 adapterId) {
        Status baseStatus = _baseModels[baseModelId].status;
        if (baseStatus == Status.None) revert UnknownBaseModel(baseModelId);
        if (baseStatus == Status.Retired) revert Retired();
        if (weightsHash == bytes32(0)) revert EmptyWeightsHash();
        if (datanetVersions.length == 0) revert EmptyLineage();
        for (uint256 i = 0; i < datanetVersions.length; ++i) {
            if (datanets.version(datanetVersions[i]).datanetId == 0) {
                revert UnknownDatanetVersion(datanetVersions[i]);
            }
        }
        adapterId = ++_adapterCount;
        _adapters[adapterId] = Adapter({
            owner: msg.sender,
            status: Status.Registered,
            baseModelId: uint64(baseModelId),
            trainingConfigHash: trainingConfigHash,
            weightsHash: weightsHash,
            manifestHash: manifestHash
        });
        _lineage[adapterId] = datanetVersions;
        emit AdapterRegistered(
            adapterId, baseModelId, msg.sender, datanetVersions, trainingConfigHash, weightsHash, manifestHash, uri
        );
    }

    /// @notice Proposes an agent on an adapter, owned by the caller and served by `host`, which
    /// must accept it (`acceptAgent`) before it can be settled.
    /// @param priceIn OPEN (wei) charged per 1,000 input tokens.
    /// @param priceOut OPEN (wei) charged per 1,000 output tokens.
    /// @param knowledgeDatanetId The datanet it retrieves from (0: none).
    /// @param metadataURI Where the agent's description, system prompt and sampling defaults live.
    /// @return agentId The new agent's id (ids start at 1).
    function deployAgent(
        uint256 adapterId,
        address host,
        uint128 priceIn,
        uint128 priceOut,
        uint32 knowledgeDatanetId,
        string calldata metadataURI
    ) external returns (uint256 agentId) {
        Adapter storage ad = _adapters[adapterId];
        if (ad.status == Status.None) revert UnknownAdapter(adapterId);
        if (ad.status == Status.Retired || _baseModels[ad.baseModelId].status == Status.Retired) revert Retired();
        if (!staking.isStaked(host, ProtocolParams.Role.Host, 0)) revert HostNotStaked(host);
        _checkKnowledge(knowledgeDatanetId);
        agentId = ++_agentCount;
        _agents[agentId] = Agent({
            host: host,
            adapterId: uint64(adapterId),
            active: true,
            accepted: false,
            owner: msg.sender,
            knowledgeDatanetId: knowledgeDatanetId,
            priceIn: priceIn,
            priceOut: priceOut
        });
        emit AgentDeployed(agentId, adapterId, host, msg.sender, priceIn, priceOut, knowledgeDatanetId, metadataURI);
    }

    /// @notice The host agrees to serve an agent that names it. Only the agent's host.
    function acceptAgent(uint256 agentId) external {
        Agent storage a = _agents[agentId];
        if (a.host == address(0)) revert UnknownAgent(agentId);
        if (a.host != msg.sender) revert NotAgentHost(agentId, msg.sender);
        if (a.accepted) revert AlreadyAccepted(agentId);
        a.accepted = true;
        emit AgentAccepted(agentId, msg.sender);
    }

    /// @notice Pauses or resumes an agent and sets its prices. Only the agent's owner. New
    /// prices need the host's acceptance again (until then the agent is neither served nor
    /// settled): a host is never held to prices it did not agree to, and receipts are checked
    /// against the prices in force when they are settled.
    function updateAgent(uint256 agentId, bool active, uint128 priceIn, uint128 priceOut) external {
        Agent storage a = _agents[agentId];
        if (a.host == address(0)) revert UnknownAgent(agentId);
        if (a.owner != msg.sender) revert NotAgentOwner(agentId, msg.sender);
        if (priceIn != a.priceIn || priceOut != a.priceOut) {
            a.accepted = false;
            a.priceIn = priceIn;
            a.priceOut = priceOut;
        }
        a.active = active;
        emit AgentUpdated(agentId, active, priceIn, priceOut);
    }

    /// @notice The host stops serving an agent it accepted (it may accept it again later).
    /// Only the agent's host.
    function releaseAgent(uint256 agentId) external {
        Agent storage a = _agents[agentId];
        if (a.host == address(0)) revert UnknownAgent(agentId);
        if (a.host != msg.sender) revert NotAgentHost(agentId, msg.sender);
        if (!a.accepted) revert NotAccepted(agentId);
        a.accepted = false;
        emit AgentReleased(agentId, msg.sender);
    }

    /// @notice Sets a base model's status (endorse, retire). Only governance.
    function setBaseModelStatus(uint256 baseModelId, Status status) external onlyOwner {
        if (_baseModels[baseModelId].status == Status.None) revert UnknownBaseModel(baseModelId);
        if (status == Status.None) revert InvalidStatus();
        _baseModels[baseModelId].status = status;
        emit BaseModelStatusSet(baseModelId, status);
    }

    /// @notice Sets an adapter's status (endorse, retire). Only governance.
    function setAdapterStatus(uint256 adapterId, Status status) external onlyOwner {
        if (_adapters[adapterId].status == Status.None) revert UnknownAdapter(adapterId);
        if (status == Status.None) revert InvalidStatus();
        _adapters[adapterId].status = status;
        emit AdapterStatusSet(adapterId, status);
    }

    /// @notice What settlement needs of an agent: its host, the owner paid the model share, its
    /// adapter, its prices, whether it may be settled (accepted by its host, active, on an
    /// adapter and base model that are not retired) and its knowledge datanet (0: none).
    function agentRoute(uint256 agentId)
        external
        view
        returns (
            address host,
            address modelOwner,
            uint256 adapterId,
            uint128 priceIn,
            uint128 priceOut,
            bool servable,
            uint256 knowledgeDatanetId
        )
    {
        Agent storage a = _agents[agentId];
        knowledgeDatanetId = a.knowledgeDatanetId;
        Adapter storage ad = _adapters[a.adapterId];
        host = a.host;
        modelOwner = ad.owner;
        adapterId = a.adapterId;
        priceIn = a.priceIn;
        priceOut = a.priceOut;
        servable = a.accepted && a.active && ad.status != Status.Retired
            && _baseModels[ad.baseModelId].status != Status.Retired;
    }

    /// @dev A knowledge datanet, if named, must exist.
    function _checkKnowledge(uint32 datanetId) private view {
        if (datanetId == 0) return;
        (DatanetRegistry.Datanet memory d,) = datanets.datanet(datanetId);
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
    }

    /// @notice A base model.
    function baseModel(uint256 baseModelId) external view returns (BaseModel memory) {
        return _baseModels[baseModelId];
    }

    /// @notice An adapter and its lineage (datanet version ids).
    function adapter(uint256 adapterId) external view returns (Adapter memory, uint256[] memory datanetVersions) {
        return (_adapters[adapterId], _lineage[adapterId]);
    }

    /// @notice An agent.
    function agent(uint256 agentId) external view returns (Agent memory) {
        return _agents[agentId];
    }

    /// @notice How many base models, adapters and agents exist (each the highest id).
    function counts() external view returns (uint256 baseModels, uint256 adapters, uint256 agents) {
        return (_baseModelCount, _adapterCount, _agentCount);
    }
}
