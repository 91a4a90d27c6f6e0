"""Writes crates/model/tests/fixtures/llamacpp_logits.json: llama.cpp's logits for the default
model (SmolLM2-135M-Instruct Q4_1 GGUF) on fixed prompts, an independent reference for the
transformer until the PyTorch fixtures exist. Run by a developer, not by CI:

    ~/.cache/openledger/peer-venv/bin/python scripts/gen-llamacpp-fixture.py "$(scripts/fetch-model)"

(`scripts/bench-model` creates that venv with llama-cpp-python 0.3.16.) For each prompt it
records the token ids (from llama.cpp's tokenizer), the argmax at every position, and the 20
largest logits (ids and values) at the last position.
"""
import json
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis converts light energy into chemical energy. In plants, this process takes place in the",
    "1, 2, 3, 4, 5, 6, 7,",
]


def main():
    llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    cases = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)])
        last = scores[-1]
        top = np.argsort(-last)[:20]
        cases.append({
            "prompt": prompt,
            "ids": [int(i) for i in ids],
            "argmax": [int(i) for i in scores.argmax(axis=1)],
            "top_ids": [int(i) for i in top],
            "top_logits": [float(last[i]) for i in top],
        })
    out = Path(__file__).resolve().parent.parent / "crates/model/tests/fixtures/llamacpp_logits.json"
    out.write_text(json.dumps({"model": Path(sys.argv[1]).name, "cases": cases}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
