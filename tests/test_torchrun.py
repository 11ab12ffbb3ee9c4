"""A real 2-process data-parallel training on CPU (gloo) through torchrun, no home-made distribution (with gradient
checkpointing: DDP without find_unused_parameters, the strict mode)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from arenapref.api import Judge
from arenapref.data.tables import load_frame
from conftest import ROOT


@pytest.mark.slow
def test_torchrun_two_processes(small_csv, tiny_deberta, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "arenapref", "train", "--data", str(small_csv), "--output", str(out), "--model", "dual-tower",
           "--backbone", str(tiny_deberta), "--max-length", "32", "--epochs", "2", "--batch-size", "4",
           "--eval-steps", "5", "--swap-augment", "random",
           # The Trainer turns DDP's find_unused_parameters off under gradient checkpointing: every trainable
           # parameter must then reach the loss (tests/test_ddp_parameters.py), or the second step fails.
           "--gradient-checkpointing"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "training_log.json").read_text())
    # 2 processes x batch 4 = 8 rows per optimizer step, 2 epochs
    train_rows = json.loads((out / "arenapref.json").read_text())["train_rows"]
    assert state["max_steps"] == 2 * int(np.ceil(train_rows / 8))
    # --swap-augment random: both processes flip the same coins, and new ones in the second epoch
    coins = dict(re.findall(r"(rank \d: swap-augment epoch \d): \d+ of \d+ rows swapped \(coins (\w+)\)",
                            proc.stdout + proc.stderr))
    assert set(coins) == {f"rank {r}: swap-augment epoch {e}" for r in (0, 1) for e in (0, 1)}, coins
    assert coins["rank 0: swap-augment epoch 0"] == coins["rank 1: swap-augment epoch 0"]
    assert coins["rank 0: swap-augment epoch 1"] == coins["rank 1: swap-augment epoch 1"]
    assert coins["rank 0: swap-augment epoch 0"] != coins["rank 0: swap-augment epoch 1"]
    probs = Judge.from_pretrained(out).predict_proba(load_frame(small_csv))
    assert probs.shape == (96, 3) and np.allclose(probs.sum(1), 1, atol=1e-6)


def test_end_of_a_distributed_run_takes_the_process_group_down(tmp_path):
    """`train` under torchrun ends with a barrier and destroy_process_group in every process: a process that left
    with its gloo group up aborted now and then ("terminate called without an active exception"), failing the run."""
    import torch.distributed as dist

    from arenapref.training import end_distributed_run

    end_distributed_run()  # outside a distributed run: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        end_distributed_run()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
