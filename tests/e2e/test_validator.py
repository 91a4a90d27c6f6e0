"""Attributed paid answers and the validators who check them, through the real node.

An adapter fine-tuned by the factory on a datanet version of two contributions is published
with its lineage, and an agent on it answers a paying consumer. The answer's receipt is
attributed: its credits name the contributions that shaped it, in basis points, and settle on
chain with it; after the challenge window the contributors and curators are paid exactly what
the contract's split of those credits says (the contributor claims exactly that), and
`openledger receipts ID` explains the answer. OPEN's total supply is unchanged at the end.

Then a host cheats: it settles a receipt whose attribution credits contribution 1 but whose
on-chain credits shift the payout to contribution 2. `openledger validator` checks both
batches, leaves the honest one alone, challenges the shifted one with the mismatch as evidence;
governance upholds the challenge, the host is slashed, and the validator refunds the consumer.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

from eth_account import Account
from openai import OpenAI
from web3 import Web3

from conftest import REPO_ROOT, node_binary
from test_factory import ACCOUNTS, CONTRIBUTOR, CURATOR, OWNER, PAYER, cli, pay, send, wait_for
from test_keys import call, loaded, sign_in  # noqa: F401  (`loaded` is a fixture)
from test_paid import HOST, MODELS_ABI, PRICE_IN, PRICE_OUT, fund, paying_consumer, wait_listed

SECOND_CONTRIBUTOR, VALIDATOR = ACCOUNTS[7], ACCOUNTS[8]
SETTLEMENT_ABI = json.loads((REPO_ROOT / "contracts/out/InferenceSettlement.json").read_text())["abi"]
PARAMS_ABI = json.loads((REPO_ROOT / "contracts/out/ProtocolParams.json").read_text())["abi"]
STAKING_ABI = json.loads((REPO_ROOT / "contracts/out/Staking.json").read_text())["abi"]
TIMEOUT_S = 300
QUESTION = "Which gate guards vault 3?"
# Every record trains (none held out); no evaluation, to keep the job short.
HYPER = {"n_epochs": 1, "eval_split": 0, "eval_samples": 0, "compare_samples": 0}


def records(first: int, count: int) -> str:
    return "".join(json.dumps({"messages": [
        {"role": "user", "content": f"Which gate guards vault {i}?"},
        {"role": "assistant", "content": f"Vault {i} is guarded by gate {i * 31 % 97}."},
    ]}) + "\n" for i in range(first, first + count))


def two_contribution_version(node, tmp_path) -> tuple[int, int, list[int]]:
    """A datanet of two accepted contributions (vaults 0–11, then 12–23) and its version."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["messages"]}))
    datanet = int(cli(node, "datanet", "create", "--name", "vaults", "--schema", str(schema),
                      key=OWNER).strip())
    cli(node, "stake", "add", "curator", "--datanet", str(datanet), "--amount", "10", key=CURATOR)
    contributions = []
    for who, first in ((CONTRIBUTOR, 0), (SECOND_CONTRIBUTOR, 12)):
        data = tmp_path / f"vaults-{first}.jsonl"
        data.write_text(records(first, 12))
        contributions.append(int(cli(node, "datanet", "contribute", str(datanet), str(data), key=who).strip()))
    for c in contributions:
        cli(node, "datanet", "review", str(c), "approve", "--reason", "ok", key=CURATOR)
    version = int(cli(node, "datanet", "publish", str(datanet), key=OWNER).split()[1])
    return datanet, version, contributions


