"""The simulated annotation campaign (campaign.py, bench/active.py): labels come only from the Oracle, for the ids
a strategy asked about; the curves are read honestly; the benchmark runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from arenapref.data.split import grouped_split
from arenapref.data.tables import LABELS, load_frame, one_hot
from arenapref.evaluation.metrics import log_loss
from arenapref.labeling.campaign import (
    GBDTLearner,
    Oracle,
    labels_to_reach,
    run_campaign,
    strip_labels,
    summarize_campaigns,
)
from conftest import ROOT


def test_oracle_reveals_only_what_it_is_asked():
    oracle = Oracle(["a", "b", "c"], [0, 2, 1])
    assert list(oracle.reveal(["c", "a"])) == [1, 0]
    assert oracle.asked == ["c", "a"]
    with pytest.raises(ValueError):
        oracle.reveal(["a"])  # twice
    with pytest.raises(ValueError):
        oracle.reveal(["zzz"])
    assert set(vars(oracle)) == {"_Oracle__labels", "asked"}  # the labels are not a public attribute


class CheatingPredictor:
    """Answers with certainty from whatever labels the frame it is shown still carries; uniform otherwise."""

    def __init__(self, log):
        self.log = log

    def predict_proba(self, frame):
        self.log.append(("predict", frame))
        known = frame["label"].to_numpy() if "label" in frame else np.full(len(frame), -1)
        for col in LABELS:
            if col in frame:  # winner columns would give the label away just as well
                known = np.where(frame[col].to_numpy() == 1, LABELS.index(col), known)
        probs = np.full((len(frame), 3), 1 / 3)
        probs[known >= 0] = one_hot(known[known >= 0]) * 0.98 + 0.01
        return probs


class SpyLearner:
    def __init__(self):
        self.fits, self.log = [], []

    def fit(self, frame, labels, seed):
        self.fits.append((list(frame["id"]), list(labels), frame))
        return CheatingPredictor(self.log)


@pytest.fixture(scope="module")
def labelled(arena_csv):
    frame = load_frame(arena_csv, require_labels=True).head(160)
    pool, heldout = grouped_split(frame, 0.25, 0)
    return pool, heldout


def _leaky(frame):
    """The rows with their labels in every form: `label` and the Kaggle winner columns."""
    out = frame.copy()
    for j, col in enumerate(LABELS):
        out[col] = (out["label"] == j).astype(int)
    return out


def test_the_campaign_never_reveals_a_label_it_was_not_asked_for(labelled):
    pool, heldout = labelled
    truth = dict(zip(pool["id"], pool["label"]))
    leaky_pool, leaky_heldout = _leaky(pool), _leaky(heldout)
    # The leak is real: shown these frames, the cheat scores almost perfectly.
    assert log_loss(heldout["label"], CheatingPredictor([]).predict_proba(leaky_heldout)) < 0.03
    oracle = Oracle(pool["id"], pool["label"])
    learner = SpyLearner()
    rounds = run_campaign(leaky_pool, oracle, leaky_heldout, heldout["label"].to_numpy(), learner, "entropy",
                          seed_size=20, batch_size=15, budget=65, seed=3)
    assert [r["labels"] for r in rounds] == [20, 35, 50, 65]
    # Every frame the learner and the strategy saw was stripped; the held-out part too: the cheat learnt nothing.
    for _, _, frame in learner.fits:
        assert (frame["label"] == -1).all() and not set(LABELS) & set(frame.columns)
    for _, frame in learner.log:
        assert (frame["label"] == -1).all() and not set(LABELS) & set(frame.columns)
    assert all(r["log_loss"] == pytest.approx(np.log(3)) for r in rounds)
    # The labels the learner got are exactly those the oracle revealed, for exactly the ids asked, once each.
    assert len(oracle.asked) == 65 and len(set(oracle.asked)) == 65
    for ids, labels, _ in learner.fits:
        assert ids == oracle.asked[:len(ids)]
        assert labels == [truth[i] for i in ids]
    assert sum((r["revealed"] for r in rounds), []) == oracle.asked
    assert not set(oracle.asked) & set(heldout["id"])


def test_labels_to_reach_interpolates_the_first_crossing():
    labels = [50, 100, 150, 200]
    assert labels_to_reach(labels, [1.10, 1.08, 1.04, 1.05], 1.06) == pytest.approx(125.0)
    assert labels_to_reach(labels, [1.10, 1.08, 1.07, 1.065], 1.06) is None
    assert labels_to_reach(labels, [1.0, 1.08, 1.07, 1.065], 1.06) == 50.0
    runs = {"random": [[{"labels": x, "log_loss": y, "accuracy": 0.4} for x, y in zip(labels, c)]
                       for c in ([1.10, 1.08, 1.07, 1.06], [1.10, 1.08, 1.07, 1.06])],
            "smart": [[{"labels": x, "log_loss": y, "accuracy": 0.4} for x, y in zip(labels, c)]
                      for c in ([1.10, 1.06, 1.05, 1.04], [1.10, 1.08, 1.05, 1.04])]}
    summary = summarize_campaigns(runs)
    assert summary["target_log_loss"] == pytest.approx(1.06) and summary["target_labels"] == 200
    # smart's mean curve: 1.10, 1.07, 1.05: crosses 1.06 halfway between 100 and 150
    assert summary["labels_needed"]["smart"] == pytest.approx(125.0)
    assert summary["labels_saved_vs_random"] == {"random": 0.0, "smart": 75.0}
    assert summary["strategies"]["smart"]["labels_saved_per_seed"] == [100.0, 66.7]
    # a baseline whose mean curve reaches its final value early: saved is counted from there, not from the end
    runs["random"][0][2]["log_loss"] = runs["random"][1][2]["log_loss"] = 1.055
    summary = summarize_campaigns(runs)
    assert summary["labels_needed"]["random"] == pytest.approx(100 + 50 * 0.02 / 0.025)
    assert summary["labels_saved_vs_random"]["random"] == 0.0
    assert summary["labels_saved_vs_random"]["smart"] == pytest.approx(140 - 125, abs=0.05)


@pytest.mark.parametrize("strategy,diverse", [("committee", False), ("entropy", True), ("swap-disagreement", False)])
def test_a_gbdt_campaign_is_deterministic(labelled, strategy, diverse):
    pool, heldout = labelled
    learner = GBDTLearner(committee=3)
    features = lambda rows: np.hstack([learner.features(rows)[k] for k in ("side_a", "side_b", "pair")])
    curves = []
    for _ in range(2):
        oracle = Oracle(pool["id"], pool["label"])
        rounds = run_campaign(pool, oracle, heldout, heldout["label"].to_numpy(), learner, strategy, 40, 30, 100,
                              seed=1, diverse=diverse, features=features)
        assert len(oracle.asked) == 100 and [r["labels"] for r in rounds] == [40, 70, 100]
        curves.append(([r["log_loss"] for r in rounds], oracle.asked))
    assert curves[0] == curves[1]
    assert all(np.isfinite(curves[0][0])) and max(curves[0][0]) < 1.5


def test_strip_labels_leaves_only_the_battle(arena_csv):
    frame = _leaky(load_frame(arena_csv).head(5))
    stripped = strip_labels(frame)
    assert (stripped["label"] == -1).all() and not set(LABELS) & set(stripped.columns)
    assert list(stripped["id"]) == list(frame["id"])


@pytest.mark.slow
def test_bench_active_runs_end_to_end(tmp_path, arena_csv):
    out = tmp_path / "campaign"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "active.py"), "--data", str(arena_csv),
                           "--seeds", "1", "--seed-size", "50", "--batch-size", "50", "--budget", "150",
                           "--strategies", "random,committee,entropy+diverse", "--output", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last["labels_saved_vs_random"]) == {"random", "committee", "entropy+diverse"}
    assert last["labels_saved_vs_random"]["random"] == 0.0 and last["target_labels"] == 150
    from arenapref.evaluation.report import load_campaign

    campaign = load_campaign(out)
    assert campaign["strategies"]["committee"]["labels"] == [50, 100, 150]
    assert (out / "learning_curves.png").stat().st_size > 5000
    assert [row["max_error"] for row in campaign["auto_label"]] == [0.25, 0.3, 0.35, 0.4]
