//! The test world's set-up and the calls every test makes.

use super::*;

impl World {
    /// Two datanets, four contributions (one poisoned by an upheld challenge), two versions.
    pub fn datanets(&mut self) {
        let dr = self.a.datanet_registry;
        for (quorum, name) in [(2u16, "d1"), (1, "d2")] {
            let create = DR::createDatanetCall::new((name.into(), h("schema"), quorum, 0));
            self.ok(DATA_OWNER, dr, create);
        }
        self.stake(CURATOR, 1, 1, open(10));
        self.stake(CURATOR2, 1, 1, open(10));
        self.stake(CURATOR, 1, 2, open(10));
        for (id, datanet, who) in [
            (C1, 1, CONTRIB),
            (C2, 1, CONTRIB2),
            (C_POISONED, 1, CONTRIB),
        ]
        .into_iter()
        .chain([(C_OTHER, 2, CONTRIB2)])
        {
            let call = DR::contributeCall::new((u(datanet), content(id), 100, h("meta")));
            self.ok(who, dr, call);
            let curators: &[Address] = if datanet == 1 {
                &[CURATOR, CURATOR2]
            } else {
                &[CURATOR]
            };
            for c in curators {
                self.ok(*c, dr, DR::reviewCall::new((u(id), true, h("fine"))));
            }
        }
        let v1 = root(
            [C1, C2, C_POISONED]
                .map(|i| version_leaf(i, content(i)))
                .to_vec(),
        );
        self.ok(
            DATA_OWNER,
            dr,
            DR::publishVersionCall::new((u(1), v1, 3, "v1".into())),
        );
        let v2 = version_leaf(C_OTHER, content(C_OTHER));
        self.ok(
            DATA_OWNER,
            dr,
            DR::publishVersionCall::new((u(2), v2, 1, "v2".into())),
        );
        // Contribution 3 turns out to be poisoned.
        let challenge = DR::challengeCall::new((u(C_POISONED), h("poison")));
        self.pay(OUTSIDER, dr, challenge, open(1));
        self.govern(dr, DR::resolveChallengeCall::new((u(C_POISONED), true)));
    }

    /// A base model, adapters 1 (version 1) and 2 (versions 1 and 2), staked hosts, agents.
    pub fn models(&mut self) {
        let mr = self.a.model_registry;
        let base = MR::registerBaseModelCall::new((h("base"), "hf://b".into(), "MIT".into()));
        self.ok(MODEL_A, mr, base);
        for (owner, lineage) in [(MODEL_A, vec![u(1)]), (MODEL_B, vec![u(1), u(2)])] {
            let call = MR::registerAdapterCall::new((
                u(1),
                lineage,
                h("cfg"),
                h("lora"),
                h("manifest"),
                "".into(),
            ));
            self.ok(owner, mr, call);
        }
        self.stake(HOST, 2, 0, open(120));
        self.stake(HOST2, 2, 0, open(50));
        for (owner, adapter, host) in [
            (MODEL_A, 1, HOST),
            (MODEL_B, 2, HOST),
            (MODEL_A, 1, HOST2),
            (MODEL_A, 1, HOST),
        ] {
            let call =
                MR::deployAgentCall::new((u(adapter), host, PRICE_IN, PRICE_OUT, 0, "".into()));
            self.ok(owner, mr, call);
        }
        for (agent, host) in [(AGENT_A, HOST), (AGENT_B, HOST), (AGENT_HOST2, HOST2)] {
            self.ok(host, mr, MR::acceptAgentCall::new((u(agent),)));
        }
    }

    /// Proves contribution `id` part of `adapter`'s lineage through `version`.
    pub fn prove(&mut self, adapter: u64, version: u64, id: u64) {
        let call = Self::prove_call(adapter, version, id);
        if let Err(e) = self.evm.call(OUTSIDER, self.is, call.into()) {
            panic!("proveLineage reverted: {:?}", decode(&e));
        }
    }

