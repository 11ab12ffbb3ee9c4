"""Grouped cross-validation (folds never share a prompt) and ensembling (fitted weights never lose to one input)."""

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.data.predictions import read_predictions
from arenapref.data.split import prompt_groups
from arenapref.data.tables import LABELS, load_frame
from arenapref.errors import DataError
from arenapref.evaluation.ensemble import align, blend, fit_weights
from arenapref.evaluation.metrics import log_loss, softmax
from arenapref.training.cv import grouped_folds
from conftest import run_cli


def test_folds_never_share_a_prompt(arena_csv):
    frame = load_frame(arena_csv).head(120)
    # Give every prompt three battles, as the arena does for popular prompts.
    frame = frame.assign(prompt=[frame["prompt"].iloc[i // 3] for i in range(len(frame))])
    groups = prompt_groups(frame)
    assert len(np.unique(groups)) == 40
    seen = np.zeros(len(frame), dtype=int)
    for train_idx, heldout_idx in grouped_folds(frame, 5, seed=0):
        assert not set(groups[train_idx]) & set(groups[heldout_idx])
        seen[heldout_idx] += 1
    assert (seen == 1).all()  # every row is held out exactly once
    with pytest.raises(DataError, match="distinct prompts"):
        grouped_folds(frame, 41, seed=0)


def test_cv_cli_writes_out_of_fold_predictions(tmp_path, arena_csv):
    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(240)
    raw.to_csv(tmp_path / "data.csv", index=False)
    proc = run_cli("cv", "--data", tmp_path / "data.csv", "--folds", "3", "--output", tmp_path / "cv",
                   "--model", "gbdt", "--gbdt-rounds", "30", "--json")
    printed = json.loads(proc.stdout)
    saved = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert printed["summary"] == saved["summary"] and saved["model"] == "gbdt" and saved["folds"] == 3
    losses = [f["log_loss"] for f in saved["per_fold"]]
    assert len(losses) == 3 and sum(f["rows"] for f in saved["per_fold"]) == 240
    assert saved["summary"]["log_loss"]["mean"] == pytest.approx(np.mean(losses))
    assert saved["summary"]["log_loss"]["std"] == pytest.approx(np.std(losses))
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == raw["id"].tolist()
    np.testing.assert_allclose(oof[list(LABELS)].sum(axis=1), 1.0, atol=1e-5)
    labels = load_frame(tmp_path / "data.csv")["label"].to_numpy()
    assert saved["out_of_fold"]["log_loss"] == pytest.approx(log_loss(labels, oof[list(LABELS)].to_numpy()), abs=1e-4)
    assert not (tmp_path / "cv" / "fold-0").exists()  # fold models are removed unless --keep-models

    # a mistyped train flag is one line, exit 2
    bad = run_cli("cv", "--data", tmp_path / "data.csv", "--output", tmp_path / "cv2", "--gbdt-rounds", "many",
                  check=False)
    assert bad.returncode == 2 and "gbdt-rounds" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _synthetic_predictors(n=2000, seed=0):
    """Two predictors that each see half of the signal: their blend must beat both."""
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(z1 + z2)])
    return labels, [softmax(z1), softmax(z2 * 0.5)]


@pytest.mark.parametrize("method", ["linear", "loglinear"])
def test_fitted_weights_beat_or_equal_the_best_single_input(method):
    labels, arrays = _synthetic_predictors()
    weights = fit_weights(arrays, labels, method)
    singles = [log_loss(labels, a) for a in arrays]
    blended = log_loss(labels, blend(arrays, weights, method))
    assert blended <= min(singles) - 0.01
    # A useless third input gets (almost) no weight and never makes the blend worse.
    noise = softmax(np.random.default_rng(1).normal(size=arrays[0].shape) * 3)
    weights3 = fit_weights(arrays + [noise], labels, method)
    assert weights3[2] < 0.05 * weights3.sum()
    assert log_loss(labels, blend(arrays + [noise], weights3, method)) <= blended + 1e-3
    # The degenerate case: one good input and a copy of the uniform guess.
    uniform = np.full_like(arrays[0], 1 / 3)
    weights_u = fit_weights([arrays[0], uniform], labels, method)
    assert log_loss(labels, blend([arrays[0], uniform], weights_u, method)) <= singles[0] + 1e-9


def _write_preds(path, ids, probs):
    frame = pd.DataFrame({"id": ids})
    frame[list(LABELS)] = probs
    frame.to_csv(path, index=False)


def test_ensemble_cli_weights_and_fit_on(tmp_path, arena_csv):
    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(300)
    raw.to_csv(tmp_path / "labelled.csv", index=False)
    labels = load_frame(tmp_path / "labelled.csv")["label"].to_numpy()
    rng = np.random.default_rng(0)
    truth = np.eye(3)[labels]
    good = 0.5 * truth + 0.5 * softmax(rng.normal(size=(300, 3)))
    weak = 0.2 * truth + 0.8 * softmax(rng.normal(size=(300, 3)))
    _write_preds(tmp_path / "good.csv", raw["id"], good)
    _write_preds(tmp_path / "weak.csv", raw["id"][::-1], weak[::-1])  # another row order: matched by id

    run_cli("ensemble", tmp_path / "good.csv", tmp_path / "weak.csv", "--weights", "3,1",
            "--output", tmp_path / "b.csv")
    out = read_predictions(tmp_path / "b.csv")
    assert out["id"].tolist() == raw["id"].tolist()
    np.testing.assert_allclose(out[list(LABELS)].to_numpy(), 0.75 * good + 0.25 * weak, atol=2e-6)

    proc = run_cli("ensemble", tmp_path / "good.csv", tmp_path / "weak.csv", "--fit-on", tmp_path / "labelled.csv",
                   "--output", tmp_path / "fit.csv")
    fitted = read_predictions(tmp_path / "fit.csv")
    assert log_loss(labels, fitted[list(LABELS)].to_numpy()) <= log_loss(labels, good) + 1e-5
    assert "blend (linear): log loss" in proc.stdout

    _write_preds(tmp_path / "short.csv", raw["id"][:10], good[:10])
    bad = run_cli("ensemble", tmp_path / "good.csv", tmp_path / "short.csv", "--output", tmp_path / "x.csv",
                  check=False)
    assert bad.returncode == 2 and "short.csv" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.csv").exists()


def test_prediction_files_are_validated(tmp_path):
    path = tmp_path / "p.csv"
    _write_preds(path, ["1", "2"], np.array([[0.5, 0.5, 0.0], [0.7, 0.7, 0.1]]))
    with pytest.raises(DataError, match="row 2: probabilities sum to 1.5"):
        read_predictions(path)
    pd.DataFrame({"id": ["1"], "winner_model_a": [1.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column"):
        read_predictions(path)
    ok = pd.DataFrame({"id": ["1", "2"], LABELS[0]: [1.0, 0.0], LABELS[1]: [0.0, 1.0], LABELS[2]: [0.0, 0.0]})
    ids, arrays = align([ok, ok.iloc[::-1].reset_index(drop=True)], ["a", "b"])
    np.testing.assert_array_equal(arrays[0], arrays[1])


@pytest.mark.slow
def test_cv_json_of_a_neural_recipe_is_the_only_stdout(tmp_path, tiny_csv, tiny_deberta):
    """The Trainer prints its step logs to stdout; with --json they must go elsewhere so stdout parses."""
    proc = run_cli("cv", "--data", tiny_csv, "--folds", "2", "--output", tmp_path / "cv", "--model", "dual-tower",
                   "--backbone", tiny_deberta, "--max-length", "32", "--epochs", "1", "--eval-steps", "2",
                   "--batch-size", "8", "--json")
    printed = json.loads(proc.stdout)
    assert printed["folds"] == 2 and printed["rows"] == 64
