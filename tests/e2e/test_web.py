"""The web app the node serves at `/`, read as a browser reads it (plain HTTP here; the
browser tests drive Chromium): the home page, the explorer's blocks, a block, a transaction
with its call and events named from the protocol's ABIs, an address, search, the datanets
list, and clear pages for bad input.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

from web3 import Web3

from conftest import REPO_ROOT
from test_factory import OWNER, cli, send
from test_validator import records, two_contribution_version
from test_keys import loaded  # noqa: F401  (`loaded` is a fixture: the API is up)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(node, path: str):
    """(status, body, headers); headers are read case-insensitively."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(f"{node.api_url}{path}", timeout=30) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def page(node, path: str) -> str:
    status, body, headers = get(node, path)
    assert status == 200, (path, status, body)
    assert headers["Content-Type"].startswith("text/html"), headers
    assert headers["Server-Timing"].startswith("app;dur="), headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], headers
    assert '<nav aria-label="Main">' in body and "</html>" in body
    return body


def test_the_explorer_names_protocol_calls_and_events(node, loaded, w3, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object"}))
    datanet = int(cli(node, "datanet", "create", "--name", "web <b>shop</b>", "--schema", str(schema),
                      "--description", "Recipes & more", key=OWNER).strip())
    home = page(node, "/")
    assert "Latest block" in home and 'aria-current="page"' not in home

    # The node's index follows the chain every two seconds.
    deadline = time.monotonic() + 30
    row = f'<td><a href="/datanets/{datanet}">{datanet}</a></td>'
    while row not in (listed := page(node, "/datanets")):
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    # What users wrote is escaped, never markup.
    assert "web &lt;b&gt;shop&lt;&#x2f;b&gt;" in listed and "<b>shop</b>" not in listed
    assert "Recipes &amp; more" in listed

    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    abi = json.loads((REPO_ROOT / "contracts/out/Staking.json").read_text())["abi"]
    staking = w3.eth.contract(address=Web3.to_checksum_address(addresses["staking"]), abi=abi)
    receipt = send(w3, OWNER, staking.functions.stake(0, 0), 100 * 10**18)
    tx = receipt["transactionHash"].to_0x_hex()
    shown = page(node, f"/explorer/tx/{tx}")
    assert "succeeded" in shown and "Staking.stake(" in shown, shown
    assert "Staking.Staked(" in shown, shown  # its event, named
    block = receipt["blockNumber"]
    assert tx in page(node, f"/explorer/blocks/{block}")
    blocks = page(node, "/explorer")
    assert f'href="/explorer/blocks/{block}"' in blocks
    # Twenty blocks a page: older ones exist past block 19 (how many blocks the deployment
    # took depends on how its transactions were batched).
    head = w3.eth.block_number
    assert ("Older" in blocks) == (head - 19 > 0 or "before=" in blocks), (head, blocks)
    older = page(node, "/explorer?before=2")
    assert 'href="/explorer/blocks/1"' in older and 'href="/explorer/blocks/2"' not in older

    address = page(node, f"/explorer/address/{addresses['staking']}")
    assert "Staking" in address and "bytes" in address
    assert f'href="/explorer/tx/{tx}"' in address and f'href="/explorer/blocks/{block}"' in address
    owner_page = page(node, f"/explorer/address/{OWNER.address}")
    assert f'href="/explorer/tx/{tx}"' in owner_page
    # Its roles in the protocol: the stake it just made, what it may claim, its voting power.
    assert "In the protocol" in owner_page and "<td>validator</td><td>100</td>" in owner_page, owner_page
    assert "Rewards to claim" in owner_page and "Voting power" in owner_page

    # An address's history comes a page of 25 at a time, newest first, with a link to older.
    recipient = Web3.to_checksum_address("0x" + "5e" * 20)
    hashes = [w3.eth.send_transaction({"from": OWNER.address, "to": recipient, "value": i + 1}).to_0x_hex()
              for i in range(27)]
    for h in hashes:
        w3.eth.wait_for_transaction_receipt(h)
    newest = page(node, f"/explorer/address/{recipient}")
    shown = [h for h in hashes if h in newest]
    assert shown == hashes[2:], (len(shown), newest)
    older_link = re.search(r'href="(/explorer/address/[^"?]+\?before=[0-9.]+)"', newest)
    assert older_link, newest
    oldest = page(node, older_link.group(1))
    assert [h for h in hashes if h in oldest] == hashes[:2] and "?before=" not in oldest.split("Newest")[-1]
    # Search sends each kind of thing to its page.
    for q, target in ((str(block), f"/explorer/blocks/{block}"), (tx, f"/explorer/tx/{tx}"),
                      (OWNER.address, f"/explorer/address/{OWNER.address}")):
        status, _, headers = get(node, f"/explorer/search?q={q}")
        assert (status, headers["Location"]) == (303, target)


def test_bad_input_gets_a_page_that_says_what_was_wrong(node, loaded):
    for path, status, words in (
        ("/explorer/blocks/abc", 400, "is not a block number"),
        ("/explorer/blocks/99999999", 404, "there is no block 99999999 yet"),
        ("/explorer/tx/0x12", 400, "is not a transaction hash"),
        ("/explorer/tx/0x" + "ab" * 32, 404, "knows no transaction"),
        ("/explorer/address/nope", 400, "is not an address"),
        ("/explorer/address/0x" + "11" * 20 + "?before=12", 400, "is not a position in the chain"),
        ("/explorer/search?q=%3Cscript%3E", 400, "is neither a block number"),
        ("/explorer?before=abc", 400, "parameters cannot be read"),
        ("/explorer?before=0", 400, "no block before block 0"),
        ("/datanets?before=-1", 400, "parameters cannot be read"),
        ("/datanets/abc", 400, "is not a datanet id"),
        ("/datanets/4000000", 404, "there is no datanet 4000000"),
        ("/datanets/1?before=x", 400, "parameters cannot be read"),
        ("/governance?before=x", 400, "parameters cannot be read"),
        ("/governance/proposals/abc", 400, "is not a proposal id"),
        ("/governance/proposals/123", 404, "no proposal 123 on this chain"),
        ("/rewards?address=nope", 400, "is not a 0x address"),
    ):
        got, body, _ = get(node, path)
        assert got == status and words in body, (path, got, body)
        assert "<script>" not in body


def test_a_datanet_page_shows_its_contributions_versions_and_proofs(node, loaded, tmp_path):
    from test_factory import CONTRIBUTOR, CURATOR
    datanet, version, contributions = two_contribution_version(node, tmp_path)
    deadline = time.monotonic() + 30
    while "matches the accepted contributions" not in (shown := page(node, f"/datanets/{datanet}")):
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)
    assert f"<h1>Datanet {datanet}: vaults</h1>" in shown, shown
    assert "2 (2 accepted, 0 pending review)" in shown, shown
    assert '"required"' in shown or "&quot;required&quot;" in shown  # the schema, escaped
    for c in contributions:
        assert f"<td>{c}</td>" in shown
    # Each accepted contribution links its inclusion proof in the version, which verifies.
    proofs = re.findall(r'href="([^"]+proofs[^"]+)"', shown)
    assert len(proofs) == 2, proofs
    link = proofs[0].replace("&#x2f;", "/")
    assert link.startswith(f"/api/versions/{version}/proofs/"), link
    with urllib.request.urlopen(f"{node.api_url}{link}", timeout=30) as r:
        proof = json.loads(r.read())
    req = urllib.request.Request(f"{node.api_url}/api/proofs/verify", data=json.dumps(proof).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        verdict = json.loads(r.read())
    assert verdict["here"] is True and verdict["on_chain"] is True, verdict
    assert f'href="/datanets/{datanet}"' in page(node, "/datanets").replace("&#x2f;", "/")
    # A contribution accepted after the version is listed, but has no proof in it.
    late = tmp_path / "late.jsonl"
    late.write_text(records(40, 3))
    third = int(cli(node, "datanet", "contribute", str(datanet), str(late), key=CONTRIBUTOR).strip())
    cli(node, "datanet", "review", str(third), "approve", "--reason", "ok", key=CURATOR)
    deadline = time.monotonic() + 30
    while "3 (3 accepted, 0 pending review)" not in (shown := page(node, f"/datanets/{datanet}")):
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)
    assert f"<td>{third}</td>" in shown and len(re.findall(r'href="[^"]+proofs[^"]+"', shown)) == 2
    curator = page(node, f"/explorer/address/{CURATOR.address}")
    assert f'curator of <a href="/datanets/{datanet}">datanet {datanet}</a></td><td>10</td>' in curator.replace("&#x2f;", "/"), curator


