"""The hybrid family: a neural part and the gbdt in one directory, calibrated probabilities averaged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from arenapref.data.tables import load_frame
from arenapref.evaluation.metrics import log_loss
from conftest import run_cli


def test_hybrid_is_the_weighted_mean_of_its_parts(tmp_path, small_csv, tiny_deberta):
    from arenapref import Judge

    out = tmp_path / "hybrid"
    data = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    data.iloc[:72].to_csv(tmp_path / "train.csv", index=False)
    data.iloc[72:].to_csv(tmp_path / "extra.csv", index=False)
    run_cli("train", "--data", tmp_path / "train.csv", "--extra", tmp_path / "extra.csv", "--output", out,
            "--model", "hybrid", "--backbone", tiny_deberta, "--max-length", 32, "--epochs", 0,
            "--hybrid-weight", 0.3, "--valid-fraction", 0.25)
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["model_type"] == "hybrid" and meta["parts"]["neural"]["weight"] == 0.3
    neural_meta = json.loads((out / "neural" / "arenapref.json").read_text())
    gbdt_meta = json.loads((out / "gbdt" / "arenapref.json").read_text())
    # --extra rows train the gbdt part and the neural part's direction model (not its 3-way fit); both parts are
    # validated on the same held-out rows.
    assert neural_meta["train_rows"] == gbdt_meta["train_rows"] - 24
    assert neural_meta["probe"]["direction"]["extra_rows"] == 24
    assert neural_meta["valid_rows"] == gbdt_meta["valid_rows"] == meta["valid_rows"]

    frame = load_frame(small_csv, require_labels=True)
    hybrid = Judge.from_pretrained(out, device="cpu").predict_proba(frame)
    neural = Judge.from_pretrained(out / "neural", device="cpu").predict_proba(frame)
    gbdt = Judge.from_pretrained(out / "gbdt").predict_proba(frame)
    assert np.allclose(hybrid, 0.3 * neural + 0.7 * gbdt, atol=1e-6)

    evaluated = run_cli("evaluate", "--model", out, "--data", small_csv, "--json")
    assert abs(json.loads(evaluated.stdout.strip().splitlines()[-1])["log_loss"]
               - log_loss(frame["label"].to_numpy(), hybrid)) < 1e-6


def test_hybrid_part_missing_is_one_line(tmp_path, small_csv, tiny_deberta):
    out = tmp_path / "hybrid"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "hybrid", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 0)
    (out / "gbdt" / "arenapref.json").unlink()
    proc = run_cli("evaluate", "--model", out, "--data", small_csv, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "part gbdt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
