"""Judge: load any trained arenapref model directory and predict preference probabilities.

    from arenapref import Judge
    judge = Judge.from_pretrained("runs/demo")
    judge.predict("What is 2+2?", "4", "It is 4, because 2+2=4.")   # {"winner_model_a": ..., ...}
    judge.rank("What is 2+2?", ["4", "5", "It is 4."])                # best first, with scores
"""

from __future__ import annotations

import numpy as np

from arenapref.errors import DataError
from arenapref.inference.predictor import Predictor, as_turn_frame, check_tta
from arenapref.ratings.best_of_n import (
    bradley_terry,
    check_candidates,
    ordered_pairs,
    pair_frame,
    ranked,
    soft_wins,
)

__all__ = ["Judge", "Predictor", "as_turn_frame", "check_tta"]


class Judge(Predictor):
    """A trained preference model: probabilities that A wins, B wins, or it is a tie (see `Predictor`), and
    best-of-n ranking of candidate responses."""

    def rank(self, prompt, responses, method: str = "auto") -> list[dict]:
        """Order candidate responses to one prompt, best first: [{"rank", "index", "score", "response"}].

        method "scores" (rank-objective models; "auto" picks it there) scores each response once.
        method "pairwise" (every model; "auto" picks it otherwise) judges all n(n-1) ordered pairs, so position
        bias cancels, and fits Bradley-Terry strengths with ties as half wins; scores are log-strengths (mean 0).
        """
        if method not in ("auto", "scores", "pairwise"):
            raise DataError(f"method {method!r}: expected auto, scores or pairwise")
        prompt_turns, turn_lists = check_candidates(prompt, responses)
        n = len(turn_lists)
        if method == "scores" or (method == "auto" and self.scores_sides):
            scores = self.score_responses([prompt_turns] * n, turn_lists)
        else:
            pairs = ordered_pairs(n)
            probs = self.predict_proba(pair_frame(prompt_turns, turn_lists, pairs)) if n > 1 else np.zeros((0, 3))
            scores = bradley_terry(soft_wins(n, pairs, probs))
        return ranked(list(responses), scores)