def test_models_and_agents_pages_show_lineage_prices_and_hosts(node, loaded, w3, tmp_path):
    from test_paid import HOST, PRICE_IN, registered_adapter
    models, adapter = registered_adapter(node, w3, tmp_path, seed=21)
    _, lineage = models.functions.adapter(adapter).call()
    metadata = "data:application/json," + json.dumps(
        {"name": "<script>x</script> tutor", "description": "Answers & explains.",
         "system_prompt": "Be brief."})
    send(w3, OWNER, models.functions.deployAgent(adapter, HOST.address, PRICE_IN, 3 * 10**15, 0, metadata))
    agent_id = models.functions.counts().call()[2]

    # The version links its datanet once the node's index has followed the chain (2 s).
    deadline = time.monotonic() + 30
    row = re.compile(rf'datanet \d+</a>, version {lineage[-1]}')
    while not row.search(listed := page(node, "/models").replace("&#x2f;", "/")):
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    weights = models.functions.adapter(adapter).call()[0][4].hex()
    assert f"<td>{adapter}</td>" in listed and weights in listed, listed

    agents = page(node, "/agents").replace("&#x2f;", "/")
    assert f'href="/agents/{agent_id}"' in agents and "waiting for its host" in agents, agents
    assert "&lt;script&gt;x&lt;/script&gt; tutor" in agents and "<script>x" not in agents
    assert "0.003" in agents and HOST.address in agents, agents
    for path in (f"/agents/{agent_id}", f"/agents/agent-{agent_id}"):
        shown = page(node, path)
        assert "Be brief." in shown and "Answers &amp; explains." in shown, shown
        assert f"adapter {adapter}" in shown and "OPEN per 1,000 output tokens" in shown

    for path, status, words in (("/agents/xyz", 400, "is not an agent id"),
                                ("/agents/999999", 404, "there is no agent 999999"),
                                ("/models?before=x", 400, "parameters cannot be read")):
        got, body, _ = get(node, path)
        assert got == status and words in body, (path, got, body)


