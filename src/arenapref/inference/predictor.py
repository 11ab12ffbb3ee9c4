"""The calibrated predictor every model directory loads into: a family's backend plus arenapref.json's calibration.

`Predictor.from_pretrained(path)` asks the model registry for the family's loader; `api.Judge` adds the
user-facing helpers (one comparison, best-of-n ranking) on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.degenerate import identical_responses, row_warnings
from arenapref.data.swap import (
    TTA_MODES,
    average_with_swapped,
    swap_columns,
    swap_frame,
)
from arenapref.data.tables import LABELS, TEXT_COLUMNS, normalize
from arenapref.errors import DataError
from arenapref.evaluation.metrics import (
    UNCERTAINTY,
    least_certain,
    order_disagreement,
    position_consistency,
    softmax,
    verdicts,
)
from arenapref.models import MODELS
from arenapref.models.directory import (
    check_model_dir as read_meta,  # every way a directory can be wrong
)
from arenapref.models.directory import resolve_model
from arenapref.models.style_term import check_style


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


def one_row(prompt, response_a, response_b) -> pd.DataFrame:
    """A one-row normalised frame (id "0"); each argument is a string (one turn) or a list of turns."""
    turns = [[x] if isinstance(x, str) else list(x) for x in (prompt, response_a, response_b)]
    return normalize(pd.DataFrame({"id": ["0"], "prompt": [turns[0]], "response_a": [turns[1]],
                                   "response_b": [turns[2]]}), "predict()")


def level_identical(logits: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Rows whose two responses are the same text (`same`, data.degenerate.identical_responses): their A and B
    logits replaced by the mean of the two, so P(A wins) == P(B wins) exactly; the tie logit is the model's.

    Nothing in such a row can favour a side but its position, and a single-order model learns position bias
    (arena votes have one) as readily as anything else; swap TTA gives the same equality by averaging."""
    if same.any():
        logits = np.array(logits, dtype=np.float64)
        logits[same, :2] = logits[same, :2].mean(axis=1, keepdims=True)
    return logits


@dataclass
class Predictions:
    """What one scoring of a frame gives (`Predictor.predict_all`). Probabilities are (N, 3) in label order."""

    logits: np.ndarray  # calibrated logits of the answer under `tta`: what predict_logits returns
    scores: np.ndarray | None  # calibrated side scores (N, 2) of rank models, else None
    tta: str
    direct: np.ndarray | None = None  # both_orders: each order alone, rows as given (gbdt: its one-sided reading)
    mirrored: np.ndarray | None = None  # ... rows with A and B exchanged, mapped back to A/B order
    swapped_back: np.ndarray | None = None  # both_orders, tta "swap": the averaged answer of the exchanged rows
    diagnostics: list | None = None  # diagnostics=True: one dict per row
    rendered: list | None = None  # the renderer's rows, from a backend that reports them

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.logits)

    def position_consistency(self) -> dict:
        """evaluation.metrics.position_consistency of the answers the two orders give: each order alone (tta
        none), or the averaged answer against the averaged answer of the exchanged rows (tta swap: they agree,
        the average being symmetric). Needs `both_orders`."""
        if self.direct is None:
            raise ValueError("position consistency needs predict_all(..., both_orders=True)")
        if self.tta == "swap":
            return position_consistency(self.probs, self.swapped_back)
        return position_consistency(self.direct, self.mirrored)


def concat_predictions(parts: list[Predictions]) -> Predictions:
    """The `Predictions` of consecutive slices of a frame, put together as one (rows in the parts' order)."""
    def joined(name):
        values = [getattr(p, name) for p in parts]
        if any(v is None for v in values):
            return None
        if isinstance(values[0], list):
            return [x for v in values for x in v]
        return np.concatenate(values)

    first = parts[0]
    out = Predictions(joined("logits"), joined("scores"), first.tta)
    for name in ("direct", "mirrored", "swapped_back", "rendered", "diagnostics"):
        setattr(out, name, joined(name))
    return out


