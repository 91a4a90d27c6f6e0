//! ModelRegistry on revm, deployed and wired as production does: base models, adapters with
//! their lineage of published datanet versions, agents served by staked hosts, the route that
//! settlement reads, and model status that only governance sets.

mod evm;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolError, SolInterface};
use evm::Evm;
use openledger_protocol::{
    datanet_registry::DatanetRegistry,
    deploy::{Addresses, DeployConfig},
    model_registry::ModelRegistry::{self as Models, ModelRegistryErrors as E},
    staking::Staking,
};

const DEPLOYER: Address = Address::repeat_byte(0xde);
const MODELER: Address = Address::repeat_byte(0x3d);
const TUNER: Address = Address::repeat_byte(0x7a);
const AGENT_OWNER: Address = Address::repeat_byte(0xa9);
const HOST: Address = Address::repeat_byte(0x40);
const CURATOR: Address = Address::repeat_byte(0x11);
const OUTSIDER: Address = Address::repeat_byte(0xee);
const VOTER: Address = Address::repeat_byte(0x70);
const NONE: u8 = 0;
const REGISTERED: u8 = 1;
const ENDORSED: u8 = 2;
const RETIRED: u8 = 3;

/// `err!(Name(fields…))` is the registry's custom error `Name` with those fields, in order.
macro_rules! err {
    ($name:ident($($field:expr),* $(,)?)) => {
        E::$name(<Models::$name as SolError>::new(($($field,)*)))
    };
}

fn uint(n: u64) -> U256 {
    U256::from(n)
}

