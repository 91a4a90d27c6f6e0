"""The peer for `model-bench`: llama.cpp (through llama-cpp-python) on the same GGUF file,
prefill and single-stream greedy decode, with the same counts. Prints one JSON object.

    python bench_model_peer.py MODEL.gguf PROMPT_TOKENS DECODE_TOKENS THREADS
"""
import json
import sys
import time

import numpy as np
from llama_cpp import Llama

TEXT = (
    "The history of written language begins with simple marks on clay and stone. "
    "Over thousands of years these marks became alphabets, and alphabets became books, newspapers "
    "and finally the web pages that people read every day. Each step made it cheaper to record what "
    "people knew and to share it with others who lived far away or were born much later. "
)


def main():
    path, prompt_tokens, decode_tokens, threads = sys.argv[1], *map(int, sys.argv[2:5])
    llm = Llama(
        model_path=path,
        n_ctx=1024,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    ids = llm.tokenize((TEXT * (prompt_tokens // 40 + 2)).encode(), add_bos=False)
    prompt = ids[:prompt_tokens]

    def prefill(tokens):
        llm.reset()
        llm.eval(tokens)

    prefill(prompt)  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        prefill(prompt)
        best = min(best, time.perf_counter() - t)
    prefill_tps = prompt_tokens / best

    best = float("inf")
    for _ in range(2):
        prefill(ids[:32])
        t = time.perf_counter()
        for _ in range(decode_tokens):
            logits = llm.scores[llm.n_tokens - 1]
            llm.eval([int(np.argmax(logits))])
        best = min(best, time.perf_counter() - t)
    decode_tps = decode_tokens / best

    print(json.dumps({
        "engine": "llama.cpp (llama-cpp-python, native GGUF weights)",
        "threads": threads,
        "prefill_tokens": prompt_tokens,
        "prefill_tokens_per_s": prefill_tps,
        "decode_tokens": decode_tokens,
        "decode_tokens_per_s": decode_tps,
    }, indent=2))


if __name__ == "__main__":
    main()
