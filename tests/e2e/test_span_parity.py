"""The span engine's index answers `find` and `count` exactly as infini-gram 2.6.0 does, on the
same tokenized corpus: random substrings of the text (some running to its very end, some across
document boundaries), random token strings, the separator, and the empty query.

`span-bench answer` builds our index from infini-gram's own `tokenized.0` (and checks the text
is the same bytes); $SPAN_BENCH_BIN names it (scripts/test-e2e builds it). SPAN_PARITY_QUERIES
and SPAN_PARITY_TOKENS scale the run (BENCHMARKS.md records a 10,000-query one).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

from span_peer import SEPARATOR, build_index, engine, write_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]


def span_bench() -> Path:
    path = Path(os.environ.get("SPAN_BENCH_BIN", "target/debug/span-bench"))
    return path if path.is_absolute() else REPO_ROOT / path


def corpus(rng: random.Random, tokens: int) -> list[list[int]]:
    """Documents of varied length over a skewed vocabulary, with tokens either side of byte
    boundaries (where little-endian byte order and numeric order disagree) and repeated
    phrases, so that queries hit long shared prefixes."""
    common = [0, 1, 2, 255, 256, 257, 511, 512, 4095, 4096, 65280, 65534]
    phrases = [[rng.randrange(65535) for _ in range(rng.randrange(2, 9))] for _ in range(30)]
    docs, total = [], 0
    while total < tokens:
        doc: list[int] = []
        for _ in range(rng.randrange(0, 40)):
            roll = rng.random()
            if roll < 0.3:
                doc.extend(rng.choice(phrases))
            elif roll < 0.7:
                doc.append(rng.choice(common))
            else:
                doc.append(rng.randrange(65535))
        docs.append(doc)
        total += len(doc) + 1
    docs.append([])  # an empty document
    docs.append([7, 8, 9])  # a short last one: matches at the very end of the text
    return docs


def queries(rng: random.Random, docs: list[list[int]], n: int) -> list[list[int]]:
    text: list[int] = []
    for d in docs:
        text += [SEPARATOR, *d]
    fixed = [[], [SEPARATOR], [7, 8, 9], [8, 9], [9], [9, SEPARATOR], text[-3:], text[:5],
             [65534], [0], [0, 0], [65535, 65535]]
    out = list(fixed)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.6:
            start = rng.randrange(len(text))
            length = rng.randrange(0, 12)
            q = text[start:start + length]
            if kind < 0.1 and q:
                q = q[:-1] + [rng.randrange(65536)]  # a near miss
        elif kind < 0.75:
            end = len(text) - rng.randrange(0, 4)
            q = text[max(0, end - rng.randrange(1, 6)):end]  # at or near the very end
        else:
            q = [rng.choice([0, 1, 255, 256, 65280, 65534, SEPARATOR, rng.randrange(65536)])
                 for _ in range(rng.randrange(1, 4))]
        out.append(q)
    return out


def test_span_index_counts_and_finds_as_infini_gram(tmp_path):
    rng = random.Random(20261206)
    n_queries = int(os.environ.get("SPAN_PARITY_QUERIES", "3000"))
    n_tokens = int(os.environ.get("SPAN_PARITY_TOKENS", "60000"))
    docs = corpus(rng, n_tokens)
    data = write_corpus(tmp_path / "peer", docs)
    build_index(tmp_path / "peer")
    peer = engine(tmp_path / "peer")
    qs = queries(rng, docs, n_queries)
    (tmp_path / "queries.json").write_text(json.dumps(qs))
    out = subprocess.run(
        [str(span_bench()), "answer", "--tokenized", str(data), "--queries",
         str(tmp_path / "queries.json")],
        check=True, capture_output=True, text=True,
    )
    ours = json.loads(out.stdout)["answers"]
    assert len(ours) == len(qs)
    mismatches = []
    hits = 0
    for q, (lo, hi, count) in zip(qs, ours):
        found = peer.find(input_ids=q)
        counted = peer.count(input_ids=q)
        assert "error" not in found, (q, found)
        want = (tuple(found["segment_by_shard"][0]), found["cnt"], counted["count"])
        if ((lo, hi), count, count) != want:
            mismatches.append((q, (lo, hi, count), want))
        hits += count > 0
    assert not mismatches, f"{len(mismatches)} of {len(qs)} differ, first: {mismatches[:3]}"
    # The comparison means something only if many queries occur, and some do not.
    assert hits > len(qs) // 2 and hits < len(qs)
