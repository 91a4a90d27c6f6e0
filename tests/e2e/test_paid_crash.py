"""`kill -9` during a stream of paid requests, on a node of its own: every answer that finished
has its receipt after the restart, none is billed twice (one receipt per request at most, their
sequence numbers 1, 2, 3, … without a gap or a repeat), and the restarted node settles each
receipt once: the consumer's credit falls by exactly their fees.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from openai import OpenAI
from web3 import Web3

from conftest import REPO_ROOT, launch, stop
from test_paid import deploy_agent, paying_consumer, wait_receipts
from test_keys import call

REQUESTS = 8
LOAD_TIMEOUT_S = 180


def wait_loaded(node):
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{node.api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # still loading, or not listening yet
            pass
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.3)


def test_kill_9_during_paid_streams_loses_no_receipt_and_bills_none_twice(tmp_path):
    data, log = tmp_path / "data", tmp_path / "node.log"
    node = launch(data, log, tmp_path)
    finished: list[bool] = []
    try:
        w3 = Web3(Web3.HTTPProvider(node.http_url, request_kwargs={"timeout": 30}))
        wait_loaded(node)
        model, _, _ = deploy_agent(node, w3, tmp_path)
        consumer, issued = paying_consumer(node, w3)
        key = issued["key"]

        def ask(i: int) -> None:
            done = False
            try:
                client = OpenAI(base_url=f"{node.api_url}/v1", api_key=key, max_retries=0, timeout=120)
                stream = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"Count to {i + 3}."}],
                    # Two short answers finish; the long ones are mid-stream at the kill.
                    max_tokens=8 if i < 2 else 400, stream=True, extra_body={"ignore_eos": True})
                for chunk in stream:
                    # The chunk with a finish reason is sent only after the receipt is written.
                    done = done or any(c.finish_reason for c in chunk.choices)
            except Exception:  # the node was killed under it
                pass
            finished.append(done)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(REQUESTS)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        deadline = time.monotonic() + 120
        while sum(finished) < 2:
            assert time.monotonic() < deadline, "no answer finished"
            time.sleep(0.05)
        node.process.kill()  # kill -9, mid-stream for the others
        node.process.wait(timeout=10)
        for t in threads:
            t.join(timeout=60)
    finally:
        if node.process.poll() is None:
            node.process.kill()
    assert len(finished) == REQUESTS
    completed = sum(finished)
    assert 2 <= completed < REQUESTS, f"{completed} of {REQUESTS} finished: the kill came too late"

    node = launch(data, log, tmp_path)
    try:
        # JSON-RPC answers first; the API port opens a moment later.
        wait_loaded(node)
        status, body = call("GET", f"{node.api_url}/v1/receipts?limit=100", key=key)
        assert status == 200, body
        receipts = body["data"]
        # Every finished answer kept its receipt; no request has two.
        assert completed <= len(receipts) <= REQUESTS
        assert sorted(r["seq"] for r in receipts) == list(range(1, len(receipts) + 1))
        # The restarted node settles each once: the credit falls by exactly their fees.
        settled = wait_receipts(node, key, lambda r: r["batch"] is not None)
        assert len(settled) == len(receipts)
        w3 = Web3(Web3.HTTPProvider(node.http_url, request_kwargs={"timeout": 30}))
        addresses = json.loads((data / "protocol.json").read_text())
        abi = json.loads((REPO_ROOT / "contracts/out/InferenceSettlement.json").read_text())["abi"]
        settlement = w3.eth.contract(address=Web3.to_checksum_address(addresses["inferenceSettlement"]), abi=abi)
        total = sum(int(r["fee"]) for r in receipts)
        assert settlement.functions.creditOf(consumer.address).call() == 10**17 - total
    finally:
        stop(node)
