"""A knowledge agent (retrieval-augmented answers) through the real node and the official
`openai` client.

An agent whose knowledge datanet holds two contributions answers a paying consumer: the best
passages for the question go into its prompt, the answer lists them as `citations` (streamed
and not), and the receipt records the retrieval and credits the contribution it came from
(here all of it: the adapter has no published training artifacts, so nothing is attributed to
its training data). The batch settles, `openledger validator` searches the same version and
finds the receipt honest, and after the window the contributor is paid exactly the contract's
split of the fee. A host that settles the same retrieval with its credit shifted to the other
contribution is challenged, upheld and refunded.
"""

from __future__ import annotations

import json

from eth_account import Account
from openai import OpenAI
from web3 import Web3

from test_factory import ACCOUNTS, CONTRIBUTOR, CURATOR, OWNER, cli, send
from test_keys import call, loaded  # noqa: F401  (`loaded` is a fixture)
from test_paid import HOST, PRICE_IN, PRICE_OUT, fund, paying_consumer, registered_adapter, wait_listed
from test_validator import (PARAMS_ABI, SETTLEMENT_ABI, TIMEOUT_S, VALIDATOR, advance, packed, uphold,
                            validator, wait_receipt)

SECOND_CONTRIBUTOR = ACCOUNTS[7]
LIGHTHOUSE = ["The keeper of the Skerry Point lighthouse is Annika Brandt.",
              "The Skerry Point lighthouse was first lit in 1871."]
HARBOUR = ["Harbour fees in Port Elling are paid each spring.",
           "The ferry to Holm leaves at noon on weekdays."]
QUESTION = "Who keeps the Skerry Point lighthouse?"


