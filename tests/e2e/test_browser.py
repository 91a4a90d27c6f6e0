"""The web app in a real browser: Playwright driving Debian's Chromium (no browser download)
against the running dev node, signing with the dev accounts through the app's own wallet
picker.

Each test saves screenshots under tests/e2e/.artifacts/screenshots (and, with
SCREENSHOTS_DIR set, there too: `SCREENSHOTS_DIR=docs/screenshots scripts/test-e2e
tests/e2e/test_browser.py` refreshes the README's); a failing test saves the page's HTML and
its console log beside them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from web3 import Web3

from conftest import REPO_ROOT, launch, stop
from test_factory import CONTRIBUTOR, CURATOR, OWNER, STRANGER, cli
from test_keys import loaded  # noqa: F401  (`loaded` is a fixture: the API is up)
from test_validator import records
from test_web import open_or_wei

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO_ROOT / "tests/e2e/.artifacts"
# Flags for a sandboxed, offline machine: no background calls home, no GPU, no setuid sandbox
# (CI runs as root).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Signing, mining and the page's reload after each form.
ACTION_TIMEOUT_MS = 60_000

if CHROMIUM is None and os.environ.get("OPENLEDGER_REQUIRE_BROWSER"):
    raise RuntimeError("the browser tests need Chromium (apt-get install chromium)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/test installs it)")


@pytest.fixture(scope="module")
def node():
    """A node of the browser tests' own: what they contribute, pay, train and attribute stays
    out of the accounts and datanets of the other tests, which count exact payouts."""
    workdir = Path(tempfile.mkdtemp(prefix="openledger-browser-"))
    n = launch(workdir / "data", workdir / "node.log", workdir)
    try:
        yield n
    finally:
        stop(n)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def w3(node) -> Web3:
    return Web3(Web3.HTTPProvider(node.http_url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda m: console.append(f"{m.type}: {m.text} @ {m.location.get('url', '')}"))
    tab.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    tab.console = console
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        out = ARTIFACTS / "failures" / request.node.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "page.html").write_text(tab.content())
        (out / "console.log").write_text("\n".join(console))
        tab.screenshot(path=str(out / "page.png"), full_page=True)
    context.close()


def shot(tab, name: str) -> None:
    """Saves a screenshot of the whole page as NAME.png."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(path), full_page=True)
    if os.environ.get("SCREENSHOTS_DIR"):
        wanted = Path(os.environ["SCREENSHOTS_DIR"])
        wanted.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, wanted / path.name)


def stake_button(tab):
    """The stake form's button (not the stakes table's "Unstake" ones)."""
    return tab.get_by_role("button", name="Stake", exact=True)


def open_stake_form(tab, node, account, role: str) -> None:
    """The account's own address page, signed in, with the stake form open for `role`."""
    tab.goto(f"{node.api_url}/explorer/address/{account.address}")
    sign_as(tab, account)
    tab.click("text=Stake OPEN")
    tab.select_option("#stake-role", role)


def sign_as(tab, account) -> None:
    tab.select_option("#account", account.address)
    tab.wait_for_function("(a) => !document.getElementById('me').hidden", arg=account.address)


def wait_text(tab, text: str) -> None:
    """Waits until the page (reloaded by the form once mined) shows `text`."""
    tab.wait_for_function("(t) => document.body.innerText.includes(t)", arg=text, timeout=ACTION_TIMEOUT_MS)


def no_script_errors(tab, expected: tuple[str, ...] = ()) -> None:
    """No script failed and nothing failed to load, but the refusals the test asked for."""
    errors = [line for line in tab.console if line.startswith(("error", "pageerror"))
              and not any(e in line for e in expected)]
    assert not errors, errors