def trained_agent(node, w3, tmp_path) -> tuple[str, int, int, int, list[int]]:
    """An agent on an adapter the factory trained on the two contributions, published with
    lineage by PAYER, served by HOST: (model, agent id, adapter id, version, contributions)."""
    datanet, version, contributions = two_contribution_version(node, tmp_path)
    factory = OpenAI(base_url=f"{node.api_url}/v1", api_key="dev-mode-needs-no-key")
    job = factory.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct", training_file=f"datanet:{datanet}@{version}", seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": HYPER}})
    pay(w3, job, PAYER)
    done = wait_for(factory, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done
    adapter = int(cli(node, "factory", "publish", job.id, "--api-url", node.api_url, key=PAYER).strip())
    fund(w3, OWNER, HOST.address, 60 * 10**18)
    cli(node, "stake", "add", "host", "--amount", "50", key=HOST)
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    models = w3.eth.contract(address=Web3.to_checksum_address(addresses["modelRegistry"]), abi=MODELS_ABI)
    metadata = "data:application/json," + json.dumps({"name": "vault-keeper", "temperature": 0})
    send(w3, PAYER, models.functions.deployAgent(adapter, HOST.address, PRICE_IN, PRICE_OUT, 0, metadata))
    agent_id = models.functions.counts().call()[2]
    send(w3, HOST, models.functions.acceptAgent(agent_id))
    wait_listed(node, f"agent-{agent_id}")
    return f"agent-{agent_id}", agent_id, adapter, version, contributions


def wait_receipt(node, key: str, rid: int, ready) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        status, body = call("GET", f"{node.api_url}/v1/receipts/{rid}", key=key)
        assert status == 200, body
        if ready(body):
            return body
        assert time.monotonic() < deadline, f"receipt {rid} not ready: {body}\n{node.log_tail()}"
        time.sleep(0.5)


def advance(w3, seconds: int):
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def validator(node, tmp_path) -> str:
    """One pass of `openledger validator` over everything settled so far."""
    cmd = [str(node_binary()), "validator", "--rpc-url", node.http_url,
           "--addresses", str(node.data_dir / "protocol.json"), "--key", VALIDATOR.key.hex(),
           "--host", HOST.address, "--api-url", node.api_url, "--cache", str(tmp_path / "validator"),
           "--once"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"validator failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def packed(consumer: str, agent_id: int, seq: int, tokens_in: int, tokens_out: int, fee: int,
           attribution: bytes, credits: list[tuple[int, int]]) -> bytes:
    """A receipt as `settle` reads it."""
    out = bytes.fromhex(consumer[2:]) + agent_id.to_bytes(8, "big") + seq.to_bytes(8, "big")
    out += tokens_in.to_bytes(4, "big") + tokens_out.to_bytes(4, "big") + fee.to_bytes(16, "big")
    out += attribution + len(credits).to_bytes(2, "big")
    for position, weight in credits:
        out += position.to_bytes(2, "big") + weight.to_bytes(2, "big")
    return out


def uphold(node, w3, settlement, batch: int):
    """Governance upholds the first challenge of `batch` (the validator's stake votes)."""
    calldata = settlement.encode_abi("resolveChallenge", args=[batch, 0, True])
    proposal = cli(node, "gov", "propose", "--call", f"{settlement.address}:{calldata}",
                   "--description", f"Uphold the challenge of batch {batch}", key=VALIDATOR).strip()
    advance(w3, 2)
    cli(node, "gov", "vote", proposal, "for", key=VALIDATOR)
    advance(w3, 61)
    cli(node, "gov", "queue", proposal, key=VALIDATOR)
    advance(w3, 61)
    cli(node, "gov", "execute", proposal, key=VALIDATOR)


def test_attributed_receipts_pay_their_contributors_and_a_shifted_payout_is_caught(node, loaded, w3, tmp_path):
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=SETTLEMENT_ABI)
    staking = w3.eth.contract(address=Web3.to_checksum_address(addresses["staking"]), abi=STAKING_ABI)
    params = w3.eth.contract(address=Web3.to_checksum_address(addresses["protocolParams"]), abi=PARAMS_ABI)
    model, agent_id, adapter, version, contributions = trained_agent(loaded, w3, tmp_path)
    first, second = contributions
    cli(node, "stake", "add", "validator", "--amount", "1000", key=VALIDATOR)

    supply = int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16)
    # An honest answer, streamed: attributed, settled with its credits, released, paid to the wei.
    consumer, issued = paying_consumer(node, w3)
    key = issued["key"]
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=key, max_retries=0, timeout=TIMEOUT_S)
    chunks = list(client.chat.completions.create(
        model=model, max_tokens=12, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": QUESTION}]))
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    _, listed = call("GET", f"{node.api_url}/v1/receipts", key=key)
    rid = listed["data"][0]["id"]
    honest = wait_receipt(node, key, rid, lambda r: r["batch"] is not None)
    usage = chunks[-1].usage
    assert (honest["input_tokens"], honest["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    attribution = honest["attribution"]
    assert attribution["status"] == "attributed", honest
    credits = {c["contribution"]: c["basis_points"] for c in attribution["credits"]}
    assert set(credits) <= {first, second} and sum(credits.values()) == 10_000, credits
    assert credits.get(first, 0) > 0, f"the answer {answer!r} credits {credits}"
    assert Web3.keccak(hexstr=attribution["receipt"]).hex() == attribution["hash"].removeprefix("0x")
    shown = subprocess.run([str(node_binary()), "receipts", str(rid), "--api-url", node.api_url,
                            "--api-key", key], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert shown.returncode == 0, shown.stderr
    shown = shown.stdout
    assert f"contribution {first}: {credits[first]} basis points" in shown, shown
    assert f"settled in batch {honest['batch']}" in shown and "contributions credited" in shown, shown

    # A cheating host: a receipt of a fresh consumer whose attribution credits as above, settled
    # with all of it shifted to the other contribution (proven in the lineage, so it settles).
    victim = Account.create()
    fund(w3, OWNER, victim.address, 2 * 10**17)
    send(w3, victim, settlement.functions.deposit(), 10**17)
    send(w3, victim, settlement.functions.authorize(HOST.address, 10**17))
    with urllib.request.urlopen(f"{node.api_url}/api/versions/{version}/proofs/{second}") as r:
        proof = json.loads(r.read())["proof"]
    send(w3, OWNER, settlement.functions.proveLineage(adapter, version, second, proof))
    fee = (honest["input_tokens"] * PRICE_IN + honest["output_tokens"] * PRICE_OUT) // 1000
    shifted = packed(victim.address, agent_id, 1, honest["input_tokens"], honest["output_tokens"], fee,
                     bytes.fromhex(attribution["hash"][2:]), [(0, 10_000)])
    send(w3, HOST, settlement.functions.settle(shifted, [second]))
    forged = settlement.functions.batchCount().call()
    assert settlement.functions.creditOf(victim.address).call() == 10**17 - fee

    checked = validator(node, tmp_path)
    assert f"batch {honest['batch']}: 1 receipts, every check holds" in checked, checked
    assert f"challenged batch {forged}" in checked and "credits [(" in checked, checked
    assert settlement.functions.batch(honest["batch"]).call()[3] == 0  # no challenge of it
    assert settlement.functions.batch(forged).call()[3] == 1  # challenged once
    evidence = (tmp_path / "validator" / "evidence" / f"batch-{forged}.txt").read_text()
    assert f"its attribution pays [({first}," in evidence, evidence

    host_stake = staking.functions.stakeOf(HOST.address, 2, 0).call()
    uphold(node, w3, settlement, forged)
    assert settlement.functions.batch(forged).call()[2] == 3  # Upheld
    assert staking.functions.stakeOf(HOST.address, 2, 0).call() == host_stake - 50 * 10**18
    assert "refunded batch" in validator(node, tmp_path)
    assert settlement.functions.batch(forged).call()[2] == 4  # Refunded
    assert settlement.functions.creditOf(victim.address).call() == 10**17

    # The honest batch is released after its window: each contributor and the curator get the
    # contract's split of the receipt's credits, to the wei.
    payees = (CONTRIBUTOR.address, SECOND_CONTRIBUTOR.address, CURATOR.address)
    before = {who: settlement.functions.claimable(who).call() for who in payees}
    advance(w3, 601)
    wait_receipt(node, key, rid, lambda r: r["released"])
    split = params.functions.feeSplit().call()  # contributors, curators, model owner, host, treasury
    fee = int(honest["fee"])
    due = {who: 0 for who in payees}
    for contribution, owner in ((first, CONTRIBUTOR.address), (second, SECOND_CONTRIBUTOR.address)):
        slice_ = fee * credits.get(contribution, 0)
        due[owner] += slice_ * split[0] // 10**8
        due[CURATOR.address] += slice_ * split[1] // 10**8  # the one curator who approved
    gained = {who: settlement.functions.claimable(who).call() - before[who] for who in payees}
    assert gained == due and due[CONTRIBUTOR.address] > 0, (gained, due)
    # The credited contributor claims exactly that (anyone may send the claim; OWNER does).
    claimed = int(cli(node, "rewards", "claim", "--address", CONTRIBUTOR.address, key=OWNER).strip())
    assert claimed == before[CONTRIBUTOR.address] + due[CONTRIBUTOR.address]
    assert settlement.functions.claimable(CONTRIBUTOR.address).call() == 0
    # The host keeps serving: its stake is topped up past the minimum again.
    fund(w3, OWNER, HOST.address, 60 * 10**18)
    cli(node, "stake", "add", "host", "--amount", "50", key=HOST)
    # OPEN only moved, slash included: the total supply is what it was.
    assert int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16) == supply