def knowledge_datanet(node, tmp_path) -> tuple[int, list[int]]:
    """A datanet of two accepted contributions (the lighthouse, then the harbour), published."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["text"]}))
    datanet = int(cli(node, "datanet", "create", "--name", "coast", "--schema", str(schema),
                      key=OWNER).strip())
    cli(node, "stake", "add", "curator", "--datanet", str(datanet), "--amount", "10", key=CURATOR)
    contributions = []
    for who, lines, name in ((CONTRIBUTOR, LIGHTHOUSE, "lighthouse"), (SECOND_CONTRIBUTOR, HARBOUR, "harbour")):
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
        contributions.append(int(cli(node, "datanet", "contribute", str(datanet), str(data), key=who).strip()))
    for c in contributions:
        cli(node, "datanet", "review", str(c), "approve", "--reason", "ok", key=CURATOR)
    cli(node, "datanet", "publish", str(datanet), key=OWNER)
    return datanet, contributions


def test_a_knowledge_agent_cites_and_credits_the_contribution_it_retrieved(node, loaded, w3, tmp_path):
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=SETTLEMENT_ABI)
    params = w3.eth.contract(address=Web3.to_checksum_address(addresses["protocolParams"]), abi=PARAMS_ABI)
    datanet, (lighthouse, harbour) = knowledge_datanet(node, tmp_path)
    _, adapter = registered_adapter(node, w3, tmp_path, seed=12)
    deployed = cli(node, "agent", "deploy", str(adapter), "--host", HOST.address, "--price-in", "0.000002",
                   "--price-out", "0.000003", "--name", "coast-guide", "--knowledge", str(datanet), key=OWNER)
    agent_id = int(deployed.strip())
    assert f"knowledge:   datanet {datanet}" in cli(node, "agent", "show", str(agent_id))
    cli(node, "agent", "accept", str(agent_id), key=HOST)
    model = f"agent-{agent_id}"
    wait_listed(node, model)
    cli(node, "stake", "add", "validator", "--amount", "1000", key=VALIDATOR)
    supply = int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16)

    consumer, issued = paying_consumer(node, w3)
    key = issued["key"]
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=key, max_retries=0, timeout=TIMEOUT_S)
    question = [{"role": "user", "content": QUESTION}]
    answer = client.chat.completions.create(model=model, messages=question, max_tokens=8)
    cited = answer.model_extra["citations"]
    # Both lighthouse passages match the question; the harbour's share none of its words.
    assert [(c["contribution"], c["index"]) for c in cited] == [(lighthouse, 1), (lighthouse, 2)], cited
    assert "Annika Brandt" in " ".join(c["snippet"] for c in cited)
    assert all(c["datanet"] == datanet and c["score"] > 0 for c in cited)
    # The passages are in the prompt the consumer pays for.
    _, plain = call("POST", f"{node.api_url}/tokenize", {"messages": question}, key=key)
    assert answer.usage.prompt_tokens > plain["count"] + 20, (answer.usage, plain)
    # Streamed, the first chunk carries them.
    chunks = list(client.chat.completions.create(model=model, messages=question, max_tokens=8, stream=True))
    assert chunks[0].model_extra["citations"] == cited

    _, listed = call("GET", f"{node.api_url}/v1/receipts", key=key)
    rids = sorted(r["id"] for r in listed["data"])
    receipts = [wait_receipt(node, key, rid, lambda r: r["batch"] is not None) for rid in rids]
    for receipt in receipts:
        retrieval = receipt["retrieval"]
        assert (retrieval["datanet"], retrieval["query"]) == (datanet, QUESTION), receipt
        assert [h["contribution"] for h in retrieval["hits"]] == [lighthouse, lighthouse]
        attribution = receipt["attribution"]
        assert attribution["status"] == "attributed" and attribution["trained"], receipt
        assert attribution["credits"] == [{"contribution": lighthouse, "basis_points": 10_000}], receipt

    # A cheating host settles the same retrieval for another consumer with the credit shifted to
    # the harbour contribution (in the knowledge datanet, so the contract takes it).
    honest = receipts[0]
    victim = Account.create()
    fund(w3, OWNER, victim.address, 2 * 10**17)
    send(w3, victim, settlement.functions.deposit(), 10**17)
    send(w3, victim, settlement.functions.authorize(HOST.address, 10**17))
    fee = (honest["input_tokens"] * PRICE_IN + honest["output_tokens"] * PRICE_OUT) // 1000
    shifted = packed(victim.address, agent_id, 1, honest["input_tokens"], honest["output_tokens"], fee,
                     bytes.fromhex(honest["attribution"]["hash"][2:]), [(0, 10_000)])
    send(w3, HOST, settlement.functions.settle(shifted, [harbour]))
    forged = settlement.functions.batchCount().call()

    checked = validator(node, tmp_path)
    for batch in {r["batch"] for r in receipts}:
        assert f"batch {batch}: " in checked and f"challenged batch {batch} " not in checked, checked
        assert any(line.startswith(f"batch {batch}: ") and line.endswith("every check holds")
                   for line in checked.splitlines()), checked
    assert f"challenged batch {forged}" in checked, checked
    evidence = (tmp_path / "validator" / "evidence" / f"batch-{forged}.txt").read_text()
    assert f"its attribution pays [({lighthouse}, 10000)]" in evidence, evidence
    uphold(node, w3, settlement, forged)
    assert "refunded batch" in validator(node, tmp_path)
    assert settlement.functions.creditOf(victim.address).call() == 10**17

    # After the window the lighthouse's contributor and its curator get the contract's split.
    payees = (CONTRIBUTOR.address, SECOND_CONTRIBUTOR.address, CURATOR.address)
    before = {who: settlement.functions.claimable(who).call() for who in payees}
    advance(w3, 601)
    for receipt in receipts:
        wait_receipt(node, key, receipt["id"], lambda r: r["released"])
    split = params.functions.feeSplit().call()  # contributors, curators, model owner, host, treasury
    # A batch pays each contribution once: its slice (fee × basis points) summed over receipts.
    slices: dict[int, int] = {}
    for r in receipts:
        slices[r["batch"]] = slices.get(r["batch"], 0) + int(r["fee"]) * 10_000
    fees = sum(int(r["fee"]) for r in receipts)
    due = {CONTRIBUTOR.address: sum(s * split[0] // 10**8 for s in slices.values()),
           SECOND_CONTRIBUTOR.address: 0,
           CURATOR.address: sum(s * split[1] // 10**8 for s in slices.values())}
    gained = {who: settlement.functions.claimable(who).call() - before[who] for who in payees}
    assert gained == due and fees > 0, (gained, due)
    claimed = int(cli(node, "rewards", "claim", "--address", CONTRIBUTOR.address, key=OWNER).strip())
    assert claimed == before[CONTRIBUTOR.address] + due[CONTRIBUTOR.address]
    # The host keeps serving: its stake is topped up past the minimum again.
    fund(w3, OWNER, HOST.address, 60 * 10**18)
    cli(node, "stake", "add", "host", "--amount", "50", key=HOST)
    assert int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16) == supply
