"""API keys bound to on-chain accounts, through the real node: an account signs in with
Sign-In with Ethereum (EIP-4361, signed by eth_account as a wallet signs it), gets a key, uses
it with the official `openai` client, makes and lists keys, and a revoked key stops working at
once. Bad sign-ins are refused with OpenAI-shaped errors that say why.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request

import openai
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from openai import OpenAI

BASE = "SmolLM2-135M-Instruct"
LOAD_TIMEOUT_S = 180


def call(method: str, url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def siwe(domain: str, address: str, nonce: str, chain_id: int) -> str:
    issued = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{domain} wants you to sign in with your Ethereum account:\n{address}\n\n"
        f"Get an OpenLedger API key.\n\nURI: http://{domain}\nVersion: 1\nChain ID: {chain_id}\n"
        f"Nonce: {nonce}\nIssued At: {issued}"
    )


def sign_in(node, account, **limits) -> tuple[int, dict]:
    status, n = call("POST", f"{node.api_url}/v1/auth/nonce", {})
    assert status == 200, n
    message = siwe(n["domain"], account.address, n["nonce"], n["chain_id"])
    signature = account.sign_message(encode_defunct(text=message)).signature.hex()
    return call("POST", f"{node.api_url}/v1/auth/login",
                {"message": message, "signature": signature, **limits})


@pytest.fixture(scope="module")
def loaded(node):
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{node.api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return node
        except Exception:  # still loading (503) or not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the model did not load within {LOAD_TIMEOUT_S}s:\n{node.log_tail()}")
        time.sleep(0.5)


def ask(node, key: str) -> str:
    client = OpenAI(base_url=f"{node.api_url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)
    return answer.choices[0].message.content


def test_a_signed_in_account_gets_keys_that_work_until_revoked(loaded):
    node = loaded
    account = Account.create()
    status, issued = sign_in(node, account, label="e2e")
    assert status == 200, issued
    key = issued["key"]
    assert key.startswith("olk_")
    assert issued["account"].lower() == account.address.lower()
    assert issued["spend_limit"] is None and issued["spent"] == "0"
    assert ask(node, key)

    # A second key, made with the first; listed with the first, never with a secret.
    status, second = call("POST", f"{node.api_url}/v1/keys",
                          {"label": "ci", "rate_per_minute": 30, "spend_limit": "1000000000000000000"}, key)
    assert status == 200, second
    assert second["spend_limit"] == "1000000000000000000"
    # A key with limits cannot make keys (it could make itself an unlimited one) nor revoke any.
    status, body = call("POST", f"{node.api_url}/v1/keys", {"label": "escape"}, second["key"])
    assert status == 403 and body["error"]["type"] == "permission_error", body
    status, body = call("DELETE", f"{node.api_url}/v1/keys/{issued['id']}", key=second["key"])
    assert status == 403, body
    status, listed = call("GET", f"{node.api_url}/v1/keys", key=key)
    assert status == 200
    assert [k["label"] for k in listed["data"]] == ["e2e", "ci"]
    assert all("key" not in k for k in listed["data"])
    assert ask(node, second["key"])

    # Revoked, the second key is refused at once; the first still works.
    status, revoked = call("DELETE", f"{node.api_url}/v1/keys/{second['id']}", key=key)
    assert status == 200 and revoked["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(node, second["key"])
    assert "revoked" in str(refused.value)
    assert ask(node, key)

    # Another account can neither see nor revoke these keys.
    status, stranger = sign_in(node, Account.create())
    assert status == 200
    status, body = call("DELETE", f"{node.api_url}/v1/keys/{issued['id']}", key=stranger["key"])
    assert status == 404 and body["error"]["param"] == "id"
    status, listed = call("GET", f"{node.api_url}/v1/keys", key=stranger["key"])
    assert [k["id"] for k in listed["data"]] == [stranger["id"]]


def test_bad_sign_ins_and_unknown_keys_are_refused_with_their_reason(loaded):
    node = loaded
    account, thief = Account.create(), Account.create()
    status, n = call("POST", f"{node.api_url}/v1/auth/nonce", {})
    message = siwe(n["domain"], account.address, n["nonce"], n["chain_id"])
    # Signed by someone else.
    forged = thief.sign_message(encode_defunct(text=message)).signature.hex()
    status, body = call("POST", f"{node.api_url}/v1/auth/login", {"message": message, "signature": forged})
    assert status == 401 and "signed by" in body["error"]["message"], body
    # For another chain or another server.
    for wrong in (message.replace(f"Chain ID: {n['chain_id']}", "Chain ID: 1"),
                  message.replace(n["domain"], "evil.example", 1)):
        signature = account.sign_message(encode_defunct(text=wrong)).signature.hex()
        status, body = call("POST", f"{node.api_url}/v1/auth/login", {"message": wrong, "signature": signature})
        assert status == 401, body
    # The genuine message still works once (refusals above kept its nonce), then never again.
    signature = account.sign_message(encode_defunct(text=message)).signature.hex()
    status, body = call("POST", f"{node.api_url}/v1/auth/login", {"message": message, "signature": signature})
    assert status == 200, body
    status, body = call("POST", f"{node.api_url}/v1/auth/login", {"message": message, "signature": signature})
    assert status == 401 and "nonce" in body["error"]["message"]
    # A made-up key is refused even on a dev node, whose inference is otherwise open.
    with pytest.raises(openai.AuthenticationError):
        ask(node, "olk_" + "00" * 24)
    status, body = call("GET", f"{node.api_url}/v1/keys")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
