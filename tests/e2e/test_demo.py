"""`openledger demo --quick`: the whole story on its own fresh dev network, ending with a
closing table it checks against the chain (payouts equal the receipts' fees, each claim is what
its claimant earned, the consumer's credit fell by the fees, total supply unchanged)."""

from __future__ import annotations

import subprocess

from conftest import node_binary

TIMEOUT_S = 900


def test_the_quick_demo_tells_the_whole_story_and_its_ledger_adds_up(tmp_path):
    data_dir = tmp_path / "demo"
    done = subprocess.run([str(node_binary()), "demo", "--quick", "--exit", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr[-4000:]}"
    for step in range(1, 11):
        assert f"[{step}/10]" in out, out
    assert "first file is refused before anything is signed" in out and '"messages" is a required property' in out
    assert "version 1: 3 contributions" in out and "adapter 1 registered with its lineage" in out, out
    assert "credits contribution" in out, out
    assert out.count("\n        tx 0x") >= 25, out
    checks = [line for line in out.splitlines() if line.startswith(("ok   ", "FAIL "))]
    assert checks and all(line.startswith("ok   ") for line in checks), checks
    assert any(line.startswith("ok   paid out") for line in checks), checks
    assert any(line.startswith("ok   total supply") for line in checks), checks
    assert sum("claimed" in line for line in checks) >= 5, checks
    assert "/explorer/tx/0x" in out

    # The demo plays on a fresh network only: the same directory again is refused at once.
    again = subprocess.run([str(node_binary()), "demo", "--quick", "--exit", "--data-dir", str(data_dir)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "is not empty" in again.stderr, again.stderr
