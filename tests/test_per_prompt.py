"""Per-prompt ratings: the contextual Bradley-Terry model (ratings/per_prompt.py), its command and `route`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from arenapref.api import PromptBoard
from arenapref.errors import DataError
from arenapref.ratings.bradley_terry import Design, newton
from arenapref.ratings.categories import CATEGORIES
from arenapref.ratings.leaderboard import Votes, load_battles, rate
from arenapref.ratings.per_prompt import fit_prompt_board
from conftest import run_cli

CODE = 1 << CATEGORIES.index("code")


def simulated(seed: int = 0, n: int = 6000) -> pd.DataFrame:
    """Four models; `specialist` is strong on code prompts (+1.5) and weak elsewhere (-1); half the prompts are
    code. Ties as a Davidson-like share of close battles."""
    rng = np.random.default_rng(seed)
    models = np.array(["alpha", "beta", "gamma", "specialist"])
    base = np.array([0.4, 0.0, -0.4, 0.0])
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    code = rng.random(n) < 0.5
    strength = np.tile(base, (n, 1))
    strength[:, 3] = np.where(code, 1.5, -1.0)
    d = strength[np.arange(n), a] - strength[np.arange(n), b]
    p_a = 1 / (1 + np.exp(-d))
    u = rng.random(n)
    tie = rng.random(n) < 0.15
    winner = np.where(tie, 2, np.where(u < p_a, 0, 1))
    return pd.DataFrame({"id": np.arange(n).astype(str), "model_a": models[a], "model_b": models[b],
                         "winner": winner, "prompt_categories": np.where(code, CODE, 0).astype(np.uint8),
                         "prompt_text": np.where(code, "code prompt ", "chat prompt ") + np.arange(n).astype(str)})


def test_with_every_feature_zero_the_fit_is_the_global_board():
    battles = simulated(1, 3000).assign(prompt_categories=np.uint8(0))  # no category: every feature constant
    board = fit_prompt_board(battles, components=0, ridge=10.0)
    assert np.allclose(board.w, 0)
    per_prompt = board.board("anything", x=np.zeros(len(board.features.names))).set_index("model")
    plain = rate(battles, battles["winner"].to_numpy(), ci="sandwich").table.set_index("model")
    assert np.abs(per_prompt["rating"] - plain["rating"].reindex(per_prompt.index)).max() < 1e-4
    assert np.abs(per_prompt["se"] / plain["se"].reindex(per_prompt.index) - 1).max() < 1e-4


def test_recovers_a_model_strong_on_one_category_which_the_global_board_hides():
    battles = simulated()
    board = fit_prompt_board(battles, components=0)  # ridge chosen by grouped CV
    assert board.cv and board.ridge in [entry["ridge"] for entry in board.cv]
    global_order = list(rate(battles, battles["winner"].to_numpy(), bootstrap=0).table["model"])
    assert global_order[0] == "alpha" and global_order[-1] != "specialist"
    # the code prompt is flagged by the real category rules, end to end from the text
    assert board.route("Write a python function that reverses a linked list") == "specialist"
    assert board.route("What is a good name for a cat?") != "specialist"
    chat = board.board("What is a good name for a cat?")
    assert chat["model"].iloc[-1] == "specialist"
    assert board.route("What is a good name for a cat?", candidates=["beta", "gamma"]) == "beta"
    with pytest.raises(DataError, match="unknown model"):
        board.route("hi", candidates=["nobody"])


def test_sparse_covariates_give_the_dense_fit():
    battles = simulated(2, 1500)
    rng = np.random.default_rng(0)
    codes = {m: i for i, m in enumerate(sorted(set(battles["model_a"]) | set(battles["model_b"])))}
    a, b = battles["model_a"].map(codes).to_numpy(), battles["model_b"].map(codes).to_numpy()
    votes = Votes(a, b, len(codes), battles["winner"].to_numpy(), None)
    x = rng.normal(size=(len(battles), 3)) * (rng.random((len(battles), 3)) < 0.5)
    for ties in ("half", "davidson"):
        dense = newton(Design(votes.pairs, votes.n_models, votes.pair_of_battle, x), votes.battle_weights()[None],
                       ties, ridge=np.r_[np.full(4, 1e-3), np.full(3, 2.0), np.full(int(ties == "davidson"), 1e-3)])
        sparse_fit = newton(Design(votes.pairs, votes.n_models, votes.pair_of_battle, sparse.csr_matrix(x)),
                            votes.battle_weights()[None], ties,
                            ridge=np.r_[np.full(4, 1e-3), np.full(3, 2.0), np.full(int(ties == "davidson"), 1e-3)])
        assert np.abs(dense - sparse_fit).max() < 1e-8


def test_saved_board_routes_the_same_and_a_bad_file_is_one_error(tmp_path):
    board = fit_prompt_board(simulated(3, 2000), components=0, ridge=30.0)
    board.save(tmp_path / "per_prompt.json")
    loaded = PromptBoard.load(tmp_path)
    prompt = "Write a python function that reverses a linked list"
    assert loaded.route(prompt) == board.route(prompt)
    assert np.allclose(loaded.board(prompt)["rating"], board.board(prompt)["rating"])
    (tmp_path / "bad.json").write_text(json.dumps({"models": ["a"]}))
    with pytest.raises(DataError, match="not a per-prompt model"):
        PromptBoard.load(tmp_path / "bad.json")


def test_embedding_components_on_real_prompts(small_csv):
    battles = load_battles(small_csv, prompt_categories=True, prompt_text=True)
    board = fit_prompt_board(battles, components=2, ridge=30.0)
    assert board.features.names[-2:] == ["embedding_1", "embedding_2"]
    x = board.features.of_prompts(["Explain quantum computing to a child"])
    assert x.shape == (1, len(CATEGORIES) + 2) and np.isfinite(x).all()
    table = board.board("Explain quantum computing to a child")
    assert np.isfinite(table["rating"]).all() and abs(table["rating"].mean() - 1000) < 1e-6


def test_cli_per_prompt_board_and_its_errors(tmp_path, small_csv):
    out = tmp_path / "boards"
    proc = run_cli("leaderboard", "--data", small_csv, "--per-prompt", "Write a poem about the sea",
                   "--prompt-components", "0", "--prompt-ridge", "30", "--output", out)
    assert "board for the prompt" in proc.stdout
    assert PromptBoard.load(out).route("Write a poem about the sea") in set(
        pd.read_csv(out / "per_prompt_board.csv")["model"])
    bad = run_cli("leaderboard", "--data", small_csv, "--per-prompt", "hi", "--style-control", check=False)
    assert bad.returncode != 0 and "drop --style-control" in bad.stderr and "Traceback" not in bad.stderr
