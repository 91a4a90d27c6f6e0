//! The random run's actions, one method each: what to try, and what the model expects when
//! the contracts accept it.

use super::*;

impl Sim {
    pub(super) fn deposit(&mut self) {
        let who = self.rng.pick(&CONSUMERS);
        let amount = self.rng.wei_or_zero(3 * OPEN, 5);
        if self.is("deposit", who, IS::depositCall {}, amount) {
            add(&mut self.m.credit, who, amount);
        }
    }

    /// A batch of random receipts on one host's agents; now and then one receipt that must be
    /// refused (a replayed number, a fee above the price) or another host's agent.
    pub(super) fn settle(&mut self) {
        let host = self.rng.pick_or(&self.staked(2), &HOSTS);
        let on = HOSTS.iter().position(|h| *h == host).unwrap();
        let (t, n) = (self.evm.timestamp, 1 + self.rng.below(6) as usize);
        let (replay, overprice, stray) =
            (self.rng.chance(3), self.rng.chance(3), self.rng.chance(3));
        let agents: Vec<_> = AGENTS.iter().filter(|a| (a.1 == on) != stray).collect();
        let mut picks: Vec<(Address, u64, usize)> = (0..n)
            .map(|_| {
                let &(agent, _, owner) = self.rng.pick(&agents);
                (self.rng.pick(&CONSUMERS), agent, owner)
            })
            .collect();
        picks.sort_by_key(|p| p.0);
        let mut last: BTreeMap<Address, u64> = BTreeMap::new();
        let mut receipts: Vec<(Receipt, Address)> = vec![];
        for (consumer, agent, owner) in picks {
            let settled = self.m.seq.get(&(consumer, host)).copied().unwrap_or(0);
            let seq = last.get(&consumer).copied().unwrap_or(settled) + 1;
            last.insert(consumer, seq);
            let tokens = (self.rng.below(1000) as u32, self.rng.below(1000) as u32);
            let most = (tokens.0 as u128 + tokens.1 as u128) * PRICE / 1000;
            let fee: u128 = if most == 0 {
                0
            } else {
                self.rng.wei(most).to()
            };
            let receipt = Receipt {
                consumer,
                agentId: agent,
                seq,
                inputTokens: tokens.0,
                outputTokens: tokens.1,
                fee,
                attributionHash: keccak256(self.rng.next().to_be_bytes()),
                credits: Default::default(),
            };
            receipts.push((receipt, OWNERS[owner]));
        }
        if replay {
            receipts[0].0.seq -= 1;
        }
        if overprice {
            let r = &mut receipts[n - 1].0;
            r.fee = (r.inputTokens as u128 + r.outputTokens as u128) * PRICE / 1000 + 1;
        }
        let list: Vec<Receipt> = receipts.iter().map(|r| r.0.clone()).collect();
        let call = IS::settleCall::new((pack_receipts(&list), vec![]));
        let to = (host, self.a.inference_settlement);
        let Some(id) = self.send::<IsErr, _>("settle", to, call, Z) else {
            return;
        };
        assert!(
            !(replay || overprice || stray),
            "a batch with a receipt to refuse settled"
        );
        let logs = std::mem::take(&mut self.logs);
        let m = &mut self.m;
        let (mut per_owner, mut debits) = (BTreeMap::new(), Vec::<(Address, U256)>::new());
        for (r, owner) in &receipts {
            let fee = U256::from(r.fee);
            add(&mut per_owner, *owner, fee);
            match debits.last_mut() {
                Some(d) if d.0 == r.consumer => d.1 += fee,
                _ => debits.push((r.consumer, fee)),
            }
        }
        for &(consumer, fee) in &debits {
            *m.credit.get_mut(&consumer).unwrap() -= fee;
            allowance_at(m, (consumer, host), t).0 -= fee;
            m.seq.insert((consumer, host), last[&consumer]);
        }
        // Receipts credit no contributions here: those shares are the treasury's. Each owner's
        // share is rounded down on its own fees; the treasury takes what is left.
        let fees: U256 = debits.iter().map(|d| d.1).sum();
        let mut payouts: Vec<(Address, U256)> = per_owner
            .into_iter()
            .map(|(o, f)| (o, bps(f, SPLIT[2])))
            .collect();
        payouts.push((host, bps(fees, SPLIT[3])));
        let paid: U256 = payouts.iter().map(|p| p.1).sum();
        payouts.push((self.a.timelock, fees - paid));
        let (release, refund) = batch_calls(id, &logs);
        let owners: Vec<(Address, U256)> = release
            .owners
            .iter()
            .map(|o| (o.owner, U256::from(o.amount)))
            .collect();
        let mut expected = payouts[..payouts.len() - 2].to_vec();
        expected.sort();
        let mut owners = owners;
        owners.sort();
        assert_eq!(owners, expected, "the model owners' shares");
        let debited: Vec<(Address, U256)> = refund
            .debits
            .iter()
            .map(|d| (d.consumer, U256::from(d.amount)))
            .collect();
        assert_eq!(debited, debits, "the batch's debits");
        m.batches.push(Batch {
            host,
            settled_at: t,
            state: BatchState::Escrowed,
            fees,
            challenges: vec![],
            payouts,
            debits,
            release,
            refund,
        });
        assert_eq!(id, U256::from(m.batches.len()));
    }

