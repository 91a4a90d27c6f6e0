"""The PyTorch reference fixtures under crates/model/tests/fixtures/, which
crates/model/tests/torch_reference.rs checks the engine against. Run by a developer through
`scripts/gen-fixtures` (which makes the venv and runs the steps in order), not by CI.

    python scripts/gen_fixtures.py torch MODEL.gguf   # step 1: everything PyTorch computes
    python scripts/gen_fixtures.py reverse            # step 3: our adapter, loaded by PEFT

Step 1 writes:
- torch_logits.json: SmolLM2-135M-Instruct, loaded by transformers from the same GGUF file the
  engine uses (dequantized to f32), on fixed prompts: the token ids of transformers' tokenizer,
  the argmax and the largest logit at every position, and the 32 largest logits at the last.
- tiny_llama/: a tiny random Llama (untied, grouped-query attention, rotary base 1000) saved by
  transformers (config.json + model.safetensors); tiny_llama/peft_adapter/: a PEFT LoRA adapter
  for it (rank 4, alpha 8, six of the seven projections, random non-zero B) saved by PEFT;
  tiny_llama/logits.safetensors: fixed token ids and the logits at every position without and
  with that adapter.

Step 2 (scripts/gen-fixtures runs it: `cargo run --example engine_adapter`) trains an adapter
for the tiny model with our engine and writes it (tiny_llama/engine_adapter/) and the logits our
engine gives with it (tiny_llama/engine_logits.safetensors).

Step 3 loads that adapter into PEFT, computes the same logits, prints the largest difference,
adds PEFT's logits to logits.safetensors and the result to tiny_llama/reverse_check.json, and
fails if the difference exceeds the tolerance.
"""
import datetime
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/model/tests/fixtures"
TINY = FIXTURES / "tiny_llama"

# The same prompts as the llama.cpp fixture, plus a longer one.
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis converts light energy into chemical energy. In plants, this process takes place in the",
    "1, 2, 3, 4, 5, 6, 7,",
    "OpenLedger pays data contributors when a model's answer draws on their data; attribution is "
    "computed per inference and settled on chain. In short, every answer",
]
TOP = 32

# Our engine's adapter in PEFT must give our engine's logits to within this (f32 throughout;
# observed differences are around 1e-6).
REVERSE_TOLERANCE = 1e-4


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def smollm2(gguf_path):
    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    cases = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]  # (s, vocab)
        top = torch.topk(logits[-1], TOP)
        cases.append({
            "prompt": prompt,
            "ids": ids,
            "argmax": logits.argmax(dim=1).tolist(),
            "max_logit": logits.max(dim=1).values.tolist(),
            "top_ids": top.indices.tolist(),
            "top_logits": top.values.tolist(),
        })
    out = FIXTURES / "torch_logits.json"
    record = {"model": name, "versions": versions(), "cases": cases}
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def tiny_config():
    return LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def randomize(model, generator):
    """Weights that make every part matter: unit-variance activations (so attention is far from
    uniform and rotary angles move scores), norm weights away from 1, logits of a few units."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * (torch.rand(p.shape, generator=generator) - 0.5))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                scale = 3.0 if name.startswith("lm_head") else 1.0
                p.copy_(torch.randn(p.shape, generator=generator) * scale / p.shape[1] ** 0.5)


def tiny():
    generator = torch.Generator().manual_seed(1612)
    if TINY.exists():
        shutil.rmtree(TINY)
    model = LlamaForCausalLM(tiny_config())
    randomize(model, generator)
    model.eval()
    model.save_pretrained(TINY)
    (TINY / "generation_config.json").unlink(missing_ok=True)
    tokens = torch.randint(0, 256, (2, 16), generator=generator)
    with torch.no_grad():
        base = model(tokens).logits

    lora = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(1612)  # PEFT draws A from torch's global generator
    adapted = peft.get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: make the adapter do something
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    adapted.eval()
    with torch.no_grad():
        with_adapter = adapted(tokens).logits
    adapted.save_pretrained(TINY / "peft_adapter")
    (TINY / "peft_adapter/README.md").unlink(missing_ok=True)  # PEFT's model card template
    config_path = TINY / "peft_adapter/adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "tiny_llama"  # not this machine's path
    config["target_modules"] = sorted(config["target_modules"])  # PEFT writes a set's order
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    save_file(
        {
            "tokens": tokens.numpy().astype(np.int64),
            "base": base.numpy(),
            "peft_adapter": with_adapter.numpy(),
        },
        TINY / "logits.safetensors",
    )
    print(f"wrote {TINY.relative_to(ROOT)}: model, peft_adapter, logits")


def reverse():
    engine_dir = TINY / "engine_adapter"
    ours = load_file(TINY / "engine_logits.safetensors")["engine_adapter"]
    logits = load_file(TINY / "logits.safetensors")
    model = LlamaForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    adapted = peft.PeftModel.from_pretrained(model, engine_dir)
    adapted.eval()
    with torch.no_grad():
        theirs = adapted(torch.from_numpy(logits["tokens"])).logits.numpy()
    diff = float(np.abs(theirs - ours).max())
    moved = float(np.abs(theirs - logits["base"]).max())
    print(f"our engine's adapter in PEFT: max |logit difference| {diff:.3g} "
          f"(the adapter moves logits by up to {moved:.3g})")
    logits["engine_adapter_peft"] = theirs
    save_file(logits, TINY / "logits.safetensors")
    record = {
        "what": "an adapter trained and written by openledger-model, loaded into PEFT on the tiny "
                "model: PEFT's logits against the engine's, all 2 x 16 positions x 256 logits",
        "command": "scripts/gen-fixtures",
        "date": datetime.date.today().isoformat(),
        "versions": versions(),
        "max_abs_diff": diff,
        "adapter_max_effect": moved,
        "tolerance": REVERSE_TOLERANCE,
    }
    (TINY / "reverse_check.json").write_text(json.dumps(record, indent=1) + "\n")
    if not diff <= REVERSE_TOLERANCE:
        sys.exit(f"PEFT disagrees with our engine by {diff} (> {REVERSE_TOLERANCE})")


def main():
    torch.set_num_threads(2)
    step = sys.argv[1] if len(sys.argv) > 1 else ""
    if step == "torch" and len(sys.argv) == 3:
        smollm2(Path(sys.argv[2]))
        tiny()
    elif step == "reverse":
        reverse()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