def row_diagnostics(frame: pd.DataFrame, result: Predictions) -> list[dict]:
    """One JSON-serialisable dict per row: the renderer's row (or `truncated: False` for a model without one),
    `warnings`, and with swap TTA `swap`: |P given - P swapped back| per class and `top_label_flips`."""
    warnings = row_warnings(frame)
    if result.tta == "swap":
        diff, flips = order_disagreement(result.direct, result.mirrored)
    rows = []
    for i in range(len(frame)):
        row = dict(result.rendered[i]) if result.rendered is not None else {"truncated": False}
        row["warnings"] = warnings[i]
        if result.tta == "swap":
            row["swap"] = {**{name: float(diff[i, j]) for j, name in enumerate(LABELS)},
                           "top_label_flips": bool(flips[i])}
        rows.append(row)
    return rows


class Predictor:
    """A trained preference model: probabilities that A wins, B wins, or it is a tie.

    `backend` is the model family's predictor (inference.backend.NeuralBackend, models.gbdt.GBDTBackend, ...): anything
    with `predict_logits(frame, progress) -> (logits (N, 3), side scores (N, 2) or None)`. The Judge applies the
    calibration temperature stored in arenapref.json, so every family is calibrated the same way.

    `tta="swap"` also scores every row with its responses exchanged and averages the two predictions (classes
    mapped back), which cancels a position bias the model may have learned; it costs a second pass.

    Every family's answers pass through one rule here: a row whose two responses are the same text gets P(A wins)
    == P(B wins) exactly (`level_identical`), so its verdict is "ambiguous" or "tie", never a side.
    """

    def __init__(self, backend, meta: dict, tta: str = "none", style: str = "as-voted", neural_fraction: float = 1.0,
                 tta_fraction: float = 1.0, cascade_by: str = "entropy"):
        self.backend = backend
        self.meta = meta
        self.tta = check_tta(tta)
        self.style = self.checked_style(style)
        self.set_cascade(neural_fraction, tta_fraction, cascade_by)
        calibration = meta.get("calibration", {})
        self.temperature = float(calibration.get("temperature", 1.0))
        # Swap TTA averages two views, which changes the confidence: its own temperature (older models: the same).
        self.temperatures = {"none": self.temperature,
                             "swap": float(calibration.get("temperature_swap", self.temperature))}

    @property
    def has_style_term(self) -> bool:
        """Whether the model learned who wins as style term + content term (models/style_term.py), so that
        `style="controlled"` can take the style term out."""
        return bool(getattr(self.backend, "has_style_term", False))

    def checked_style(self, style: str | None) -> str:
        style = getattr(self, "style", "as-voted") if style is None else check_style(style)
        if style == "controlled" and not self.has_style_term:
            raise DataError("style controlled: this model has no style term to take out (a model trained before "
                            "style control, or without --style-term); retrain it with `arenapref train --style-term` "
                            "(gbdt, dual-tower, cross-encoder or hybrid), see docs/style-control.md")
        return style

    def style_coefficients(self) -> list[dict] | None:
        """The style term's coefficients (feature, coef, se, ci_low, ci_high: log-odds of A winning per standard
        deviation of the covariate, as the leaderboard's), from arenapref.json; None for a model without one. A
        hybrid's parts each have their own: its rows carry "part" (neural, gbdt)."""
        if "style_term" in self.meta:
            return self.meta["style_term"]["coefficients"]
        parts = zip(getattr(self.backend, "part_names", ()), getattr(self.backend, "parts", ()))
        rows = [{"part": name, **row} for name, (_, part) in parts for row in part.style_coefficients() or []]
        return rows or None

    def set_cascade(self, neural_fraction: float = 1.0, tta_fraction: float = 1.0, cascade_by: str = "entropy"):
        """Where to spend compute: a hybrid sends only the `neural_fraction` least certain rows (by its gbdt part's
        answer) through its neural part; swap TTA swaps only the `tta_fraction` least certain rows (by the one-order
        answer); `cascade_by` "entropy" or "margin" (evaluation.metrics.least_certain). 1.0 / 1.0: every row."""
        for name, value in (("neural_fraction", neural_fraction), ("tta_fraction", tta_fraction)):
            if not 0.0 <= float(value) <= 1.0:
                raise DataError(f"{name} must be between 0 and 1, got {value}")
        if cascade_by not in UNCERTAINTY:
            raise DataError(f"cascade_by {cascade_by!r}: expected one of {', '.join(UNCERTAINTY)}")
        if float(neural_fraction) < 1 and getattr(self.backend, "cheap_part", None) is None:
            raise DataError("neural_fraction: only a hybrid model has a cheap part to answer the other rows")
        self.neural_fraction, self.tta_fraction, self.cascade_by = float(neural_fraction), float(tta_fraction), \
            cascade_by
        for _, part in getattr(self.backend, "parts", ()):  # a hybrid's parts each apply swap TTA themselves
            part.set_cascade(1.0, tta_fraction, cascade_by)

    # Neural backends expose their model and tokenizer (handy in notebooks); other families have none.
    model = property(lambda self: getattr(self.backend, "model", None))
    tokenizer = property(lambda self: getattr(self.backend, "tokenizer", None))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, tta: str = "none", dtype: str = "fp32",
                        quantize: str | None = None, max_tokens: int | None = None,
                        workers: int | None = None, verify: bool = True, style: str = "as-voted",
                        neural_fraction: float = 1.0, tta_fraction: float = 1.0, cascade_by: str = "entropy"
                        ) -> Predictor:
        """Load a model directory. Neural models: `dtype` fp32 | bf16 | fp16 (GPU), `quantize="int8"` (CPU dynamic
        quantization of the encoder's Linear layers), `max_tokens` encoder tokens in flight (default by device),
        `workers` encoder calls at once on a CPU (default `inference.default_workers`). `verify=False` loads files
        whose content no longer matches the sha256 arenapref.json recorded (weights edited on purpose). `style` is
        the default of every call: "as-voted" or "controlled" (models with a style term; see `has_style_term`).
        `neural_fraction`, `tta_fraction`, `cascade_by`: where compute goes (`set_cascade`)."""
        path = resolve_model(path)
        meta = read_meta(path, verify=verify)
        backend = MODELS[meta["model_type"]].loader()(path, meta, device=device, dtype=dtype, quantize=quantize,
                                                       max_tokens=max_tokens, workers=workers, verify=verify)
        return cls(backend, meta, tta, style, neural_fraction, tta_fraction, cascade_by)

    # -- prediction -------------------------------------------------------------------------------------------
    def predict_logits(self, frame: pd.DataFrame, progress=None, tta: str | None = None,
                       diagnostics: list | None = None, style: str | None = None):
        """Calibrated logits (N, 3) and side scores (N, 2) or None, for a frame (`load_frame`'s lists of turns, or
        raw Kaggle cells: JSON-encoded turn lists are decoded, never read character by character).

        `tta` overrides the Judge's setting for this call ("none" or "swap"). `diagnostics` (a list) receives the
        per-row rendering report of the pass on the rows as given, from a backend that `reports_diagnostics`
        (`predict_all(..., diagnostics=True)` gives the whole per-row diagnostics). `style` overrides the Judge's
        style ("as-voted" or "controlled") for this call, as every method here does."""
        tta = self.tta if tta is None else check_tta(tta)
        result = self._score(as_turn_frame(frame), progress, tta, False, diagnostics is not None,
                             self.checked_style(style))
        if diagnostics is not None and result.rendered is not None:
            diagnostics.extend(result.rendered)
        return result.logits, result.scores

    def predict_proba(self, frame: pd.DataFrame, progress=None, tta: str | None = None,
                      style: str | None = None) -> np.ndarray:
        """(N, 3) probabilities in label order (A wins, B wins, tie) for a frame (lists of turns or Kaggle cells)."""
        return softmax(self.predict_logits(frame, progress, tta, style=style)[0])

    def predict_both_orders(self, frame: pd.DataFrame, progress=None, tta: str | None = None,
                            style: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(answer for each row as given, answer with A and B exchanged mapped back to A/B order, the usual answer
        under `tta`), each (N, 3) and calibrated. Families that average both orders inside (gbdt) give their two
        one-sided answers before that average; the others are simply asked twice, and the usual answer comes from
        the same two passes. Where the two disagree the model is unsure (`arenapref select --strategy
        swap-disagreement`)."""
        result = self.predict_all(frame, progress, tta, both_orders=True, style=style)
        return result.direct, result.mirrored, result.probs

    def predict_all(self, frame: pd.DataFrame, progress=None, tta: str | None = None, both_orders: bool = False,
                    diagnostics: bool = False, style: str | None = None) -> Predictions:
        """Everything one scoring of a frame gives, in as few passes as possible (see `Predictions`).

        `both_orders` adds the answers of each order alone (`direct`, `mirrored`) and, with `tta="swap"`, the
        averaged answer of the rows with A and B exchanged (`swapped_back`): what `position_consistency` compares.
        A neural model is asked twice (rows as given and swapped) either way, so with `tta="swap"` it costs
        nothing more. `diagnostics` adds one dict per row: what the model's renderer kept (backends with
        `reports_diagnostics`; others report `truncated: False` and no token counts), `warnings`
        (data.degenerate.WARNINGS), and with `tta="swap"` the two orders' disagreement (`swap`: |P given - P
        swapped back| per class and whether the top label flips)."""
        tta = self.tta if tta is None else check_tta(tta)
        style = self.checked_style(style)
        frame = as_turn_frame(frame)
        both_orders = both_orders or (diagnostics and tta == "swap")
        result = self._score(frame, progress, tta, both_orders, diagnostics, style)
        if diagnostics:
            result.diagnostics = row_diagnostics(frame, result)
        return result

    def _score(self, frame: pd.DataFrame, progress, tta: str, both_orders: bool, render: bool,
               style: str = "as-voted") -> Predictions:
        """`predict_all` on a normalised frame, without the per-row diagnostics (only the renderer's rows)."""
        inside = getattr(self.backend, "handles_tta", False)  # a hybrid applies TTA in each of its parts
        if inside and (both_orders or render or self.neural_fraction < 1):
            return self._score_blend(frame, progress, tta, both_orders, render, style)
        rendered = [] if render and getattr(self.backend, "reports_diagnostics", False) else None
        # Only a backend with a style term takes `style` (every other one is as voted, and refused "controlled").
        styled = {"style": style} if self.has_style_term else {}
        options = {"tta": tta, **styled} if inside else dict(styled)
        if rendered is not None:
            options["diagnostics"] = rendered
        raw, scores = self.backend.predict_logits(frame, progress, **options)
        raw = np.asarray(raw, np.float64)
        if rendered is not None and len(rendered) != len(frame):
            raise RuntimeError(f"{type(self.backend).__name__} reported diagnostics for {len(rendered)} of "
                               f"{len(frame)} rows")
        average = tta == "swap" and not inside
        same = identical_responses(frame)
        if average and self.tta_fraction < 1 and not both_orders:
            return self._score_some_swapped(frame, progress, raw, scores, same, rendered, styled)
        one_sided = getattr(self.backend, "one_sided_logits", None) if both_orders else None
        swapped = swapped_scores = None
        if average or (both_orders and one_sided is None):
            swapped, swapped_scores = self.backend.predict_logits(swap_frame(frame), progress, **styled)
            swapped = np.asarray(swapped, np.float64)
        logits = average_with_swapped(raw, swapped) if average else raw
        if average and scores is not None and swapped_scores is not None:
            scores = 0.5 * (scores + swapped_scores[:, ::-1])
        if scores is not None:  # one definition of a response's score everywhere: see `score_responses`
            scores = np.asarray(scores, dtype=np.float64) / self.temperature
        result = Predictions(level_identical(np.asarray(logits, np.float64) / self.temperatures[tta], same), scores,
                             tta, rendered=rendered)
        if average and self.tta_fraction < 1:  # both orders of every row are at hand; the answer takes the cascade's
            single = level_identical(raw / self.temperatures["none"], same)
            pick = least_certain(softmax(single), self.tta_fraction, self.cascade_by)
            single[pick] = result.logits[pick]
            result.logits = single
        if both_orders:
            direct, mirrored = one_sided(frame, **styled) if one_sided is not None else (raw, swap_columns(swapped))
            tempered = lambda logits: softmax(level_identical(np.asarray(logits, np.float64) / self.temperature, same))
            result.direct, result.mirrored = tempered(direct), tempered(mirrored)
            if tta == "swap":  # the averaged answer of the swapped rows, mapped back: from the same two passes
                back = np.asarray(swap_columns(average_with_swapped(swapped, raw)), np.float64)
                result.swapped_back = softmax(level_identical(back / self.temperatures[tta], same))
        return result

    def _score_some_swapped(self, frame: pd.DataFrame, progress, raw: np.ndarray, scores, same: np.ndarray,
                            rendered, styled: dict) -> Predictions:
        """Swap TTA on the `tta_fraction` least certain rows only (by the one-order answer, calibrated as saved):
        the swapped pass reads those rows alone; every other row keeps its one-order answer and temperature.
        (With `both_orders` every row is asked in both orders anyway, and `_score` applies the same choice.)"""
        single = level_identical(raw / self.temperatures["none"], same)
        pick = least_certain(softmax(single), self.tta_fraction, self.cascade_by)
        logits = single.copy()
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
        if len(pick):
            swapped, swapped_scores = self.backend.predict_logits(swap_frame(frame.iloc[pick].reset_index(drop=True)),
                                                                   progress, **styled)
            averaged = average_with_swapped(raw[pick], np.asarray(swapped, np.float64))
            logits[pick] = level_identical(averaged / self.temperatures["swap"], same[pick])
            if scores is not None and swapped_scores is not None:
                scores[pick] = 0.5 * (scores[pick] + np.asarray(swapped_scores, np.float64)[:, ::-1])
        if scores is not None:
            scores = scores / self.temperature
        return Predictions(logits, scores, "swap", rendered=rendered)

    def _score_blend(self, frame: pd.DataFrame, progress, tta: str, both_orders: bool, render: bool,
                     style: str = "as-voted") -> Predictions:
        """A backend that applies TTA inside is a blend of Predictors (the hybrid: `parts`, [(weight, Predictor)],
        answer = log of the weighted mean of the parts' calibrated probabilities). Asked for both orders or
        diagnostics, each part is asked once for everything and the blend is taken view by view, so a neural part
        makes two passes, not four; the renderer's rows are the first part's that has them.

        With `neural_fraction` < 1 (the cascade) the cheap part (`backend.cheap_part`) scores every row and the
        other parts only its `neural_fraction` least certain rows (evaluation.metrics.least_certain on its
        calibrated answer); the rest keep the cheap part's answer, calibrated as that part was saved."""
        n = len(frame)
        cheap = getattr(self.backend, "cheap_part", None) if self.neural_fraction < 1 else None
        pick = np.arange(n)
        results = [None] * len(self.backend.parts)
        if cheap is not None:
            results[cheap] = self.backend.parts[cheap][1]._score(frame, progress, tta, both_orders, render, style)
            pick = least_certain(softmax(results[cheap].logits), self.neural_fraction, self.cascade_by)
        some = frame.iloc[pick].reset_index(drop=True) if len(pick) < n else frame
        for i, (_, part) in enumerate(self.backend.parts):
            if results[i] is None and len(pick):
                results[i] = part._score(some, progress if i == 0 and cheap is None else None, tta, both_orders,
                                         render, style)
        same = identical_responses(frame)

        def probs_of(result, view):
            return softmax(result.logits) if view == "logits" else getattr(result, view)

        def blend(view, temperature):
            if cheap is None:
                probs = sum(w * probs_of(r, view) for (w, _), r in zip(self.backend.parts, results))
            else:
                probs = np.array(probs_of(results[cheap], view), dtype=np.float64)
                if len(pick):
                    probs[pick] = sum(w * (probs_of(r, view) if i != cheap else probs[pick])
                                      for i, ((w, _), r) in enumerate(zip(self.backend.parts, results)))
                # the cheap part's answer as saved: its own temperature already applied, the blend's not again
                logits = np.log(np.clip(probs, 1e-12, 1.0))
                logits[pick] /= temperature
                return level_identical(logits, same)
            return level_identical(np.log(np.clip(probs, 1e-12, 1.0)) / temperature, same)

        rendered = None
        if render:
            first = next(((i, r) for i, r in enumerate(results) if r is not None and r.rendered is not None), None)
            if first is not None:
                i, r = first
                if i == cheap or cheap is None:
                    rendered = r.rendered
                else:  # rows the neural part never read: nothing rendered, nothing cut
                    rendered = [{"truncated": False} for _ in range(n)]
                    for row, report in zip(pick, r.rendered):
                        rendered[row] = report
        result = Predictions(blend("logits", self.temperatures[tta]), None, tta, rendered=rendered)
        if both_orders:
            result.direct = softmax(blend("direct", self.temperature))
            result.mirrored = softmax(blend("mirrored", self.temperature))
            if tta == "swap":
                result.swapped_back = softmax(blend("swapped_back", self.temperatures[tta]))
        return result

    def predict_frame(self, df: pd.DataFrame, scores: bool = False, progress=None, tta: str | None = None,
                      verdict: bool = False, diagnostics: bool = False, style: str | None = None) -> pd.DataFrame:
        """Kaggle-format DataFrame (or a normalised one) in -> id, winner_model_a, winner_model_b, winner_tie
        (+ score_a, score_b; + `verdict`, one of evaluation.metrics.VERDICTS; + `diagnostics`, one dict per row,
        see `predict_all`)."""
        frame = as_turn_frame(df)
        if "id" not in frame.columns:
            frame = normalize(df, "frame")  # one clear line: the output needs the ids
        result = self.predict_all(frame, progress, tta, diagnostics=diagnostics, style=style)
        probs = result.probs
        out = pd.DataFrame({"id": frame["id"]})
        for j, name in enumerate(LABELS):
            out[name] = probs[:, j]
        if scores and result.scores is not None:
            out["score_a"], out["score_b"] = result.scores[:, 0], result.scores[:, 1]
        if verdict:
            out["verdict"] = verdicts(probs)
        if diagnostics:
            out["diagnostics"] = result.diagnostics
        return out

    def predict(self, prompt, response_a, response_b, tta: str | None = None, style: str | None = None) -> dict:
        """One comparison; each argument is a string (one turn) or a list of turns (`None` turns read as "")."""
        probs = self.predict_all(one_row(prompt, response_a, response_b), tta=tta, style=style).probs[0]
        return {name: float(p) for name, p in zip(LABELS, probs)}

    def decide(self, prompt, response_a, response_b, tta: str | None = None, diagnostics: bool = False,
               style: str | None = None) -> dict:
        """`predict` plus the verdict (a_wins, b_wins, tie, or ambiguous where A and B are equally likely and no
        less likely than a tie) and, with `diagnostics=True`, the row's diagnostics (see `predict_all`)."""
        result = self.predict_all(one_row(prompt, response_a, response_b), tta=tta, diagnostics=diagnostics,
                                  style=style)
        out = {name: float(p) for name, p in zip(LABELS, result.probs[0])}
        out["verdict"] = verdicts(result.probs)[0]
        if diagnostics:
            out["diagnostics"] = result.diagnostics[0]
        return out

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
