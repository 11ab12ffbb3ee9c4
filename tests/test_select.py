"""Choosing battles to label (select.py, `arenapref select`) and the battles a judge may label alone
(`arenapref auto-label`): each strategy picks what it claims on constructed cases, then the real command line on
the gbdt family."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.data.tables import load_frame
from arenapref.labeling.strategies import (
    choose,
    committee_disagreement,
    confident_rows,
    diverse_top,
    diversity_space,
    entropy,
    margin,
    random_scores,
    strategy_scores,
    swap_disagreement,
)
from conftest import run_cli


# -- strategies on constructed probabilities ----------------------------------------------------------------------
def test_entropy_picks_the_most_uncertain_row():
    probs = np.array([[0.8, 0.1, 0.1], [0.34, 0.33, 0.33], [0.5, 0.4, 0.1], [0.98, 0.01, 0.01]])
    assert entropy(probs)[1] == pytest.approx(-(0.34 * np.log(0.34) + 2 * 0.33 * np.log(0.33)))
    assert list(choose(strategy_scores("entropy", probs), 2)) == [1, 2]
    assert list(choose(strategy_scores("entropy", probs), 4)) == [1, 2, 0, 3]


def test_margin_picks_the_closest_top_two_where_entropy_does_not():
    # Row 0 is nearly uniform (highest entropy), row 1 has two outcomes exactly level (smallest margin).
    probs = np.array([[0.34, 0.33, 0.33], [0.45, 0.45, 0.10], [0.7, 0.2, 0.1]])
    assert margin(probs) == pytest.approx([0.99, 1.0, 0.5])
    assert choose(strategy_scores("margin", probs), 1)[0] == 1
    assert choose(strategy_scores("entropy", probs), 1)[0] == 0


def test_swap_disagreement_picks_rows_whose_two_answers_differ():
    direct = np.array([[0.5, 0.3, 0.2], [0.6, 0.2, 0.2], [0.34, 0.33, 0.33]])
    mirrored = np.array([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.33, 0.34, 0.33]])
    scores = swap_disagreement(direct, mirrored)
    assert scores == pytest.approx([0.0, 0.4, 0.01])
    # Row 2 is the most uncertain, but the model says the same thing both ways: row 1 is picked.
    assert choose(strategy_scores("swap-disagreement", direct, swapped=mirrored), 1)[0] == 1
    with pytest.raises(ValueError):
        strategy_scores("swap-disagreement", direct)


def test_committee_picks_where_members_disagree_not_where_all_are_unsure():
    members = np.array([
        [[0.34, 0.33, 0.33], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]],
        [[0.34, 0.33, 0.33], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1]],
        [[0.34, 0.33, 0.33], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]],
    ])
    scores = committee_disagreement(members)
    assert scores[0] == pytest.approx(0.0, abs=1e-12) and scores[2] == pytest.approx(0.0, abs=1e-12)
    assert scores[1] > 0.3
    assert choose(strategy_scores("committee", members.mean(0), members=members), 1)[0] == 1
    assert choose(strategy_scores("entropy", members.mean(0)), 1)[0] == 0  # entropy goes for the unsure row
    with pytest.raises(ValueError):
        committee_disagreement(members[:1])


def test_random_same_seed_same_picks():
    probs = np.full((50, 3), 1 / 3)
    a = choose(strategy_scores("random", probs, seed=3), 10)
    b = choose(strategy_scores("random", probs, seed=3), 10)
    c = choose(strategy_scores("random", probs, seed=4), 10)
    assert list(a) == list(b) and list(a) != list(c)
    assert len(set(a)) == 10
    assert np.array_equal(random_scores(5, 1), random_scores(5, 1))


def test_equal_scores_keep_the_pool_order():
    assert list(choose(np.array([0.5, 0.9, 0.5, 0.9, 0.5]), 4)) == [1, 3, 0, 2]


def _near_duplicates(seed: int = 0):
    """Rows 0-9: one battle copied ten times, the most uncertain of the pool; rows 10-39: distinct battles."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(40, 6)) * 3
    features[:10] = features[0]
    scores = np.concatenate([np.full(10, 1.09), np.linspace(1.08, 0.9, 30)])
    return scores, features


