#!/usr/bin/env python3
"""Writes crates/model/tests/fixtures/tokenizer_ids.json: token ids from Hugging Face `tokenizers`
for a varied set of strings, which crates/model/tests/tokenizer.rs checks our tokenizer against.

Run by a developer when the cases or the model change (CI only reads the committed fixture):

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers gguf
    /tmp/tokvenv/bin/python scripts/gen-tokenizer-fixture.py [MODEL.gguf]

MODEL.gguf defaults to what `scripts/fetch-model` prints. The reference tokenizer is built from the
GGUF's own vocabulary and merges with SmolLM2's tokenizer.json pipeline: BPE, pre-tokenizer
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)],
ByteLevel decoder, and the control tokens (token_type 3) added as special tokens.
"""

import json
import os
import subprocess
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/model/tests/fixtures/tokenizer_ids.json")

CASES = [
    "",
    " ",
    "\n",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.",
    "OpenLedger pays data contributors when a model's answer draws on their data; "
    "attribution is computed per inference and settled on chain.",
    "don't I'll we've they're she'd you'll it's I'm",
    "DON'T He'S 'tis ''s '''quoted''' don’t",
    "12345",
    "3.14 and 2.71828; 1,000,000 and 1e-9 and -42",
    "Call 555-0100 on 2024-06-30 at 09:15.",
    "x  12 ",
    "a 1",
    "multiple   spaces    here",
    "trailing spaces   ",
    "trailing newline\n",
    "\n\n\n",
    "line one\r\nline two\r\n",
    "   leading spaces",
    "\tleading tab",
    " " * 100,
    "a" * 1000,
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{v:?}\");\n}\n",
    "if (a && b) || !c { x += 1; } // comment\n\t\t/* block */",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "| col1 | col2 |\n|------|------|\n| **bold** | _it_ |",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "https://example.com/path?query=1&x=y#frag",
    "0xDEADBEEF 0b1010 SGVsbG8gd29ybGQ=",
    "I love 🦀 and 🚀! 👍🏽 👨‍👩‍👧 🇫🇷",
    "你好，世界！我们今天学习机器学习。",
    "日本語のテキストとカタカナ、ひらがな。",
    "안녕하세요 세계",
    "مرحبا بالعالم، كيف حالك؟ ٣٤٥",
    "שלום עולם",
    "हिन्दी भाषा में नमस्ते दुनिया",
    "தமிழ் மொழி",
    "สวัสดีชาวโลก",
    "Привет, мир! Ёлки-палки.",
    "Γειά σου Κόσμε",
    "café naïve résumé — e\u0301 (decomposed)",
    "\u0301 leading combining mark",
    "∑ x² ≤ ∞ ≠ π ½ ⅓ Ⅻ ①",
    "non\u00a0breaking\u3000ideographic\u2003em\u200bzero-width\u200dzwj",
    "ctrl \x00\x07\x1b[0m\x7f end",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>",
    "abc<|endoftext|>def <|im_end|> x",
    "<|im_start <|im_start| |im_start|> <im_start>",
    "<repo_name>openledger<file_sep>src/lib.rs<gh_stars>10",
]


def model_path():
    if len(sys.argv) > 1:
        return sys.argv[1]
    script = os.path.join(ROOT, "scripts/fetch-model")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()


def main():
    path = model_path()
    reader = gguf.GGUFReader(path)
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "smollm"
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]

    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    )

    cases = []
    for text in CASES:
        ids = tok.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == text, text
        cases.append({"text": text, "ids": ids})
    head = {"model": os.path.basename(path), "reference": f"tokenizers {tokenizers.__version__}"}
    # One case a line, so that a diff of the fixture shows which cases changed.
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
    lines.append(" ]")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