def test_a_datanet_is_created_contributed_reviewed_and_published_through_the_forms(node, loaded, page):
    tab = page
    tab.goto(f"{node.api_url}/datanets")
    sign_as(tab, OWNER)
    name = f"browser-vaults-{int(time.time() * 1000) % 10**8}"
    tab.click("text=Create a datanet")
    tab.fill("#new-name", name)
    tab.fill("#new-description", "Gates and vaults, contributed from a browser")
    tab.fill("#new-quorum", "1")
    tab.click("button:has-text('Create the datanet')")
    wait_text(tab, name)
    link = tab.locator(f"a:has-text('{name}')").first.get_attribute("href")
    datanet = int(link.rsplit("/", 1)[1])
    shot(tab, "datanets")

    # The curator stakes on it from its own address page.
    open_stake_form(tab, node, CURATOR, "curator")
    tab.fill("#stake-datanet", str(datanet))
    tab.fill("#stake-amount", "10")
    stake_button(tab).click()
    wait_text(tab, f"curator of datanet {datanet}")

    # A file that breaks the schema is refused with its reason, before anything is signed.
    tab.goto(f"{node.api_url}/datanets/{datanet}")
    sign_as(tab, CONTRIBUTOR)
    bad = json.dumps({"text": "no messages here"}) + "\n"
    tab.set_input_files("#contribute-file", files=[{"name": "bad.jsonl", "mimeType": "application/json", "buffer": bad.encode()}])
    tab.click("button:has-text('Check the file')")
    status = tab.locator("#contribute output.status")
    status.filter(has_text="refused").wait_for()
    assert "messages" in status.inner_text(), status.inner_text()

    # A good one: the report first, then the signed contribution.
    good = records(200, 12).encode()
    tab.set_input_files("#contribute-file", files=[{"name": "vaults.jsonl", "mimeType": "application/json", "buffer": good}])
    tab.click("button:has-text('Check the file')")
    tab.locator("#contribute .report").filter(has_text="Records: 12").wait_for()
    shot(tab, "contribute-report")
    tab.click("button:has-text('Sign and submit the contribution')")
    wait_text(tab, "1 (0 accepted, 1 pending review)")

    # Someone who is not a curator is refused, with the contract's error in words.
    row = tab.locator("form[data-prepare='/wallet/calls/review']").first
    row.locator("select[name=decision]").select_option("approve")
    row.locator("input[name=reason]").fill("looks fine")
    row.locator("input[name=reason]").press("Enter")
    row.locator("output.status").filter(has_text="the contract refused").wait_for()
    assert "not curator" in row.locator("output.status").inner_text()

    sign_as(tab, CURATOR)
    row.locator("input[name=reason]").fill("clean records")
    row.locator("button:has-text('Vote')").click()
    wait_text(tab, "1 (1 accepted, 0 pending review)")

    sign_as(tab, OWNER)
    tab.click("button:has-text('Publish a version')")
    wait_text(tab, "matches the accepted contributions")
    assert tab.locator("a:has-text('inclusion proof')").count() == 1
    shot(tab, "datanet")
    no_script_errors(tab, expected=("/uploads?",))  # the refused file


def test_a_stake_is_unstaked_and_shows_its_unbonding(node, loaded, page):
    tab = page
    open_stake_form(tab, node, CONTRIBUTOR, "validator")
    tab.fill("#stake-amount", "abc")
    stake_button(tab).click()
    refused = tab.locator("details output.status").filter(has_text="is not an amount of OPEN")
    refused.wait_for()
    # Under the validators' minimum: the contract's custom error, in words.
    tab.fill("#stake-amount", "3")
    stake_button(tab).click()
    tab.locator("details output.status").filter(has_text="the contract refused: insufficient stake").wait_for()
    tab.fill("#stake-amount", "100")
    stake_button(tab).click()
    stake = tab.locator("tr:has(td:text-is('validator'))")
    stake.wait_for()
    stake.locator("input[name=amount]").fill("100")
    stake.locator("button:has-text('Unstake')").click()
    wait_text(tab, "unbonding until")
    shot(tab, "address")
    no_script_errors(tab, expected=("/wallet/calls/stake",))  # the amount that is not one


