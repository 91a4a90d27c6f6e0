"""Fixtures for the end-to-end tests: a real `openledger node --dev` process and web3.py clients.

The node binary comes from $OPENLEDGER_BIN (a relative path is taken from the repository root),
or `target/debug/openledger` by default. Each test session starts one node on free ports with a
fresh temporary data directory, waits until its JSON-RPC answers, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # web3's WebSocket provider still imports the `websockets.legacy` module, which warns.
    warnings.filterwarnings("ignore", message="websockets.legacy is deprecated")
    from web3 import Web3
    from web3.middleware import SignAndSendRawMiddlewareBuilder

REPO_ROOT = Path(__file__).resolve().parents[2]

CHAIN_ID = 1612
# Dev account 0 of the mnemonic "test test test test test test test test test test test junk".
DEV_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDR_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

STARTUP_TIMEOUT_S = 60


def node_binary() -> Path:
    path = Path(os.environ.get("OPENLEDGER_BIN", "target/debug/openledger"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.exit(
            f"node binary {path} not found: build it with `cargo build -p openledger-node` "
            "or set OPENLEDGER_BIN",
            returncode=2,
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    process: subprocess.Popen
    http_url: str
    ws_url: str
    data_dir: Path
    log_path: Path
    api_url: str = ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def launch(data_dir: Path, log_path: Path, cwd: Path) -> Node:
    """Starts a dev node on `data_dir` (new or existing) on free ports and waits until its
    JSON-RPC answers; the caller stops it."""
    binary = node_binary()
    http_port, metrics_port, api_port = free_port(), free_port(), free_port()
    while len({http_port, metrics_port, api_port}) < 3:
        metrics_port, api_port = free_port(), free_port()
    cmd = [
        str(binary), "node", "--dev",
        "--data-dir", str(data_dir),
        "--http-addr", f"127.0.0.1:{http_port}",
        "--metrics-addr", f"127.0.0.1:{metrics_port}",
        "--api-addr", f"127.0.0.1:{api_port}",
        "--block-time", "0",
    ]
    log = open(log_path, "ab")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    log.close()
    n = Node(process, f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{http_port}",
             data_dir, log_path, f"http://127.0.0.1:{api_port}")
    probe = Web3(Web3.HTTPProvider(n.http_url, request_kwargs={"timeout": 2}))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"node exited with {process.returncode} at startup:\n{n.log_tail()}")
        try:
            if probe.eth.chain_id == CHAIN_ID:
                return n
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"node did not answer within {STARTUP_TIMEOUT_S}s:\n{n.log_tail()}")
        time.sleep(0.1)


def stop(n: Node) -> None:
    """Stops a node the way Ctrl-C does, or kills it if it does not stop in time."""
    if n.process.poll() is None:
        n.process.send_signal(signal.SIGINT)  # the node shuts down on Ctrl-C
        try:
            n.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            n.process.kill()
            n.process.wait(timeout=10)


@pytest.fixture(scope="session")
def node():
    workdir = Path(tempfile.mkdtemp(prefix="openledger-e2e-"))
    n = launch(workdir / "data", workdir / "node.log", workdir)
    try:
        yield n
    finally:
        stop(n)
        if os.environ.get("OPENLEDGER_E2E_KEEP"):
            print(f"node data and log kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def w3(node) -> Web3:
    """A plain HTTP client: local signing is explicit in the tests."""
    return Web3(Web3.HTTPProvider(node.http_url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def dev_account(w3):
    account = w3.eth.account.from_key(DEV_KEY_0)
    assert account.address == DEV_ADDR_0
    return account


@pytest.fixture()
def signing_w3(node, dev_account) -> Web3:
    """A client whose `send_transaction` from dev account 0 is filled in by web3 (nonce, gas,
    EIP-1559 fees, chain id), signed locally, and sent with eth_sendRawTransaction."""
    client = Web3(Web3.HTTPProvider(node.http_url, request_kwargs={"timeout": 30}))
    client.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(dev_account), layer=0)
    return client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Lets a fixture see whether its test failed (the browser tests save the page then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
