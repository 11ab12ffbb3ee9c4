"""Prediction files: an `id` column and the three probabilities of a submission (winner_model_a, winner_model_b,
winner_tie), as `arenapref predict` and the oof.csv of `arenapref cv` write them. The ensemble blends them, the
leaderboard rates a judge's votes from them, distillation reads a teacher's; each of those then asks for the rows of
its own ids and says in its own words which one is missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.tables import LABELS, read_table
from arenapref.errors import DataError

# How far a row's probabilities may sum from 1 (files round them, e.g. to 6 decimals).
SUM_TOLERANCE = 1e-3


def read_predictions(path) -> pd.DataFrame:
    """id (stripped, unique) and the three probability columns, each a number in [0, 1], every row summing to 1;
    one-line errors naming the row (counted from 1, the header not counted). The values are returned as written."""
    table = read_table(path)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("id", *LABELS) if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected id,{','.join(LABELS)} "
                        "(the output of `arenapref predict` or the oof.csv of `arenapref cv`)")
    out = pd.DataFrame({"id": table["id"].astype(str).str.strip()})
    duplicated = out["id"].duplicated().to_numpy()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        raise DataError(f"{path}: row {i + 1}: duplicated id {out['id'].iloc[i]!r}; keep one row per id")
    for col in LABELS:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: row {i + 1} column {col}: {table[col].iloc[i]!r} is not a probability in [0, 1]")
        out[col] = values
    sums = out[list(LABELS)].sum(axis=1).to_numpy()
    bad = np.abs(sums - 1.0) > SUM_TOLERANCE
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {i + 1}: probabilities sum to {sums[i]:.4f}, not 1; fix the row")
    return out


def probabilities_for(predictions: pd.DataFrame, ids) -> tuple[np.ndarray | None, list[str]]:
    """((len(ids), 3) probabilities of `ids` in that order, []) from a `read_predictions` table, or (None, the ids
    it has no row for)."""
    wanted = pd.Index([str(i) for i in ids])
    indexed = predictions.set_index("id")
    absent = wanted[~wanted.isin(indexed.index)]
    if len(absent):
        return None, list(absent)
    return indexed.loc[wanted, list(LABELS)].to_numpy(dtype=float), []
