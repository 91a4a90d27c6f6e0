"""Inference through the official `openai` Python client against a running dev node's
OpenAI-compatible API (OpenLoRA), unchanged: chat, streaming with usage, seeded choices, stop
strings, JSON mode, log-probabilities, a freshly loaded adapter in /v1/models, and OpenAI's
error objects.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from openai import OpenAI

BASE = "SmolLM2-135M-Instruct"
LOAD_TIMEOUT_S = 180
# The default model's shape (SmolLM2-135M): 30 layers, hidden 576, 3 key/value heads of 64.
LAYERS, HIDDEN, KV_WIDTH = 30, 576, 192


def write_adapter(directory: Path, rank: int, seed: int) -> None:
    """A seeded PEFT adapter on q_proj and v_proj, written as safetensors by hand."""
    rng = random.Random(seed)
    tensors = {}
    for layer in range(LAYERS):
        for proj, out in (("q_proj", HIDDEN), ("v_proj", KV_WIDTH)):
            name = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{name}.lora_A.weight"] = ((rank, HIDDEN), [rng.uniform(-0.2, 0.2) for _ in range(rank * HIDDEN)])
            tensors[f"{name}.lora_B.weight"] = ((out, rank), [rng.uniform(-0.2, 0.2) for _ in range(out * rank)])
    header, blobs, offset = {}, [], 0
    for key, (shape, values) in tensors.items():
        data = struct.pack(f"<{len(values)}f", *values)
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    directory.mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
              "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    (directory / "adapter_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def client(node) -> OpenAI:
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{node.api_url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:  # still loading (503) or not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the model did not load within {LOAD_TIMEOUT_S}s:\n{node.log_tail()}")
        time.sleep(0.5)
    return OpenAI(base_url=f"{node.api_url}/v1", api_key="unused-on-dev", max_retries=0)


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_and_stream_with_usage(client):
    answer = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=24, temperature=0)
    text = answer.choices[0].message.content
    assert text.strip()
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 5
    assert answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

    chunks = list(client.chat.completions.create(
        model=BASE, messages=QUESTION, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_seeded_choices_reproduce(client):
    ask = dict(model=BASE, messages=[{"role": "user", "content": "Write a word about the sea."}],
               max_tokens=16, temperature=1.0, n=2, seed=1234)
    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)
    assert len(first.choices) == 2
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    other = client.chat.completions.create(**{**ask, "seed": 99})
    assert [c.message.content for c in other.choices] != [c.message.content for c in first.choices]


def test_stop_strings_are_never_sent(client):
    full = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]  # a stop string that occurs mid-answer, whatever the answer is
    for stream in (False, True):
        result = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=24,
                                                temperature=0, stop=[stop], stream=stream)
        if stream:
            chunks = list(result)
            got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            got, reason = result.choices[0].message.content, [result.choices[0].finish_reason]
        assert got == text[: text.index(stop)]
        assert reason == ["stop"]


def test_json_mode_answers_parse(client):
    answer = client.chat.completions.create(
        model=BASE, max_tokens=120, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with name and age."}],
    )
    assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
    value = json.loads(answer.choices[0].message.content)
    assert isinstance(value, dict)


def test_logprobs(client):
    answer = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=4,
                                            temperature=0, logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens
    for token in content:
        assert len(token.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)
        assert token.logprob <= 0


def test_a_loaded_adapter_is_listed_and_served(client, node, tmp_path):
    directory = tmp_path / "sea-adapter"
    write_adapter(directory, rank=4, seed=7)
    request = urllib.request.Request(
        f"{node.api_url}/v1/load_lora_adapter",
        data=json.dumps({"lora_name": "sea", "lora_path": str(directory)}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
    models = {m.id: m for m in client.models.list().data}
    assert "sea" in models and models["sea"].parent == BASE
    base = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=12, temperature=0)
    tuned = client.chat.completions.create(model="sea", messages=QUESTION, max_tokens=12, temperature=0)
    assert tuned.choices[0].message.content != base.choices[0].message.content
    # An ensemble: the adapter at weight 0 is the base model.
    zero = client.chat.completions.create(model=BASE, messages=QUESTION, max_tokens=12, temperature=0,
                                          extra_body={"adapters": [{"name": "sea", "weight": 0.0}]})
    assert zero.choices[0].message.content == base.choices[0].message.content


def test_errors_are_openai_error_objects(client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-adapter", messages=QUESTION)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=BASE, messages=QUESTION, temperature=5)
    assert bad.value.body["param"] == "temperature"


def running_requests(node) -> float:
    with urllib.request.urlopen(f"{node.api_url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("vllm:num_requests_running{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no vllm:num_requests_running in /metrics")


def test_a_client_that_disconnects_frees_its_place(client, node):
    host, port = node.api_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"model": BASE, "prompt": "Tell me a long story", "max_tokens": 4000, "stream": True,
            "ignore_eos": True, "temperature": 0}
    conn.request("POST", "/v1/completions", json.dumps(body), {"content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    chunks = 0
    while chunks < 3:
        if response.fp.readline().startswith(b"data: "):
            chunks += 1
    assert running_requests(node) == 1
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 10
    while running_requests(node) != 0:
        assert time.monotonic() < deadline, "the abandoned request still runs"
        time.sleep(0.1)


@pytest.mark.parametrize("bad, param", [
    ({"n": 9}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
])
def test_out_of_range_requests_are_refused_by_name(client, bad, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**{"model": BASE, "messages": QUESTION, **bad})
    assert refused.value.body["param"] == param


def test_a_prompt_past_the_context_is_refused(client):
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=BASE, prompt="word " * 9000, max_tokens=1)
    assert "context" in long.value.body["message"]