def test_a_permissioned_datanet_is_asked_for_access_and_grants_it(node, loaded, page, w3):
    """The first test's datanet, made permissioned by its owner from its page; a stranger asks
    and pays the fee; the owner grants it."""
    registry_abi = json.loads((REPO_ROOT / "contracts/out/DatanetRegistry.json").read_text())["abi"]
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    registry = w3.eth.contract(address=Web3.to_checksum_address(addresses["datanetRegistry"]), abi=registry_abi)
    tab = page
    tab.goto(f"{node.api_url}/datanets")
    datanet = int(tab.locator("td a[href^='/datanets/']").first.get_attribute("href").rsplit("/", 1)[1])
    assert registry.functions.hasAccess(datanet, STRANGER.address).call()  # open so far
    tab.goto(f"{node.api_url}/datanets/{datanet}")
    sign_as(tab, OWNER)
    tab.click("text=Change who may train on it")
    tab.check("#policy-permissioned")
    tab.fill("#access-fee", "2")
    tab.click("button:has-text('Set the policy')")
    tab.locator("#access-policy").filter(has_text="A request pays 2 OPEN").wait_for()
    assert tab.locator("#request-access").is_hidden()  # the owner needs no access
    assert not registry.functions.hasAccess(datanet, STRANGER.address).call()

    sign_as(tab, STRANGER)
    before = w3.eth.get_balance(STRANGER.address)
    tab.click("button:has-text('Request access and pay 2 OPEN')")
    row = tab.locator(f"#access-accounts tr:has(a:text-is('{STRANGER.address}'))")
    row.filter(has_text="waiting").wait_for()
    assert before - w3.eth.get_balance(STRANGER.address) >= 2 * 10**18  # the fee, and gas
    assert tab.locator("#request-access").is_hidden()  # it already waits

    # Another account asks, then withdraws its request: the fee is owed back to it.
    sign_as(tab, CURATOR)
    tab.click("button:has-text('Request access and pay 2 OPEN')")
    mine = tab.locator(f"#access-accounts tr:has(a:text-is('{CURATOR.address}'))")
    mine.filter(has_text="waiting").wait_for()
    mine.locator("button:has-text('Withdraw my request')").click()
    tab.locator(f"#access-accounts tr:has(a:text-is('{CURATOR.address}'))").filter(has_text="withdrawn").wait_for()
    assert registry.functions.accessOf(datanet, CURATOR.address).call()[0] == 0

    from test_factory import ACCOUNTS
    turned_down = ACCOUNTS[7]
    sign_as(tab, turned_down)
    tab.click("button:has-text('Request access and pay 2 OPEN')")
    tab.locator(f"#access-accounts tr:has(a:text-is('{turned_down.address}'))").filter(has_text="waiting").wait_for()

    sign_as(tab, OWNER)
    row.locator("button:has-text('Grant')").click()
    tab.locator(f"#access-accounts tr:has(a:text-is('{STRANGER.address}'))").filter(has_text="granted").wait_for()
    assert registry.functions.hasAccess(datanet, STRANGER.address).call()
    denied = tab.locator(f"#access-accounts tr:has(a:text-is('{turned_down.address}'))")
    denied.locator("button:has-text('Turn down')").click()
    tab.locator(f"#access-accounts tr:has(a:text-is('{turned_down.address}'))").filter(has_text="turned down").wait_for()
    assert not registry.functions.hasAccess(datanet, turned_down.address).call()
    assert registry.functions.accessOf(datanet, turned_down.address).call()[0] == 0
    shot(tab, "datanet-access")
    no_script_errors(tab)


