"""The calibrated predictor every model directory loads into: a family's backend plus arenapref.json's calibration.

`Predictor.from_pretrained(path)` asks the model registry for the family's loader; `api.Judge` adds the
user-facing helpers (one comparison, best-of-n ranking) on top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.swap import (
    TTA_MODES,
    average_with_swapped,
    swap_columns,
    swap_frame,
)
from arenapref.data.tables import LABELS, TEXT_COLUMNS, normalize
from arenapref.errors import DataError
from arenapref.evaluation.metrics import softmax
from arenapref.models import MODELS
from arenapref.models.directory import (
    check_model_dir as read_meta,  # every way a directory can be wrong
)
from arenapref.models.directory import resolve_model


def check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise DataError(f"tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    return tta


def as_turn_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame itself when every text cell is already a list of turns; otherwise `normalize` it (Kaggle cells are
    JSON-encoded strings: a string read as a list of turns would be one turn per character)."""
    if all(c in frame.columns for c in TEXT_COLUMNS) and all(
            isinstance(cell, list) for col in TEXT_COLUMNS for cell in frame[col]):
        return frame
    return normalize(frame, "frame")


class Predictor:
    """A trained preference model: probabilities that A wins, B wins, or it is a tie.

    `backend` is the model family's predictor (inference.backend.NeuralBackend, models.gbdt.GBDTBackend, ...): anything
    with `predict_logits(frame, progress) -> (logits (N, 3), side scores (N, 2) or None)`. The Judge applies the
    calibration temperature stored in arenapref.json, so every family is calibrated the same way.

    `tta="swap"` also scores every row with its responses exchanged and averages the two predictions (classes
    mapped back), which cancels a position bias the model may have learned; it costs a second pass.
    """

    def __init__(self, backend, meta: dict, tta: str = "none"):
        self.backend = backend
        self.meta = meta
        self.tta = check_tta(tta)
        calibration = meta.get("calibration", {})
        self.temperature = float(calibration.get("temperature", 1.0))
        # Swap TTA averages two views, which changes the confidence: its own temperature (older models: the same).
        self.temperatures = {"none": self.temperature,
                             "swap": float(calibration.get("temperature_swap", self.temperature))}

    # Neural backends expose their model and tokenizer (handy in notebooks); other families have none.
    model = property(lambda self: getattr(self.backend, "model", None))
    tokenizer = property(lambda self: getattr(self.backend, "tokenizer", None))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, tta: str = "none", dtype: str = "fp32",
                        quantize: str | None = None, max_tokens: int | None = None,
                        workers: int | None = None, verify: bool = True) -> Predictor:
        """Load a model directory. Neural models: `dtype` fp32 | bf16 | fp16 (GPU), `quantize="int8"` (CPU dynamic
        quantization of the encoder's Linear layers), `max_tokens` encoder tokens in flight (default by device),
        `workers` encoder calls at once on a CPU (default `inference.default_workers`). `verify=False` loads files
        whose content no longer matches the sha256 arenapref.json recorded (weights edited on purpose)."""
        path = resolve_model(path)
        meta = read_meta(path, verify=verify)
        backend = MODELS[meta["model_type"]].loader()(path, meta, device=device, dtype=dtype, quantize=quantize,
                                                       max_tokens=max_tokens, workers=workers, verify=verify)
        return cls(backend, meta, tta)

    # -- prediction -------------------------------------------------------------------------------------------
    def predict_logits(self, frame: pd.DataFrame, progress=None, tta: str | None = None,
                       diagnostics: list | None = None):
        """Calibrated logits (N, 3) and side scores (N, 2) or None, for a frame (`load_frame`'s lists of turns, or
        raw Kaggle cells: JSON-encoded turn lists are decoded, never read character by character).

        `tta` overrides the Judge's setting for this call ("none" or "swap"). `diagnostics` (a list) receives the
        per-row rendering report of the pass on the rows as given, from a backend that `reports_diagnostics`."""
        tta = self.tta if tta is None else check_tta(tta)
        frame = as_turn_frame(frame)
        inside = getattr(self.backend, "handles_tta", False)  # a hybrid applies TTA in each of its parts
        extra = ({"diagnostics": diagnostics}
                 if diagnostics is not None and getattr(self.backend, "reports_diagnostics", False) else {})
        logits, scores = (self.backend.predict_logits(frame, progress, tta=tta, **extra) if inside
                          else self.backend.predict_logits(frame, progress, **extra))
        if tta == "swap" and not inside:
            swapped_logits, swapped_scores = self.backend.predict_logits(swap_frame(frame), progress)
            logits = average_with_swapped(logits, swapped_logits)
            if scores is not None and swapped_scores is not None:
                scores = 0.5 * (scores + swapped_scores[:, ::-1])
        if scores is not None:  # one definition of a response's score everywhere: see `score_responses`
            scores = np.asarray(scores, dtype=np.float64) / self.temperature
        return np.asarray(logits, dtype=np.float64) / self.temperatures[tta], scores

    def predict_proba(self, frame: pd.DataFrame, progress=None, tta: str | None = None) -> np.ndarray:
        """(N, 3) probabilities in label order (A wins, B wins, tie) for a frame (lists of turns or Kaggle cells)."""
        return softmax(self.predict_logits(frame, progress, tta)[0])

    def predict_both_orders(self, frame: pd.DataFrame, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(answer for each row as given, answer with A and B exchanged mapped back to A/B order, the usual answer),
        each (N, 3) and calibrated. Families that average both orders inside (gbdt) give their two one-sided
        answers before that average; the others are simply asked twice. Where the two disagree the model is unsure
        (`arenapref select --strategy swap-disagreement`)."""
        one_sided = getattr(self.backend, "one_sided_logits", None)
        if one_sided is not None:
            direct, mirrored = one_sided(frame)
            usual = self.predict_proba(frame, progress)
        else:
            direct = np.asarray(self.backend.predict_logits(frame, progress)[0], np.float64)
            swapped = np.asarray(self.backend.predict_logits(swap_frame(frame), progress)[0], np.float64)
            mirrored = swap_columns(swapped)
            # The usual answer from the same two passes: as given, or (tta swap) averaged as predict_logits does.
            usual = direct if self.tta == "none" else np.asarray(average_with_swapped(direct, swapped), np.float64)
            usual = softmax(usual / self.temperatures[self.tta])
        tempered = lambda logits: softmax(np.asarray(logits, np.float64) / self.temperature)
        return tempered(direct), tempered(mirrored), usual

    def predict_frame(self, df: pd.DataFrame, scores: bool = False, progress=None,
                      tta: str | None = None) -> pd.DataFrame:
        """Kaggle-format DataFrame (or a normalised one) in -> id, winner_model_a, winner_model_b, winner_tie
        (+ score_a, score_b)."""
        frame = as_turn_frame(df)
        if "id" not in frame.columns:
            frame = normalize(df, "frame")  # one clear line: the output needs the ids
        logits, side_scores = self.predict_logits(frame, progress, tta)
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

    # -- ranking ----------------------------------------------------------------------------------------------
    @property
    def scores_sides(self) -> bool:
        """True when the model scores one response on its own (dual tower or llm, rank objective)."""
        return bool(getattr(self.backend, "scores_sides", False))

    def score_responses(self, prompts: list[list[str]], responses: list[list[str]]) -> np.ndarray:
        """Rank models: one calibrated score per (prompt turns, response turns); P(i beats j) grows with s_i - s_j.

        A score is the head's raw score divided by the model's calibration temperature (arenapref.json
        calibration.temperature): the same number `predict --scores`, `predict_frame(scores=True)`, `rank` and the
        service's /v1/rank give for that response."""
        if not self.scores_sides:
            raise DataError("this model compares two responses; it has no per-response score (train --objective rank)")
        return np.asarray(self.backend.score_responses(prompts, responses), dtype=np.float64) / self.temperature
