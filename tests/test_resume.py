"""A training run killed with SIGKILL resumes to exactly the model an uninterrupted run gives; same seed, same result.

Every run here is a real `arenapref train` subprocess on the tiny DeBERTa backbone (see conftest.TINY_TRAIN_ARGS).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arenapref.data.tables import load_frame
from arenapref.training.checkpoints import COMPLETE_FILE, checkpoint_dirs, is_complete
from conftest import ROOT, TINY_TRAIN_ARGS, run_cli


def _probabilities(model_dir: Path, data: Path) -> np.ndarray:
    from arenapref import api

    return api.Judge.from_pretrained(model_dir, device="cpu").predict_proba(load_frame(data))


def _train_cmd(data, output, backbone, *extra):
    return [sys.executable, "-m", "arenapref", "train", "--data", str(data), "--output", str(output),
            "--backbone", str(backbone), *TINY_TRAIN_ARGS, *extra]


def _start_and_kill_after_first_checkpoint(cmd: list[str], output: Path) -> None:
    """Start training, wait until one complete checkpoint exists, then SIGKILL it (no chance to clean up)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(is_complete(d) for d in checkpoint_dirs(output / "checkpoints")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, tiny_csv, tiny_deberta, tiny_model):
    output = tmp_path / "model"
    _start_and_kill_after_first_checkpoint(_train_cmd(tiny_csv, output, tiny_deberta), output)
    # Killed mid-run: checkpoints exist, the model directory is not finished.
    done = [d for d in checkpoint_dirs(output / "checkpoints") if is_complete(d)]
    assert done and not (output / "arenapref.json").exists()
    last_step = int(done[-1].name.split("-")[1])
    total_steps = json.loads((tiny_model / "training_log.json").read_text())["max_steps"]
    assert last_step < total_steps

    # A kill while the next checkpoint was being written: a newer, half-written checkpoint-N is left behind.
    torn = output / "checkpoints" / f"checkpoint-{last_step + 4}"
    shutil.copytree(done[-1], torn)
    (torn / COMPLETE_FILE).unlink()
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert not is_complete(torn)

    # Without --resume, an unfinished run is never thrown away silently.
    refused = run_cli("train", "--data", tiny_csv, "--output", output, "--backbone", tiny_deberta,
                      *TINY_TRAIN_ARGS, check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "Traceback" not in refused.stderr

    resumed = run_cli("train", "--data", tiny_csv, "--output", output, "--backbone", tiny_deberta,
                      *TINY_TRAIN_ARGS, "--resume")
    assert f"resuming from {done[-1]}" in resumed.stdout
    assert f"checkpoint-{last_step + 4}" in resumed.stdout  # the torn checkpoint was named and removed
    assert not (output / "checkpoints").exists()  # a finished run keeps no checkpoints

    reference = json.loads((tiny_model / "arenapref.json").read_text())
    result = json.loads((output / "arenapref.json").read_text())
    assert result["valid_metrics"]["log_loss"] == pytest.approx(reference["valid_metrics"]["log_loss"], abs=1e-9)
    diff = np.abs(_probabilities(output, tiny_csv) - _probabilities(tiny_model, tiny_csv)).max()
    assert diff < 1e-6


@pytest.mark.slow
def test_same_seed_same_data_gives_identical_predictions(tmp_path, tiny_csv, tiny_deberta, tiny_model):
    again = tmp_path / "again"
    run_cli("train", "--data", tiny_csv, "--output", again, "--backbone", tiny_deberta, *TINY_TRAIN_ARGS)
    assert (again / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert np.array_equal(_probabilities(tiny_model, tiny_csv), _probabilities(again, tiny_csv))
    # The model really learned something different from a uniform guess, so equality is not trivial.
    assert np.abs(_probabilities(again, tiny_csv) - 1 / 3).max() > 1e-3