def test_every_page_renders_without_script_errors_and_fits_a_phone(node, loaded, page, w3):
    tab = page
    head = w3.eth.block_number
    tx = next(t for n in range(head, 0, -1) for t in w3.eth.get_block(n)["transactions"])
    pages = {
        "home": "/", "models": "/models", "agents": "/agents", "token": "/token",
        "explorer": "/explorer", "block": f"/explorer/blocks/{head}",
        "transaction": f"/explorer/tx/0x{bytes(tx).hex()}",
    }
    for name, path in pages.items():
        answer = tab.goto(f"{node.api_url}{path}")
        assert answer.status == 200, (path, answer.status)
        shot(tab, name)
    no_script_errors(tab)
    # A phone's width: nothing wider than the screen but the tables' own scrolling regions.
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.goto(f"{node.api_url}/datanets")
    sign_as(tab, OWNER)  # the forms show for a signed-in account: they must fit too
    first = tab.locator("td a[href^='/datanets/']").first.get_attribute("href")
    for path in ("/", "/datanets", first, "/token", "/governance", "/rewards", f"/rewards?address={OWNER.address}",
                 f"/explorer/address/{OWNER.address}"):
        tab.goto(f"{node.api_url}{path}")
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
    shot(tab, "phone-address")
    # The keyboard reaches the wallet picker from the top of the page.
    tab.goto(f"{node.api_url}/")
    for _ in range(20):
        tab.keyboard.press("Tab")
        if tab.evaluate("document.activeElement.id") == "account":
            break
    else:
        pytest.fail("the wallet picker is not reachable by keyboard")
    assert re.search(r"Chain \d+", tab.inner_text("footer"))


def test_keccak_in_the_page_matches_web3(node, loaded, page):
    page.goto(f"{node.api_url}/")
    lengths = [0, 1, 135, 136, 137, 272, 1000]
    hashes = page.evaluate("""(lengths) => import('/assets/keccak.js').then(
        (m) => lengths.map((n) => m.keccak256(new Uint8Array(n).map((_, i) => i % 251))))""", lengths)
    for n, got in zip(lengths, hashes):
        assert got == "0x" + Web3.keccak(bytes(i % 251 for i in range(n))).hex().removeprefix("0x"), n
    # In pieces that split blocks anywhere, as a file is read, and through the page's hashing
    # worker over a file of two 4 MiB chunks and an odd remainder.
    size = (9 << 20) + 17
    want = "0x" + Web3.keccak(bytes(i % 251 for i in range(size))).hex().removeprefix("0x")
    pieces, hashed = page.evaluate("""(size) => import('/assets/keccak.js').then(async (m) => {
        const bytes = new Uint8Array(size).map((_, i) => i % 251);
        const h = new m.Keccak256();
        let at = 0;
        for (const n of [1, 135, 136, 7, 300, 4 << 20]) { h.update(bytes.subarray(at, at + n)); at += n; }
        h.update(bytes.subarray(at));
        const worker = new Worker('/assets/hash-worker.js', { type: 'module' });
        const hashed = await new Promise((resolve) => {
            worker.onmessage = ({ data }) => { if (data.hash || data.error) resolve(data.hash || data.error); };
            worker.postMessage(new File([bytes], 'records.jsonl'));
        });
        return [h.digest(), hashed];
    })""", size)
    assert pieces == want and hashed == want, (pieces, hashed, want)