    pub fn prove_call(adapter: u64, version: u64, id: u64) -> Vec<u8> {
        let members: Vec<u64> = if version == 1 {
            vec![C1, C2, C_POISONED]
        } else {
            vec![C_OTHER]
        };
        let leaves: Vec<B256> = members
            .iter()
            .map(|&i| version_leaf(i, content(i)))
            .collect();
        let at = members.iter().position(|&m| m == id).unwrap_or(0);
        let call = IS::proveLineageCall::new((u(adapter), u(version), u(id), proof(leaves, at)));
        call.abi_encode()
    }

    /// A call that must succeed.
    pub fn ok<C: SolCall>(&mut self, from: Address, to: Address, call: C) -> C::Return {
        self.pay(from, to, call, U256::ZERO)
    }

    pub fn pay<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: C,
        value: U256,
    ) -> C::Return {
        let (out, _) = self
            .evm
            .send(from, to, call.abi_encode().into(), value)
            .unwrap_or_else(|e| panic!("{} reverted: {e}", C::SIGNATURE));
        C::abi_decode_returns(&out).unwrap()
    }

    /// A read that leaves the clock where it was, so windows can be hit to the second.
    pub fn view<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        let t = self.evm.timestamp;
        let r = self.evm.sol(OUTSIDER, to, call).unwrap();
        self.evm.timestamp = t;
        r
    }

    pub fn stake(&mut self, who: Address, role: u8, subject: u64, amount: U256) {
        let call = Staking::stakeCall::new((role, u(subject)));
        self.pay(who, self.a.staking, call, amount);
    }

    pub fn deposit(&mut self, who: Address, amount: U256) {
        self.pay(who, self.is, IS::depositCall {}, amount);
    }

    pub fn authorize(&mut self, who: Address, host: Address, amount: U256) {
        self.ok(who, self.is, IS::authorizeCall::new((host, amount.to())));
    }

    pub fn credit(&mut self, who: Address) -> U256 {
        self.view(self.is, IS::creditOfCall::new((who,)))
    }

    pub fn allowance(&mut self, who: Address, host: Address) -> U256 {
        let a = self.view(self.is, IS::authorizationCall::new((who, host)));
        U256::from(a.allowance)
    }

    pub fn claimable(&mut self, who: Address) -> U256 {
        self.view(self.is, IS::claimableCall::new((who,)))
    }

    pub fn host_stake(&mut self, host: Address) -> U256 {
        self.view(
            self.a.staking,
            Staking::stakeOfCall::new((host, 2, U256::ZERO)),
        )
    }

    pub fn batch(&mut self, id: U256) -> IS::Batch {
        self.view(self.is, IS::batchCall::new((id,)))
    }

    /// Votes a call by the timelock through the governor and returns the `execute` that makes
    /// it. (The harness cannot send from the timelock itself: EIP-3607 refuses senders with
    /// code.)
    pub fn proposal(&mut self, target: Address, data: Vec<u8>) -> Vec<u8> {
        self.proposals += 1;
        let (gov, description) = (self.a.governor, format!("proposal {}", self.proposals));
        let config = DeployConfig::dev();
        self.evm
            .pass_proposal(GOV, gov, &config, (target, data), description)
    }

    /// Has the timelock make `call` by passing a proposal.
    pub fn govern<C: SolCall>(&mut self, target: Address, call: C) {
        let execute = self.proposal(target, call.abi_encode());
        if let Err(e) = self.evm.call(GOV, self.a.governor, execute.into()) {
            panic!("{} by the timelock reverted: {e}", C::SIGNATURE);
        }
    }

    pub fn settle_call(r: &[Receipt], contributions: &[u64]) -> Vec<u8> {
        IS::settleCall::new((pack_receipts(r), contributions.to_vec())).abi_encode()
    }

    /// Settles a batch that must go through, crediting `contributions` by position.
    pub fn settle(&mut self, host: Address, r: &[Receipt], contributions: &[u64]) -> Settled {
        let data = Self::settle_call(r, contributions);
        let (out, logs) = self
            .evm
            .call(host, self.is, data.into())
            .unwrap_or_else(|e| panic!("settle reverted: {:?}", decode(&e)));
        Settled::from_logs(IS::settleCall::abi_decode_returns(&out).unwrap(), logs)
    }

    pub fn settle_fails(&mut self, host: Address, r: &[Receipt], contributions: &[u64]) -> E {
        let call = Self::settle_call(r, contributions);
        self.fails(host, self.is, call, U256::ZERO)
    }

    pub fn release_call(s: &Settled) -> Vec<u8> {
        let call = (s.id, s.contributions.clone(), s.owners.clone());
        IS::releaseCall::new(call).abi_encode()
    }

    pub fn release(&mut self, s: &Settled) {
        if let Err(e) = self
            .evm
            .call(OUTSIDER, self.is, Self::release_call(s).into())
        {
            panic!("release reverted: {:?}", decode(&e));
        }
    }

    pub fn refund_call(s: &Settled) -> Vec<u8> {
        IS::refundBatchCall::new((s.id, s.debits.clone())).abi_encode()
    }

    /// Everything a failed call might have touched.
    pub fn snapshot(&mut self) -> Vec<String> {
        let t = self.evm.timestamp;
        let mut s = vec![];
        let people = [HOST, HOST2, CONTRIB, CONTRIB2, CURATOR, CURATOR2, MODEL_A]
            .into_iter()
            .chain([MODEL_B, VALIDATOR, VALIDATOR2, OUTSIDER, self.a.timelock])
            .chain((0..10).map(consumer));
        for who in people {
            s.push(format!("{:?}", self.credit(who)));
            s.push(format!("{:?}", self.claimable(who)));
            for host in [HOST, HOST2] {
                let a = IS::authorizationCall::new((who, host));
                s.push(format!("{:?}", self.view(self.is, a)));
            }
            let w = IS::creditWithdrawalCall::new((who,));
            s.push(format!("{:?}", self.view(self.is, w)));
            s.push(format!("{:?}", self.evm.balance(who)));
        }
        let count = self.view(self.is, IS::batchCountCall {});
        for id in 1..=count.to::<u64>() {
            let b = self.batch(u(id));
            s.push(format!("{b:?}"));
            for i in 0..b.challenges {
                let c = IS::challengeOfCall::new((u(id), U256::from(i)));
                s.push(format!("{:?}", self.view(self.is, c)));
            }
        }
        for (adapter, id) in [(1, C1), (1, C2), (1, C_OTHER), (2, C_OTHER), (2, C1)] {
            let l = IS::inLineageCall::new((u(adapter), u(id)));
            s.push(format!("{:?}", self.view(self.is, l)));
        }
        let (is, st) = (self.evm.balance(self.is), self.evm.balance(self.a.staking));
        s.push(format!(
            "{count} {is} {st} {}",
            self.view(self.is, IS::challengeBondCall {})
        ));
        s.push(format!(
            "{} {}",
            self.host_stake(HOST),
            self.host_stake(HOST2)
        ));
        self.evm.timestamp = t;
        s
    }

    /// Sends a call that must revert, checks that nothing changed, and returns its error.
    pub fn fails(&mut self, from: Address, to: Address, data: Vec<u8>, value: U256) -> E {
        let before = self.snapshot();
        let err = self
            .evm
            .send(from, to, data.into(), value)
            .expect_err("the call should revert");
        assert_eq!(self.snapshot(), before, "a reverted call changed state");
        decode(&err)
    }

    /// Challenges batch `id` as a validator, posting the dev bond of 1 OPEN.
    pub fn challenge(&mut self, who: Address, id: U256) -> U256 {
        let call = IS::challengeCall::new((id, h("evidence")));
        self.pay(who, self.is, call, open(1))
    }

    /// A governance call that must revert inside the timelock; returns the bubbled error.
    pub fn govern_fails(&mut self, data: Vec<u8>) -> E {
        let execute = self.proposal(self.is, data);
        self.fails(GOV, self.a.governor, execute, U256::ZERO)
    }
}
