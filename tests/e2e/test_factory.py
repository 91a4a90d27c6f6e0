"""Fine-tuning through the official `openai` Python client against a running dev node.

The datanet is built with the `openledger datanet` command line (create, contribute, review,
publish); the job fee and datanet access are paid on chain with web3.py; everything about jobs
goes through `openai.OpenAI` pointed at the node's REST API, unchanged.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account
from openai import OpenAI
from web3 import Web3

from conftest import REPO_ROOT, node_binary

MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()
ACCOUNTS = [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(9)]
OWNER, CONTRIBUTOR, CURATOR, PAYER, STRANGER = (ACCOUNTS[i] for i in (0, 2, 3, 4, 5))
ESCROW_ABI = json.loads((REPO_ROOT / "contracts/out/ModelFactory.json").read_text())["abi"]
REGISTRY_ABI = json.loads((REPO_ROOT / "contracts/out/DatanetRegistry.json").read_text())["abi"]
# Small settings so that a job takes seconds on two cores.
QUICK = {"n_epochs": 1, "eval_samples": 2, "compare_samples": 1, "eval_max_tokens": 12}
JOB_TIMEOUT_S = 600


def cli(node, *args: str, key=None) -> str:
    cmd = [str(node_binary()), *args[:1], "--rpc-url", node.http_url]
    if args[0] == "datanet":
        cmd += ["--api-url", node.api_url]
    else:
        cmd += ["--addresses", str(node.data_dir / "protocol.json")]
    if key is not None:
        cmd += ["--key", key.key.hex()]
    cmd += list(args[1:])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed: {done.stderr}"
    return done.stdout


def chat_records(n: int, salt: str) -> str:
    lines = []
    for i in range(n):
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"What is the {salt} code word for item {i}?"},
            {"role": "assistant", "content": f"The {salt} code word for item {i} is zorblax-{i * 7}."},
        ]}))
    return "\n".join(lines) + "\n"


def published_datanet(node, tmp_path: Path, salt: str) -> tuple[int, int]:
    """A datanet of chat records with one accepted contribution and a published version."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["messages"]}))
    datanet = int(cli(node, "datanet", "create", "--name", salt, "--schema", str(schema),
                      "--fee", "0.1", key=OWNER).strip())
    cli(node, "stake", "add", "curator", "--datanet", str(datanet), "--amount", "10", key=CURATOR)
    data = tmp_path / f"{salt}.jsonl"
    data.write_text(chat_records(24, salt))
    contribution = cli(node, "datanet", "contribute", str(datanet), str(data), key=CONTRIBUTOR)
    cli(node, "datanet", "review", contribution.strip(), "approve", "--reason", "ok", key=CURATOR)
    published = cli(node, "datanet", "publish", str(datanet), key=OWNER)
    version = int(published.split()[1])
    return datanet, version


def send(w3: Web3, account, call, value: int = 0):
    tx = call.build_transaction({
        "from": account.address,
        "value": value,
        "nonce": w3.eth.get_transaction_count(account.address),
    })
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1
    return receipt


def pay(w3: Web3, job, account):
    """Funds the job's key in the escrow with the operator's fee."""
    p = job.model_extra["payment"]
    escrow = w3.eth.contract(address=Web3.to_checksum_address(p["escrow"]), abi=ESCROW_ABI)
    call = escrow.functions.fund(Web3.to_checksum_address(p["operator"]), bytes.fromhex(p["job_key"][2:]))
    send(w3, account, call, int(p["fee"]))
    return escrow


def wait_for(client: OpenAI, job_id: str, statuses: set[str]):
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} is still {job.status}"
        time.sleep(0.5)


def stream_events(api_url: str, job_id: str) -> list[dict]:
    """Every event of a job as server-sent events, until the stream ends with [DONE]."""
    events = []
    url = f"{api_url}/v1/fine_tuning/jobs/{job_id}/events?stream=true"
    with urllib.request.urlopen(url, timeout=JOB_TIMEOUT_S) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return events
            events.append(json.loads(data))
    raise AssertionError("the event stream ended without [DONE]")


@pytest.fixture(scope="module")
def client(node) -> OpenAI:
    # The REST API comes up once the dev node has deployed the protocol.
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{node.api_url}/api/info", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, f"the REST API never answered:\n{node.log_tail()}"
            time.sleep(0.2)
    return OpenAI(base_url=f"{node.api_url}/v1", api_key="dev-mode-needs-no-key")


