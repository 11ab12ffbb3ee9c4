"""A/B swap: as training augmentation (`--swap-augment`) and at test time (`--tta swap`).

Swapping the two responses of a row turns "A wins" into "B wins" and keeps a tie a tie. Arena votes have a
position bias that a model should not learn as a rule; seeing both orders (and averaging both at test time)
removes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax

# Class j of a row is class SWAP_CLASSES[j] of the swapped row (A <-> B, tie stays; -1 "unlabelled" stays).
SWAP_CLASSES = np.array([1, 0, 2])
SWAP_MODES = ("none", "random", "full")
TTA_MODES = ("none", "swap")


def swap_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    return np.where(labels >= 0, SWAP_CLASSES[np.clip(labels, 0, 2)], labels)


def swap_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with response A and response B (and model_a / model_b) exchanged, labels mapped."""
    out = frame.copy()
    out["response_a"], out["response_b"] = frame["response_b"], frame["response_a"]
    if "model_a" in frame.columns and "model_b" in frame.columns:
        out["model_a"], out["model_b"] = frame["model_b"], frame["model_a"]
    if "label" in frame.columns:
        out["label"] = swap_labels(frame["label"].to_numpy())
    return out


def swap_columns(values: np.ndarray) -> np.ndarray:
    """Per-class values (N, 3) of swapped rows, mapped back to the original rows' classes."""
    return np.asarray(values)[:, SWAP_CLASSES]


def average_with_swapped(logits: np.ndarray, swapped_logits: np.ndarray) -> np.ndarray:
    """Swap test-time augmentation: mean of the two probability vectors, returned as log-probabilities."""
    probs = 0.5 * (softmax(np.asarray(logits, np.float64), axis=1)
                   + softmax(np.asarray(swap_columns(swapped_logits), np.float64), axis=1))
    return np.log(np.clip(probs, 1e-12, 1.0)).astype(np.float32)
