"""Load generator for OpenAI-compatible servers, in the style of S-LoRA's and `vllm bench
serve`: closed-loop concurrency or Poisson arrivals, adapters drawn by a Zipf law, input and
output lengths drawn from ranges, streamed completions timed per token. Prints one JSON object.

    python bench_serve.py run --url http://127.0.0.1:8000/v1 --model BASE [--adapters N]
        [--concurrency C | --rate R] [--requests N] [--input 64:128] [--output 64:128] ...
    python bench_serve.py adapters DIR --count N --ranks 8[,16,...] [--seed 0]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import struct
import time
import urllib.request
from pathlib import Path

import numpy as np
from openai import AsyncOpenAI

WORDS = ("the of and to in is was for on that with as by at from his her they this are be "
         "had not one all were when there which their can said each she do how up out them "
         "then many some so these would other into has more two like him see time could no "
         "make than first been its who now people my made over did down only way find use may "
         "water long little very after words called just where most know get through back "
         "much go good new write our me man too any day same right look think also around "
         "another came come work three word must because does part even place well such here "
         "take why things help put years different away again off went old number great tell "
         "men say small every found still between name should home big give air line set own "
         "under read last never us left end along while might next sound below saw something "
         "thought both few those always looked show large often together asked house world "
         "going want school important until form food keep children feet land side without "
         "boy once animals life enough took sometimes four head above kind began almost live "
         "page got earth need far hand high year mother light parts country father let night "
         "following picture being study second eyes soon times story boys since white days "
         "ever paper hard near sentence better best across during today others however sure "
         "means knew try told young miles sun ways thing whole hear example heard several "
         "change answer room sea against top turned learn point city play toward five using "
         "himself usually money seen car morning given trees body family later order door").split()
# SmolLM2 and Llama tokenizers give about 1.2 tokens per word of this list.
TOKENS_PER_WORD = 1.2
LAYERS, HIDDEN, KV_WIDTH = 30, 576, 192  # the default model's shape (SmolLM2-135M)


def span(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    return int(lo), int(hi or lo)


def write_adapter(directory: Path, rank: int, rng: np.random.Generator) -> None:
    """A PEFT adapter on q_proj and v_proj, weights of a trained adapter's size."""
    header, blobs, offset = {}, [], 0
    for layer in range(LAYERS):
        for proj, out in (("q_proj", HIDDEN), ("v_proj", KV_WIDTH)):
            name = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            for part, shape in (("lora_A", (rank, HIDDEN)), ("lora_B", (out, rank))):
                data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).tobytes()
                header[f"{name}.{part}.weight"] = {"dtype": "F32", "shape": list(shape),
                                                   "data_offsets": [offset, offset + len(data)]}
                blobs.append(data)
                offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
              "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    (directory / "adapter_config.json").write_text(json.dumps(config))


def adapters(args) -> None:
    ranks = [int(r) for r in args.ranks.split(",")]
    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        target = Path(args.dir) / f"{args.prefix}{i:04d}"
        if not (target / "adapter_config.json").exists():
            write_adapter(target, ranks[i % len(ranks)], rng)


