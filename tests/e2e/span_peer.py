"""infini-gram 2.6.0 (pip) as the span index's peer: writing a tokenized corpus in its layout,
building its suffix array with the indexer its wheel ships, and querying it.

The corpus goes straight to `tokenized.0` (16-bit little-endian tokens, each document preceded
by 0xFFFF) and `offset.0` (each document's byte offset), so no tokenizer is involved; the
package's `rust_indexing` binary then sorts it in one part (`make-part`, `merge`, `concat`).
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from pathlib import Path

import infini_gram
from infini_gram.engine import InfiniGramEngine

SEPARATOR = 0xFFFF
RUST_INDEXING = Path(infini_gram.__file__).parent / "rust_indexing"


def write_corpus(directory: Path, documents: list[list[int]]) -> Path:
    """Writes `tokenized.0` and `offset.0`; returns the first."""
    directory.mkdir(parents=True, exist_ok=True)
    text, offsets = bytearray(), []
    for doc in documents:
        offsets.append(len(text))
        text += struct.pack("<H", SEPARATOR) + struct.pack(f"<{len(doc)}H", *doc)
    (directory / "tokenized.0").write_bytes(bytes(text))
    (directory / "offset.0").write_bytes(b"".join(struct.pack("<Q", o) for o in offsets))
    return directory / "tokenized.0"


def build_index(directory: Path) -> None:
    """Builds `table.0` beside `tokenized.0` with infini-gram's own indexer, on one thread."""
    data = directory / "tokenized.0"
    size = data.stat().st_size
    ratio = max(1, math.ceil(math.log2(size) / 8))
    parts, merged = directory / "parts", directory / "merged"
    for d in (parts, merged):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()

    def run(*args):
        subprocess.run([str(RUST_INDEXING), *map(str, args)], check=True, stdout=subprocess.DEVNULL)

    common = ["--ratio", ratio, "--token-width", 2]
    run("make-part", "--data-file", data, "--parts-dir", parts, "--start-byte", 0,
        "--end-byte", size, *common)
    run("merge", "--data-file", data, "--parts-dir", parts, "--merged-dir", merged,
        "--num-threads", 1, "--hacksize", 100000, *common)
    run("concat", "--data-file", data, "--merged-dir", merged, "--merged-file",
        directory / "table.0", "--num-threads", 1, *common)
    shutil.rmtree(parts)
    shutil.rmtree(merged)


def engine(directory: Path) -> InfiniGramEngine:
    return InfiniGramEngine(index_dir=str(directory), eos_token_id=0, vocab_size=65535,
                            version=4, token_dtype="u16")
