"""Seconds per LoRA training step and per predicted row of an llm backbone on this machine.

    python bench/llm_speed.py --backbone smollm2 --max-length 256 --batch-size 4

Prints one JSON line. CPU seconds (process time, all threads) are reported next to wall seconds because the wall
time on a shared machine says more about the neighbours than about the model.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from arenapref.config import load_config
from arenapref.data.tables import load_frame
from arenapref.data.text import Renderer, TextSettings
from arenapref.inference.backend import predict_rows
from arenapref.inference.batching import SequenceCollator
from arenapref.models.llm import LLM
from arenapref.models.losses import preference_loss


def timed(fn):
    wall, cpu = time.time(), time.process_time()
    result = fn()
    return result, round(time.time() - wall, 1), round(time.process_time() - cpu, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2")
    parser.add_argument("--data", default="../shared/data/arena_sample.csv")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()

    cfg = load_config(None, dict(data=args.data, output="unused", model="llm", backbone=args.backbone,
                                 max_length=args.max_length, lora_r=args.lora_r, lora_alpha=2 * args.lora_r))
    (tokenizer, model), load_wall, load_cpu = timed(
        lambda: (lambda tok: (tok, LLM.build(cfg, tok)))(LLM.tokenizer(cfg.backbone, cfg)))
    n = args.steps * args.batch_size
    frame = load_frame(args.data).head(2 * n)
    rows = Renderer(tokenizer, TextSettings(max_length=args.max_length)).cross_inputs(frame)
    collate = SequenceCollator(tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)

    def step(k: int):
        batch = collate([{"input_ids": rows[i], "labels": int(frame["label"][i])}
                         for i in range(k * args.batch_size, (k + 1) * args.batch_size)])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        preference_loss(out.logits, batch["labels"], None).backward()
        optimizer.step()
        optimizer.zero_grad()

    model.train()
    steps = [timed(lambda k=k: step(k))[1:] for k in range(args.steps)]
    _, pred_wall, pred_cpu = timed(lambda: predict_rows(model, rows[n:], "joint", tokenizer.pad_token_id))
    print(json.dumps({
        "backbone": args.backbone, "max_length": args.max_length, "batch_size": args.batch_size,
        "mean_tokens": float(np.mean([len(r) for r in rows])), "threads": torch.get_num_threads(),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "load_wall_s": load_wall, "load_cpu_s": load_cpu,
        "step_wall_s": [w for w, _ in steps], "step_cpu_s": [c for _, c in steps],
        "predict_rows": len(rows) - n, "predict_wall_s": pred_wall, "predict_cpu_s": pred_cpu,
    }))


if __name__ == "__main__":
    main()