    /// A consumer sets what a host may take (sometimes revoking it).
    pub(super) fn authorize(&mut self) {
        let (who, host) = (self.rng.pick(&CONSUMERS), self.rng.pick(&HOSTS));
        let amount = self.rng.wei_or_zero(2 * OPEN, 10);
        let call = IS::authorizeCall::new((host, amount.to()));
        let t = self.evm.timestamp;
        if self.is("authorize", who, call, Z) {
            // Raised at once; lowered one challenge window later.
            let a = allowance_at(&mut self.m, (who, host), t);
            *a = if amount >= a.0 {
                (amount, 0, Z)
            } else {
                (a.0, t + WINDOW, amount)
            };
        }
    }

    /// Releases a batch: only one escrowed, past its window, with no challenge open.
    pub(super) fn release_batch(&mut self) {
        let (t, count) = (self.evm.timestamp, self.m.batches.len() as u64);
        if count == 0 {
            return;
        }
        let ready = |b: &Batch| {
            b.state == BatchState::Escrowed && t > b.settled_at + WINDOW && b.open_challenges() == 0
        };
        let likely: Vec<u64> = (1..=count)
            .filter(|&i| ready(&self.m.batches[i as usize - 1]))
            .collect();
        let any = 1 + self.rng.below(count);
        let id = self.rng.pick_or(&likely, &[any]);
        let b = &self.m.batches[id as usize - 1];
        let (expect, call) = (ready(b), b.release.clone());
        let ok = self.is("release batch", CONSUMERS[3], call, Z);
        assert_eq!(ok, expect, "release of batch {id}");
        if ok {
            let b = &mut self.m.batches[id as usize - 1];
            b.state = BatchState::Released;
            for (who, amount) in b.payouts.clone() {
                add(&mut self.m.claimable, who, amount);
            }
        }
    }

    /// Gives an upheld batch's fees back to its consumers.
    pub(super) fn refund_batch(&mut self) {
        let count = self.m.batches.len() as u64;
        let upheld = |b: &Batch| b.state == BatchState::Upheld;
        let likely: Vec<u64> = (1..=count)
            .filter(|&i| upheld(&self.m.batches[i as usize - 1]))
            .collect();
        if likely.is_empty() {
            return;
        }
        let any = 1 + self.rng.below(count);
        let id = self.rng.pick_or(&likely, &[any]);
        let b = &self.m.batches[id as usize - 1];
        let (expect, call) = (upheld(b), b.refund.clone());
        let ok = self.is("refund batch", CONSUMERS[2], call, Z);
        assert_eq!(ok, expect, "refund of batch {id}");
        if ok {
            let b = &mut self.m.batches[id as usize - 1];
            b.state = BatchState::Refunded;
            for (who, amount) in b.debits.clone() {
                add(&mut self.m.credit, who, amount);
            }
        }
    }

