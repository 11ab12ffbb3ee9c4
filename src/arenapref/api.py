"""Judge: load any trained arenapref model directory and predict preference probabilities.

    from arenapref import Judge
    judge = Judge.from_pretrained("runs/demo")
    judge.predict("What is 2+2?", "4", "It is 4, because 2+2=4.")   # {"winner_model_a": ..., ...}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import LABELS
from .data import DataError, normalize
from .inference import softmax
from .models import META_FILE, MODELS


def read_meta(path: str | Path) -> dict:
    """arenapref.json of a model directory, with one-line errors for every way the directory can be wrong."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"model directory {path} not found; pass the --output directory of `arenapref train`")
    if not path.is_dir():
        raise DataError(f"{path}: is a file, expected a model directory written by `arenapref train`")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{path}: not an arenapref model directory (no {META_FILE}); train one with `arenapref train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: corrupt ({exc}); retrain or restore the model directory") from None
    if not isinstance(meta, dict) or meta.get("model_type") not in MODELS:
        kind = meta.get("model_type") if isinstance(meta, dict) else None
        raise DataError(f"{meta_path}: unknown model type {kind!r}; expected one of {', '.join(MODELS)}")
    return meta


class Judge:
    """A trained preference model: probabilities that A wins, B wins, or it is a tie.

    `backend` is the model family's predictor (inference.NeuralBackend, models.gbdt.GBDTBackend, ...): anything with
    `predict_logits(frame, progress) -> (logits (N, 3), side scores (N, 2) or None)`. The Judge applies the
    calibration temperature stored in arenapref.json, so every family is calibrated the same way.
    """

    def __init__(self, backend, meta: dict):
        self.backend = backend
        self.meta = meta
        self.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))

    # Neural backends expose their model and tokenizer (handy in notebooks); other families have none.
    model = property(lambda self: getattr(self.backend, "model", None))
    tokenizer = property(lambda self: getattr(self.backend, "tokenizer", None))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> "Judge":
        path = Path(path)
        meta = read_meta(path)
        family = MODELS[meta["model_type"]]
        if family.backend == "gbdt":
            from .models.gbdt import GBDTBackend

            return cls(GBDTBackend.load(path, meta), meta)
        import torch

        from .inference import NeuralBackend

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(NeuralBackend.load(path, meta, family.load_class(), device), meta)

    # -- prediction -------------------------------------------------------------------------------------------
    def predict_logits(self, frame: pd.DataFrame, progress=None):
        """Calibrated logits (N, 3) and side scores (N, 2) or None, for a normalised frame."""
        logits, scores = self.backend.predict_logits(frame, progress)
        return np.asarray(logits, dtype=np.float64) / self.temperature, scores

    def predict_proba(self, frame: pd.DataFrame, progress=None) -> np.ndarray:
        """(N, 3) probabilities in label order (A wins, B wins, tie) for a normalised frame."""
        return softmax(self.predict_logits(frame, progress)[0])

    def predict_frame(self, df: pd.DataFrame, scores: bool = False, progress=None) -> pd.DataFrame:
        """Kaggle-format DataFrame in -> id, winner_model_a, winner_model_b, winner_tie (+ score_a, score_b)."""
        frame = normalize(df, "frame")
        logits, side_scores = self.predict_logits(frame, progress)
        probs = softmax(logits)
        out = pd.DataFrame({"id": frame["id"]})
        for j, name in enumerate(LABELS):
            out[name] = probs[:, j]
        if scores and side_scores is not None:
            out["score_a"], out["score_b"] = side_scores[:, 0], side_scores[:, 1]
        return out

    def predict(self, prompt, response_a, response_b) -> dict:
        """One comparison; each argument is a string (one turn) or a list of turns."""
        turns = [[x] if isinstance(x, str) else list(x) for x in (prompt, response_a, response_b)]
        frame = normalize(pd.DataFrame({"id": ["0"], "prompt": [turns[0]], "response_a": [turns[1]],
                                        "response_b": [turns[2]]}), "predict()")
        probs = self.predict_proba(frame)[0]
        return {name: float(p) for name, p in zip(LABELS, probs)}
