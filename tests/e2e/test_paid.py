"""A paid agent through the real node: an adapter published with lineage, an agent on it that
its host accepts on chain, a consumer who signs in and asks it (streamed and not) with the
official `openai` client, and the receipts metered for it: tokens as the answer's usage says,
the fee by the agent's prices, a sequence number per consumer. A paid agent refuses requests
without an account's key, and a key past its spend limit.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import openai
import pytest
from eth_account import Account
from openai import OpenAI
from web3 import Web3

from conftest import REPO_ROOT
from test_factory import ACCOUNTS, MNEMONIC, OWNER, cli, published_datanet, send
from test_keys import call, loaded, sign_in  # noqa: F401  (`loaded` is a fixture)
from test_serving import write_adapter

# The dev node's host: the twelfth key of the dev mnemonic, apart from the ten dev accounts.
HOST = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/11")
MODELS_ABI = json.loads((REPO_ROOT / "contracts/out/ModelRegistry.json").read_text())["abi"]
PRICE_IN, PRICE_OUT = 2 * 10**12, 3 * 10**12  # wei per 1,000 tokens
REFRESH_TIMEOUT_S = 30


def listed(node) -> list[str]:
    with urllib.request.urlopen(f"{node.api_url}/v1/models", timeout=10) as r:
        return [m["id"] for m in json.loads(r.read())["data"]]


def wait_listed(node, model: str, present: bool = True):
    deadline = time.monotonic() + REFRESH_TIMEOUT_S
    while (model in listed(node)) != present:
        assert time.monotonic() < deadline, f"{model} {'never appeared' if present else 'stayed'}"
        time.sleep(0.3)


def registered_adapter(node, w3, tmp, seed: int = 11) -> tuple[object, int]:
    """An adapter registered by OWNER as trained (as far as the chain knows) on a datanet
    version, its weights where publication puts them but no training artifacts published (its
    answers cannot be attributed to training data), and HOST staked to serve it: the registry
    and the adapter's id."""
    _, version = published_datanet(node, tmp, f"paid-{seed}")
    files = tmp / "adapter"
    write_adapter(files, rank=4, seed=seed)
    weights = Web3.keccak((files / "adapter_model.safetensors").read_bytes())
    # Where publication puts an adapter: the blob store, under its weights hash.
    blob = node.data_dir / "datanets" / "blobs" / "adapters" / weights.hex().removeprefix("0x")
    shutil.copytree(files, blob)
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    models = w3.eth.contract(address=Web3.to_checksum_address(addresses["modelRegistry"]), abi=MODELS_ABI)
    send(w3, OWNER, models.functions.registerBaseModel(Web3.keccak(b"base"), "hf://base", "MIT"))
    base = models.functions.counts().call()[0]
    send(w3, OWNER, models.functions.registerAdapter(
        base, [version], Web3.keccak(b"config"), weights, Web3.keccak(b"manifest"), ""))
    adapter = models.functions.counts().call()[1]
    fund(w3, OWNER, HOST.address, 60 * 10**18)
    cli(node, "stake", "add", "host", "--amount", "50", key=HOST)
    return models, adapter


def deploy_agent(node, w3, tmp) -> tuple[str, object, int]:
    """Agent `agent-N` of a registered adapter, deployed by OWNER on HOST, accepted, and
    served; returns its model name, the registry and its id."""
    models, adapter = registered_adapter(node, w3, tmp)
    metadata = "data:application/json," + json.dumps(
        {"name": "one-word-tutor", "system_prompt": "Answer in one word.", "temperature": 0})
    send(w3, OWNER, models.functions.deployAgent(adapter, HOST.address, PRICE_IN, PRICE_OUT, 0, metadata))
    agent_id = models.functions.counts().call()[2]
    model = f"agent-{agent_id}"
    # Named without its consent, the host does not serve it.
    time.sleep(3)
    assert model not in listed(node)
    send(w3, HOST, models.functions.acceptAgent(agent_id))
    wait_listed(node, model)
    return model, models, agent_id


@pytest.fixture(scope="module")
def agent(loaded, w3, tmp_path_factory):
    model, models, agent_id = deploy_agent(loaded, w3, tmp_path_factory.mktemp("paid"))
    return loaded, model, models, agent_id


def fund(w3: Web3, sender, to: str, value: int):
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    tx = {"to": to, "value": value, "gas": 21_000, "chainId": w3.eth.chain_id,
          "nonce": w3.eth.get_transaction_count(sender.address),
          "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9}
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1


def paying_consumer(node, w3, deposit: int = 10**17, **limits):
    """A new account with OPEN in InferenceSettlement, the host authorised, and a key."""
    consumer = Account.create()
    fund(w3, OWNER, consumer.address, deposit + 10**17)
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=json.loads((REPO_ROOT / "contracts/out/InferenceSettlement.json").read_text())["abi"])
    send(w3, consumer, settlement.functions.deposit(), deposit)
    send(w3, consumer, settlement.functions.authorize(HOST.address, deposit))
    status, issued = sign_in(node, consumer, **limits)
    assert status == 200, issued
    return consumer, issued


