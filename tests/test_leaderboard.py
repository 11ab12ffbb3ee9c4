"""Leaderboards against a known truth: battles simulated from known ratings (Davidson ties), fits checked against
FastChat's logistic-regression recipe and a plain scipy MLE, bootstrap intervals checked for coverage, and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from arenapref.data import DataError
from arenapref.leaderboard import drop_rare_models, fit_davidson, fit_half_wins, leaderboard, pair_weights
from conftest import run_cli

TRUTH = {"alpha": 1250.0, "bravo": 1150.0, "charlie": 1080.0, "delta": 1000.0, "echo": 900.0, "foxtrot": 820.0}
NU = 0.8  # Davidson tie weight of the simulation


def davidson_probs(r_a, r_b, nu=NU):
    theta_a, theta_b = r_a * math.log(10) / 400, r_b * math.log(10) / 400
    z = np.stack([theta_a, theta_b, math.log(nu) + (theta_a + theta_b) / 2], axis=1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simulate(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = list(TRUTH)
    ratings = np.array([TRUTH[m] for m in names])
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    probs = davidson_probs(ratings[a], ratings[b])
    outcome = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    battles = pd.DataFrame({"id": [f"b{i}" for i in range(n)], "model_a": np.array(names)[a],
                            "model_b": np.array(names)[b]})
    return battles, np.eye(3)[outcome], probs, a, b


def centred(ratings):
    ratings = np.asarray(ratings, dtype=float)
    return ratings - ratings.mean()


@pytest.fixture(scope="module")
def sim():
    return simulate()


def test_half_wins_fit_equals_fastchat_logistic_regression(sim):
    from sklearn.linear_model import LogisticRegression

    battles, outcomes, _, a, b = sim
    pairs, weights = pair_weights(a, b, outcomes)
    ours = fit_half_wins(pairs, weights, len(TRUTH))
    # FastChat's compute_mle_elo: every battle twice ("one A win => two A wins"), +-log(10) features, and of a tie's
    # two copies one counts as an A win and one as a B win; no intercept, no penalty.
    x = np.zeros((len(a), len(TRUTH)))
    x[np.arange(len(a)), a], x[np.arange(len(a)), b] = math.log(10), -math.log(10)
    features = np.vstack([x, x])
    y = np.r_[outcomes[:, 0], outcomes[:, 0] * 0]
    y[: len(a)] += outcomes[:, 2]  # first copy of a tie: A won
    y[len(a):] = outcomes[:, 0]  # second copy: decisive rows as they were, ties as B wins
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(features, y)
    assert np.allclose(centred(ours), centred(400 * lr.coef_[0]), atol=0.5)


def test_davidson_fit_equals_a_direct_scipy_mle_and_recovers_the_truth(sim):
    battles, outcomes, _, a, b = sim
    pairs, weights = pair_weights(a, b, outcomes)
    ours, nu = fit_davidson(pairs, weights, len(TRUTH))

    def nll(params):  # the likelihood written out plainly, one battle at a time
        theta, log_nu = np.r_[0.0, params[:-1]], params[-1]
        pa, pb = np.exp(theta[a]), np.exp(theta[b])
        tie = np.exp(log_nu) * np.sqrt(pa * pb)
        total = pa + pb + tie
        return -(outcomes[:, 0] * np.log(pa / total) + outcomes[:, 1] * np.log(pb / total)
                 + outcomes[:, 2] * np.log(tie / total)).sum()

    direct = minimize(nll, np.zeros(len(TRUTH)), method="BFGS").x
    assert np.allclose(centred(ours), centred(np.r_[0.0, direct[:-1]] * 400 / math.log(10)), atol=0.5)
    assert nu == pytest.approx(math.exp(direct[-1]), rel=1e-3)
    assert nu == pytest.approx(NU, rel=0.15)
    assert np.abs(centred(ours) - centred(list(TRUTH.values()))).max() < 35


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_leaderboard_order_and_bootstrap_coverage(sim, ties):
    battles, outcomes, _, _, _ = sim
    table = leaderboard(battles, outcomes, bootstrap=60, ties=ties, seed=1)
    assert table["model"].tolist() == list(TRUTH)  # recovered order, best first
    assert (table["ci_low"] < table["rating"]).all() and (table["rating"] < table["ci_high"]).all()
    assert table["battles"].sum() == 2 * len(battles)
    assert table["rating"].mean() == pytest.approx(1000.0)
    assert np.all(np.diff(table["rating"]) < 0)  # half wins compresses the scale (ties pull ratings together)


@pytest.mark.parametrize("ci", ["bootstrap", "sandwich"])
def test_davidson_intervals_cover_the_truth_about_95_percent_of_the_time(ci):
    """Under the model that generated the data, 95% intervals cover each true rating about 95% of the time. One data
    set says little (6 correlated intervals); over 30 (180 intervals, +-3% of Monte Carlo noise) the share must lie
    in [88%, 99%]: intervals 20% too narrow cover about 88%, 30% too narrow 83%."""
    truth = centred(list(TRUTH.values())) + 1000
    covered = []
    for k in range(30):
        battles, outcomes, _, _, _ = simulate(seed=100 + k)
        table = leaderboard(battles, outcomes, bootstrap=200 if ci == "bootstrap" else 0, ties="davidson", seed=k,
                            ci=ci).set_index("model").loc[list(TRUTH)]
        covered += list((table["ci_low"] <= truth) & (truth <= table["ci_high"]))
    assert 0.88 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_soft_outcomes_from_exact_probabilities_give_the_true_ratings(sim):
    battles, _, probs, _, _ = sim
    table = leaderboard(battles, probs, bootstrap=0, ties="davidson")
    truth = centred(list(TRUTH.values())) + 1000
    assert np.allclose(table.set_index("model").loc[list(TRUTH), "rating"], truth, atol=1.0)


def test_anchor_model_sits_at_1000(sim):
    battles, outcomes, _, _, _ = sim
    table = leaderboard(battles, outcomes, bootstrap=10, anchor="delta").set_index("model")
    assert table.loc["delta", "rating"] == pytest.approx(1000.0)
    assert table.loc["delta", "ci_low"] == pytest.approx(1000.0) and table.loc["alpha", "rating"] > 1150


def test_cli_writes_csvs_chart_and_correlation(tmp_path, sim):
    battles, outcomes, probs, _, _ = sim
    data = battles.head(1500).copy()
    for j, col in enumerate(("winner_model_a", "winner_model_b", "winner_tie")):
        data[col] = outcomes[:1500, j].astype(int)
    data.to_csv(tmp_path / "battles.csv", index=False)
    pred = pd.DataFrame({"id": data["id"], "winner_model_a": probs[:1500, 0], "winner_model_b": probs[:1500, 1],
                         "winner_tie": probs[:1500, 2]}).iloc[::-1]  # order must not matter: joined on id
    pred.to_csv(tmp_path / "pred.csv", index=False)
    out = tmp_path / "board"
    proc = run_cli("leaderboard", "--data", tmp_path / "battles.csv", "--predictions", tmp_path / "pred.csv",
                   "--bootstrap", 20, "--output", out, env={"COLUMNS": "160"})
    human = pd.read_csv(out / "leaderboard.csv")
    judge = pd.read_csv(out / "leaderboard_judge.csv")
    assert human.columns.tolist() == ["model", "rating", "ci_low", "ci_high", "battles"]
    assert judge["model"].tolist() == list(TRUTH)  # the judge's votes are the true probabilities
    assert human["model"].tolist()[:2] == ["alpha", "bravo"] and human["battles"].sum() == 3000
    import json

    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["spearman"] > 0.9 and summary["kendall"] > 0.7 and summary["models"] == 6
    png = (out / "leaderboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "alpha" in proc.stdout and "Spearman" in proc.stdout
    assert not list(out.glob(".*tmp")) and not list(out.glob(".*.png"))  # atomic writes left no temporaries


def test_cli_accepts_fastchat_winner_column_and_reports_bad_input(tmp_path):
    rows = pd.DataFrame({"model_a": ["x", "y", "x", "z", "y", "z"], "model_b": ["y", "z", "z", "x", "x", "y"],
                         "winner": ["model_a", "model_a", "tie", "model_b", "model_b", "tie (bothbad)"]})
    rows.to_csv(tmp_path / "fc.csv", index=False)
    proc = run_cli("leaderboard", "--data", tmp_path / "fc.csv", "--bootstrap", 0, "--ties", "davidson")
    assert "x" in proc.stdout and "6 battles" in proc.stdout
    rows.drop(columns="model_b").to_csv(tmp_path / "bad.csv", index=False)
    bad = run_cli("leaderboard", "--data", tmp_path / "bad.csv", check=False)
    assert bad.returncode == 2 and "missing column(s) model_b" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("leaderboard", "--data", tmp_path / "fc.csv", "--predictions", tmp_path / "fc.csv",
                      "--output", tmp_path / "never", check=False)
    assert missing.returncode == 2 and "missing column(s) id" in missing.stderr
    assert not (tmp_path / "never").exists()


def test_min_battles_leaves_out_rare_models_and_their_battles():
    battles = pd.DataFrame({"model_a": ["a", "a", "b", "c", "a"], "model_b": ["b", "c", "c", "rare", "b"]})
    kept = drop_rare_models(battles, 3)  # counts: a 4, b 3, c 3, rare 1
    assert set(kept["model_a"]) | set(kept["model_b"]) == {"a", "b", "c"} and len(kept) == 4
    assert drop_rare_models(battles, 1) is battles
    with pytest.raises(DataError, match="--min-battles"):
        drop_rare_models(battles, 50)