    pub(super) fn claim_settlement(&mut self) {
        let who = self
            .rng
            .pick_or(&holders(&self.m.claimable), &self.everyone);
        let (before, owed) = (self.evm.balance(who), get(&self.m.claimable, who));
        let call = IS::claimCall::new((who,));
        let paid = self.is("claim settlement", CONSUMERS[0], call, Z);
        assert_eq!(paid, !owed.is_zero(), "{who} had {owed} to claim");
        assert_eq!(self.evm.balance(who) - before, owed);
        self.m.claimable.remove(&who);
    }

    pub(super) fn request_credit(&mut self) {
        let (who, t) = (self.rng.pick(&CONSUMERS), self.evm.timestamp);
        let amount = self.rng.wei_or_zero(2 * OPEN, 5);
        let call = IS::requestCreditWithdrawalCall::new((amount.to(),));
        if self.is("request credit", who, call, Z) {
            self.m.requests.insert(who, (amount, t + WINDOW));
        }
    }

    pub(super) fn withdraw_credit(&mut self) {
        let t = self.evm.timestamp;
        let ready = self.m.requests.iter().filter(|r| r.1 .1 <= t);
        let ready: Vec<_> = ready.map(|r| *r.0).collect();
        let asked: Vec<_> = self.m.requests.keys().copied().collect();
        let who = self
            .rng
            .pick_or(&ready, &[&asked[..], &CONSUMERS[..1]].concat());
        let before = self.evm.balance(who);
        if self.is("withdraw credit", who, IS::withdrawCreditCall {}, Z) {
            let asked = self.m.requests.remove(&who).unwrap().0;
            let credit = self.m.credit.get_mut(&who).unwrap();
            let paid = asked.min(*credit);
            *credit -= paid;
            assert_eq!(self.evm.balance(who) - before, paid);
        }
    }

    pub(super) fn new_stake(&mut self) {
        // Mostly positions below their minimum, so that every role stays populated.
        let short = |k: &Key| get_stake(&self.m.stakes, *k) < u(MIN_STAKE[k.1 as usize]);
        let short: Vec<Key> = keys().into_iter().filter(short).collect();
        let key = self.rng.pick_or(&short, &keys());
        let min = MIN_STAKE[key.1 as usize];
        // Sometimes below the minimum, which only tops up an existing stake.
        let floor = u(min) * u(!self.rng.chance(15) as u128);
        let amount = floor + self.rng.wei(min / 2);
        if amount <= self.evm.balance(key.0) {
            self.stake(key, amount);
        }
    }

    pub(super) fn request_unstake(&mut self) {
        let (who, role, subject) = self.staked_key();
        let staked = get_stake(&self.m.stakes, (who, role, subject));
        let all = staked.is_zero() || self.rng.chance(30);
        let amount = if all {
            staked
        } else {
            self.rng.wei(staked.to())
        };
        let (t, to) = (self.evm.timestamp, (who, self.a.staking));
        let call = Staking::requestUnstakeCall::new((role, u(subject as u128), amount));
        if let Some(id) = self.send::<StErr, _>("request unstake", to, call, Z) {
            *self.m.stakes.get_mut(&(who, role, subject)).unwrap() -= amount;
            // A second request adds to the stake's pending withdrawal and restarts its delay.
            let w = self.m.unbonding.entry(id).or_insert((who, Z, 0));
            w.1 += amount;
            w.2 = t + WINDOW;
            self.m.pending.insert((who, role, subject), id);
        }
    }