def fee(prompt_tokens: int, completion_tokens: int) -> int:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) // 1000


def test_a_consumer_pays_for_an_agent_by_its_prices_and_gets_receipts(agent, w3):
    node, model, _, agent_id = agent
    consumer, issued = paying_consumer(node, w3)
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=issued["key"], max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    chunks = list(client.chat.completions.create(
        model=model, messages=question, max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0
    # By its name too, not streamed.
    answer = client.chat.completions.create(model="one-word-tutor", messages=question, max_tokens=6,
                                            extra_body={"ignore_eos": True})
    status, receipts = call("GET", f"{node.api_url}/v1/receipts", key=issued["key"])
    assert status == 200
    newest, first = receipts["data"]
    assert (first["seq"], newest["seq"]) == (1, 2)
    assert first["agent"] == model and first["complete"] is True
    assert (first["input_tokens"], first["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert int(first["fee"]) == fee(usage.prompt_tokens, usage.completion_tokens)
    assert int(newest["fee"]) == fee(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    # The agent's system prompt was put before the question (the template's default otherwise).
    system = [{"role": "system", "content": "Answer in one word."}]
    same = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=system + question, max_tokens=1)
    plain = client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=question, max_tokens=1)
    assert answer.usage.prompt_tokens == same.usage.prompt_tokens != plain.usage.prompt_tokens
    # The key counts what it spent.
    status, keys = call("GET", f"{node.api_url}/v1/keys", key=issued["key"])
    assert int(keys["data"][0]["spent"]) == int(first["fee"]) + int(newest["fee"])
    # Another consumer's receipts start at 1 and are theirs alone.
    status, other = sign_in(node, Account.create())
    status, theirs = call("GET", f"{node.api_url}/v1/receipts", key=other["key"])
    assert theirs["data"] == []


def test_a_paid_agent_needs_an_account_key_funds_and_a_spend_limit(agent, w3):
    node, model, _, _ = agent
    question = [{"role": "user", "content": "Hello"}]
    anonymous = OpenAI(base_url=f"{node.api_url}/v1", api_key="dev", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        anonymous.chat.completions.create(model=model, messages=question, max_tokens=4)
    assert "paid agent" in str(refused.value)
    _, issued = paying_consumer(node, w3, spend_limit="1000")
    capped = OpenAI(base_url=f"{node.api_url}/v1", api_key=issued["key"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as over:
        capped.chat.completions.create(model=model, messages=question, max_tokens=4)
    assert over.value.body["code"] == "insufficient_quota"
    status, receipts = call("GET", f"{node.api_url}/v1/receipts", key=issued["key"])
    assert receipts["data"] == [], "a refused request is not billed"
    # An account that never authorised this host (or has no credit) is refused before anything
    # runs: the host would never be paid.
    status, unfunded = sign_in(node, Account.create())
    broke = OpenAI(base_url=f"{node.api_url}/v1", api_key=unfunded["key"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as unpaid:
        broke.chat.completions.create(model=model, messages=question, max_tokens=4)
    assert "authorize the host" in str(unpaid.value)


def test_a_paused_agent_stops_being_served(agent, w3):
    node, model, models, agent_id = agent
    send(w3, OWNER, models.functions.updateAgent(agent_id, False, PRICE_IN, PRICE_OUT))
    wait_listed(node, model, present=False)
    _, issued = paying_consumer(node, w3)
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=issued["key"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    send(w3, OWNER, models.functions.updateAgent(agent_id, True, PRICE_IN, PRICE_OUT))
    wait_listed(node, model)


SETTLEMENT_ABI = json.loads((REPO_ROOT / "contracts/out/InferenceSettlement.json").read_text())["abi"]
SETTLE_TIMEOUT_S = 60
SPLIT_OWNER, SPLIT_HOST = 2500, 1500  # the dev fee split, basis points


def wait_receipts(node, key: str, ready) -> list[dict]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        status, body = call("GET", f"{node.api_url}/v1/receipts", key=key)
        assert status == 200, body
        if body["data"] and all(ready(r) for r in body["data"]):
            return body["data"]
        assert time.monotonic() < deadline, f"receipts not ready: {body['data']}\\n{node.log_tail()}"
        time.sleep(0.5)


def release_everything_pending(w3, settlement):
    """Lets earlier tests' receipts settle and their batches be released, so that what this test
    measures is its own."""
    time.sleep(5)  # two settlement rounds
    w3.provider.make_request("evm_increaseTime", [601])
    w3.provider.make_request("evm_mine", [])
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    count = settlement.functions.batchCount().call()
    while any(settlement.functions.batch(i).call()[2] == 1 for i in range(1, count + 1)):
        assert time.monotonic() < deadline, "earlier batches were not released"
        time.sleep(0.5)


def test_receipts_settle_on_chain_and_their_release_pays_every_role(agent, w3):
    node, model, _, _ = agent
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=SETTLEMENT_ABI)
    treasury = Web3.to_checksum_address(addresses["timelock"])
    consumer = ACCOUNTS[6]
    deposit = 10**18
    send(w3, consumer, settlement.functions.deposit(), deposit)
    send(w3, consumer, settlement.functions.authorize(HOST.address, deposit))
    status, issued = sign_in(node, consumer)
    key = issued["key"]
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=key, max_retries=0)
    payees = (OWNER.address, HOST.address, treasury)
    supply = int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16)
    assert supply == 10**27
    release_everything_pending(w3, settlement)
    before = {who: settlement.functions.claimable(who).call() for who in payees}
    for question in ("Name a colour.", "Name a fruit."):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                       max_tokens=5, extra_body={"ignore_eos": True})
    settled = wait_receipts(node, key, lambda r: r["batch"] is not None)
    assert len(settled) == 2
    total = sum(int(r["fee"]) for r in settled)
    assert settlement.functions.creditOf(consumer.address).call() == deposit - total
    batches: dict[int, int] = {}
    for r in settled:
        batches[r["batch"]] = batches.get(r["batch"], 0) + int(r["fee"])
    for batch, fees in batches.items():
        onchain = settlement.functions.batch(batch).call()
        assert onchain[0] == HOST.address and onchain[5] == fees  # host, fees
    # In escrow until the challenge window has passed: nobody has been paid yet.
    assert {who: settlement.functions.claimable(who).call() for who in payees} == before
    w3.provider.make_request("evm_increaseTime", [601])
    w3.provider.make_request("evm_mine", [])
    wait_receipts(node, key, lambda r: r["released"])
    gained = {who: settlement.functions.claimable(who).call() - before[who] for who in payees}
    owner = sum(f * SPLIT_OWNER // 10_000 for f in batches.values())
    host = sum(f * SPLIT_HOST // 10_000 for f in batches.values())
    # No receipt credited contributions yet: their and the curators' shares are the treasury's.
    assert gained == {OWNER.address: owner, HOST.address: host, treasury: total - owner - host}
    # `openledger rewards` shows the earnings by role; the host claims its share with it.
    shown = cli(node, "rewards", "show", "--address", OWNER.address)
    assert "model owner:" in shown, shown
    claimed = settlement.functions.claimable(HOST.address).call()
    assert "host:" in cli(node, "rewards", "show", "--address", HOST.address)
    # Anyone may send the claim (the OPEN goes to the account): here the owner's key, since the
    # node's settlement rounds send from the host's key, and its balance moves with their gas.
    assert int(cli(node, "rewards", "claim", "--address", HOST.address, key=OWNER).strip()) == claimed
    assert settlement.functions.claimable(HOST.address).call() == 0
    # OPEN only moved: the total supply is what it was.
    assert int(w3.provider.make_request("openledger_totalSupply", [])["result"], 16) == supply


def test_agents_through_the_command_line(agent):
    node, _, models, agent_id = agent
    adapter = models.functions.agent(agent_id).call()[1]
    out = cli(node, "agent", "deploy", str(adapter), "--host", HOST.address, "--price-in", "0.000002",
              "--price-out", "0.000003", "--name", "cli-agent", "--system-prompt", "Be brief.", key=OWNER)
    new = int(out.strip())
    shown = cli(node, "agent", "show", str(new))
    assert "waiting for its host" in shown and "cli-agent" in shown and "Be brief." in shown
    cli(node, "agent", "accept", str(new), key=HOST)
    wait_listed(node, f"agent-{new}")
    table = cli(node, "agent", "list", "--host", HOST.address)
    assert any(line.startswith(f"agent-{new}\t") and "active" in line and "cli-agent" in line
               for line in table.splitlines()), table
    cli(node, "agent", "update", str(new), "--price-in", "0.000001", "--price-out", "0.000004", key=OWNER)
    on_chain = models.functions.agent(new).call()
    assert (on_chain[6], on_chain[7]) == (10**12, 4 * 10**12)  # priceIn, priceOut in wei
    # The host never agreed to the new prices: not served until it accepts them.
    wait_listed(node, f"agent-{new}", present=False)
    assert "waiting for its host" in cli(node, "agent", "show", str(new))
    cli(node, "agent", "accept", str(new), key=HOST)
    wait_listed(node, f"agent-{new}")
    cli(node, "agent", "retire", str(new), key=OWNER)
    wait_listed(node, f"agent-{new}", present=False)
    assert "paused" in cli(node, "agent", "show", str(new))
    cli(node, "agent", "resume", str(new), key=OWNER)
    wait_listed(node, f"agent-{new}")
    # The host may stop serving it.
    cli(node, "agent", "release", str(new), key=HOST)
    wait_listed(node, f"agent-{new}", present=False)
