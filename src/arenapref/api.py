"""Judge: load any trained arenapref model directory and predict preference probabilities.

    from arenapref import Judge
    judge = Judge.from_pretrained("runs/demo")
    judge.predict("What is 2+2?", "4", "It is 4, because 2+2=4.")   # {"winner_model_a": ..., ...}
    judge.decide("What is 2+2?", "4", "5", tta="swap")                # ... and "verdict": "a_wins"
    judge.rank("What is 2+2?", ["4", "5", "It is 4."])                # best first, with scores

    board = PromptBoard.load("runs/boards")          # `arenapref leaderboard --per-prompt TEXT --output runs/boards`
    board.route("Write a haiku about rain")          # the best-rated model for this prompt
    board.board("Write a haiku about rain")          # that prompt's leaderboard
"""

from __future__ import annotations

from arenapref.evaluation.metrics import VERDICTS
from arenapref.inference.predictor import Predictions, Predictor, as_turn_frame, check_tta, concat_predictions
from arenapref.ratings.best_of_n import rank_responses
from arenapref.ratings.per_prompt import PromptBoard

__all__ = ["VERDICTS", "Judge", "Predictions", "Predictor", "PromptBoard", "as_turn_frame", "check_tta",
           "concat_predictions"]


class Judge(Predictor):
    """A trained preference model: probabilities that A wins, B wins, or it is a tie, one comparison with its
    verdict (`decide`), per-row diagnostics (see `Predictor`), and best-of-n ranking of candidate responses."""

    def rank(self, prompt, responses, method: str = "auto") -> list[dict]:
        """Order candidate responses to one prompt, best first: [{"rank", "index", "score", "response"}].

        method "scores" (rank-objective models; "auto" picks it there) scores each response once.
        method "pairwise" (every model; "auto" picks it otherwise) judges all n(n-1) ordered pairs, so position
        bias cancels, and fits Bradley-Terry strengths with ties as half wins; scores are log-strengths (mean 0).
        """
        return rank_responses(self, prompt, responses, method)
