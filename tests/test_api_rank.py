"""Python API: lazy import, predict / predict_frame, and rank (per-response scores and pairwise Bradley-Terry)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from arenapref.errors import DataError
from arenapref.ratings.best_of_n import bradley_terry_scores, ordered_pairs

PROMPT = "What is the capital of France?"
CANDIDATES = ["Paris.", "The capital of France is Paris, a city on the Seine.", "London", "I do not know, sorry."]


@pytest.fixture(scope="module")
def judge(rank_model):
    from arenapref import Judge

    return Judge.from_pretrained(rank_model, device="cpu")


def test_import_is_light_and_judge_is_lazy():
    code = ("import sys, arenapref; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
            "from arenapref import Judge; print(Judge.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "arenapref.api"


def test_predict_matches_predict_frame_and_accepts_turn_lists(judge):
    probs = judge.predict(PROMPT, CANDIDATES[0], CANDIDATES[2])
    assert list(probs) == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    df = pd.DataFrame({"id": ["x", "y"], "prompt": [json.dumps([PROMPT]), json.dumps(["Hi", "And?"])],
                       "response_a": [json.dumps([CANDIDATES[0]]), json.dumps(["Hello", None])],
                       "response_b": [json.dumps([CANDIDATES[2]]), json.dumps(["Hey", "Nothing"])]})
    frame = judge.predict_frame(df, scores=True)
    assert frame["id"].tolist() == ["x", "y"]
    assert np.allclose(frame.loc[0, list(probs)].to_numpy(float), list(probs.values()), atol=1e-6)
    multi = judge.predict(["Hi", "And?"], ["Hello", None], ["Hey", "Nothing"])
    assert np.allclose(frame.loc[1, list(multi)].to_numpy(float), list(multi.values()), atol=1e-6)


def test_rank_scores_each_response_once_consistently_with_pairs(judge):
    assert judge.scores_sides
    ranking = judge.rank(PROMPT, CANDIDATES)
    assert [r["rank"] for r in ranking] == [1, 2, 3, 4]
    assert sorted(r["index"] for r in ranking) == [0, 1, 2, 3]
    assert all(r["response"] == CANDIDATES[r["index"]] for r in ranking)
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True)
    # Davidson link: log P(A wins) / P(B wins) = s_A - s_B, so the single-side scores must match the pair model.
    by_index = {r["index"]: r["score"] for r in ranking}
    p = judge.predict(PROMPT, CANDIDATES[1], CANDIDATES[3])
    assert math.isclose(math.log(p["winner_model_a"] / p["winner_model_b"]), by_index[1] - by_index[3], abs_tol=1e-4)


def test_pairwise_rank_agrees_with_scores_on_a_rank_model(judge):
    by_scores = [r["index"] for r in judge.rank(PROMPT, CANDIDATES, method="scores")]
    pairwise = judge.rank(PROMPT, CANDIDATES, method="pairwise")
    assert [r["index"] for r in pairwise] == by_scores
    assert math.isclose(sum(r["score"] for r in pairwise), 0.0, abs_tol=1e-9)  # log-strengths, mean 0
    assert judge.rank(PROMPT, ["only one"])[0]["index"] == 0


def test_rank_rejects_bad_input(judge):
    with pytest.raises(DataError, match="non-empty list"):
        judge.rank(PROMPT, [])
    with pytest.raises(DataError, match=r"responses\[1\]: has 2 turn"):
        judge.rank(PROMPT, ["a", ["b", "c"]])
    with pytest.raises(DataError, match="method"):
        judge.rank(PROMPT, ["a", "b"], method="vote")


class LengthJudgeBackend:
    """A stand-in pairwise model with a strong position bias: longer responses win, and A gets +1 logit."""

    def predict_logits(self, frame, progress=None):
        len_a = np.array([len(" ".join(t)) for t in frame["response_a"]], dtype=float)
        len_b = np.array([len(" ".join(t)) for t in frame["response_b"]], dtype=float)
        diff = (len_a - len_b) / 10
        return np.stack([diff / 2 + 1.0, -diff / 2, np.zeros_like(diff)], axis=1), None


def test_pairwise_rank_cancels_position_bias_for_any_backend():
    from arenapref.api import Judge

    judge = Judge(LengthJudgeBackend(), {"model_type": "stub"})
    assert not judge.scores_sides
    responses = ["a" * 30, "a" * 5, "a" * 50, "a" * 12]
    ranking = judge.rank("prompt", responses)
    assert [r["index"] for r in ranking] == [2, 0, 3, 1]
    # The +1 logit for side A appears in both orders of every pair, so it cancels: equal lengths tie exactly.
    tied = judge.rank("prompt", ["same", "same", "same"])
    assert np.allclose([r["score"] for r in tied], 0.0, atol=1e-9)


def test_bradley_terry_recovers_known_strengths():
    truth = np.array([1.2, 0.4, 0.0, -0.5, -1.1])
    truth -= truth.mean()
    pairs = ordered_pairs(len(truth))
    p_win = 1 / (1 + np.exp(-(truth[pairs[:, 0]] - truth[pairs[:, 1]])))
    probs = np.stack([p_win, 1 - p_win, np.zeros_like(p_win)], axis=1)  # no ties: soft wins = exact BT expectations
    assert np.allclose(bradley_terry_scores(len(truth), pairs, probs), truth, atol=1e-6)


def test_bradley_terry_scores_maximise_the_half_win_likelihood_with_ties():
    from scipy.optimize import minimize
    from scipy.special import softmax

    pairs = ordered_pairs(5)
    probs = softmax(np.random.default_rng(0).normal(size=(len(pairs), 3)) * 2, axis=1)
    win, lose = probs[:, 0] + probs[:, 2] / 2, probs[:, 1] + probs[:, 2] / 2  # a tie is half a win each way

    def nll(theta):  # the likelihood written out plainly
        d = theta[pairs[:, 0]] - theta[pairs[:, 1]]
        return (win * np.logaddexp(0, -d) + lose * np.logaddexp(0, d)).sum()

    direct = minimize(nll, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    assert np.allclose(bradley_terry_scores(5, pairs, probs), direct - direct.mean(), atol=1e-6)


def test_readme_python_example_runs(rank_model, arena_csv, capsys):
    """The README's Python API example, run as written (model and data paths pointed at the test fixtures)."""
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('"runs/demo/model"', repr(str(rank_model))).replace('"../shared/data/arena_sample.csv"',
                                                                       repr(str(arena_csv)))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "winner_model_a" in out and "Seven is prime" in out and out.count("\n") >= 9