def test_the_token_page_reads_supply_and_vesting_from_the_chain(node, loaded, w3):
    shown = page(node, "/token")
    for name in ("community", "ecosystem", "investors", "team"):
        assert f"<td>{name}</td>" in shown, shown
    assert "1000000000 OPEN" in shown and "<path d=\"M0.0," in shown, shown

    def figure(label: str, text: str) -> float:
        return float(re.search(rf"<dt>{label}</dt><dd>([0-9.]+) OPEN", text).group(1))
    # Locked is what the wallets hold and have not vested, as the wallets themselves say.
    vesting_abi = json.loads((REPO_ROOT / "contracts/out/OpenVesting.json").read_text())["abi"]
    now = w3.eth.get_block("latest")["timestamp"]
    locked = 0
    for name in ("community", "ecosystem", "investors", "team"):
        at = Web3.to_checksum_address("0x" + Web3.keccak(text=f"openledger.allocation.{name}").hex()[-40:])
        w = w3.eth.contract(address=at, abi=vesting_abi)
        locked += w3.eth.get_balance(at) + w.functions.released().call() - w.functions.vestedAmount(now).call()
    assert abs(figure("Locked in vesting wallets", shown) - locked / 10**18) < 1.0, (shown, locked)
    assert abs(figure("Locked in vesting wallets", shown) + figure("Circulating", shown) - 1e9) < 1e-3

    # Anyone may release a wallet's vested OPEN; the page then shows what the wallet says.
    community = Web3.to_checksum_address("0x" + Web3.keccak(text="openledger.allocation.community").hex()[-40:])
    wallet = w3.eth.contract(address=community, abi=vesting_abi)
    send(w3, OWNER, wallet.functions.release())
    released = wallet.functions.released().call() / 10**18
    assert released > 0
    after = page(node, "/token")
    row = re.search(r"<td>community</td>(.*?)</tr>", after, re.S).group(1)
    cells = re.findall(r"<td>([0-9.]+)</td>", row)
    assert abs(float(cells[1]) - released) < 1e-5, (cells, released)