fn hash(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

fn error(data: Bytes) -> E {
    E::abi_decode(&data).unwrap_or_else(|e| panic!("not a ModelRegistry error {data}: {e}"))
}

struct World {
    evm: Evm,
    a: Addresses,
    config: DeployConfig,
    proposals: usize,
}

/// The protocol with a staked host and two published versions of one datanet.
fn world() -> World {
    let accounts = [
        DEPLOYER,
        MODELER,
        TUNER,
        AGENT_OWNER,
        HOST,
        CURATOR,
        OUTSIDER,
        VOTER,
    ];
    let mut evm = Evm::new(&accounts);
    let config = DeployConfig::dev();
    let a = evm.deploy_protocol(DEPLOYER, &config);
    let mut w = World {
        evm,
        a,
        config,
        proposals: 0,
    };
    // Voting power for the proposals through which governance rules.
    w.stake(VOTER, 0, 0, w.config.proposal_threshold);
    w.stake(HOST, 2, 0, w.config.min_stakes[2]);
    let registry = w.a.datanet_registry;
    let quorum = w.config.review_quorum;
    let create = DatanetRegistry::createDatanetCall::new((String::new(), hash(0), quorum, 0));
    let datanet = w.evm.sol(CURATOR, registry, create).unwrap();
    w.stake(CURATOR, 1, 1, w.config.min_stakes[1]);
    for n in 1..=2 {
        let contribute = DatanetRegistry::contributeCall::new((datanet, hash(n), 10, hash(n)));
        let id = w.evm.sol(OUTSIDER, registry, contribute).unwrap();
        let review = DatanetRegistry::reviewCall::new((id, true, B256::ZERO));
        w.evm.sol(CURATOR, registry, review).unwrap();
        let publish =
            DatanetRegistry::publishVersionCall::new((datanet, hash(n), n, String::new()));
        w.evm.sol(CURATOR, registry, publish).unwrap();
    }
    w
}

impl World {
    fn models<C: SolCall>(&mut self, from: Address, call: C) -> Result<C::Return, E> {
        let (to, data) = (self.a.model_registry, call.abi_encode().into());
        let (out, _) = self.evm.call(from, to, data).map_err(error)?;
        Ok(C::abi_decode_returns(&out).unwrap())
    }

    /// A call whose return value does not matter.
    fn act<C: SolCall>(&mut self, from: Address, call: C) -> Result<(), E> {
        self.models(from, call).map(|_| ())
    }

    fn view<C: SolCall>(&mut self, call: C) -> C::Return {
        self.models(OUTSIDER, call).unwrap()
    }

    fn stake(&mut self, who: Address, role: u8, subject: u64, amount: U256) {
        let data = Staking::stakeCall::new((role, uint(subject))).abi_encode();
        (self.evm.send(who, self.a.staking, data.into(), amount)).unwrap();
    }

    fn base_model(&mut self, weights: B256) -> Result<U256, E> {
        let call = Models::registerBaseModelCall::new((weights, "hf://base".into(), "MIT".into()));
        self.models(MODELER, call)
    }

    fn adapter(&mut self, base: U256, lineage: &[u64], weights: B256) -> Result<U256, E> {
        let lineage = lineage.iter().map(|v| uint(*v)).collect();
        let uri = "ipfs://adapter".to_string();
        let call =
            Models::registerAdapterCall::new((base, lineage, hash(99), weights, hash(98), uri));
        self.models(TUNER, call)
    }

    /// Proposes an agent served by `host` at 1,000 wei per 1,000 input tokens and 2,000 per
    /// 1,000 output tokens, without a knowledge datanet.
    fn propose_agent(&mut self, adapter: U256, host: Address, knowledge: u32) -> Result<U256, E> {
        let uri = "ipfs://agent".to_string();
        let call = Models::deployAgentCall::new((adapter, host, 1000, 2000, knowledge, uri));
        self.models(AGENT_OWNER, call)
    }

    /// Proposes an agent and has its host accept it.
    fn agent(&mut self, adapter: U256, host: Address) -> Result<U256, E> {
        let id = self.propose_agent(adapter, host, 0)?;
        self.act(host, Models::acceptAgentCall::new((id,)))?;
        Ok(id)
    }

    fn update(&mut self, from: Address, agent: U256, active: bool, price: u128) -> Result<(), E> {
        self.act(
            from,
            Models::updateAgentCall::new((agent, active, price, 2 * price)),
        )
    }

    fn route(&mut self, agent: U256) -> (Address, Address, bool) {
        let r = self.view(Models::agentRouteCall::new((agent,)));
        (r.host, r.modelOwner, r.servable)
    }

    fn counts(&mut self) -> (U256, U256, U256) {
        self.view(Models::countsCall {}).into()
    }

    /// A base model, an adapter on it trained on version 1, and an agent on that.
    fn stack(&mut self) -> (U256, U256, U256) {
        let base = self.base_model(hash(1)).unwrap();
        let adapter = self.adapter(base, &[1], hash(2)).unwrap();
        (base, adapter, self.agent(adapter, HOST).unwrap())
    }

    /// Runs `call` on the model registry as the timelock, through a proposal that VOTER
    /// passes alone; `Err` holds the registry's revert data, which the governor passes through.
    fn govern(&mut self, call: impl SolCall) -> Result<(), Bytes> {
        self.proposals += 1;
        let (governor, config) = (self.a.governor, self.config.clone());
        let call = (self.a.model_registry, call.abi_encode());
        let description = format!("proposal {}", self.proposals);
        let execute = self
            .evm
            .pass_proposal(VOTER, governor, &config, call, description);
        self.evm.call(VOTER, governor, execute.into()).map(|_| ())
    }

    fn set_base_status(&mut self, base: U256, status: u8) -> Result<(), E> {
        let call = Models::setBaseModelStatusCall::new((base, status));
        self.govern(call).map_err(error)
    }

    fn set_adapter_status(&mut self, adapter: U256, status: u8) -> Result<(), E> {
        let call = Models::setAdapterStatusCall::new((adapter, status));
        self.govern(call).map_err(error)
    }
}

#[test]
fn base_models_need_a_weights_hash_and_are_numbered_from_one() {
    let mut w = world();
    let empty = err!(EmptyWeightsHash());
    assert_eq!(w.base_model(B256::ZERO), Err(empty));
    assert_eq!(w.counts(), (U256::ZERO, U256::ZERO, U256::ZERO));
    assert_eq!(w.base_model(hash(1)), Ok(uint(1)));
    assert_eq!(w.base_model(hash(2)), Ok(uint(2)));
    let m = w.view(Models::baseModelCall::new((uint(1),)));
    assert_eq!(
        (m.owner, m.status, m.weightsHash),
        (MODELER, REGISTERED, hash(1))
    );
    let unknown = w.view(Models::baseModelCall::new((uint(3),)));
    assert_eq!((unknown.owner, unknown.status), (Address::ZERO, NONE));
}

#[test]
fn adapters_need_a_live_base_model_weights_and_a_published_lineage() {
    let mut w = world();
    let base = w.base_model(hash(1)).unwrap();
    let unknown = err!(UnknownBaseModel(uint(9)));
    assert_eq!(w.adapter(uint(9), &[1], hash(2)), Err(unknown));
    let empty = err!(EmptyWeightsHash());
    assert_eq!(w.adapter(base, &[1], B256::ZERO), Err(empty));
    assert_eq!(w.adapter(base, &[], hash(2)), Err(err!(EmptyLineage())));
    // Every version is checked, not only the first.
    let unpublished = err!(UnknownDatanetVersion(uint(3)));
    assert_eq!(w.adapter(base, &[1, 3], hash(2)), Err(unpublished));
    assert_eq!(w.counts().1, U256::ZERO);

    assert_eq!(w.adapter(base, &[2, 1], hash(2)), Ok(uint(1)));
    let found = w.view(Models::adapterCall::new((uint(1),)));
    let a = found._0;
    assert_eq!((a.owner, a.status, a.baseModelId), (TUNER, REGISTERED, 1));
    assert_eq!(
        (a.trainingConfigHash, a.weightsHash, a.manifestHash),
        (hash(99), hash(2), hash(98))
    );
    assert_eq!(
        found.datanetVersions,
        vec![uint(2), uint(1)],
        "lineage in order"
    );

    // A retired base model takes no new adapters; its existing ones stay.
    w.set_base_status(base, RETIRED).unwrap();
    let retired = err!(Retired());
    assert_eq!(w.adapter(base, &[1], hash(3)), Err(retired));
    assert_eq!(w.counts().1, uint(1));
    assert_eq!(w.view(Models::baseModelCall::new((base,))).status, RETIRED);
}

#[test]
fn agents_need_a_live_adapter_and_a_staked_host() {
    let mut w = world();
    let base = w.base_model(hash(1)).unwrap();
    let adapter = w.adapter(base, &[1], hash(2)).unwrap();
    let unknown = err!(UnknownAdapter(uint(9)));
    assert_eq!(w.agent(uint(9), HOST), Err(unknown));
    // A curator's stake is not a host's.
    for host in [OUTSIDER, CURATOR, Address::ZERO] {
        assert_eq!(w.agent(adapter, host), Err(err!(HostNotStaked(host))));
    }
    assert_eq!(w.counts().2, U256::ZERO);

    assert_eq!(w.agent(adapter, HOST), Ok(uint(1)));
    let agent = w.view(Models::agentCall::new((uint(1),)));
    assert_eq!((agent.host, agent.adapterId, agent.active), (HOST, 1, true));
    assert_eq!(
        (agent.owner, agent.priceIn, agent.priceOut),
        (AGENT_OWNER, 1000, 2000)
    );
    // The model owner paid by settlement is the adapter's owner, not the agent's.
    assert_eq!(w.route(uint(1)), (HOST, TUNER, true));
    assert_eq!(w.route(uint(2)), (Address::ZERO, Address::ZERO, false));

    w.set_adapter_status(adapter, RETIRED).unwrap();
    assert_eq!(w.agent(adapter, HOST), Err(err!(Retired())));
    assert_eq!(w.route(uint(1)), (HOST, TUNER, false));
    assert_eq!(w.counts().2, uint(1));
}

#[test]
fn only_the_agent_owner_updates_it_and_a_paused_agent_is_not_servable() {
    let mut w = world();
    let (_, _, agent) = w.stack();
    let unknown = err!(UnknownAgent(uint(9)));
    assert_eq!(w.update(AGENT_OWNER, uint(9), false, 5), Err(unknown));
    // Neither the host nor the adapter's owner controls someone else's agent.
    for who in [OUTSIDER, HOST, TUNER] {
        let not_owner = err!(NotAgentOwner(agent, who));
        assert_eq!(w.update(who, agent, false, 5), Err(not_owner));
    }
    let a = w.view(Models::agentCall::new((agent,)));
    assert_eq!((a.active, a.priceIn, a.priceOut), (true, 1000, 2000));

    w.update(AGENT_OWNER, agent, false, 5).unwrap();
    let a = w.view(Models::agentCall::new((agent,)));
    assert_eq!((a.active, a.priceIn, a.priceOut), (false, 5, 10));
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    w.update(AGENT_OWNER, agent, true, 7).unwrap();
    // Active again, at prices its host has yet to accept.
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    assert_eq!(w.view(Models::agentCall::new((agent,))).priceIn, 7);
    w.act(HOST, Models::acceptAgentCall::new((agent,))).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
}

#[test]
fn an_agent_is_settled_only_once_its_host_accepts_it() {
    let mut w = world();
    let base = w.base_model(hash(1)).unwrap();
    let adapter = w.adapter(base, &[1], hash(2)).unwrap();
    // A knowledge datanet must exist.
    assert_eq!(
        w.propose_agent(adapter, HOST, 9),
        Err(err!(UnknownDatanet(uint(9))))
    );
    let agent = w.propose_agent(adapter, HOST, 1).unwrap();
    let a = w.view(Models::agentCall::new((agent,)));
    assert_eq!((a.accepted, a.knowledgeDatanetId), (false, 1));
    // Named without its consent, the host is not answerable for it: not servable yet.
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    let accept = |id| Models::acceptAgentCall::new((id,));
    for who in [OUTSIDER, AGENT_OWNER, TUNER] {
        assert_eq!(
            w.act(who, accept(agent)),
            Err(err!(NotAgentHost(agent, who)))
        );
    }
    assert_eq!(
        w.act(HOST, accept(uint(9))),
        Err(err!(UnknownAgent(uint(9))))
    );
    w.act(HOST, accept(agent)).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
    assert_eq!(
        w.act(HOST, accept(agent)),
        Err(err!(AlreadyAccepted(agent)))
    );
    // Pausing and resuming keep the host's acceptance; new prices need it again.
    w.update(AGENT_OWNER, agent, false, 1000).unwrap();
    w.update(AGENT_OWNER, agent, true, 1000).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
    w.update(AGENT_OWNER, agent, true, 0).unwrap();
    assert_eq!(
        w.route(agent),
        (HOST, TUNER, false),
        "a price the host never agreed to"
    );
    w.act(HOST, accept(agent)).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
    // The host may stop serving it; only the host.
    let release = |id| Models::releaseAgentCall::new((id,));
    let owner = err!(NotAgentHost(agent, AGENT_OWNER));
    assert_eq!(w.act(AGENT_OWNER, release(agent)), Err(owner));
    assert_eq!(
        w.act(HOST, release(uint(9))),
        Err(err!(UnknownAgent(uint(9))))
    );
    w.act(HOST, release(agent)).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    assert_eq!(w.act(HOST, release(agent)), Err(err!(NotAccepted(agent))));
}

#[test]
fn only_governance_sets_model_status() {
    let mut w = world();
    let (base, adapter, agent) = w.stack();
    for who in [OUTSIDER, MODELER, TUNER, DEPLOYER] {
        let unauthorized = err!(OwnableUnauthorizedAccount(who));
        let call = Models::setBaseModelStatusCall::new((base, RETIRED));
        assert_eq!(w.act(who, call), Err(unauthorized.clone()));
        let call = Models::setAdapterStatusCall::new((adapter, RETIRED));
        assert_eq!(w.act(who, call), Err(unauthorized));
    }
    assert_eq!(
        w.view(Models::baseModelCall::new((base,))).status,
        REGISTERED
    );
    assert_eq!(w.route(agent), (HOST, TUNER, true));

    let unknown_base = err!(UnknownBaseModel(uint(9)));
    assert_eq!(w.set_base_status(uint(9), ENDORSED), Err(unknown_base));
    let unknown_adapter = err!(UnknownAdapter(uint(9)));
    assert_eq!(
        w.set_adapter_status(uint(9), ENDORSED),
        Err(unknown_adapter)
    );
    assert_eq!(w.set_base_status(base, NONE), Err(err!(InvalidStatus())));
    assert_eq!(
        w.set_adapter_status(adapter, NONE),
        Err(err!(InvalidStatus()))
    );
    assert_eq!(
        w.view(Models::adapterCall::new((adapter,)))._0.status,
        REGISTERED
    );

    w.set_adapter_status(adapter, ENDORSED).unwrap();
    assert_eq!(
        w.view(Models::adapterCall::new((adapter,)))._0.status,
        ENDORSED
    );
    assert_eq!(
        w.route(agent),
        (HOST, TUNER, true),
        "endorsed adapters serve"
    );
    w.set_adapter_status(adapter, RETIRED).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    // Governance may bring a retired adapter back.
    w.set_adapter_status(adapter, REGISTERED).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
    w.set_base_status(base, ENDORSED).unwrap();
    assert_eq!(w.view(Models::baseModelCall::new((base,))).status, ENDORSED);
}

#[test]
fn retiring_a_base_model_stops_every_agent_on_its_adapters() {
    let mut w = world();
    let (base, adapter, agent) = w.stack();
    w.set_base_status(base, RETIRED).unwrap();
    // The adapter itself is still registered, but it stands on a retired model.
    assert_eq!(
        w.view(Models::adapterCall::new((adapter,)))._0.status,
        REGISTERED
    );
    assert_eq!(w.route(agent), (HOST, TUNER, false));
    assert_eq!(w.agent(adapter, HOST), Err(err!(Retired())));
    w.set_base_status(base, REGISTERED).unwrap();
    assert_eq!(w.route(agent), (HOST, TUNER, true));
}