def test_diverse_batch_does_not_return_duplicates():
    scores, features = _near_duplicates()
    plain = choose(scores, 5)
    assert set(plain) <= set(range(10))  # plain entropy: five copies of the same battle
    picks = choose(scores, 5, features=features, diverse=True, seed=0)
    assert len(picks) == 5 and len(set(picks)) == 5
    assert len(set(picks) & set(range(10))) == 1  # one copy at most, and the copies are the best: one is taken
    assert len({features[i].tobytes() for i in picks}) == 5  # five different battles
    assert list(picks) == list(choose(scores, 5, features=features, diverse=True, seed=0))  # same seed, same picks
    assert scores[picks[0]] == scores.max() and list(np.argsort(-scores[picks], kind="stable")) == list(range(5))


def test_diverse_batch_with_fewer_distinct_rows_than_asked_still_fills_it():
    features = np.zeros((12, 3))
    features[6:] = 1.0  # two distinct battles, six copies each
    picks = diverse_top(np.linspace(1, 0, 12), diversity_space(features), 4, seed=0)
    assert len(set(picks)) == 4
    assert {0, 6} <= set(picks)  # the best copy of each distinct battle, then the best remaining rows


def test_confident_rows_keep_the_expected_error_under_the_rate():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.5, 0.3, 0.2]])
    rows, expected, threshold = confident_rows(probs, 0.2)
    # errors sorted: 0.10, 0.15, 0.30, 0.50, 0.60 -> running means 0.10, 0.125, 0.183, 0.2625: three rows
    assert list(rows) == [0, 3, 2]
    assert expected == pytest.approx((0.1 + 0.15 + 0.3) / 3) and threshold == pytest.approx(0.7)
    assert len(confident_rows(probs, 0.05)[0]) == 0
    assert len(confident_rows(probs, 0.99)[0]) == 5
    with pytest.raises(ValueError):
        confident_rows(probs, 0.0)


# -- the command line on the gbdt family ----------------------------------------------------------------------------
def assert_one_line_error(proc, *fragments):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-800:], err[-2000:])
    assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert str(fragment) in err, (fragment, err)


@pytest.fixture(scope="module")
def gbdt_dirs(gbdt_seed_models):
    """This file's name for conftest's gbdt_seed_models: gbdt0/, gbdt1/ and the pool of 120 other rows."""
    return gbdt_seed_models


def _select(root, out, *args):
    proc = run_cli("select", "--model", root / "gbdt0", "--data", root / "pool.csv", "--output", out, *args)
    return proc, pd.read_csv(out, dtype={"id": str})


def test_pool_without_labels_loads(gbdt_dirs):
    frame = load_frame(gbdt_dirs / "pool.csv")
    assert len(frame) == 120 and (frame["label"] == -1).all()


def test_select_entropy_writes_the_most_uncertain_battles(gbdt_dirs, tmp_path):
    from arenapref import Judge

    proc, picks = _select(gbdt_dirs, tmp_path / "picks.csv", "--count", 10, "--strategy", "entropy")
    assert list(picks.columns) == ["rank", "id", "strategy", "score", "prob_model_a", "prob_model_b", "prob_tie"]
    assert list(picks["rank"]) == list(range(1, 11)) and picks["id"].is_unique
    probs = Judge.from_pretrained(gbdt_dirs / "gbdt0").predict_proba(load_frame(gbdt_dirs / "pool.csv"))
    order = np.argsort(-entropy(probs), kind="stable")[:10]
    assert list(picks["id"]) == list(load_frame(gbdt_dirs / "pool.csv")["id"].iloc[order])
    np.testing.assert_allclose(picks["score"], entropy(probs)[order], atol=2e-6)
    np.testing.assert_allclose(picks[["prob_model_a", "prob_model_b", "prob_tie"]].sum(axis=1), 1.0, atol=1e-6)
    assert "picked 10 of 120 battles" in proc.stdout