def test_the_dev_wallet_signs_only_for_this_nodes_pages_and_contracts(node, loaded):
    import urllib.error
    import urllib.request

    def dev(body, headers=None):
        request = urllib.request.Request(f"{node.api_url}/wallet/dev", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    accounts = {"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}
    status, answer = dev(accounts)
    assert status == 200 and OWNER.address.lower() in answer["result"], answer
    assert dev(accounts, {"content-type": "text/plain"})[0] == 415
    assert dev(accounts, {"origin": "http://attacker.example"})[0] == 403
    host = node.api_url.split("//", 1)[1]
    assert dev(accounts, {"host": f"rebound.example:{host.rsplit(':', 1)[1]}"})[0] == 403
    # Value goes only to the protocol's contracts; only a sign-in to this host is signed.
    send = {"jsonrpc": "2.0", "id": 2, "method": "eth_sendTransaction",
            "params": [{"from": OWNER.address, "to": STRANGER.address, "value": hex(10**18)}]}
    status, answer = dev(send)
    assert "only to the protocol's contracts" in answer["error"]["message"], answer
    sign = {"jsonrpc": "2.0", "id": 3, "method": "personal_sign",
            "params": ["0x" + b"transfer everything".hex(), OWNER.address]}
    status, answer = dev(sign)
    assert "only a sign-in" in answer["error"]["message"], answer


# A browser wallet the page sees as window.ethereum, answering from Python: it records what the
# app asks, refuses to switch to an unknown chain (4902) until the app adds it, and signs typed
# data and transactions with STRANGER's key, as MetaMask would.
FAKE_WALLET = """
window.ethereum = {
  async request({ method, params }) {
    const answer = JSON.parse(await window.pyWallet(method, params || []));
    if (answer && answer.error) throw Object.assign(new Error(answer.error.message), answer.error);
    return answer;
  },
  on() {},
};
"""


def test_a_browser_wallet_is_asked_to_add_the_chain_and_signs_a_contribution(node, loaded, page, w3, tmp_path):
    from eth_account import Account
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["messages"]}))
    datanet = int(cli(node, "datanet", "create", "--name", "wallet-vaults", "--schema", str(schema), key=OWNER).strip())
    chain_id = w3.eth.chain_id
    asked: list[tuple[str, list]] = []
    added: list[dict] = []

    def wallet(method, params):
        asked.append((method, params))
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [STRANGER.address]
        if method == "eth_chainId":
            return hex(chain_id) if added else "0x1"
        if method == "wallet_switchEthereumChain":
            return None if added else {"error": {"code": 4902, "message": "unknown chain"}}
        if method == "wallet_addEthereumChain":
            added.append(params[0])
            return None
        if method == "eth_signTypedData_v4":
            typed = json.loads(params[1])
            return "0x" + Account.sign_typed_data(STRANGER.key, full_message=typed).signature.hex().removeprefix("0x")
        if method == "eth_sendTransaction":
            p = params[0]
            tx = {"from": STRANGER.address, "to": Web3.to_checksum_address(p["to"]), "data": p["data"],
                  "value": int(p.get("value", "0x0"), 16), "chainId": chain_id,
                  "nonce": w3.eth.get_transaction_count(STRANGER.address, "pending")}
            tx["gas"] = w3.eth.estimate_gas(tx) * 2
            tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = w3.eth.gas_price * 2, 1
            raw = Account.sign_transaction(tx, STRANGER.key).raw_transaction
            return "0x" + w3.eth.send_raw_transaction(raw).hex().removeprefix("0x")
        if method == "eth_getTransactionReceipt":
            try:
                r = w3.eth.get_transaction_receipt(params[0])
            except Exception:  # not mined yet
                return None
            return {"status": hex(r["status"]), "blockNumber": hex(r["blockNumber"])}
        return {"error": {"code": 4200, "message": f"unsupported {method}"}}

    tab = page
    tab.expose_function("pyWallet", lambda method, params: json.dumps(wallet(method, params)))
    tab.add_init_script(FAKE_WALLET)
    # The node's index follows the chain every two seconds.
    deadline = time.monotonic() + 30
    while tab.goto(f"{node.api_url}/datanets/{datanet}").status != 200:
        assert time.monotonic() < deadline, tab.content()
        time.sleep(0.3)
    tab.console.clear()  # the 404s of the pages asked before the index had it
    tab.select_option("#account", "browser")
    tab.wait_for_function("() => !document.getElementById('me').hidden")
    assert added and added[0]["chainId"] == hex(chain_id), added
    assert added[0]["nativeCurrency"]["symbol"] == "OPEN"
    assert added[0]["rpcUrls"] == [node.http_url.rstrip("/")], (added, node.http_url)

    tab.set_input_files("#contribute-file", files=[{"name": "vaults.jsonl", "mimeType": "application/json",
                                                    "buffer": records(300, 6).encode()}])
    tab.click("button:has-text('Check the file')")
    tab.locator("#contribute .report").filter(has_text="Records: 6").wait_for()
    tab.click("button:has-text('Sign and submit the contribution')")
    wait_text(tab, "1 (0 accepted, 1 pending review)")
    assert STRANGER.address in tab.inner_text("body")
    signed = [m for m, _ in asked]
    assert signed.count("eth_signTypedData_v4") == 2 and "eth_sendTransaction" in signed, signed
    # The choice survives the reload without a pop-up: eth_accounts, never eth_requestAccounts.
    assert signed.count("eth_requestAccounts") == 1, signed
    shot(tab, "browser-wallet")
    no_script_errors(tab)


