"""The training peer for `model-bench`: LoRA fine-tuning with PyTorch + transformers + peft on
the same GGUF file (transformers dequantizes it to f32, as our engine does), with the same
work as model-bench's training measure: rank 8, alpha 16, no dropout, on q, k, v and o of every
layer; a batch of 4 sequences of 128 tokens cut from the same text, every token learned (the
model reads the first 127 and predicts the next 127); AdamW (betas 0.9/0.999, eps 1e-8, no
weight decay), learning rate 2e-3 with 5 warmup steps then cosine, global gradient clipping at
1.0; one untimed warm-up step, then STEPS timed steps. Prints one JSON object.

    python bench_model_train_peer.py MODEL.gguf STEPS THREADS
"""
import json
import math
import sys
import time
import warnings
from pathlib import Path

import peft
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = (
    "The history of written language begins with simple marks on clay and stone. "
    "Over thousands of years these marks became alphabets, and alphabets became books, newspapers "
    "and finally the web pages that people read every day. Each step made it cheaper to record what "
    "people knew and to share it with others who lived far away or were born much later. "
)
BATCH, LENGTH = 4, 128


def main():
    path, steps, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecations
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    directory, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    ids = tokenizer(TEXT * 8, add_special_tokens=False).input_ids
    # model-bench's examples: tokens i·8 … i·8+128 of the same text, for i in 0..4.
    batch = torch.tensor([ids[i * 8 : i * 8 + LENGTH] for i in range(BATCH)])
    inputs, targets = batch[:, :-1], batch[:, 1:]

    config = peft.LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total, warmup = steps + 1, 5
    optimizer = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def lr_factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    def step():
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up, untimed
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    elapsed = time.perf_counter() - start

    print(json.dumps({
        "engine": f"PyTorch {torch.__version__} + transformers {transformers.__version__} "
                  f"+ peft {peft.__version__} (f32, CPU)",
        "threads": torch.get_num_threads(),
        "attention": model.config._attn_implementation,
        "train_steps": steps,
        "train_losses": losses,
        "lora_train_tokens_per_s": steps * BATCH * LENGTH / elapsed,
    }, indent=2))


if __name__ == "__main__":
    main()
