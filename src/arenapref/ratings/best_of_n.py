"""Best-of-n ranking from a pairwise judge: all ordered pairs, then a Bradley-Terry fit with ties as half wins.

Each pair is judged in both orders (i as A and as B), so a model's position bias cancels out of the ranking.
Kept free of torch so the service and the API share it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.tables import normalize
from arenapref.errors import DataError


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


def soft_wins(n: int, pairs: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """wins[i, j] = expected wins of i over j: P(A) + P(tie)/2 when i is A, P(B) + P(tie)/2 when i is B."""
    wins = np.zeros((n, n))
    probs = np.asarray(probs, dtype=np.float64)
    half_tie = probs[:, 2] / 2
    np.add.at(wins, (pairs[:, 0], pairs[:, 1]), probs[:, 0] + half_tie)
    np.add.at(wins, (pairs[:, 1], pairs[:, 0]), probs[:, 1] + half_tie)
    return wins


def bradley_terry(wins: np.ndarray, tol: float = 1e-10, max_iter: int = 10_000) -> np.ndarray:
    """Log-strengths (mean 0) maximising sum_ij wins[i,j] log(p_i / (p_i + p_j)); Hunter's (2004) MM updates.

    Soft wins from a judge are never exactly 0, so the comparison graph is strongly connected and the MLE exists.
    """
    wins = np.asarray(wins, dtype=np.float64)
    n = len(wins)
    if n == 1:
        return np.zeros(1)
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    strength = np.ones(n)
    for _ in range(max_iter):
        denom = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        new = total_wins / np.maximum(denom, 1e-300)
        new = np.maximum(new, 1e-300)
        new /= np.exp(np.log(new).mean())  # fix the scale: geometric mean 1
        done = np.max(np.abs(np.log(new) - np.log(strength))) < tol
        strength = new
        if done:
            break
    log_strength = np.log(strength)
    return log_strength - log_strength.mean()


def ranked(responses: list, scores: np.ndarray) -> list[dict]:
    """Best first: [{"rank", "index", "score", "response"}]; equal scores keep the input order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [{"rank": r + 1, "index": int(i), "score": float(scores[i]), "response": responses[i]}
            for r, i in enumerate(order)]
