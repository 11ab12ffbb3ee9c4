"""Leaderboards as LMArena publishes them: its battle format (both-bad votes), Rank (UB), standard errors and interval
levels, anchors, per-battle weights, covariates of the user's own, category boards (a column's values or the
built-in prompt categories), the win-fraction and battle-count matrices, and a golden comparison with lmarena's
arena-rank (numbers made once by bench/arena_rank_golden.py in a virtual environment of their own)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from arenapref.errors import DataError
from arenapref.ratings.categories import CATEGORIES, category_bits, category_flags
from arenapref.ratings.leaderboard import (
    ELO_PER_NATURAL,
    Votes,
    category_masks,
    load_battles,
    pair_matrices,
    rate,
    upper_bound_ranks,
    win_fractions,
    write_leaderboards,
)
from arenapref.ratings.style import STYLE_FEATURES, style_covariates
from conftest import run_cli

TRUTH = {"alpha": 1250.0, "bravo": 1150.0, "charlie": 1080.0, "delta": 1000.0, "echo": 900.0, "foxtrot": 820.0}
GOLDEN = Path(__file__).parent / "data"


def simulate(n: int = 3000, seed: int = 0, covariate_effect: float = 0.0):
    """Battles among TRUTH's models (half-win outcomes with ties), a covariate x ~ N(0, 1) moving P(A) by
    `covariate_effect` log-odds per unit, and integer weights 1-3."""
    rng = np.random.default_rng(seed)
    names = np.array(list(TRUTH))
    elo = np.array(list(TRUTH.values()))
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    x = rng.standard_normal(n)
    d = (elo[a] - elo[b]) / ELO_PER_NATURAL + covariate_effect * x
    z = np.stack([d / 2, -d / 2, np.full(n, math.log(0.6))], axis=1)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 2)
    battles = pd.DataFrame({"id": [f"b{i}" for i in range(n)], "model_a": names[a], "model_b": names[b],
                            "winner": np.array(["model_a", "model_b", "tie"])[labels], "x": x,
                            "weight": rng.integers(1, 4, n)})
    return battles, labels, probs


@pytest.fixture(scope="module")
def sim():
    return simulate()


# -- LMArena's battle format ---------------------------------------------------------------------------------------
def test_both_bad_votes_count_as_ties_by_default_or_are_dropped(tmp_path):
    rows = pd.DataFrame({"model_a": ["x", "y", "x", "z", "y", "z", "x"], "model_b": ["y", "z", "z", "x", "x", "y", "y"],
                         "winner": ["model_a", "both_bad", "tie", "model_b", " tie (bothbad) ", "model_a", "both_bad"]})
    rows.to_csv(tmp_path / "arena.csv", index=False)
    tied = load_battles(tmp_path / "arena.csv")
    assert tied["winner"].tolist() == [0, 2, 2, 1, 2, 0, 2]
    assert tied["both_bad"].tolist() == [False, True, False, False, True, False, True]
    dropped = load_battles(tmp_path / "arena.csv", both_bad="drop")
    assert dropped["winner"].tolist() == [0, 2, 1, 0] and dropped.attrs["both_bad_dropped"] == 3
    # A tie and a both-bad vote weigh the same when counted as ties: the fit equals the one with plain ties.
    plain = rows.assign(winner=rows["winner"].str.strip().replace({"both_bad": "tie", "tie (bothbad)": "tie"}))
    plain.to_csv(tmp_path / "plain.csv", index=False)
    as_ties = rate(tied, tied["winner"].to_numpy(), bootstrap=0).table
    reference = rate(load_battles(tmp_path / "plain.csv"), load_battles(tmp_path / "plain.csv")["winner"].to_numpy(),
                     bootstrap=0).table
    pd.testing.assert_frame_equal(as_ties, reference)

    out = tmp_path / "board"
    run_cli("leaderboard", "--data", tmp_path / "arena.csv", "--bootstrap", 0, "--both-bad", "drop", "--output", out)
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["both_bad"] == {"counted_as": "dropped", "battles": 3} and summary["battles"] == 4
    run_cli("leaderboard", "--data", tmp_path / "arena.csv", "--bootstrap", 0, "--output", out)
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["both_bad"] == {"counted_as": "tie", "battles": 3} and summary["battles"] == 7


def test_unknown_winner_values_and_flags_are_one_clear_line(tmp_path):
    rows = pd.DataFrame({"model_a": ["x", "y", "x"], "model_b": ["y", "x", "y"],
                         "winner": ["model_a", "bothbad", "tie"]})
    rows.to_csv(tmp_path / "bad.csv", index=False)
    bad = run_cli("leaderboard", "--data", tmp_path / "bad.csv", check=False)
    assert bad.returncode == 2 and "row 2 column winner: 'bothbad'" in bad.stderr and "both_bad" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    for flags, message in ((["--both-bad", "keep"], "--both-bad keep: expected tie or drop"),
                           (["--ci-level", "95"], "--ci-level 95.0: expected a number between 0 and 1"),
                           (["--anchor-model", "x"], "--anchor-model x: expected NAME=RATING"),
                           (["--anchor-model", "x=1", "--anchor", "x"], "--anchor and --anchor-model both given"),
                           (["--categories", "cooking"], "--categories cooking: unknown cooking"),
                           (["--plots"], "--plots writes PNG files; give --output DIR too"),
                           (["--weights", "w"], "no column 'w' (asked for as the battles' weight)")):
        proc = run_cli("leaderboard", "--data", tmp_path / "bad.csv", *flags, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


# -- Rank (UB), standard errors, interval level, anchors -------------------------------------------------------
def test_rank_ub_counts_the_models_whose_lower_bound_is_above_the_upper_bound():
    ratings = np.array([1200.0, 1150, 1100, 900, 880])
    low = np.array([1150.0, 1120, 1000, 850, np.nan])
    high = np.array([1250.0, 1180, 1200, 950, np.nan])
    # 1150's upper bound 1180 is under no lower bound; 900's (950) is under 1150, 1120 and 1000; the last model has
    # no interval: its bounds are its rating 880, under the same three lower bounds (not 900's 850).
    assert upper_bound_ranks(ratings, low, high).tolist() == [1, 1, 1, 4, 4]


def test_board_carries_rank_ub_and_standard_errors(sim):
    battles, labels, _ = sim
    for ci, bootstrap in (("sandwich", 0), ("bootstrap", 200)):
        table = rate(battles, labels, bootstrap=bootstrap, ci=ci, seed=3).table
        assert table["rank_ub"].tolist() == upper_bound_ranks(table["rating"].to_numpy(), table["ci_low"].to_numpy(),
                                                              table["ci_high"].to_numpy()).tolist()
        assert table["rank_ub"].iloc[0] == 1 and (np.diff(table["rank_ub"]) >= 0).all()
        # 95% intervals are about 2 standard errors each way (bootstrap: percentiles, so roughly)
        width = (table["ci_high"] - table["ci_low"]) / (2 * 1.959963984540054 * table["se"])
        assert np.allclose(width, 1.0, atol=1e-9 if ci == "sandwich" else 0.2), width.tolist()


def test_ci_level_sets_the_interval_coverage(sim):
    battles, labels, _ = sim
    wide = rate(battles, labels, ci="sandwich", bootstrap=0, ci_level=0.99).table
    narrow = rate(battles, labels, ci="sandwich", bootstrap=0, ci_level=0.8).table
    ratio = (wide["ci_high"] - wide["ci_low"]) / (narrow["ci_high"] - narrow["ci_low"])
    assert np.allclose(ratio, 2.5758293035489 / 1.2815515655446, rtol=1e-9)  # z(0.995) / z(0.9)
    boot_wide = rate(battles, labels, bootstrap=200, ci_level=0.95, seed=1).table
    boot_narrow = rate(battles, labels, bootstrap=200, ci_level=0.5, seed=1).table
    assert ((boot_narrow["ci_high"] - boot_narrow["ci_low"]) < (boot_wide["ci_high"] - boot_wide["ci_low"])).all()
    assert (boot_narrow["se"] == boot_wide["se"]).all()  # the same resamples: only the percentiles differ
    with pytest.raises(DataError, match="ci level 1.5"):
        rate(battles, labels, ci_level=1.5)


@pytest.mark.parametrize("ci", ["bootstrap", "sandwich"])
def test_anchor_model_pins_a_model_at_a_chosen_rating(sim, ci, tmp_path):
    battles, labels, _ = sim
    free = rate(battles, labels, bootstrap=0, ci="sandwich").table.set_index("model")
    pinned = rate(battles, labels, bootstrap=50 if ci == "bootstrap" else 0, ci=ci, anchor="delta",
                  anchor_rating=1234.5).table.set_index("model")
    assert pinned.loc["delta", "rating"] == pytest.approx(1234.5)
    assert pinned.loc["delta", "ci_low"] == pytest.approx(1234.5) and pinned.loc["delta", "se"] == pytest.approx(0)
    shift = pinned["rating"] - free["rating"].reindex(pinned.index)
    assert np.allclose(shift, shift.iloc[0])  # the same differences, moved
    battles.to_csv(tmp_path / "b.csv", index=False)
    run_cli("leaderboard", "--data", tmp_path / "b.csv", "--ci", "sandwich", "--anchor-model", "delta=1234.5",
            "--output", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "leaderboard.csv").set_index("model")
    assert table.loc["delta", "rating"] == pytest.approx(1234.5, abs=0.05)
    assert json.loads((tmp_path / "out" / "leaderboard.json").read_text())["anchor_rating"] == 1234.5


# -- weights ---------------------------------------------------------------------------------------------------
def repeated(battles: pd.DataFrame, values: np.ndarray, weights: np.ndarray):
    index = np.repeat(np.arange(len(battles)), weights)
    return battles.iloc[index].reset_index(drop=True), np.asarray(values)[index]


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_integer_weights_equal_repeated_rows(sim, ties):
    battles, labels, probs = sim
    weights = battles["weight"].to_numpy()
    for outcomes in (labels, probs):
        weighted = rate(battles, outcomes, bootstrap=0, ties=ties, weights=weights).table
        copies, values = repeated(battles, outcomes, weights)
        reference = rate(copies, values, bootstrap=0, ties=ties).table
        assert np.allclose(weighted["rating"], reference["rating"], atol=1e-6)
        assert weighted["model"].tolist() == reference["model"].tolist()
    # and so with covariates: the coefficients too
    covariates = battles[["x"]].to_numpy()
    weighted = rate(battles, labels, bootstrap=0, ties=ties, weights=weights, style=covariates, style_names=["x"])
    copies, values = repeated(battles, labels, weights)
    reference = rate(copies, values, bootstrap=0, ties=ties, style=np.repeat(covariates, weights, axis=0),
                     style_names=["x"])
    assert np.allclose(weighted.table["style_rating"], reference.table["style_rating"], atol=1e-6)
    assert weighted.style["coef"].iloc[0] == pytest.approx(reference.style["coef"].iloc[0], abs=1e-8)


def test_weights_are_carried_into_the_bootstrap_and_agree_with_the_sandwich(sim):
    battles, labels, probs = sim
    weights = battles["weight"].to_numpy() * 0.5
    # A weighted battle is one sampled unit: doubling every weight changes neither ratings nor intervals.
    once = rate(battles, labels, bootstrap=0, ci="sandwich", weights=weights).table
    twice = rate(battles, labels, bootstrap=0, ci="sandwich", weights=2 * weights).table
    assert np.allclose(once[["rating", "se"]], twice[["rating", "se"]], atol=0.01)  # the ridge aside
    # On average a weighted resample holds the weighted sums.
    a = battles["model_a"].astype("category").cat.codes.to_numpy()
    b = pd.Categorical(battles["model_b"], categories=battles["model_a"].astype("category").cat.categories).codes
    votes = Votes(a, b.astype(np.int64), len(TRUTH), labels, None, weights)
    mean = votes.resampled_pair_weights(np.random.default_rng(0), 400).mean(axis=0)
    assert np.allclose(mean, votes.weights, rtol=0.05, atol=0.5)
    for outcomes in (labels, probs):
        boot = rate(battles, outcomes, bootstrap=300, weights=weights, seed=2).table.set_index("model")
        sand = rate(battles, outcomes, bootstrap=0, ci="sandwich", weights=weights).table.set_index("model")
        ratio = (boot["ci_high"] - boot["ci_low"]) / (sand["ci_high"] - sand["ci_low"]).reindex(boot.index)
        assert ((ratio > 0.8) & (ratio < 1.2)).all(), ratio.tolist()


def test_zero_weights_leave_battles_out_and_bad_weights_are_refused(sim, tmp_path):
    battles, labels, _ = sim
    weights = np.where(np.arange(len(battles)) % 3 == 0, 0.0, 1.0)
    kept = weights > 0
    assert np.allclose(rate(battles, labels, bootstrap=0, weights=weights).table["rating"],
                       rate(battles[kept], labels[kept], bootstrap=0).table["rating"])
    with pytest.raises(DataError, match="battle 2 is not a finite number >= 0"):
        rate(battles, labels, weights=np.r_[1.0, -1.0, np.ones(len(battles) - 2)])
    frame = battles.head(20).copy()
    frame["weight"] = frame["weight"].astype(object)
    frame.loc[4, "weight"] = "heavy"
    frame.to_csv(tmp_path / "w.csv", index=False)
    proc = run_cli("leaderboard", "--data", tmp_path / "w.csv", "--weights", "weight", check=False)
    assert proc.returncode == 2 and "row 5 column weight: 'heavy' is not a number" in proc.stderr
    frame.loc[4, "weight"] = -2
    frame.to_csv(tmp_path / "w.csv", index=False)
    proc = run_cli("leaderboard", "--data", tmp_path / "w.csv", "--weights", "weight", check=False)
    assert proc.returncode == 2 and "row 5 column weight: -2 is negative" in proc.stderr


# -- covariates ------------------------------------------------------------------------------------------------
def test_own_covariates_join_the_controlled_fit_and_recover_a_planted_effect(tmp_path):
    battles, labels, _ = simulate(n=6000, seed=4, covariate_effect=0.7)
    battles["constant"] = 1.0
    battles.to_csv(tmp_path / "cov.csv", index=False)
    out = tmp_path / "out"
    run_cli("leaderboard", "--data", tmp_path / "cov.csv", "--ci", "sandwich", "--covariates", "x, constant",
            "--output", out)
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["covariates"] == ["x", "constant"] and summary["style"]["features"] == ["x", "constant"]
    x = summary["style"]["coefficients"]["votes"]["x"]
    # half wins read a Davidson effect smaller (ties pull toward 0); the planted 0.7 per unit, x has sd 1
    assert 0.35 < x["coef"] < 0.7 and x["ci_low"] < x["coef"] < x["ci_high"]
    assert math.isnan(summary["style"]["coefficients"]["votes"]["constant"]["ci_low"])  # constant: no interval
    table = pd.read_csv(out / "leaderboard.csv")
    assert table.sort_values("style_rating", ascending=False)["model"].tolist() == list(TRUTH)
    # beside the style features: the style columns first, then the user's
    frame = battles.assign(prompt=json.dumps(["q"]), response_a=json.dumps(["a b c"]), response_b=json.dumps(["d"]))
    frame.head(500).to_csv(tmp_path / "both.csv", index=False)
    run_cli("leaderboard", "--data", tmp_path / "both.csv", "--style-control", "--covariates", "x", "--ci",
            "sandwich", "--output", out)
    assert json.loads((out / "leaderboard.json").read_text())["style"]["features"] == [*STYLE_FEATURES, "x"]
    bad = battles.head(10).astype({"x": object})
    bad.loc[3, "x"] = "n/a"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    proc = run_cli("leaderboard", "--data", tmp_path / "bad.csv", "--covariates", "x", check=False)
    assert proc.returncode == 2 and "row 4 column x: 'n/a' is not a number" in proc.stderr


# -- categories ------------------------------------------------------------------------------------------------
def test_a_category_board_equals_the_plain_fit_on_that_subset(sim, tmp_path):
    battles, labels, probs = sim
    # (a `weight` column would weight every board: load_battles(weights=...) names its column so)
    battles = battles.drop(columns="weight").assign(topic=np.where(np.arange(len(battles)) % 3 == 0, "code", "chat"))
    masks = {value: (battles["topic"] == value).to_numpy() for value in ("chat", "code")}
    for ci in ("bootstrap", "sandwich"):
        options = dict(bootstrap=40 if ci == "bootstrap" else 0, ci=ci, seed=5)
        _, summary = write_leaderboards(battles, {"votes": labels, "judge": probs}, tmp_path / ci,
                                        categories=masks, **options)
        for value, mask in masks.items():
            board = pd.read_csv(tmp_path / ci / "categories" / value / "leaderboard.csv")
            alone = rate(battles[mask].reset_index(drop=True), labels[mask], **options).table
            pd.testing.assert_frame_equal(board, alone.round(1), check_dtype=False, atol=0.051)
            judge = pd.read_csv(tmp_path / ci / "categories" / value / "leaderboard_judge.csv")
            assert np.allclose(judge["rating"], rate(battles[mask], probs[mask], **options).table["rating"], atol=0.051)
        ranks = pd.read_csv(tmp_path / ci / "category_ranks.csv")
        assert ranks.columns.tolist() == ["model", "overall", "chat", "code"]
        assert summary["categories"]["code"]["battles"] == 1000


def test_category_column_on_the_command_line_with_style_control_per_category(tmp_path):
    from test_leaderboard import simulate_styled

    frame, _ = simulate_styled(n=3000, effect=0.8, seed=2)
    frame["language"] = np.where(np.arange(len(frame)) % 2 == 0, "English", "Deutsch / other")
    frame.to_csv(tmp_path / "styled.csv", index=False)
    out = tmp_path / "out"
    proc = run_cli("leaderboard", "--data", tmp_path / "styled.csv", "--category", "language", "--style-control",
                   "--ci", "sandwich", "--plots", "--output", out, env={"COLUMNS": "200"})
    assert "Rank (UB) per category" in proc.stdout and "Traceback" not in proc.stderr
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["categories"]["Deutsch / other"]["dir"] == "categories/Deutsch_other"
    english = pd.read_csv(out / "categories" / "English" / "leaderboard.csv")
    # style control per category: the category's own fit with covariates standardised over its battles
    half = frame[frame["language"] == "English"]
    half.to_csv(tmp_path / "english.csv", index=False)
    run_cli("leaderboard", "--data", tmp_path / "english.csv", "--style-control", "--ci", "sandwich",
            "--output", tmp_path / "alone")
    alone = pd.read_csv(tmp_path / "alone" / "leaderboard.csv")
    pd.testing.assert_frame_equal(english, alone)
    for folder in (out, out / "categories" / "English"):
        for name in ("win_fraction.png", "battle_count.png"):
            assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ranks = pd.read_csv(out / "category_ranks.csv").set_index("model")
    assert summary["category_ranks"]["rank"] == "style_rank_ub" and ranks.loc["m0", "English"] == 1


PROMPTS = {
    "code": ["Write a python function that reverses a list", "```\nint main() { return 0; }\n```\nwhy?"],
    "math": ["Solve for x: 3x + 2 = 11", "What is the integral of x^2 from 0 to 1?"],
    "creative-writing": ["Write a short poem about autumn leaves", "Tell me a story about a brave mouse"],
    "non-english": ["¿Qué es una red neuronal y para qué sirve?", "Объясни, пожалуйста, что такое энтропия"],
    "plain": ["What is the capital of France?", "hello"],
}


def test_built_in_prompt_categories_from_the_text():
    cells, expected = [], []
    for category, prompts in PROMPTS.items():
        cells += [json.dumps([p]) for p in prompts]
        expected += [category] * len(prompts)
    cells.append(json.dumps(["hi", "tell me more"]))
    expected.append("multi-turn")
    cells.append(json.dumps(["word " * 600]))
    expected.append("long-query")
    hard = ("Implement a python function that must find the shortest path in a weighted graph without using "
            "libraries. Explain the time complexity, handle negative edges, and compare it with Dijkstra. "
            "Give tests for the edge cases.")
    cells.append(json.dumps([hard]))
    expected.append("hard")
    flags = category_flags(pa.array(cells))
    for i, category in enumerate(expected):
        found = {name for name in CATEGORIES if flags[name][i]}
        if category == "plain":
            assert not found, (cells[i], found)
        else:
            assert category in found, (cells[i], found)
    assert flags["code"][-1] and not flags["hard"][0]  # a short coding request is code, not hard
    bits = category_bits(pa.array(cells))
    assert bits[-1] & (1 << CATEGORIES.index("hard")) and bits.dtype == np.uint8


def test_categories_all_on_the_command_line(tmp_path):
    rng = np.random.default_rng(0)
    prompts = [json.dumps([p]) for group in PROMPTS.values() for p in group]
    n = 1200
    frame = pd.DataFrame({"id": range(n), "model_a": rng.choice(["p", "q", "r"], n), "model_b": "s",
                          "prompt": rng.choice(prompts, n), "winner": rng.choice(["model_a", "model_b", "tie"], n)})
    frame.to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "out"
    proc = run_cli("leaderboard", "--data", tmp_path / "p.csv", "--categories", "all", "--bootstrap", 10,
                   "--output", out, env={"COLUMNS": "200"})
    summary = json.loads((out / "leaderboard.json").read_text())
    assert list(summary["categories"]) == list(CATEGORIES)
    assert "skipped" in summary["categories"]["multi-turn"] and "no board: " in proc.stdout
    masks = category_masks(load_battles(tmp_path / "p.csv", prompt_categories=True), CATEGORIES)
    assert summary["categories"]["code"]["battles"] == int(masks["code"].sum()) > 100
    assert (out / "categories" / "non-english" / "leaderboard.csv").exists()
    ranks = pd.read_csv(out / "category_ranks.csv")
    assert ranks.columns.tolist() == ["model", "overall", *CATEGORIES]


# -- matrices --------------------------------------------------------------------------------------------------
def test_win_fraction_and_battle_count_matrices(sim):
    battles, labels, _ = sim
    board = rate(battles, labels, bootstrap=0)
    models, wins, counts = pair_matrices(board)
    assert models == board.table["model"].tolist()
    assert np.allclose(counts, counts.T) and counts.sum() == 2 * len(battles)
    i, j = models.index("alpha"), models.index("foxtrot")
    between = ((battles["model_a"] == "alpha") & (battles["model_b"] == "foxtrot")) | (
        (battles["model_a"] == "foxtrot") & (battles["model_b"] == "alpha"))
    won = ((battles["model_a"] == "alpha") & (labels == 0)) | ((battles["model_b"] == "alpha") & (labels == 1))
    lost = ((battles["model_a"] == "alpha") & (labels == 1)) | ((battles["model_b"] == "alpha") & (labels == 0))
    assert counts[i, j] == between.sum() and wins[i, j] == (between & won).sum()
    fractions = win_fractions(wins)
    assert fractions[i, j] == pytest.approx((between & won).sum() / (between & (won | lost)).sum())
    off = ~np.eye(len(models), dtype=bool)
    assert np.allclose((fractions + fractions.T)[off], 1.0) and np.isnan(np.diag(fractions)).all()


# -- golden comparison with arena-rank --------------------------------------------------------------------------
def test_ratings_intervals_and_style_coefficients_match_arena_rank():
    """bench/arena_rank_golden.py made these numbers with arena-rank 0.1.1 (half ties; sandwich intervals; no pair
    re-weighting; no L2 penalty on the style coefficients; see its docstring for every setting)."""
    golden = json.loads((GOLDEN / "arena_rank_golden.json").read_text())
    path = GOLDEN / "golden_battles.csv"
    battles = load_battles(path, weights="weight")
    assert battles["both_bad"].sum() > 50  # both_bad votes read, as ties (arena-rank's 0.5)
    raw = pd.read_csv(path)
    counts_a = raw[[f"{f}_a" for f in STYLE_FEATURES]].to_numpy()
    counts_b = raw[[f"{f}_b" for f in STYLE_FEATURES]].to_numpy()
    labels = battles["winner"].to_numpy()
    plain = rate(battles, labels, ci="sandwich", bootstrap=0).table
    weighted = rate(battles, labels, ci="sandwich", bootstrap=0, weights=battles["weight"].to_numpy()).table
    styled = rate(battles, labels, ci="sandwich", bootstrap=0, style=style_covariates(counts_a, counts_b))
    checks = [("plain", plain, ""), ("weighted", weighted, ""), ("style", styled.table, "style_")]
    for name, table, prefix in checks:
        ours = table.set_index("model")
        theirs = pd.DataFrame(golden[name]).T.reindex(ours.index)
        assert np.abs(ours[f"{prefix}rating"] - theirs["rating"]).max() < 0.1, name
        width = (ours[f"{prefix}ci_high"] - ours[f"{prefix}ci_low"]) / (theirs["ci_high"] - theirs["ci_low"])
        assert np.abs(width - 1).max() < 0.02, (name, width.tolist())
    coefficients = styled.style.set_index("feature")["coef"]
    for feature, value in golden["style_coefficients"].items():
        assert coefficients[feature] == pytest.approx(value, abs=1e-3)