def test_the_playground_answers_an_agent_with_its_cost_and_attribution(node, loaded, page, w3, tmp_path):
    from test_factory import ACCOUNTS
    from test_validator import QUESTION, trained_agent
    model, agent_id, _adapter, _version, contributions = trained_agent(node, w3, tmp_path)
    consumer = ACCOUNTS[6]
    tab = page
    tab.goto(f"{node.api_url}/agents/{agent_id}")
    assert tab.locator("#chat").is_hidden()  # nobody signs yet
    sign_as(tab, consumer)
    tab.click("text=Add credit and let this agent's host use it")
    tab.fill("#credit-amount", "1")
    tab.click("button:has-text('Deposit and authorise')")
    tab.locator("#credit output.status").filter(has_text="deposited").wait_for()

    tab.fill("#chat-prompt", QUESTION)
    tab.click("#chat button")
    chat_status = tab.locator("#chat output.status")
    chat_status.filter(has_text="Answered").wait_for(timeout=180_000)
    cost = tab.locator(".turn .cost").first.inner_text()
    shown = re.search(r"(\d+) tokens in, (\d+) out: ([0-9.]+ OPEN|[1-9]\d* wei of OPEN) \(receipt \d+\)", cost)
    assert shown, cost
    # What the answer cost, by the agent's prices and its tokens.
    from test_paid import fee
    wei = fee(int(shown.group(1)), int(shown.group(2)))
    assert shown.group(3) == (f"{wei} wei of OPEN" if wei < 10**12 else f"{wei / 10**18:g} OPEN"), (cost, wei)
    chat_status.filter(has_text="attributed").wait_for(timeout=180_000)
    assert "Answered and attributed" in chat_status.inner_text(), chat_status.inner_text()

    # The panel: the contributions credited, and a highlighted passage that shows its sources.
    credited = tab.locator("#credited tr")
    assert credited.count() >= 1
    shown = {int(credited.nth(i).locator("td").first.inner_text()) for i in range(credited.count())}
    assert shown <= set(contributions), (shown, contributions)
    passage = tab.locator("#attributed-answer button.span").first
    passage.click()
    assert passage.get_attribute("aria-pressed") == "true"
    detail = tab.locator("#span-detail").inner_text()
    assert "occurs" in detail and "contribution" in detail, detail
    shot(tab, "playground")
    no_script_errors(tab)


def test_rewards_show_earnings_by_role_and_are_claimed_from_the_rewards_page(node, loaded, page, w3):
    """After the playground's paid answer: its batch settles, the challenge window passes, the
    batch is released, and the adapter's owner sees its share and claims it."""
    from test_factory import PAYER
    from test_paid import SETTLEMENT_ABI
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]),
                                 abi=SETTLEMENT_ABI)
    deadline = time.monotonic() + 120
    while settlement.functions.claimable(PAYER.address).call() == 0:
        assert time.monotonic() < deadline, "the playground's batch was never released"
        w3.provider.make_request("evm_increaseTime", [601])
        w3.provider.make_request("evm_mine", [])
        time.sleep(1)
    owed = settlement.functions.claimable(PAYER.address).call()
    tab = page
    tab.goto(f"{node.api_url}/rewards")
    sign_as(tab, PAYER)
    # The signer's own address is filled in.
    assert tab.input_value("#rewards-address").lower() == PAYER.address.lower()
    tab.click("button:has-text('Show')")
    # Its only earnings are the adapter owner's share of the playground's batch: the page's
    # figures are that share, as the settlement's payouts event lists it.
    owner_share = sum(o["amount"] for e in settlement.events.BatchPayouts().get_logs(from_block=0)
                      for o in e["args"]["owners"] if o["owner"] == PAYER.address)
    assert owner_share == owed
    model_owner = tab.locator("#earnings tr:has(td:text-is('model owner')) td").nth(2).inner_text()
    assert model_owner == open_or_wei(owed), (model_owner, owed)
    assert tab.inner_text("#claimable").startswith(open_or_wei(owed))
    assert tab.locator("#payouts tr:has(td:text-is('model owner'))").count() >= 1
    tab.click("#claimable button:has-text('Claim')")
    wait_text(tab, "Claimable now\n0 OPEN")
    tab.wait_for_load_state()  # the page reloads once the claim is mined
    shot(tab, "rewards")
    assert settlement.functions.claimable(PAYER.address).call() == 0
    claimed = settlement.events.Claimed().get_logs(from_block=0, argument_filters={"account": PAYER.address})
    assert [e["args"]["amount"] for e in claimed] == [owed]
    assert tab.locator("#claims tbody tr").count() == 1
    no_script_errors(tab)