    pub(super) fn withdraw_stake(&mut self) {
        let t = self.evm.timestamp;
        let all: Vec<_> = self.m.unbonding.iter().map(|(i, w)| (*i, *w)).collect();
        let ready: Vec<_> = all.iter().copied().filter(|w| w.1 .2 <= t).collect();
        let Some(&any) = all.last() else { return };
        let (id, (staker, amount, _)) = self.rng.pick_or(&ready, &[any]);
        let from = self.rng.pick_or(&[staker], &CONSUMERS);
        let (before, to) = (self.evm.balance(staker), (from, self.a.staking));
        let call = Staking::withdrawCall::new((id,));
        let key = self.m.pending.iter().find(|p| *p.1 == id).map(|p| *p.0);
        if self
            .send::<StErr, _>("withdraw stake", to, call, Z)
            .is_some()
        {
            let frozen = key.is_some_and(|key| self.frozen(key));
            assert!(
                !frozen,
                "{staker} withdrew a stake an open challenge may slash"
            );
            self.m.unbonding.remove(&id);
            self.m.pending.retain(|_, pending| *pending != id);
            assert_eq!(self.evm.balance(staker) - before, amount);
        }
    }

    pub(super) fn challenge_batch(&mut self) {
        let (t, count) = (self.evm.timestamp, self.m.batches.len() as u64);
        if count == 0 {
            return;
        }
        let open = |b: &Batch| b.state == BatchState::Escrowed && b.settled_at + WINDOW >= t;
        let likely: Vec<u64> = (1..=count)
            .filter(|&i| open(&self.m.batches[i as usize - 1]))
            .collect();
        let any = 1 + self.rng.below(count);
        let id = self.rng.pick_or(&likely, &[any]);
        let who = self.rng.pick_or(&self.staked(0), &CONSUMERS);
        let again = self.m.batches[id as usize - 1]
            .challenges
            .iter()
            .any(|c| c.0 == who);
        let call = IS::challengeCall::new((u(id as u128), keccak256(b"proof")));
        if self.is("challenge batch", who, call, u(BOND)) {
            let b = &mut self.m.batches[id as usize - 1];
            assert!(
                open(b) && !again,
                "batch {id} took a challenge it should have refused"
            );
            b.challenges.push((who, u(BOND), t, true));
            // Governance often rules at once; otherwise the challenge waits, and may expire.
            if self.rng.chance(60) {
                let index = b.challenges.len() - 1;
                self.rule_on_batch_id(id, index);
            }
        }
    }

    pub(super) fn rule_on_batch(&mut self) {
        let mut open = vec![];
        for (b, id) in self.m.batches.iter().zip(1u64..) {
            for (c, index) in b.challenges.iter().zip(0..) {
                if c.3 {
                    open.push((id, index));
                }
            }
        }
        if open.is_empty() {
            return;
        }
        let (id, index) = self.rng.pick(&open);
        self.rule_on_batch_id(id, index);
    }

    /// Rules on challenge `index` of batch `id`, or closes it by default once its ruling
    /// period is over.
    fn rule_on_batch_id(&mut self, id: u64, index: usize) {
        let (challenger, bond, opened, _) = self.m.batches[id as usize - 1].challenges[index];
        let (batch_id, at) = (u(id as u128), u(index as u128));
        if self.evm.timestamp > opened + RULING {
            let call = IS::expireChallengeCall::new((batch_id, at));
            if self.is("rule on batch", CONSUMERS[2], call, Z) {
                self.m.batches[id as usize - 1].challenges[index].3 = false;
                add(&mut self.m.claimable, challenger, bond);
            }
            return;
        }
        let upheld = self.rng.chance(50);
        let host = self.m.batches[id as usize - 1].host;
        let treasury = self.a.timelock;
        let before = (self.evm.balance(challenger), self.evm.balance(treasury));
        let call = IS::resolveChallengeCall::new((batch_id, at, upheld));
        let (is, data) = (self.a.inference_settlement, call.abi_encode());
        if !self.govern::<IsErr>("rule on batch", is, data) {
            return;
        }
        let b = &mut self.m.batches[id as usize - 1];
        b.challenges[index].3 = false;
        if !upheld {
            return add(&mut self.m.claimable, treasury, bond);
        }
        if b.state != BatchState::Escrowed {
            // A later upheld challenge of the same batch: the bond back, no second slash.
            return add(&mut self.m.claimable, challenger, bond);
        }
        b.state = BatchState::Upheld;
        let taken = self.slashed(0, (host, 2, 0), u(MIN_STAKE[2]));
        let share = bps(taken, CHALLENGER_BPS);
        // Settlement credits the challenger's share rather than letting Staking send it.
        assert_eq!(self.evm.balance(challenger), before.0);
        assert_eq!(self.evm.balance(treasury) - before.1, taken - share);
        add(&mut self.m.claimable, challenger, bond + share);
    }

