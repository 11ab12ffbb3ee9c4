"""Compute where the judge is unsure: the hybrid's --neural-fraction and swap TTA's --tta-fraction."""

from __future__ import annotations

import numpy as np
import pytest

from arenapref.api import Judge
from arenapref.data.tables import load_frame
from arenapref.errors import DataError
from arenapref.evaluation.metrics import entropy, least_certain, margin
from conftest import run_cli


def test_least_certain_picks_the_most_uncertain_rows():
    probs = np.array([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]])
    assert least_certain(probs, 1.0).tolist() == [0, 1, 2, 3]
    assert least_certain(probs, 0.0).tolist() == []
    assert least_certain(probs, 0.25).tolist() == [1]
    assert least_certain(probs, 0.5).tolist() == [1, 2]  # ascending row order, not uncertainty order
    assert least_certain(probs, 0.3).tolist() == [1, 2]  # ceil(0.3 * 4) = 2 rows
    assert least_certain(probs, 0.5, "margin").tolist() == [1, 2]
    assert np.argmax(entropy(probs)) == np.argmax(margin(probs)) == 1


def test_cascade_options_are_refused_where_they_change_nothing(gbdt_model, small_csv, tmp_path):
    proc = run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "p.csv",
                   "--neural-fraction", "0.5", check=False)
    assert proc.returncode == 2 and "--neural-fraction applies to the hybrid's cascade" in proc.stderr
    proc = run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "p.csv",
                   "--tta-fraction", "0.5", check=False)
    assert proc.returncode == 2 and "add --tta swap" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "p.csv").exists()
    with pytest.raises(DataError, match="only a hybrid"):
        Judge.from_pretrained(gbdt_model, neural_fraction=0.5)


@pytest.fixture(scope="module")
def rows(small_csv):
    return load_frame(small_csv)


def test_neural_fraction_ends_are_the_hybrid_and_its_gbdt_part(hybrid_model, rows, small_csv, tmp_path):
    plain = Judge.from_pretrained(hybrid_model).predict_proba(rows)
    assert np.array_equal(Judge.from_pretrained(hybrid_model, neural_fraction=1).predict_proba(rows), plain)
    gbdt = Judge.from_pretrained(hybrid_model / "gbdt").predict_proba(rows)  # the part as saved, calibrated
    none = Judge.from_pretrained(hybrid_model, neural_fraction=0).predict_proba(rows)
    assert np.allclose(none, gbdt, atol=1e-12, rtol=0)
    assert not np.allclose(plain, gbdt, atol=1e-3)  # the test can tell the two apart
    # the command line: the same files
    run_cli("predict", "--model", hybrid_model, "--data", small_csv, "--output", tmp_path / "plain.csv")
    run_cli("predict", "--model", hybrid_model, "--data", small_csv, "--output", tmp_path / "one.csv",
            "--neural-fraction", "1")
    run_cli("predict", "--model", hybrid_model, "--data", small_csv, "--output", tmp_path / "zero.csv",
            "--neural-fraction", "0")
    run_cli("predict", "--model", hybrid_model / "gbdt", "--data", small_csv, "--output", tmp_path / "gbdt.csv")
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    assert (tmp_path / "zero.csv").read_bytes() == (tmp_path / "gbdt.csv").read_bytes()


@pytest.mark.parametrize("by", ["entropy", "margin"])
def test_neural_fraction_sends_the_least_certain_rows_through_the_neural_part(hybrid_model, rows, by):
    plain = Judge.from_pretrained(hybrid_model).predict_proba(rows)
    gbdt = Judge.from_pretrained(hybrid_model / "gbdt").predict_proba(rows)
    judge = Judge.from_pretrained(hybrid_model, neural_fraction=0.25, cascade_by=by)
    probs = judge.predict_proba(rows)
    pick = least_certain(gbdt, 0.25, by)
    assert len(pick) == 24
    rest = np.setdiff1d(np.arange(len(rows)), pick)
    assert np.allclose(probs[pick], plain[pick], atol=1e-9, rtol=0)
    assert np.allclose(probs[rest], gbdt[rest], atol=1e-9, rtol=0)
    # evaluate's path (both orders at once) and the per-row diagnostics give the same answer
    both = judge.predict_all(rows, both_orders=True, diagnostics=True)
    assert np.allclose(both.probs, probs, atol=1e-9, rtol=0)
    assert len(both.diagnostics) == len(rows) and both.direct.shape == (len(rows), 3)


def test_tta_fraction_swaps_only_the_least_certain_rows(tiny_model, rows, small_csv, tmp_path):
    judge = Judge.from_pretrained(tiny_model)
    once, swapped = judge.predict_proba(rows, tta="none"), judge.predict_proba(rows, tta="swap")
    assert not np.allclose(once, swapped, atol=1e-4)  # the test can tell the two apart
    assert np.array_equal(Judge.from_pretrained(tiny_model, tta_fraction=1).predict_proba(rows, tta="swap"), swapped)
    assert np.allclose(Judge.from_pretrained(tiny_model, tta_fraction=0).predict_proba(rows, tta="swap"), once,
                       atol=1e-9, rtol=0)
    half = Judge.from_pretrained(tiny_model, tta_fraction=0.5)
    probs = half.predict_proba(rows, tta="swap")
    pick = least_certain(once, 0.5)
    rest = np.setdiff1d(np.arange(len(rows)), pick)
    assert np.allclose(probs[pick], swapped[pick], atol=1e-9, rtol=0)
    assert np.allclose(probs[rest], once[rest], atol=1e-9, rtol=0)
    assert np.allclose(half.predict_all(rows, tta="swap", both_orders=True).probs, probs, atol=1e-9, rtol=0)
    run_cli("predict", "--model", tiny_model, "--data", small_csv, "--output", tmp_path / "swap.csv", "--tta", "swap")
    run_cli("predict", "--model", tiny_model, "--data", small_csv, "--output", tmp_path / "one.csv", "--tta", "swap",
            "--tta-fraction", "1")
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "swap.csv").read_bytes()