@pytest.mark.slow
def test_select_honours_exclude_and_seed(gbdt_dirs, tmp_path):
    _, first = _select(gbdt_dirs, tmp_path / "a.csv", "--count", 15, "--strategy", "random", "--seed", 5)
    _, again = _select(gbdt_dirs, tmp_path / "b.csv", "--count", 15, "--strategy", "random", "--seed", 5)
    _, other = _select(gbdt_dirs, tmp_path / "c.csv", "--count", 15, "--strategy", "random", "--seed", 6)
    assert list(first["id"]) == list(again["id"]) and list(first["id"]) != list(other["id"])
    _, entropy_first = _select(gbdt_dirs, tmp_path / "d.csv", "--count", 10, "--strategy", "entropy")
    proc, rest = _select(gbdt_dirs, tmp_path / "e.csv", "--count", 20, "--exclude", tmp_path / "d.csv",
                         "--exclude", tmp_path / "a.csv", "--json")
    excluded = set(entropy_first["id"]) | set(first["id"])
    assert not set(rest["id"]) & excluded and len(rest) == 20
    assert json.loads(proc.stdout)["excluded"] == len(excluded)
    # an --exclude file holding every pool id leaves nothing: one line, exit 2
    proc = run_cli("select", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv", "--output",
                   tmp_path / "f.csv", "--count", 5, "--exclude", gbdt_dirs / "pool.csv", check=False)
    assert_one_line_error(proc, "pool.csv", "excluded")
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.slow
def test_select_swap_disagreement_committee_and_diverse(gbdt_dirs, tmp_path):
    _, swap = _select(gbdt_dirs, tmp_path / "s.csv", "--count", 8, "--strategy", "swap-disagreement")
    assert (swap["score"] > 0).all() and swap["score"].is_monotonic_decreasing  # the gbdt's two readings differ
    _, committee = _select(gbdt_dirs, tmp_path / "c.csv", "--count", 8, "--strategy", "committee",
                           "--committee", gbdt_dirs / "gbdt0", "--committee", gbdt_dirs / "gbdt1")
    assert committee["score"].is_monotonic_decreasing and (committee["strategy"] == "committee").all()
    _, diverse = _select(gbdt_dirs, tmp_path / "d.csv", "--count", 12, "--strategy", "entropy", "--diverse")
    _, default = _select(gbdt_dirs, tmp_path / "r.csv", "--count", 5)
    assert (default["strategy"] == "random").all()  # the default: nothing measured beat it
    assert diverse["id"].is_unique and len(diverse) == 12 and (diverse["strategy"] == "entropy+diverse").all()


def test_both_orders_of_the_gbdt_are_its_two_one_sided_readings(gbdt_dirs):
    from arenapref import Judge
    from arenapref.data.swap import swap_columns, swap_frame

    judge = Judge.from_pretrained(gbdt_dirs / "gbdt0")
    frame = load_frame(gbdt_dirs / "pool.csv").head(30)
    direct, mirrored, usual = judge.predict_both_orders(frame)
    np.testing.assert_allclose(usual, judge.predict_proba(frame))
    swapped_direct, swapped_mirrored, _ = judge.predict_both_orders(swap_frame(frame))
    np.testing.assert_allclose(swap_columns(swapped_direct), mirrored, atol=1e-12)
    np.testing.assert_allclose(swap_columns(swapped_mirrored), direct, atol=1e-12)
    assert np.abs(direct - mirrored).max() > 1e-4


