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
import torch

from . import LABELS
from .data import DataError, normalize
from .inference import predict_pairs, softmax
from .models import META_FILE, MODELS
from .text import Renderer, TextSettings


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
    """A trained preference model: probabilities that A wins, B wins, or it is a tie."""

    def __init__(self, model, tokenizer, meta: dict, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.device = torch.device(device)
        self.settings = TextSettings.from_dict(meta.get("text", {}))
        self.renderer = Renderer(tokenizer, self.settings)
        self.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
        self.max_tokens = 16384

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> "Judge":
        from transformers import AutoTokenizer

        path = Path(path)
        meta = read_meta(path)
        model_cls = MODELS[meta["model_type"]]
        config_path = path / "config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{config_path}: missing or corrupt; retrain or restore the model directory") from None
        if config.get("model_type") != model_cls.config_class.model_type:
            raise DataError(f"{config_path}: model type {config.get('model_type')!r} does not match "
                            f"{meta['model_type']!r} in {META_FILE}; the directory mixes two models")
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise DataError(f"{weights}: missing; the model directory is incomplete, retrain or restore it")
        try:
            model = model_cls.from_pretrained(path)
        except Exception as exc:  # safetensors / torch raise several types for a damaged file
            raise DataError(f"{weights}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                            "the file is corrupt or truncated, retrain or restore it") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:
            raise DataError(f"{path}: tokenizer files missing or corrupt ({str(exc).splitlines()[0][:120]})") from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, tokenizer, meta, device)

    # -- prediction -------------------------------------------------------------------------------------------
    def predict_logits(self, frame: pd.DataFrame, progress=None):
        """Calibrated logits (N, 3) and side scores (N, 2) or None, for a normalised frame."""
        side_a, side_b = self.renderer.dual_tower_inputs(frame)
        logits, scores = predict_pairs(self.model, side_a, side_b, self.tokenizer.pad_token_id or 0,
                                       self.max_tokens, self.device, progress)
        return logits / self.temperature, scores

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
