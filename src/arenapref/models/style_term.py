"""The style term of a judge's A-vs-B logit, the per-comparison form of a style-controlled leaderboard.

A judge with a style term (a gbdt trained with `--style-term`) reads who wins a decisive battle as

    logit P(A wins | not a tie) = x . beta  +  content term

with x the leaderboard's style covariates (data/style.py: per feature (f_a - f_b) / (f_a + f_b) of tokens, headers,
list items and bold spans, 0 when both are 0), each divided by its standard deviation over the training rows. The
judge trains on every row and its A/B mirror, so the covariates have mean 0 and the term has no intercept; fitted on
its own (content term zero), beta is exactly the style coefficient vector of `arenapref leaderboard --style` fitted
on the same rows and their mirrors (tests/test_style_control.py). The content term is the rest of what the family
reads (models/gbdt.py: trees on features.content_matrix, fitted with the style term as a fixed offset).

`style="as-voted"` predicts with the term, as the voters judged; `style="controlled"` sets x to 0, the value when
both answers have the same length and markdown: what is left is the content term (ties keep their own model).

Intervals: the robust (sandwich) covariance H^-1 M H^-1 with a battle and its mirror counted as one unit (their
scores are equal), at `LEVEL`; they are conditional on the content term, as a leaderboard's are on the ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from arenapref.data.style import STYLE_FEATURES, style_counts
from arenapref.errors import DataError

STYLE_MODES = ("as-voted", "controlled")
LEVEL = 0.95
# The ridge of the leaderboard's solver (ratings/bradley_terry.RIDGE), so the style term alone is its fit exactly.
RIDGE = 1e-3
# Fits of a style-term model: style alone, then (content given the style term, style given the content) twice.
STYLE_ALTERNATIONS = 2


def check_style(style: str) -> str:
    if style not in STYLE_MODES:
        raise DataError(f"style {style!r}: expected as-voted or controlled")
    return style


def style_ratios(frame: pd.DataFrame) -> np.ndarray:
    """(N, 4) raw style differences (f_a - f_b) / (f_a + f_b) of a normalised frame (0 where both counts are 0)."""
    counts = [style_counts(pa.array([list(t) for t in frame[c]], pa.list_(pa.string())), f"column {c}")
              for c in ("response_a", "response_b")]
    a, b = (np.asarray(c, dtype=np.float64) for c in counts)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (a - b) / np.where(total > 0, total, 1.0), 0.0)


@dataclass
class StyleTerm:
    """beta (per standard deviation of each covariate), its standard errors and intervals, and the scales."""

    coef: np.ndarray
    se: np.ndarray
    scale: np.ndarray
    rows: int
    features: tuple = STYLE_FEATURES

    def covariates(self, ratios: np.ndarray) -> np.ndarray:
        """Raw differences -> standardised covariates (a feature constant in training stays 0)."""
        return np.where(self.scale > 0, ratios / np.where(self.scale > 0, self.scale, 1.0), 0.0)

    def logit(self, ratios: np.ndarray) -> np.ndarray:
        return self.covariates(ratios) @ self.coef

    def table(self) -> list[dict]:
        from scipy.special import ndtri

        z = float(ndtri(0.5 + LEVEL / 2))
        return [{"feature": name, "coef": float(c), "se": float(s), "ci_low": float(c - z * s),
                 "ci_high": float(c + z * s)} for name, c, s in zip(self.features, self.coef, self.se)]

    def to_meta(self) -> dict:
        return {"features": list(self.features), "scale": [float(s) for s in self.scale], "coefficients": self.table(),
                "level": LEVEL, "rows": int(self.rows),
                "what": "logit P(A wins | not a tie) = sum of coef * (f_a - f_b) / (f_a + f_b) / scale + content term; "
                        "per standard deviation, as the leaderboard's style coefficients"}

    @classmethod
    def from_meta(cls, meta: dict) -> StyleTerm:
        rows = meta["coefficients"]
        return cls(coef=np.array([r["coef"] for r in rows], dtype=np.float64),
                   se=np.array([r["se"] for r in rows], dtype=np.float64),
                   scale=np.asarray(meta["scale"], dtype=np.float64), rows=int(meta.get("rows", 0)),
                   features=tuple(meta["features"]))


def style_scale(ratios: np.ndarray) -> np.ndarray:
    """Standard deviation per feature over the rows and their mirrors (mean 0 by symmetry)."""
    return np.sqrt(np.mean(np.asarray(ratios, dtype=np.float64) ** 2, axis=0))


def decisive_style(ratios: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The style differences and A-wins outcomes of the decisive rows (labels 0 / 1 / 2 = A / B / tie)."""
    decisive = np.asarray(labels) < 2
    return np.asarray(ratios, dtype=np.float64)[decisive], (np.asarray(labels)[decisive] == 0).astype(np.float64)


def fit_style_term(ratios: np.ndarray, a_wins: np.ndarray, offset: np.ndarray | None = None,
                   scale: np.ndarray | None = None) -> StyleTerm:
    """Maximum likelihood beta of logit P(A wins) = x . beta + offset on decisive rows and their mirrors (x -> -x,
    outcome flipped, offset -> -offset), penalised by RIDGE ||beta||^2 over the mirrored rows as the leaderboard's
    solver is. `offset` is the content term (fixed); `scale` defaults to style_scale(ratios)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    y = np.asarray(a_wins, dtype=np.float64)
    scale = style_scale(ratios) if scale is None else np.asarray(scale, dtype=np.float64)
    term = StyleTerm(np.zeros(ratios.shape[1]), np.zeros(ratios.shape[1]), scale, len(y))
    x = term.covariates(ratios)
    x2 = np.vstack([x, -x])
    y2 = np.r_[y, 1 - y]
    o2 = np.zeros(len(y2)) if offset is None else np.r_[offset, -np.asarray(offset, dtype=np.float64)]
    beta = np.zeros(x.shape[1])
    for _ in range(100):  # Newton on a concave log-likelihood: a handful of steps
        p = 1 / (1 + np.exp(-(x2 @ beta + o2)))
        grad = x2.T @ (p - y2) + 2 * RIDGE * beta
        hess = (x2 * (p * (1 - p))[:, None]).T @ x2 + 2 * RIDGE * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    p = 1 / (1 + np.exp(-(x2 @ beta + o2)))
    hess = (x2 * (p * (1 - p))[:, None]).T @ x2 + 2 * RIDGE * np.eye(len(beta))
    # A battle and its mirror have equal scores: one unit of 2 s each.
    scores = 2 * x * (p[:len(y)] - y)[:, None]
    bread = np.linalg.inv(hess)
    cov = bread @ (scores.T @ scores) @ bread
    term.coef, term.se = beta, np.sqrt(np.maximum(np.diag(cov), 0.0))
    return term