def test_a_job_is_planned_paid_charted_evaluated_and_published_from_the_factory_pages(node, loaded, page, w3, tmp_path):
    from test_factory import PAYER
    from test_validator import two_contribution_version
    datanet, version, _ = two_contribution_version(node, tmp_path)
    tab = page
    deadline = time.monotonic() + 30
    option = f"datanet:{datanet}@{version}"
    while True:  # the node's index follows the chain every two seconds
        tab.goto(f"{node.api_url}/factory")
        if tab.locator(f"#job-version option[value='{option}']").count():
            break
        assert time.monotonic() < deadline, tab.content()
        time.sleep(0.3)
    sign_as(tab, PAYER)
    tab.select_option("#job-version", option)
    for field, value in (("#job-epochs", "1"), ("#job-eval", "2"), ("#job-compare", "1"), ("#job-eval-tokens", "12")):
        tab.fill(field, value)
    tab.click("button:has-text('Check the data and plan the job')")
    tab.wait_for_url(re.compile(r".*/factory/jobs/ftjob-\d+$"))
    job = tab.url.rsplit("/", 1)[1]

    # The plan and the fee first, then the payment from the signer's account.
    tab.locator("#job-pay").wait_for(state="visible")
    plan = tab.inner_text("#job-plan")
    assert re.search(r"Planned: 24 examples, \d+ tokens .*\d+ training steps, about \d+ s\. The fee is 1 OPEN", plan), plan
    tab.click("#pay")
    tab.locator("#job-pay output.status").filter(has_text="Paid").wait_for()
    tab.locator("#job-facts").filter(has_text="succeeded").wait_for(timeout=600_000)
    assert tab.locator("#loss-chart polyline.line").count() == 1
    assert "training loss" in tab.inner_text("#loss-caption")
    tab.locator("#evaluation").wait_for(state="visible")
    assert tab.locator("#comparisons tr").count() == 1
    assert "→" in tab.inner_text("#evaluation-facts")

    # A reload replays the history: the chart is whole again.
    caption = tab.inner_text("#loss-caption")
    tab.reload()
    tab.locator("#loss-caption").filter(has_text=caption).wait_for()
    shot(tab, "factory-job")

    tab.click("#publish")
    tab.locator("#job-publish output.status").filter(has_text="See it among the models").wait_for(timeout=120_000)
    listed = tab.goto(f"{node.api_url}/factory")
    assert listed.status == 200
    tab.locator("#jobs").filter(has_text=job).wait_for()
    shot(tab, "factory")
    no_script_errors(tab)


