"""Distillation targets: a teacher's probabilities per training row (`train --teacher-probs FILE.csv`).

The file has an `id` column and the three probability columns of a submission (winner_model_a, winner_model_b,
winner_tie), e.g. the output of `arenapref predict` with a stronger model or out-of-fold predictions. Training
then minimises  A * CE(teacher, model) + (1 - A) * CE(label, model)  with A = --distill-alpha, which is one
cross-entropy against the mixed target A * teacher + (1 - A) * one_hot(label).
"""

from __future__ import annotations

import numpy as np

from arenapref.data.predictions import probabilities_for, read_predictions
from arenapref.data.tables import one_hot
from arenapref.errors import DataError


def read_teacher_probs(path, ids) -> np.ndarray:
    """(N, 3) teacher probabilities in the order of `ids` (rows renormalised to sum to 1); one-line errors for
    missing ids and bad rows."""
    probs, absent = probabilities_for(read_predictions(path), ids)
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise DataError(f"{path}: no teacher probabilities for training id {absent[0]!r}{more}; "
                        "the file needs a row for every training id")
    return probs / probs.sum(axis=1, keepdims=True)


def soft_targets(teacher: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * teacher + (1 - alpha) * one_hot(labels): cross-entropy against it is the mixed distillation loss."""
    return (alpha * teacher + (1.0 - alpha) * one_hot(labels)).astype(np.float32)
