"""Best-of-n ranking from a pairwise judge: all ordered pairs, then a Bradley-Terry fit with ties as half wins.

Each pair is judged in both orders (i as A and as B), so a model's position bias cancels out of the ranking.
Kept free of torch so the service and the API share it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.tables import normalize
from arenapref.errors import DataError
from arenapref.ratings.bradley_terry import Design, newton


def as_turns(value, what: str) -> list[str]:
    """A string (one turn) or a list of turns (None -> "") -> list of str."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        turns = []
        for item in value:
            if item is not None and not isinstance(item, str):
                raise DataError(f"{what}: holds a {type(item).__name__}; expected strings (one per turn)")
            turns.append(item or "")
        if turns:
            return turns
    raise DataError(f"{what}: expected a string or a non-empty list of strings (one per turn)")


def check_candidates(prompt, responses) -> tuple[list[str], list[list[str]]]:
    """Validate rank() input: a prompt and one or more responses with as many turns as the prompt."""
    prompt_turns = as_turns(prompt, "prompt")
    if isinstance(responses, str) or not isinstance(responses, (list, tuple)) or not responses:
        raise DataError("responses: expected a non-empty list of responses (strings or turn lists)")
    turn_lists = [as_turns(r, f"responses[{i}]") for i, r in enumerate(responses)]
    for i, turns in enumerate(turn_lists):
        if len(turns) != len(prompt_turns):
            raise DataError(f"responses[{i}]: has {len(turns)} turn(s) but the prompt has {len(prompt_turns)}; "
                            "give one response turn per prompt turn")
    return prompt_turns, turn_lists


def ordered_pairs(n: int) -> np.ndarray:
    """All (i, j) with i != j: every pair of candidates in both orders, shape (n(n-1), 2)."""
    return np.array([(i, j) for i in range(n) for j in range(n) if i != j], dtype=np.int64).reshape(-1, 2)


def pair_frame(prompt_turns: list[str], turn_lists: list[list[str]], pairs: np.ndarray) -> pd.DataFrame:
    """A normalised frame with one row per ordered pair: response_a = candidate i, response_b = candidate j."""
    raw = pd.DataFrame({
        "id": [f"{i}-{j}" for i, j in pairs],
        "prompt": [prompt_turns] * len(pairs),
        "response_a": [turn_lists[i] for i, _ in pairs],
        "response_b": [turn_lists[j] for _, j in pairs],
    })
    return normalize(raw, "rank()")


# Best-of-n wants the plain maximum-likelihood strengths (they exist: a judge's soft wins are never exactly 0), not
# the leaderboard's shrinkage. This ridge moves them by about 1e-7 and only fixes their mean at 0; the tolerance
# leaves the fit within about 1e-7 of the optimum.
RIDGE, TOL = 1e-9, 1e-8


def bradley_terry_scores(n: int, pairs: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Log-strengths (mean 0) of n candidates from the judge's (P(A), P(B), P(tie)) for each ordered pair (i as A,
    j as B): Bradley-Terry with a tie as half a win each way, the leaderboard's Newton solver (bradley_terry.py)."""
    if n == 1:
        return np.zeros(1)
    weights = np.asarray(probs, dtype=np.float64).reshape(1, -1, 3)
    strengths = newton(Design(np.asarray(pairs), n), weights, "half", tol=TOL, ridge=RIDGE)[0]
    return strengths - strengths.mean()


def ranked(responses: list, scores: np.ndarray) -> list[dict]:
    """Best first: [{"rank", "index", "score", "response"}]; equal scores keep the input order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [{"rank": r + 1, "index": int(i), "score": float(scores[i]), "response": responses[i]}
            for r, i in enumerate(order)]


def rank_method(method: str, scores_sides: bool) -> str:
    """"scores" or "pairwise": what `method` asks of a judge ("auto": its per-response scores where it has them)."""
    if method not in ("auto", "scores", "pairwise"):
        raise DataError(f"method {method!r}: expected auto, scores or pairwise")
    if method == "auto":
        return "scores" if scores_sides else "pairwise"
    return method


def rank_responses(judge, prompt, responses, method: str = "auto") -> list[dict]:
    """`Judge.rank` for anything with a Judge's `scores_sides`, `score_responses` and `predict_proba`: a Judge, or
    the service's view of one whose forward passes go through its micro-batchers."""
    method = rank_method(method, judge.scores_sides)
    prompt_turns, turn_lists = check_candidates(prompt, responses)
    n = len(turn_lists)
    if method == "scores":
        scores = judge.score_responses([prompt_turns] * n, turn_lists)
    else:
        pairs = ordered_pairs(n)
        probs = judge.predict_proba(pair_frame(prompt_turns, turn_lists, pairs)) if n > 1 else np.zeros((0, 3))
        scores = bradley_terry_scores(n, pairs, probs)
    return ranked(list(responses), scores)
