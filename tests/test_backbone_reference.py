"""--backbone-weights reference: a frozen encoder is not copied into the model directory; the directory records the
backbone (name, package version, weights sha256) and loads it from where it is installed, refusing another one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from arenapref import Judge
from arenapref.errors import DataError
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory, small_csv, tiny_deberta):
    root = tmp_path_factory.mktemp("reference")
    backbone = root / "backbone"
    shutil.copytree(tiny_deberta, backbone)
    common = ["train", "--data", small_csv, "--model", "dual-tower", "--backbone", backbone, "--max-length", 32,
              "--epochs", 0]
    run_cli(*common, "--output", root / "copy")
    run_cli(*common, "--output", root / "reference", "--backbone-weights", "reference")
    return root


def test_reference_saves_the_head_alone_and_predicts_like_the_copy(both_ways, small_csv):
    copy, reference = both_ways / "copy", both_ways / "reference"
    assert (reference / "model.safetensors").stat().st_size < (copy / "model.safetensors").stat().st_size / 5
    meta = json.loads((reference / "arenapref.json").read_text())
    assert meta["backbone_reference"]["name"] == str(both_ways / "backbone")
    assert len(meta["backbone_reference"]["weights_sha256"]) == 64
    import pandas as pd

    frame = pd.read_csv(small_csv, dtype=str, keep_default_na=False).head(24)
    expected = Judge.from_pretrained(copy).predict_proba(frame)
    np.testing.assert_allclose(Judge.from_pretrained(reference).predict_proba(frame), expected, atol=1e-6)


def test_a_different_backbone_is_refused_in_one_line(both_ways, tmp_path, small_csv):
    from safetensors.torch import load_file, save_file

    weights = both_ways / "backbone" / "model.safetensors"
    kept = tmp_path / "kept.safetensors"
    shutil.copy(weights, kept)
    try:
        state = load_file(weights)
        name = next(iter(state))
        state[name] = state[name] + 1e-3
        save_file(state, weights, metadata={"format": "pt"})
        with pytest.raises(DataError, match="not the one this model was trained on") as err:
            Judge.from_pretrained(both_ways / "reference")
        assert "\n" not in str(err.value)
        proc = run_cli("predict", "--model", both_ways / "reference", "--data", small_csv,
                       "--output", tmp_path / "p.csv", check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
        assert "not the one this model was trained on" in proc.stderr and not (tmp_path / "p.csv").exists()
        Judge.from_pretrained(both_ways / "reference", verify=False)  # weights edited on purpose: the override
    finally:
        shutil.copy(kept, weights)


def test_reference_needs_a_frozen_encoder(tmp_path, small_csv, tiny_deberta):
    proc = run_cli("train", "--data", small_csv, "--output", tmp_path / "m", "--model", "dual-tower", "--backbone",
                   tiny_deberta, "--backbone-weights", "reference", check=False)
    assert proc.returncode == 2 and "--epochs 0" in proc.stderr
