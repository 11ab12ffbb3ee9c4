"""Judgments with style taken out (models/style_term.py; the gbdt's --style-term): the style term alone is the
leaderboard's style model, `controlled` ignores which answer is longer, old models predict as before, and the
flags, the API and the service pass `style` through."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from arenapref.config import TrainConfig
from arenapref.data.features import content_matrix, feature_blocks, feature_matrix, swap_sides
from arenapref.data.style import style_counts, style_covariates
from arenapref.data.tables import load_frame, normalize
from arenapref.errors import DataError
from arenapref.inference.predictor import Predictor
from arenapref.models.directory import resolve_model
from arenapref.models.gbdt import content_logit, fit_boosters
from arenapref.models.style_term import style_ratios
from arenapref.ratings.leaderboard import rate
from conftest import run_cli

# Ends with a space: repeated, every share and set-based (content) feature stays the same, only counts grow.
ANSWER = "Paris is the capital of France, on the Seine. "
REFUSAL = "I'm sorry, but I cannot help with that request. "


@pytest.fixture(scope="module")
def sample(arena_csv) -> pd.DataFrame:
    return load_frame(arena_csv, require_labels=True)


@pytest.fixture(scope="module")
def style_model(tmp_path_factory, arena_csv) -> str:
    """A gbdt with a style term on 400 real rows (seconds)."""
    root = tmp_path_factory.mktemp("style_model")
    pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(400).to_csv(root / "train.csv", index=False)
    run_cli("train", "--data", root / "train.csv", "--output", root / "model", "--model", "gbdt", "--style-term",
            "--gbdt-rounds", "60")
    return str(root / "model")


def _frame(rows) -> pd.DataFrame:
    return normalize(pd.DataFrame([{"id": str(i), "prompt": [p], "response_a": [a], "response_b": [b]}
                                   for i, (p, a, b) in enumerate(rows)]))


def test_style_term_alone_is_the_leaderboards_style_model(sample):
    labels = sample["label"].to_numpy()
    rows = sample[labels < 2].reset_index(drop=True)
    y = rows["label"].to_numpy()
    n = len(rows)
    # The judge, its content features zeroed: trees that cannot split, so who wins is the style term alone.
    zeroed = {k: np.zeros_like(v) for k, v in feature_blocks(rows).items()}
    cfg = TrainConfig(data="-", output="-", model="gbdt", style_term=True, gbdt_rounds=20)
    boosters = fit_boosters(cfg, zeroed, y, np.zeros(n, bool), style_ratios(rows))
    assert np.abs(content_logit(boosters["content"], zeroed)).max() < 1e-9
    # The leaderboard's style model on the same battles and their mirrors (the judge trains on both orders), all
    # between two models x and y: their rating difference is the intercept the mirrors make 0.
    counts = [style_counts(pa.array(list(rows[c]), pa.list_(pa.string()))) for c in ("response_a", "response_b")]
    battles = pd.DataFrame({"model_a": ["x"] * (2 * n), "model_b": ["y"] * (2 * n)})
    board = rate(battles, np.r_[y, 1 - y], bootstrap=0, ties="half", ci="sandwich",
                 style=style_covariates(np.vstack([counts[0], counts[1]]), np.vstack([counts[1], counts[0]])))
    term = boosters["style"]
    np.testing.assert_allclose(term.coef, board.style["coef"].to_numpy(), atol=2e-5)
    assert np.abs(term.coef).max() > 0.1  # the arena's voters do reward length: a real effect, not all zeros
    # A battle and its mirror are one sampled unit in the judge's interval, two in the board's.
    np.testing.assert_allclose(term.se, board.style["se"].to_numpy() * np.sqrt(2), rtol=1e-3)
    table = term.table()
    assert [r["feature"] for r in table] == ["tokens", "headers", "lists", "bold"]
    assert all(r["ci_low"] < r["coef"] < r["ci_high"] for r in table)


def test_controlled_ignores_which_answer_is_longer(style_model):
    prompt = "What is the capital of France? Answer briefly."
    judge = Predictor.from_pretrained(style_model)
    assert judge.has_style_term
    pairs = _frame([(prompt, ANSWER, ANSWER * 6), (prompt, ANSWER * 6, ANSWER),       # same content, lengths swapped
                    (prompt, ANSWER, REFUSAL), (prompt, ANSWER * 5, REFUSAL),          # content differs, A grows
                    (prompt, ANSWER, REFUSAL * 4)])
    blocks = feature_blocks(pairs)
    content = content_matrix(blocks)
    width = content.shape[1]
    assert np.array_equal(content[0], content[1]) and np.array_equal(content[2], content[3])
    assert np.array_equal(content[2], content[4])
    assert not np.array_equal(blocks["side_a"][0], blocks["side_b"][0])  # the full features do see the lengths
    controlled = judge.predict_proba(pairs, style="controlled")
    voted = judge.predict_proba(pairs)
    np.testing.assert_allclose(controlled[0], controlled[1], atol=1e-12)
    np.testing.assert_allclose(controlled[0, 0], controlled[0, 1], atol=1e-12)  # same content: no side favoured
    np.testing.assert_allclose(controlled[2, :2] / controlled[2, :2].sum(), controlled[3, :2] / controlled[3, :2].sum(),
                               atol=1e-12)
    np.testing.assert_allclose(controlled[2, :2] / controlled[2, :2].sum(), controlled[4, :2] / controlled[4, :2].sum(),
                               atol=1e-12)
    # As voted, the longer answer gains: the style term is what `controlled` takes out.
    assert voted[0, 1] > voted[0, 0] and voted[1, 0] > voted[1, 1]
    assert voted[3, 0] / voted[3, 1] > voted[2, 0] / voted[2, 1]
    assert width > 0


def test_style_model_saves_its_coefficients_and_evaluate_prints_them(style_model, arena_csv, tmp_path):
    meta = json.loads((resolve_model(style_model) / "arenapref.json").read_text())
    term = meta["style_term"]
    assert [r["feature"] for r in term["coefficients"]] == ["tokens", "headers", "lists", "bold"]
    assert term["level"] == 0.95 and len(term["scale"]) == 4 and term["content_features"]
    assert "- style term (log-odds of A winning" in (resolve_model(style_model) / "README.md").read_text()
    held = tmp_path / "held.csv"
    pd.read_csv(arena_csv, dtype=str, keep_default_na=False).iloc[400:560].to_csv(held, index=False)
    out = {}
    for style in ("as-voted", "controlled"):
        proc = run_cli("evaluate", "--model", style_model, "--data", held, "--style", style, "--json")
        out[style] = json.loads(proc.stdout)
        assert out[style]["style"] == style
        assert out[style]["style_coefficients"] == term["coefficients"]
    assert out["as-voted"]["log_loss"] != out["controlled"]["log_loss"]
    table = run_cli("evaluate", "--model", style_model, "--data", held, "--style", "controlled").stdout
    assert "style term" in table and "left out (--style controlled)" in table and "tokens" in table
    for style in ("as-voted", "controlled"):
        proc = run_cli("compare", "--model", style_model, "--style", style, "--prompt", "What is 2+2?", "--a", "4",
                       "--b", "I am certain it is 5. " * 8, "--json")
        assert json.loads(proc.stdout)["verdict"] in ("a_wins", "b_wins", "tie", "ambiguous")
    proc = run_cli("predict", "--model", style_model, "--data", held, "--output", tmp_path / "p.csv", "--style",
                   "controlled")
    written = pd.read_csv(tmp_path / "p.csv")
    frame = load_frame(held)
    expected = Predictor.from_pretrained(style_model, style="controlled").predict_proba(frame)
    np.testing.assert_allclose(written[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy(), expected,
                               atol=2e-6)


def test_models_without_a_style_term_predict_as_before_and_refuse_controlled(gbdt_model, sample):
    import lightgbm as lgb

    rows = sample.head(40)
    # The shipped judge's gbdt part (factored, saved before style control), computed here from its files by the
    # factored model's formula (models/gbdt.py) and its temperature: what it predicted before.
    part = resolve_model("arena-minilm") / "gbdt"
    meta = json.loads((part / "arenapref.json").read_text())
    tie, direction = (lgb.Booster(model_file=str(part / meta["boosters"][k])) for k in ("tie", "direction"))
    blocks = feature_blocks(rows)
    x, xm = feature_matrix(blocks), feature_matrix(swap_sides(blocks))
    t = (tie.predict(x) + tie.predict(xm)) / 2
    a = (direction.predict(x) + 1 - direction.predict(xm)) / 2
    logits = np.log(np.column_stack([(1 - t) * a, (1 - t) * (1 - a), t])) / meta["calibration"]["temperature"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    old = Predictor.from_pretrained(part)
    assert not old.has_style_term and old.style_coefficients() is None
    np.testing.assert_allclose(old.predict_proba(rows), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(old.predict_proba(rows, style="as-voted"), old.predict_proba(rows))
    judge = Predictor.from_pretrained(gbdt_model)  # a 3-way model
    with pytest.raises(DataError, match="no style term"):
        judge.predict_proba(rows, style="controlled")
    with pytest.raises(DataError, match="no style term"):
        Predictor.from_pretrained(gbdt_model, style="controlled")
    with pytest.raises(DataError, match="expected as-voted or controlled"):
        judge.predict_proba(rows, style="neutral")
    # The shipped judge (a hybrid saved before style control) loads as it did and says why in one line.
    proc = run_cli("compare", "--style", "controlled", "--prompt", "p", "--a", "x", "--b", "yy", check=False)
    assert proc.returncode == 2 and "no style term" in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error")]) == 1
    proc = run_cli("compare", "--style", "neutral", "--prompt", "p", "--a", "x", "--b", "yy", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_train_refuses_style_term_where_it_is_not_read(tmp_path, small_csv):
    with pytest.raises(DataError, match="--gbdt-extra all"):
        TrainConfig(data=str(small_csv), output=str(tmp_path / "m"), model="gbdt", style_term=True,
                    extra=[str(small_csv)], gbdt_extra="all").validate()


def test_service_takes_a_style_per_comparison(style_model, gbdt_model):
    from fastapi.testclient import TestClient

    from arenapref.api import Judge
    from arenapref.serve import create_app

    item = {"prompt": "What is the capital of France?", "response_a": ANSWER, "response_b": ANSWER * 6}
    judge = Judge.from_pretrained(style_model)
    with TestClient(create_app(judge)) as client:
        voted = client.post("/v1/compare", json=[item, {**item, "style": "controlled"}]).json()
        direct = judge.predict(item["prompt"], item["response_a"], item["response_b"], style="controlled")
        assert voted[1]["winner_model_a"] == pytest.approx(direct["winner_model_a"], abs=1e-9)
        assert voted[0]["winner_model_b"] > voted[1]["winner_model_b"]
        assert client.post("/v1/compare", json={**item, "style": "neutral"}).status_code == 422
    with TestClient(create_app(Judge.from_pretrained(gbdt_model))) as client:
        response = client.post("/v1/compare", json={**item, "style": "controlled"})
        assert response.status_code == 422 and "no style term" in response.json()["detail"]


@pytest.mark.slow
def test_as_voted_grouped_cv_log_loss_stays_within_0_005_of_todays_gbdt(tmp_path, arena_csv):
    """The gbdt's `arenapref cv` on the arena sample (5 grouped folds, seed 42, default settings), with and without
    --style-term: as voted, the style-term model's out-of-fold log loss is no more than 0.005 above today's (about
    30 s; bench/style_control.py measures the rest)."""
    from arenapref.training.cv import cross_validate

    loss = {}
    for name, changes in (("today", {}), ("style_term", {"style_term": True})):
        cfg = TrainConfig(data=str(arena_csv), output=str(tmp_path / name), model="gbdt", **changes).validate()
        loss[name] = cross_validate(cfg, 5, tmp_path / name, log=lambda *a, **k: None)["out_of_fold"]["log_loss"]
    assert loss["style_term"] - loss["today"] <= 0.005, loss
    assert loss["style_term"] < 1.09  # well below the constant prior (about 1.097): it learned something