    pub(super) fn contribute(&mut self, who: Address, fee: U256) {
        let h = keccak256(self.rng.next().to_be_bytes());
        let call = DR::contributeCall::new((u(1), h, 100, h));
        if self.dr("contribute", who, call, fee) {
            self.m.contributions.push(Contribution {
                contributor: who,
                status: Status::Pending,
                fee,
                decided_at: 0,
                challenged_at: 0,
                bond: None,
                approvers: vec![],
                rejecters: vec![],
            });
        }
    }

    pub(super) fn review(&mut self, curator: Address, id: u64, approve: bool) {
        let t = self.evm.timestamp;
        let call = DR::reviewCall::new((u(id as u128), approve, keccak256(b"why")));
        if !self.dr("review", curator, call, Z) {
            return;
        }
        let c = &mut self.m.contributions[id as usize - 1];
        let votes = if approve {
            &mut c.approvers
        } else {
            &mut c.rejecters
        };
        votes.push(curator);
        if votes.len() < QUORUM {
            return;
        }
        c.decided_at = t;
        if approve {
            c.status = Status::Accepted;
            return;
        }
        c.status = Status::Rejected;
        // Every reviewer is paid alike; the treasury takes the rest of the deposit.
        let fee = std::mem::take(&mut c.fee);
        let voters: Vec<Address> = c.approvers.iter().chain(&c.rejecters).copied().collect();
        let paid = pay_reviewers(&mut self.m.owed, &voters, fee);
        add(&mut self.m.owed, self.a.timelock, fee - paid);
    }

    pub(super) fn random_review(&mut self) {
        let (min, m) = (u(MIN_STAKE[1]), &self.m);
        let staked = |k: &Address| get_stake(&m.stakes, (*k, 1, 1)) >= min;
        let fresh = |c: &Contribution, k: &Address| {
            let voted = c.approvers.contains(k) || c.rejecters.contains(k);
            c.status == Status::Pending && !voted && staked(k)
        };
        let votes = m.contributions.iter().zip(1u64..);
        let votes = votes.flat_map(|(c, id)| CURATORS.map(|k| (c, id, k)));
        let likely: Vec<_> = votes
            .filter(|v| fresh(v.0, &v.2))
            .map(|v| (v.1, v.2))
            .collect();
        let any = 1 + self.rng.below(m.contributions.len() as u64);
        let any = (any, self.rng.pick(&CURATORS));
        let (id, curator) = self.rng.pick_or(&likely, &[any]);
        let approve = self.rng.chance(75);
        self.review(curator, id, approve);
    }

    pub(super) fn release_fee(&mut self) {
        let t = self.evm.timestamp;
        let id = self.accepted(|c| {
            let held = c.bond.is_none() && !c.fee.is_zero();
            t > c.decided_at + WINDOW && held
        });
        let (from, call) = (CONSUMERS[1], DR::releaseFeeCall::new((u(id as u128),)));
        if self.dr("release fee", from, call, Z) {
            let c = &mut self.m.contributions[id as usize - 1];
            let fee = std::mem::take(&mut c.fee);
            let voters: Vec<Address> = c.approvers.iter().chain(&c.rejecters).copied().collect();
            let contributor = c.contributor;
            let paid = pay_reviewers(&mut self.m.owed, &voters, fee);
            add(&mut self.m.owed, contributor, fee - paid);
        }
    }

