"""Blend prediction files (id + 3 probabilities): fixed weights, or weights fitted to minimise log loss.

linear:    p = sum_i w_i p_i with w on the simplex (w_i >= 0, sum 1): a mixture, never more confident than its parts.
loglinear: p = softmax(sum_i w_i log p_i) with w_i >= 0 (sum free): a product of experts; the total weight also
           acts as an inverse temperature, so it can sharpen or soften the blend.
Fit weights on out-of-fold predictions (`arenapref cv` writes oof.csv), then apply them to test predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.predictions import probabilities_for
from arenapref.errors import DataError
from arenapref.evaluation.metrics import log_loss, softmax

METHODS = ("linear", "loglinear")


def align(frames: list[pd.DataFrame], paths: list, ids: pd.Series | None = None) -> tuple[pd.Series, list[np.ndarray]]:
    """Probability arrays of every input (`data.predictions.read_predictions` tables) in one row order (`ids`, default
    the first file's); every file must cover those ids."""
    ids = frames[0]["id"] if ids is None else ids.astype(str).reset_index(drop=True)
    arrays = []
    for frame, path in zip(frames, paths):
        probs, absent = probabilities_for(frame, ids)
        if absent:
            raise DataError(f"{path}: has no row for id {absent[0]!r} ({len(absent)} ids missing); "
                            "all prediction files must cover the same rows")
        arrays.append(probs)
    return ids, arrays


def blend(arrays: list[np.ndarray], weights, method: str = "linear") -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    if method == "linear":
        return np.tensordot(weights / weights.sum(), np.stack(arrays), axes=1)
    logs = np.log(np.clip(np.stack(arrays), 1e-12, 1.0))
    return softmax(np.tensordot(weights, logs, axes=1))


def fit_weights(arrays: list[np.ndarray], labels: np.ndarray, method: str = "linear") -> np.ndarray:
    """Weights minimising the log loss of the blend on (arrays, labels)."""
    k = len(arrays)
    if method == "linear":
        # Softmax parameters map R^k onto the simplex, so an unconstrained optimiser stays feasible.
        to_weights = lambda theta: softmax(theta[None, :])[0]
        x0, bounds = np.zeros(k), None
    else:
        to_weights = lambda theta: theta
        x0, bounds = np.full(k, 1.0 / k), [(0.0, 10.0)] * k
    objective = lambda theta: log_loss(labels, blend(arrays, to_weights(theta), method))
    from scipy.optimize import minimize  # lazy: scipy.optimize costs ~0.12 s at every command's start

    result = minimize(objective, x0, method="L-BFGS-B", bounds=bounds)
    weights = to_weights(result.x)
    # Never return a blend worse than its best single input (the optimiser can stop early on flat ground).
    singles = [log_loss(labels, a) for a in arrays]
    best = int(np.argmin(singles))
    if singles[best] < objective(result.x):
        weights = np.eye(k)[best]
    return weights
