"""Temperature scaling (Guo et al. 2017): one scalar T fitted on held-out data, probabilities = softmax(logits / T).

It changes confidence, never the ranking of the classes, so accuracy is untouched while log loss and ECE improve
when a model is over- (T > 1) or under-confident (T < 1).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .metrics import expected_calibration_error, log_loss, softmax

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
    # Search log T: the loss is smooth and unimodal in it, and the bounds stay symmetric around T = 1.
    result = minimize_scalar(lambda log_t: log_loss(labels, softmax(logits, float(np.exp(log_t)))),
                             bounds=(np.log(MIN_T), np.log(MAX_T)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x)) if result.success else 1.0


def calibrate(logits: np.ndarray, labels: np.ndarray, log=print) -> tuple[float, np.ndarray]:
    """Fit T on held-out logits, log log-loss / ECE before and after; returns T and the calibrated probabilities."""
    if len(labels) < MIN_ROWS:
        log(f"calibration: skipped, {len(labels)} validation rows (< {MIN_ROWS}); temperature stays 1.0")
        return 1.0, softmax(logits)
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    log(f"calibration: temperature {temperature:.3f}; validation log loss {log_loss(labels, before):.4f} -> "
        f"{log_loss(labels, after):.4f}, ECE {expected_calibration_error(labels, before):.4f} -> "
        f"{expected_calibration_error(labels, after):.4f}")
    return temperature, after