def test_an_agent_is_deployed_from_the_agents_page_and_served_once_its_host_accepts(node, loaded, page, w3):
    """On the adapter the factory test published (PAYER owns it)."""
    from test_factory import PAYER
    from test_paid import HOST, MODELS_ABI, wait_listed
    addresses = json.loads((node.data_dir / "protocol.json").read_text())
    models = w3.eth.contract(address=Web3.to_checksum_address(addresses["modelRegistry"]), abi=MODELS_ABI)
    adapter = models.functions.counts().call()[1]
    assert models.functions.adapter(adapter).call()[0][0] == PAYER.address
    tab = page
    tab.goto(f"{node.api_url}/agents")
    sign_as(tab, PAYER)
    tab.click("text=Deploy an agent")
    assert tab.input_value("#agent-host") == HOST.address  # the dev node's own host
    tab.fill("#agent-adapter", str(adapter))
    tab.fill("#agent-name", "vault-guide")
    tab.fill("#agent-description", "Answers about gates and vaults")
    tab.fill("#agent-prompt", "Answer briefly.")
    tab.fill("#agent-temperature", "7")  # refused by field, nothing sent
    tab.click("#deploy-agent button:has-text('Deploy')")
    tab.locator("#deploy-agent output.status").filter(has_text="temperature: between 0 and 2").wait_for()
    tab.fill("#agent-temperature", "0")
    tab.click("#deploy-agent button:has-text('Deploy')")
    row = tab.locator("tr:has(td:text-is('vault-guide'))")
    row.filter(has_text="waiting for its host").wait_for()
    agent_id = models.functions.counts().call()[2]
    assert models.functions.agent(agent_id).call()[0] == HOST.address

    # Its host accepts it from the agent's page (the dev node signs for its own host too).
    tab.goto(f"{node.api_url}/agents/{agent_id}")
    assert tab.locator("#waiting").count() == 1
    sign_as(tab, HOST)
    tab.click("button:has-text('Accept and serve it')")
    tab.locator("dl.facts").filter(has_text="active").wait_for()
    assert models.functions.agent(agent_id).call()[3]  # accepted, on chain
    wait_listed(node, f"agent-{agent_id}")
    shot(tab, "agent-deployed")
    assert tab.locator("#waiting").count() == 0
    no_script_errors(tab, expected=("/wallet/calls/agent",))  # the wild temperature


def test_a_proposal_is_made_voted_queued_and_executed_from_the_governance_pages(node, loaded, page, w3):
    """Last in this module: the passed proposal changes a protocol setting."""
    from test_factory import ACCOUNTS
    voter = ACCOUNTS[8]

    def wait_seconds(seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])
        w3.provider.make_request("evm_mine", [])

    tab = page
    open_stake_form(tab, node, voter, "validator")
    tab.fill("#stake-amount", "500")
    stake_button(tab).click()
    tab.locator("tr:has(td:text-is('validator'))").wait_for()
    wait_seconds(2)  # voting power counts from the second after the stake

    tab.goto(f"{node.api_url}/governance")
    assert "Unbonding delay\n1200 s" in tab.inner_text("dl.facts")
    tab.click("text=Propose a change")
    tab.fill("#proposal-description", "Unbond over 25 minutes\n\nMore time to catch misbehaviour before a stake leaves.")
    tab.fill("#fee-contributors", "5000")  # half a fee split: refused by field, nothing sent
    tab.click("button:has-text('Propose')")
    status = tab.locator("form[data-prepare='/wallet/calls/propose'] output.status")
    status.filter(has_text="fee_curators: a new fee split needs all five shares").wait_for()
    tab.fill("#fee-contributors", "")
    tab.fill("#unbonding-delay", "1500")
    tab.click("button:has-text('Propose')")
    tab.locator("table a:has-text('Unbond over 25 minutes')").wait_for()
    tab.click("table a:has-text('Unbond over 25 minutes')")
    assert "set the unbonding delay to 1500 s" in tab.inner_text("#proposal-actions")

    wait_seconds(2)  # past the voting delay
    tab.reload()
    assert tab.inner_text("#proposal-state") == "active"
    tab.check("#support-for")
    tab.fill("#vote-reason", "Worth the wait.")
    tab.click("#vote button:has-text('Vote')")
    tab.locator("#proposal-votes").filter(has_text="for 500").wait_for()
    shot(tab, "proposal")

    wait_seconds(91)  # past the vote and any late-quorum extension
    tab.reload()
    assert tab.inner_text("#proposal-state") == "succeeded"
    tab.click("button:has-text('Queue')")
    tab.locator("#proposal-state").filter(has_text="queued").wait_for()
    wait_seconds(61)  # past the timelock's delay
    tab.reload()
    tab.click("button:has-text('Execute')")
    tab.locator("#proposal-state").filter(has_text="executed").wait_for()

    tab.goto(f"{node.api_url}/governance")
    assert "Unbonding delay\n1500 s" in tab.inner_text("dl.facts")
    assert "executed" in tab.inner_text("table")
    shot(tab, "governance")
    no_script_errors(tab, expected=("/wallet/calls/propose",))  # the half fee split
