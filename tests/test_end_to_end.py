"""train -> save -> load -> evaluate -> predict through the real command line, on real rows."""

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.api import Judge
from arenapref.data.tables import load_frame
from arenapref.evaluation.metrics import classification_metrics
from conftest import DUAL_TOWER_ARGS as FAST
from conftest import run_cli


@pytest.fixture(scope="module")
def trained(dual_tower_model):
    """This file's name for conftest's dual_tower_model (trained with FAST)."""
    return dual_tower_model


def test_model_directory_is_self_contained(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "arenapref.json", "tokenizer_config.json"} <= names
    meta = json.loads((trained / "arenapref.json").read_text())
    assert meta["model_type"] == "dual-tower" and meta["objective"] == "classify"
    assert meta["labels"] == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert meta["text"]["max_length"] == 48
    assert meta["valid_rows"] > 0 and meta["train_rows"] + meta["valid_rows"] == 96
    # the best checkpoint by validation log loss was kept
    state = json.loads((trained / "training_log.json").read_text())
    evals = [h["eval_log_loss"] for h in state["log_history"] if "eval_log_loss" in h]
    assert np.isclose(state["best_metric"], min(evals))
    # ... unless the linear probe it started from was better still (LP-FT keeps the better of the two)
    tune = meta["fine_tune"]
    kept = min(evals) if tune["kept"] == "fine-tuned" else tune["probe_valid"]
    assert tune["kept"] == "fine-tuned" or tune["probe_valid"] <= min(evals)
    assert np.isclose(meta["valid_metrics"]["log_loss"], kept, atol=1e-4)


def test_evaluate_json_matches_in_process_metrics(trained, small_csv):
    proc = run_cli("evaluate", "--model", trained, "--data", small_csv, "--json")
    reported = json.loads(proc.stdout.strip().splitlines()[-1])
    frame = load_frame(small_csv)
    expected = classification_metrics(frame["label"].to_numpy(), Judge.from_pretrained(trained).predict_proba(frame))
    for key in ("log_loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "n"):
        assert np.isclose(reported[key], expected[key], atol=1e-6), key
    table = run_cli("evaluate", "--model", trained, "--data", small_csv).stdout
    assert "log_loss" in table and "per class" in table


def test_predict_writes_a_kaggle_submission_for_a_test_file(trained, small_csv, tmp_path):
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    test = raw[["id", "prompt", "response_a", "response_b"]].iloc[::-1]  # no labels, no model names, new order
    test.to_csv(tmp_path / "test.csv", index=False)
    run_cli("predict", "--model", trained, "--data", tmp_path / "test.csv", "--output", tmp_path / "sub.csv")
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    assert sub.columns.tolist() == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert sub["id"].tolist() == test["id"].tolist()
    probs = sub.iloc[:, 1:].to_numpy()
    assert np.all(probs >= 0) and np.all(np.round(probs.sum(1), 6) == 1.0)
    text = (tmp_path / "sub.csv").read_text().splitlines()[1]
    assert all(len(v.split(".")[1]) == 6 for v in text.split(",")[1:])
    judge = Judge.from_pretrained(trained)
    direct = judge.predict_proba(load_frame(tmp_path / "test.csv"))
    assert np.allclose(probs, direct, atol=2e-6)
    one = judge.predict(json.loads(test["prompt"].iloc[0]), json.loads(test["response_a"].iloc[0]),
                        json.loads(test["response_b"].iloc[0]))
    assert np.allclose(list(one.values()), direct[0], atol=1e-6)


@pytest.mark.parametrize("rank_loss", ["davidson", "mse"])
@pytest.mark.slow
def test_rank_objective_end_to_end(rank_loss, small_csv, tiny_deberta, tmp_path):
    out = tmp_path / rank_loss
    run_cli("train", "--data", small_csv, "--output", out, "--backbone", tiny_deberta, "--objective", "rank",
            "--rank-loss", rank_loss, *FAST)
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["objective"] == "rank" and meta["rank_loss"] == rank_loss
    assert ("link" in meta) == (rank_loss == "mse")
    run_cli("predict", "--model", out, "--data", small_csv, "--output", tmp_path / "p.csv", "--scores")
    pred = pd.read_csv(tmp_path / "p.csv")
    assert pred.columns.tolist()[-2:] == ["score_a", "score_b"]
    # probabilities are the Davidson link of the scores
    judge = Judge.from_pretrained(out)
    # (scores carry the link's scale and are divided by the temperature, like the logits)
    s = pred[["score_a", "score_b"]].to_numpy()
    logits = np.stack([s[:, 0], s[:, 1], judge.model.log_nu.item() / judge.temperature + s.mean(1)], 1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(p, pred.iloc[:, 1:4].to_numpy(), atol=5e-5)
    metrics = json.loads(run_cli("evaluate", "--model", out, "--data", small_csv, "--json").stdout.splitlines()[-1])
    assert 0.5 < metrics["log_loss"] < 2.0


@pytest.mark.slow
def test_yaml_config_with_flag_override(small_csv, tiny_deberta, tmp_path):
    (tmp_path / "cfg.yaml").write_text(f"backbone: {tiny_deberta}\nmax-length: 40\nepochs: 1\neval_steps: 100\n"
                                       f"batch_size: 16\nseed: 3\n")
    out = tmp_path / "m"
    run_cli("train", "--config", tmp_path / "cfg.yaml", "--data", small_csv, "--output", out, "--max-length", "32",
            "--model", "dual-tower")
    cfg = json.loads((out / "arenapref.json").read_text())["train_config"]
    assert cfg["max_length"] == 32 and cfg["batch_size"] == 16 and cfg["seed"] == 3
    bad = run_cli("train", "--config", tmp_path / "cfg.yaml", "--data", small_csv, "--output", out,
                  "--objective", "regress", check=False)
    assert bad.returncode == 2 and "objective 'regress'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_default_backbone_minilm_offline(small_csv, tmp_path):
    """The default backbone (all-MiniLM-L6-v2 from PyPI) trains and predicts with no Hub access."""
    out = tmp_path / "minilm"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "dual-tower", "--max-length", "32",
            "--epochs", "1", "--batch-size", "16", "--eval-steps", "100")
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["backbone"] == "all-MiniLM-L6-v2"  # by name: no path of the training machine
    assert json.loads((out / "config.json").read_text())["encoder"]["hidden_size"] == 384
    probs = Judge.from_pretrained(out).predict_proba(load_frame(small_csv))
    assert probs.shape == (96, 3) and np.allclose(probs.sum(1), 1)