@pytest.mark.slow
def test_select_errors_are_one_line(gbdt_dirs, tmp_path):
    base = ("select", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv", "--output", tmp_path / "x.csv")
    assert_one_line_error(run_cli(*base, "--count", 5, "--strategy", "loudest", check=False), "--strategy", "entropy")
    assert_one_line_error(run_cli(*base, "--count", 0, check=False), "--count")
    assert_one_line_error(run_cli(*base, "--count", 5, "--strategy", "committee", check=False), "--committee")
    (tmp_path / "noid.csv").write_text("name\nx\n")
    assert_one_line_error(run_cli(*base, "--count", 5, "--exclude", tmp_path / "noid.csv", check=False),
                          "noid.csv", "id column")
    assert_one_line_error(run_cli(*base, "--count", 5, "--strategy", "committee", "--committee", tmp_path,
                                  check=False), str(tmp_path))
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_auto_label_writes_confident_battles_as_labels(gbdt_dirs, tmp_path):
    out = tmp_path / "auto.csv"
    proc = run_cli("auto-label", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv", "--output", out,
                   "--max-error", 0.45, "--check", gbdt_dirs / "pool_labelled.csv", "--json")
    summary = json.loads(proc.stdout)
    written = load_frame(out, require_labels=True)  # trains like human labels: Kaggle layout, one-hot winners
    table = pd.read_csv(out)
    probs = table[["prob_model_a", "prob_model_b", "prob_tie"]].to_numpy()
    assert len(written) == summary["auto_labelled"] > 0
    assert (written["label"].to_numpy() == probs.argmax(axis=1)).all()
    assert (1 - probs.max(axis=1)).mean() == pytest.approx(summary["expected_error"], abs=1e-5)
    assert summary["expected_error"] <= 0.45 and (table["confidence"] >= summary["min_confidence"] - 1e-6).all()
    # the check file holds the same battles with their labels: same rows picked, realised error measured
    check = summary["check"]
    assert check["rows"] == summary["auto_labelled"] and 0 <= check["realised_error"] <= 1
    assert summary["calibration"]["kind"] in ("temperature", "none")
    # a stricter rate picks a subset; an impossible one says so and writes the header only (a valid empty answer)
    strict = json.loads(run_cli("auto-label", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv",
                                "--output", tmp_path / "strict.csv", "--max-error", 0.4, "--json").stdout)
    assert strict["auto_labelled"] <= summary["auto_labelled"]
    proc = run_cli("auto-label", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv", "--output",
                   tmp_path / "none.csv", "--max-error", 0.001)
    assert "no battle of" in proc.stdout and "--max-error" in proc.stdout
    empty = pd.read_csv(tmp_path / "none.csv")
    assert len(empty) == 0 and list(empty.columns) == list(pd.read_csv(out).columns)
    assert_one_line_error(run_cli("auto-label", "--model", gbdt_dirs / "gbdt0", "--data", gbdt_dirs / "pool.csv",
                                  "--output", tmp_path / "y.csv", "--max-error", 1.5, check=False), "--max-error")


class _PositionBiased:
    """A stand-in backend that favours whichever response is longer, and response A a little more."""

    def predict_logits(self, frame, progress=None):
        a = np.array([len(" ".join(t)) for t in frame["response_a"]], dtype=float)
        b = np.array([len(" ".join(t)) for t in frame["response_b"]], dtype=float)
        return np.column_stack([np.log1p(a) + 0.3, np.log1p(b), np.full(len(a), 1.0)]), None


def _tiny_frame():
    from arenapref.data.tables import normalize

    return normalize(pd.DataFrame({"id": ["1", "2"], "prompt": [["q"], ["q"]], "response_a": [["short"], ["a b c d"]],
                                   "response_b": [["a much longer answer"], ["a b c d"]]}))


def test_both_orders_of_a_family_asked_twice():
    from arenapref.api import Judge
    from arenapref.evaluation.metrics import softmax

    frame = _tiny_frame()
    judge = Judge(_PositionBiased(), {"calibration": {"temperature": 2.0}})
    direct, mirrored, usual = judge.predict_both_orders(frame)
    np.testing.assert_allclose(direct, judge.predict_proba(frame))
    np.testing.assert_allclose(usual, direct)
    logits, _ = _PositionBiased().predict_logits(frame.assign(response_a=frame["response_b"],
                                                              response_b=frame["response_a"]))
    np.testing.assert_allclose(mirrored[:1], softmax(logits[:1, [1, 0, 2]] / 2.0))  # row 2: identical responses
    # the position bias separates the two answers, and swap-disagreement sees it; identical responses (row 2) get
    # P(A) = P(B) by rule in every answer, so their two orders agree
    assert swap_disagreement(direct, mirrored)[0] > 0.01
    assert swap_disagreement(direct, mirrored)[1] == 0.0 and direct[1, 0] == direct[1, 1]
    swap_judge = Judge(_PositionBiased(), {"calibration": {"temperature": 2.0}}, tta="swap")
    np.testing.assert_allclose(swap_judge.predict_both_orders(frame)[2], swap_judge.predict_proba(frame), atol=1e-6)


def test_hybrid_blends_the_one_sided_answers_of_its_parts():
    from arenapref.api import Judge
    from arenapref.inference.hybrid import HybridBackend

    frame = _tiny_frame()
    part = Judge(_PositionBiased(), {})
    flat = Judge(type("Flat", (), {"predict_logits": lambda self, f, p=None: (np.zeros((len(f), 3)), None)})(), {})
    hybrid = Judge(HybridBackend([(0.25, part), (0.75, flat)], {}), {})
    direct, mirrored, usual = hybrid.predict_both_orders(frame)
    part_direct, part_mirrored, _ = part.predict_both_orders(frame)
    np.testing.assert_allclose(direct, 0.25 * part_direct + 0.75 / 3, atol=1e-9)
    np.testing.assert_allclose(mirrored, 0.25 * part_mirrored + 0.75 / 3, atol=1e-9)
    np.testing.assert_allclose(usual, hybrid.predict_proba(frame))
