"""Temperature scaling (Guo et al. 2017): one scalar T fitted on held-out data, probabilities = softmax(logits / T).

It changes confidence, never the ranking of the classes, so accuracy is untouched while log loss and ECE improve
when a model is over- (T > 1) or under-confident (T < 1).
"""

from __future__ import annotations

import numpy as np

from arenapref.evaluation.metrics import expected_calibration_error, log_loss, softmax

# A temperature outside this range means the validation set is too small or degenerate to trust.
MIN_T, MAX_T = 0.05, 20.0
# Below this many held-out rows one scalar is still fitted too noisily to beat leaving the model as it is.
MIN_ROWS = 50


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [MIN_T, MAX_T] that minimises the log loss of softmax(logits / T) on (logits, labels)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # lazy: scipy.optimize costs ~0.12 s at every command's start

    # Search log T: the loss is smooth and unimodal in it, and the bounds stay symmetric around T = 1.
    result = minimize_scalar(lambda log_t: log_loss(labels, softmax(logits, float(np.exp(log_t)))),
                             bounds=(np.log(MIN_T), np.log(MAX_T)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x)) if result.success else 1.0


def cross_fitted(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int = 5,
                 seed: int = 0) -> np.ndarray:
    """Probabilities where every row's temperature was fitted on the other rows (folds grouped by prompt): an
    honest estimate of the calibrated model on new rows, where the in-sample fit would be optimistic."""
    from sklearn.model_selection import GroupKFold

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    probs = np.empty_like(logits)
    folds = min(folds, len(np.unique(groups)))
    if folds < 2:
        return softmax(logits)
    for rest, part in GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(logits, labels, groups):
        t = fit_temperature(logits[rest], labels[rest]) if len(rest) >= MIN_ROWS else 1.0
        probs[part] = softmax(logits[part], t)
    return probs


def calibrate(logits: np.ndarray, labels: np.ndarray, log=print, groups: np.ndarray | None = None,
              what: str = "") -> tuple[float, np.ndarray]:
    """Fit T on held-out logits, log log-loss / ECE before and after. Returns T and the calibrated probabilities:
    cross-fitted (`cross_fitted`) when the rows' prompt `groups` are given, in-sample otherwise."""
    label = f"calibration{what}"
    if len(labels) < MIN_ROWS:
        log(f"{label}: skipped, {len(labels)} validation rows (< {MIN_ROWS}); temperature stays 1.0")
        return 1.0, softmax(logits)
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    honest = after if groups is None else cross_fitted(logits, labels, groups)
    log(f"{label}: temperature {temperature:.3f}; validation log loss {log_loss(labels, before):.4f} -> "
        f"{log_loss(labels, after):.4f} in-sample"
        + ("" if groups is None else f", {log_loss(labels, honest):.4f} cross-fitted")
        + f", ECE {expected_calibration_error(labels, before):.4f} -> {expected_calibration_error(labels, after):.4f}")
    return temperature, honest