def test_a_job_on_a_datanet_version_through_the_openai_client(node, w3, client, tmp_path):
    datanet, version = published_datanet(node, tmp_path, "alpha")
    job = client.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct",
        training_file=f"datanet:{datanet}@{version}",
        suffix="codes",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": QUICK}},
    )
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-")
    assert job.status == "validating_files"
    assert job.training_file == f"datanet:{datanet}@{version}"
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=10)]
    assert job.id in listed
    pay(w3, job, PAYER)
    events = stream_events(node.api_url, job.id)
    messages = [e["message"] for e in events]
    assert any(m.startswith("Files validated: 24 examples") for m in messages), messages
    metrics = [e["data"] for e in events if e["type"] == "metrics" and "train_loss" in e["data"]]
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    for m in metrics:
        assert m["tokens_per_second"] > 0 and m["learning_rate"] > 0 and m["eta_seconds"] >= 0
    assert events[-1]["data"]["status"] == "succeeded"

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"
    assert done.fine_tuned_model == f"ft:SmolLM2-135M-Instruct:codes:{job.id}"
    assert done.trained_tokens > 0 and done.seed == 7
    evaluation = done.model_extra["evaluation"]
    assert evaluation["eval_loss"] < evaluation["eval_loss_before"]
    assert 0.0 <= evaluation["rouge_l"] <= 1.0 and evaluation["rouge_l_samples"] == 2
    side_by_side = evaluation["comparisons"][0]
    assert side_by_side["base"] and side_by_side["tuned"] and side_by_side["reference"]
    assert done.model_extra["datanet_versions"] == [version]
    assert done.model_extra["payment"]["payer"].lower() == PAYER.address.lower()

    # The listing pages newest first, and the event log is the stream's, newest first.
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert [e.message for e in page.data] == list(reversed(messages[-3:]))
    assert page.has_more
    older = client.fine_tuning.jobs.list_events(job.id, limit=100, after=page.data[-1].id)
    assert [e.message for e in older.data] == list(reversed(messages[:-3]))
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].step_number == done.model_extra["plan"]["total_steps"]
    # The operator was paid through the escrow.
    escrow = w3.eth.contract(address=Web3.to_checksum_address(done.model_extra["payment"]["escrow"]),
                             abi=ESCROW_ABI)
    state = escrow.functions.job(Web3.to_checksum_address(done.model_extra["payment"]["operator"]),
                                 bytes.fromhex(done.model_extra["payment"]["job_key"][2:])).call()
    assert state[1] == 3  # Completed


def test_an_uploaded_file_trains_and_bad_requests_name_their_parameter(node, w3, client, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(chat_records(12, "upload"))
    with path.open("rb") as f:
        uploaded = client.files.create(file=f, purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.bytes == path.stat().st_size
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with bad.open("rb") as f, pytest.raises(Exception) as refused:
        client.files.create(file=f, purpose="fine-tune")
    assert "line 2" in str(refused.value)
    with pytest.raises(Exception) as refused:
        client.fine_tuning.jobs.create(
            model="SmolLM2-135M-Instruct", training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"lora_rank": 0}}})
    assert "lora_rank" in str(refused.value)
    with pytest.raises(Exception) as refused:
        client.fine_tuning.jobs.retrieve("ftjob-99999")
    assert getattr(refused.value, "status_code", None) == 404

    job = client.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct", training_file=uploaded.id,
        method={"type": "supervised", "supervised": {"hyperparameters": QUICK}})
    pay(w3, job, PAYER)
    done = wait_for(client, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error


def test_a_permissioned_datanet_needs_a_grant_and_a_refused_job_is_refunded(
        node, w3, client, tmp_path):
    datanet, version = published_datanet(node, tmp_path, "gated")
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(
            json.loads((node.data_dir / "protocol.json").read_text())["datanetRegistry"]),
        abi=REGISTRY_ABI)
    access_fee = Web3.to_wei(2, "ether")
    send(w3, OWNER, registry.functions.setAccessPolicy(datanet, True, access_fee))

    hyper = {"type": "supervised", "supervised": {"hyperparameters": QUICK}}
    refused = client.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct", training_file=f"datanet:{datanet}@{version}", method=hyper)
    escrow = pay(w3, refused, STRANGER)
    failed = wait_for(client, refused.id, {"succeeded", "failed", "cancelled"})
    assert failed.status == "failed"
    assert failed.error.code == "datanet_access_denied"
    assert failed.error.param == "training_file"
    assert f"datanet:{datanet}@{version}" in failed.error.message
    key = bytes.fromhex(refused.model_extra["payment"]["job_key"][2:])
    operator = Web3.to_checksum_address(refused.model_extra["payment"]["operator"])
    assert escrow.functions.job(operator, key).call()[1] == 4  # Refunded
    assert escrow.functions.owed(STRANGER.address).call() == int(refused.model_extra["payment"]["fee"])

    # With a paid grant, the same account trains.
    send(w3, STRANGER, registry.functions.requestAccess(datanet), access_fee)
    send(w3, OWNER, registry.functions.grantAccess(datanet, STRANGER.address))
    assert registry.functions.hasAccess(datanet, STRANGER.address).call()
    granted = client.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct", training_file=f"datanet:{datanet}@{version}", method=hyper)
    pay(w3, granted, STRANGER)
    done = wait_for(client, granted.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error


def test_cancelling_a_job_before_it_starts_refunds_it(node, w3, client, tmp_path):
    path = tmp_path / "cancel.jsonl"
    path.write_text(chat_records(8, "cancel"))
    with path.open("rb") as f:
        uploaded = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct", training_file=uploaded.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(Exception) as again:
        client.fine_tuning.jobs.cancel(job.id)
    assert "already cancelled" in str(again.value)