    pub(super) fn challenge_contribution(&mut self) {
        let t = self.evm.timestamp;
        let id = self.accepted(|c| t <= c.decided_at + WINDOW && c.bond.is_none());
        // Anyone may challenge a contribution, staked or not.
        let who = self.rng.pick(&[VALIDATORS[0], CONSUMERS[3]]);
        let call = DR::challengeCall::new((u(id as u128), keccak256(b"poison")));
        if self.dr("challenge contribution", who, call, u(BOND)) {
            let c = &mut self.m.contributions[id as usize - 1];
            c.bond = Some((who, u(BOND)));
            c.challenged_at = t;
            // Governance often rules at once; otherwise the challenge waits, and may expire.
            if self.rng.chance(60) {
                let upheld = self.rng.chance(50);
                self.rule_on(id, upheld);
            }
        }
    }

    pub(super) fn rule_on_contribution(&mut self) {
        // Mostly challenges whose ruling period leaves time for a proposal to pass.
        let t = self.evm.timestamp;
        let open = self.open_challenges();
        let timely: Vec<u64> = open
            .iter()
            .filter(|c| c.1 + RULING / 2 >= t)
            .map(|c| c.0)
            .collect();
        let Some(&any) = open.first() else { return };
        let (id, upheld) = (self.rng.pick_or(&timely, &[any.0]), self.rng.chance(50));
        self.rule_on(id, upheld);
    }

    fn rule_on(&mut self, id: u64, upheld: bool) {
        let (challenger, bond) = self.m.contributions[id as usize - 1].bond.unwrap();
        let treasury = self.a.timelock;
        let before = (self.evm.balance(challenger), self.evm.balance(treasury));
        let call = DR::resolveChallengeCall::new((u(id as u128), upheld));
        let (dr, data) = (self.a.datanet_registry, call.abi_encode());
        if !self.govern::<DrErr>("rule on contribution", dr, data) {
            return;
        }
        let c = &mut self.m.contributions[id as usize - 1];
        c.bond = None;
        if !upheld {
            return add(&mut self.m.owed, treasury, bond);
        }
        c.status = Status::Poisoned;
        let (fee, approvers) = (std::mem::take(&mut c.fee), c.approvers.clone());
        let (mut shares, mut rest) = (Z, Z);
        for curator in approvers {
            let taken = self.slashed(1, (curator, 1, 1), u(MIN_STAKE[1]));
            shares += bps(taken, CHALLENGER_BPS);
            rest += taken - bps(taken, CHALLENGER_BPS);
        }
        assert_eq!(self.evm.balance(treasury) - before.1, rest);
        // The registry credits the challenger's shares rather than letting Staking send them;
        // the deposit is forfeit to the treasury, and the reward is capped at half of it.
        assert_eq!(self.evm.balance(challenger), before.0);
        let reward = shares.min(bps(fee, REWARD_CAP_BPS));
        add(&mut self.m.owed, challenger, bond + reward);
        add(&mut self.m.owed, treasury, fee + shares - reward);
    }

    /// Contributions with an open challenge: id and when it was raised.
    fn open_challenges(&self) -> Vec<(u64, u64)> {
        let all = self.m.contributions.iter().zip(1u64..);
        all.filter(|c| c.0.bond.is_some())
            .map(|c| (c.1, c.0.challenged_at))
            .collect()
    }

    /// Closes a challenge that was not ruled on in time: the bond goes back.
    pub(super) fn expire_contribution_challenge(&mut self) {
        let t = self.evm.timestamp;
        let open = self.open_challenges();
        let due: Vec<u64> = open
            .iter()
            .filter(|c| c.1 + RULING < t)
            .map(|c| c.0)
            .collect();
        let Some(&any) = open.first() else { return };
        let id = self.rng.pick_or(&due, &[any.0]);
        let (challenger, bond) = self.m.contributions[id as usize - 1].bond.unwrap();
        let call = DR::expireChallengeCall::new((u(id as u128),));
        if self.dr("expire contribution challenge", CONSUMERS[1], call, Z) {
            self.m.contributions[id as usize - 1].bond = None;
            add(&mut self.m.owed, challenger, bond);
        }
    }