def post(node, path: str, fields: dict):
    """(status, JSON answer) of a form's fields posted as the app's forms post them."""
    request = urllib.request.Request(f"{node.api_url}{path}", data=json.dumps(fields).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_governance_page_reads_settings_from_the_chain_and_prepares_proposals(node, loaded, w3):
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    out = REPO_ROOT / "contracts/out"
    params = w3.eth.contract(address=Web3.to_checksum_address(addresses["protocolParams"]),
                             abi=json.loads((out / "ProtocolParams.json").read_text())["abi"])
    governor = w3.eth.contract(address=Web3.to_checksum_address(addresses["governor"]),
                               abi=json.loads((out / "OpenGovernor.json").read_text())["abi"])
    shown = page(node, "/governance")
    split = params.functions.feeSplit().call()
    assert ("contributors {}, curators {}, model owner {}, host {}, treasury {}".format(*split)) in shown, shown
    assert f"<dd>{params.functions.unbondingDelay().call()} s</dd>" in shown
    assert f"at least {governor.functions.proposalThreshold().call() // 10**18} OPEN" in shown

    # The form's fields become exactly the governor's propose call; nothing is sent.
    # A longer window needs a longer unbonding delay, set first so that each call succeeds.
    status, call = post(node, "/wallet/calls/propose", {
        "description": "Lengthen the window\n\nWhy.", "challenge_window": "900", "unbonding_delay": "1500",
        "min_stake_role": "host", "min_stake": "75.5"})
    assert status == 200, call
    assert Web3.to_checksum_address(call["to"]) == governor.address and int(call["value"], 16) == 0
    fn, args = governor.decode_function_input(call["data"])
    assert fn.fn_name == "propose" and args["description"] == "Lengthen the window\n\nWhy."
    assert args["targets"] == [params.address] * 3 and args["values"] == [0, 0, 0]
    assert args["calldatas"] == [
        bytes.fromhex(params.encode_abi("setUnbondingDelay", [1500])[2:]),
        bytes.fromhex(params.encode_abi("setMinStake", [2, 755 * 10**17])[2:]),
        bytes.fromhex(params.encode_abi("setChallengeWindow", [900])[2:]),
    ]
    for fields, words in (
        ({"description": "x"}, "it changes nothing"),
        ({"description": "", "review_quorum": "2"}, "description: "),
        ({"description": "x", "fee_contributors": "5000", "fee_curators": "1000", "fee_model_owner": "2000",
          "fee_host": "1000", "fee_treasury": "500"}, "9500 basis points, not 10000"),
        ({"description": "x", "review_quorum": "-1"}, "review_quorum: "),
        ({"description": "x" * 4001, "review_quorum": "2"}, "at most 4000 characters"),
        ({"description": "x", "challenge_window": "900"}, "would be shorter than the challenge window"),
        ({"description": "x", "review_quorum": "33"}, "between 1 and 32"),
        ({"description": "x", "unbonding_delay": "0"}, "between 1 and 31536000"),
    ):
        status, answer = post(node, "/wallet/calls/propose", fields)
        assert status == 422 and words in answer["error"], (fields, status, answer)
    status, answer = post(node, "/wallet/calls/vote", {"proposal": "1", "support": "maybe"})
    assert status == 422 and "choose for, against or abstain" in answer["error"], answer
    status, answer = post(node, "/wallet/calls/queue", {"proposal": "77"})
    assert status == 404 and "no proposal 77" in answer["error"], answer


def open_or_wei(wei: int) -> str:
    """An amount as the rewards page shows it."""
    if 0 < wei < 10**12:
        return f"{wei} wei"
    whole, micro = wei // 10**18, wei % 10**18 // 10**12
    return (f"{whole}.{micro:06d}".rstrip("0") if micro else str(whole)) + " OPEN"


def test_the_rewards_page_matches_the_settlement_contract(node, loaded, w3):
    """The host of the paid tests (which run before this file): its share of every released
    batch it settled, from the contract's own events, and its claims."""
    from test_paid import HOST, SETTLEMENT_ABI
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=SETTLEMENT_ABI)
    shown = page(node, f"/rewards?address={HOST.address}")
    claimable = settlement.functions.claimable(HOST.address).call()
    assert f'<dd id="claimable">{open_or_wei(claimable)}' in shown, (shown, claimable)
    events = settlement.events
    hosted = {e["args"]["batchId"] for e in events.BatchSettled().get_logs(from_block=0)
              if e["args"]["host"] == HOST.address}
    released = {e["args"]["batchId"] for e in events.BatchReleased().get_logs(from_block=0)}
    share = sum(e["args"]["hostShare"] for e in events.BatchPayouts().get_logs(from_block=0)
                if e["args"]["batchId"] in hosted & released)
    if share:
        assert f"<td>host</td><td>—</td><td>{open_or_wei(share)}</td>" in shown, (shown, share)
    else:
        assert "<td>host</td>" not in shown, shown
    claims = events.Claimed().get_logs(from_block=0, argument_filters={"account": HOST.address})
    listed = re.findall(r'<tr><td><a href="/explorer/blocks/(\d+)">\d+</a></td><td>([^<]+)</td></tr>', shown)
    assert sorted(listed) == sorted((str(c["blockNumber"]), open_or_wei(c["args"]["amount"])) for c in claims), listed
    assert page(node, "/rewards").count('name="address"') == 1  # the form, without an account
