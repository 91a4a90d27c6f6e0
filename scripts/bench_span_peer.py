"""The span index's build time against infini-gram 2.6.0's indexer on the same 16-bit corpus,
interleaved (ours, peer, ours, peer, ...), each side on one thread, timed as whole processes
(reading the corpus and writing the index included). Prints one JSON object with every pair,
the median ratio (peer seconds over ours: above 1 means ours is faster) and bytes per token.

    python scripts/bench_span_peer.py SPAN_BENCH_BIN [--tokens 10000000] [--pairs 4]

Run it with the interpreter of .venv-e2e (scripts/test-e2e installs infini-gram there).
"""

from __future__ import annotations

import argparse
import array
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from span_peer import SEPARATOR, build_index  # noqa: E402


def corpus(path: Path, tokens: int, seed: int) -> None:
    """Documents of 50-400 tokens drawn from a Zipf-like spread over a 49,152-token vocabulary
    (the default model's), in infini-gram's layout."""
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) for r in range(49152)]
    vocab = list(range(49152))
    text = array.array("H")
    offsets = array.array("Q")
    while len(text) < tokens:
        offsets.append(2 * len(text))
        text.append(SEPARATOR)
        text.extend(rng.choices(vocab, weights, k=rng.randrange(50, 400)))
    if sys.byteorder != "little":
        text.byteswap()
        offsets.byteswap()
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenized.0").write_bytes(text.tobytes())
    (path / "offset.0").write_bytes(offsets.tobytes())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("span_bench")
    p.add_argument("--tokens", type=int, default=10_000_000)
    p.add_argument("--pairs", type=int, default=4)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="span-bench-"))
    try:
        corpus(work / "peer", args.tokens, seed=7)
        data = work / "peer" / "tokenized.0"
        pairs = []
        for _ in range(args.pairs):
            shutil.rmtree(work / "ours", ignore_errors=True)
            t = time.perf_counter()
            out = subprocess.run([args.span_bench, "build", "--tokenized", str(data), "--out",
                                  str(work / "ours")], check=True, capture_output=True, text=True)
            ours = time.perf_counter() - t
            (work / "peer" / "table.0").unlink(missing_ok=True)
            t = time.perf_counter()
            build_index(work / "peer")
            peer = time.perf_counter() - t
            pairs.append({"ours_s": ours, "peer_s": peer, "ratio": peer / ours})
            print(f"ours {ours:.2f} s, infini-gram {peer:.2f} s, {peer / ours:.2f}x",
                  file=sys.stderr)
        ours_meta = json.loads(out.stdout)
        peer_bytes = (data.stat().st_size + (work / "peer" / "table.0").stat().st_size
                      + (work / "peer" / "offset.0").stat().st_size)
        print(json.dumps({
            "tokens": ours_meta["tokens"],
            "pairs": pairs,
            "median_ratio": statistics.median(p["ratio"] for p in pairs),
            "ours_bytes_per_token": ours_meta["bytes_per_token"],
            "peer_bytes_per_token": peer_bytes / ours_meta["tokens"],
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