    pub(super) fn claim_datanet(&mut self) {
        let who = self.rng.pick_or(&holders(&self.m.owed), &self.everyone);
        let (before, owed) = (self.evm.balance(who), get(&self.m.owed, who));
        let call = DR::claimCall::new((who,));
        let paid = self.dr("claim datanet", CONSUMERS[2], call, Z);
        assert_eq!(paid, !owed.is_zero(), "{who} was owed {owed}");
        assert_eq!(self.evm.balance(who) - before, owed);
        self.m.owed.remove(&who);
    }

    pub(super) fn governance_slash(&mut self) {
        let key = self.staked_key();
        let amount = self.rng.wei(MIN_STAKE[key.1 as usize]);
        let challenger = self.rng.pick(&[VALIDATORS[0], CONSUMERS[1], Address::ZERO]);
        let treasury = self.a.timelock;
        let before = (self.evm.balance(challenger), self.evm.balance(treasury));
        let (subject, st) = (u(key.2 as u128), self.a.staking);
        let call = Staking::slashCall::new((key.1, subject, key.0, amount, challenger));
        if !self.govern::<StErr>("governance slash", st, call.abi_encode()) {
            return;
        }
        let taken = self.slashed(2, key, amount);
        // No challenger, no share: the treasury takes it all.
        let share = bps(taken, CHALLENGER_BPS) * u(!challenger.is_zero() as u128);
        assert_eq!(self.evm.balance(treasury) - before.1, taken - share);
        if !challenger.is_zero() {
            assert_eq!(self.evm.balance(challenger) - before.0, share);
        }
    }

    pub(super) fn vesting_release(&mut self) {
        let w = &self.wallets[self.rng.below(2) as usize];
        let (wallet, beneficiary) = (w.address, w.beneficiary);
        let elapsed = self.evm.timestamp.saturating_sub(w.start).min(w.seconds);
        let vested = w.allocation * U256::from(elapsed) / U256::from(w.seconds);
        let (to, call) = ((CONSUMERS[0], wallet), OpenVesting::release_1Call {});
        let released = self.send::<VestErr, _>("vesting release", to, call, Z);
        assert!(released.is_some(), "release never reverts");
        assert_eq!(self.evm.balance(beneficiary), vested, "released so far");
    }
}

/// The registry's review reward: a fifth of `fee` shared by `voters` (approvers first, in
/// voting order, then rejecters), the first taking the remainder; returns what was paid.
fn pay_reviewers(owed: &mut BTreeMap<Address, U256>, voters: &[Address], fee: U256) -> U256 {
    if voters.is_empty() {
        return Z;
    }
    let paid = bps(fee, REVIEW_REWARD_BPS);
    let n = u(voters.len() as u128);
    let each = paid / n;
    let rest = paid - each * n;
    for (i, &voter) in voters.iter().enumerate() {
        add(owed, voter, each + rest * u((i == 0) as u128));
    }
    paid
}

/// A settled batch's release and refund calls, with the lists its events gave.
fn batch_calls(id: U256, logs: &[Log]) -> (IS::releaseCall, IS::refundBatchCall) {
    let mut release = IS::releaseCall::new((id, vec![], vec![]));
    let mut refund = IS::refundBatchCall::new((id, vec![]));
    for log in logs {
        if let Ok(p) = IS::BatchPayouts::decode_log_data(&log.data) {
            release.contributions = p.contributions;
            release.owners = p.owners;
        }
        if let Ok(d) = IS::Debited::decode_log_data(&log.data) {
            refund.debits.push(IS::Debit {
                consumer: d.consumer,
                amount: d.amount.to(),
            });
        }
    }
    (release, refund)
}
