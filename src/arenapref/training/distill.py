"""Distillation targets: a teacher's probabilities per training row (`train --teacher-probs FILE.csv`).

The file has an `id` column and the three probability columns of a submission (winner_model_a, winner_model_b,
winner_tie), e.g. the output of `arenapref predict` with a stronger model or out-of-fold predictions. Training
then minimises  A * CE(teacher, model) + (1 - A) * CE(label, model)  with A = --distill-alpha, which is one
cross-entropy against the mixed target A * teacher + (1 - A) * one_hot(label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.tables import LABELS, one_hot, read_table
from arenapref.errors import DataError


def read_teacher_probs(path, ids) -> np.ndarray:
    """(N, 3) teacher probabilities in the order of `ids`; one-line errors for missing ids and bad rows."""
    table = read_table(path)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("id", *LABELS) if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected id,{','.join(LABELS)}")
    table_ids = table["id"].astype(str).str.strip()
    dup = table_ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{path}: row {i + 1}: duplicated id {table_ids.iloc[i]!r}; keep one row per id")
    probs = np.zeros((len(table), 3))
    for j, col in enumerate(LABELS):
        numeric = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(numeric) | (numeric < 0) | (numeric > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: row {i + 1} column {col}: {table[col].iloc[i]!r} is not a probability in [0, 1]")
        probs[:, j] = numeric
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1.0) > 1e-3
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {i + 1}: probabilities sum to {sums[i]:.4f}, not 1; fix the row")
    position = pd.Series(np.arange(len(table)), index=table_ids.to_numpy())
    wanted = pd.Index([str(i) for i in ids])
    absent = wanted[~wanted.isin(position.index)]
    if len(absent):
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise DataError(f"{path}: no teacher probabilities for training id {absent[0]!r}{more}; "
                        "the file needs a row for every training id")
    return probs[position.loc[wanted].to_numpy()] / sums[position.loc[wanted].to_numpy(), None]


def soft_targets(teacher: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * teacher + (1 - alpha) * one_hot(labels): cross-entropy against it is the mixed distillation loss."""
    return (alpha * teacher + (1.0 - alpha) * one_hot(labels)).astype(np.float32)
