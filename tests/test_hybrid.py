"""The hybrid family: a neural part and the gbdt in one directory, calibrated probabilities averaged."""

from __future__ import annotations

import json
import shutil

import numpy as np

from arenapref.data.tables import load_frame
from arenapref.evaluation.metrics import log_loss
from conftest import run_cli


def test_hybrid_is_the_weighted_mean_of_its_parts(hybrid_model, small_csv):
    from arenapref import Judge

    out = hybrid_model  # weight 0.3, the last 24 of small_csv's 96 rows as --extra
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


def test_hybrid_part_missing_is_one_line(tmp_path, small_csv, hybrid_model):
    out = tmp_path / "hybrid"
    shutil.copytree(hybrid_model, out)  # a copy: this test deletes a file
    (out / "gbdt" / "arenapref.json").unlink()
    proc = run_cli("evaluate", "--model", out, "--data", small_csv, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "part gbdt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