def metrics(url: str) -> dict[str, float]:
    """Our server's Prometheus counters (none for a peer without them)."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return {}
    values = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_:]+)(\{[^}]*\})? ([0-9.e+-]+)$', line)
        if m:
            key = m.group(1) + (re.sub(r'model_name="[^"]*",?', "", m.group(2) or "").replace("{}", ""))
            values[key] = float(m.group(3))
    return values


async def one(client, model, prompt, max_tokens, sent_at, results):
    first = last = None
    gaps, out = [], 0
    try:
        stream = await client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        async for chunk in stream:
            now = time.perf_counter()
            if chunk.choices and chunk.choices[0].text:
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
            if getattr(chunk, "usage", None):
                out = chunk.usage.completion_tokens
    except Exception as e:  # counted, not fatal: goodput shows it
        results.append({"error": str(e)[:200]})
        return
    if first is None:
        results.append({"error": "no tokens"})
        return
    results.append({"ttft": first - sent_at, "e2e": last - sent_at, "itl": gaps, "out": out})


def pct(values, q):
    return float(np.percentile(values, q)) if values else None


async def run(args) -> dict:
    rng = random.Random(args.seed)
    client = AsyncOpenAI(base_url=args.url, api_key="bench", max_retries=0, timeout=600)
    names = [f"{args.prefix}{i:04d}" for i in range(args.adapters)]
    weights = [1.0 / (i + 1) ** args.zipf for i in range(len(names))]
    jobs = []
    for _ in range(args.requests):
        words = max(1, round(rng.randint(*span(args.input)) / TOKENS_PER_WORD))
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        model = rng.choices(names, weights)[0] if names else args.model
        jobs.append((model, prompt, rng.randint(*span(args.output))))
    before = metrics(args.url)
    results: list[dict] = []
    start = time.perf_counter()
    if args.rate:
        tasks, at = [], start
        for model, prompt, n in jobs:
            at += rng.expovariate(args.rate)
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, model, prompt, n, time.perf_counter(), results)))
        await asyncio.gather(*tasks)
    else:
        queue = list(reversed(jobs))

        async def worker():
            while queue:
                model, prompt, n = queue.pop()
                await one(client, model, prompt, n, time.perf_counter(), results)
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall = time.perf_counter() - start
    after = metrics(args.url)
    ok = [r for r in results if "error" not in r]
    ttft = [r["ttft"] for r in ok]
    itl = [g for r in ok for g in r["itl"]]
    e2e = [r["e2e"] for r in ok]
    tokens = sum(r["out"] for r in ok)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    hits, misses = delta.get("openlora_adapter_cache_hits_total", 0), delta.get("openlora_adapter_cache_misses_total", 0)
    load_count = delta.get("openlora_adapter_load_seconds_count", 0)
    share = lambda le: delta.get(f'openlora_adapter_load_seconds_bucket{{le="{le}"}}', 0) / load_count if load_count else None
    return {
        "label": args.label, "requests": len(results), "errors": len(results) - len(ok),
        "adapters": args.adapters, "concurrency": None if args.rate else args.concurrency, "rate": args.rate,
        "wall_s": wall, "output_tokens": tokens, "tokens_per_s": tokens / wall, "requests_per_s": len(ok) / wall,
        "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
        "itl_p50_s": pct(itl, 50), "itl_p99_s": pct(itl, 99),
        "e2e_p50_s": pct(e2e, 50), "e2e_p99_s": pct(e2e, 99),
        "goodput": sum(t <= args.ttft_target for t in ttft) / len(results) if results else 0,
        "ttft_target_s": args.ttft_target,
        "cache_hit_rate": hits / (hits + misses) if hits + misses else None,
        "cold_loads": load_count,
        "cold_load_share_within_5ms": share("0.005"), "cold_load_share_within_20ms": share("0.02"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--model", default="SmolLM2-135M-Instruct")
    r.add_argument("--label", default="")
    r.add_argument("--adapters", type=int, default=0, help="distinct adapters a0000.. (0: the base model)")
    r.add_argument("--prefix", default="a", help="adapter names: PREFIX0000, PREFIX0001, ...")
    r.add_argument("--zipf", type=float, default=1.0)
    r.add_argument("--concurrency", type=int, default=1)
    r.add_argument("--rate", type=float, default=0.0, help="Poisson arrivals per second (0: closed loop)")
    r.add_argument("--requests", type=int, default=32)
    r.add_argument("--input", default="64:128", help="prompt tokens, LO:HI")
    r.add_argument("--output", default="64:128", help="answer tokens, LO:HI")
    r.add_argument("--ttft-target", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("adapters")
    a.add_argument("dir")
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--ranks", default="8")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--prefix", default="a")
    args = parser.parse_args()
    if args.command == "adapters":
        adapters(args)
    else:
        print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
