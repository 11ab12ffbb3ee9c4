"""Model leaderboards: Bradley-Terry ratings on the Elo scale with 95% intervals, as LMSYS / FastChat do, at Chatbot
Arena scale, optionally style controlled.

Rating R on the Elo scale: P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400)); the mean rating (or a chosen anchor
model) is 1000. Each battle has an outcome as three weights (A wins, B wins, tie): one-hot for a human vote, or a
judge's predicted probabilities ("soft" outcomes: the ratings a model would get if the judge's votes were cast).
Ties: "half" counts a tie as half a win for each side (FastChat counts every battle twice and splits a tie's two
copies into one win each way: the same likelihood); "davidson" models ties explicitly (Davidson 1970: P(tie) grows
with nu * sqrt(pi_a pi_b)).

Scale: battles are summed per ordered pair of models once (the only step that grows with the number of battles);
the fit and every bootstrap round then work on those <= models^2 pair rows (bradley_terry.py). Intervals: "bootstrap"
resamples battles with replacement (FastChat's procedure): for human votes by multinomial counts over the distinct
(model_a, model_b, outcome) cells, which is the same distribution; for soft outcomes each battle's count is drawn and
summed per pair, O(battles) a round. "sandwich" takes them from the one fit (the robust covariance H^-1 M H^-1, as
lmarena's arena-rank offers), no resampling.

Style control (style.py): a Bradley-Terry model with per-battle covariates, the standardised normalised differences
of the two responses' length and markdown counts, fitted jointly with the ratings (lmarena / FastChat's contextual
Bradley-Terry); each battle is then a row of its own, so its fit and bootstrap rounds grow with the battles.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.predictions import probabilities_for, read_predictions
from arenapref.data.tables import (
    LABELS,
    check_csv_head,
    check_input_file,
    first_bad_utf8,
    read_table,
    write_csv_atomic,
    write_text_atomic,
)
from arenapref.errors import DataError
from arenapref.evaluation.figures import pyplot, save_figure
from arenapref.ratings.bradley_terry import TIES, Design, newton, sandwich
from arenapref.ratings.style import (
    STYLE_FEATURES,
    TOKENIZER,
    style_counts,
    style_covariates,
)

SCALE, BASE, INITIAL = 400.0, 10.0, 1000.0
ELO_PER_NATURAL = SCALE / math.log(BASE)  # natural-log strength -> Elo points
WINNER_NAMES = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
CI_METHODS = ("bootstrap", "sandwich")
STYLE_COUNT_COLUMNS = tuple(f"{name}_{side}" for side in ("a", "b") for name in STYLE_FEATURES)
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
# Rows of bootstrap work held at once: (rounds in a batch) x (pair rows) stays about this size (8 MB an array).
BATCH_ELEMENTS = 1_000_000
CSV_BLOCK_BYTES = 4 << 20  # pyarrow's unit of parallel parsing; a row longer than this fails


# -- reading battles ---------------------------------------------------------------------------------------------
def load_battles(path, style: bool = False) -> pd.DataFrame:
    """Battles file -> id, model_a, model_b (categorical) and, if it has votes, `winner` (0 A, 1 B, 2 tie); with
    `style` also the STYLE_COUNT_COLUMNS counts of the two responses (style.py), the texts themselves not kept.

    Only those columns are read (with pyarrow, block by block, so a file of millions of battles costs memory for
    its model and vote columns only, never for the texts a plain leaderboard does not use). Votes come from
    Kaggle's one-hot winner_model_a / winner_model_b / winner_tie columns, or from a FastChat-style `winner` column
    (model_a, model_b, tie, tie (bothbad)). Self-battles (model_a == model_b) carry no information and are dropped.
    """
    import pyarrow as pa

    path = Path(path)
    suffix = check_input_file(path)
    present, batches = _open_columns(path, suffix)
    missing = [c for c in ("model_a", "model_b") if c not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; a battles file names the two models of "
                        "each row (Kaggle train format)")
    votes = "kaggle" if all(c in present for c in LABELS) else "winner" if "winner" in present else None
    wanted = ["model_a", "model_b"] + (["id"] if "id" in present else [])
    wanted += list(LABELS) if votes == "kaggle" else ["winner"] if votes == "winner" else []
    if style:
        missing = [c for c in ("response_a", "response_b") if c not in present]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; style control measures the two "
                            "responses' texts (Kaggle columns response_a, response_b)")
        wanted += ["response_a", "response_b"]
    names: dict[str, int] = {}
    parts: dict[str, list] = {"model_a": [], "model_b": [], "id": [], "winner": [], "style_a": [], "style_b": []}
    # Style counting (Arrow kernels, which release the GIL) runs on worker threads while the next block is read;
    # at most a few blocks of text are in flight.
    n_workers = min(4, os.cpu_count() or 1)
    workers = ThreadPoolExecutor(max_workers=n_workers) if style else None
    try:
        _read_battle_blocks(batches(wanted), path, names, parts, votes, workers, 4 * n_workers)
    finally:
        if workers is not None:
            workers.shutdown(wait=True, cancel_futures=True)
    n_rows = sum(len(codes) for codes in parts["model_a"])
    if n_rows == 0:
        raise DataError(f"{path}: has a header but no data rows")
    # Categories sorted by name: the order the leaderboard breaks rating ties in.
    categories = np.array(sorted(names), dtype=object)
    rank_of_code = np.empty(len(names), dtype=np.int32)
    rank_of_code[[names[c] for c in categories]] = np.arange(len(categories), dtype=np.int32)
    a = rank_of_code[np.concatenate(parts["model_a"])]
    b = rank_of_code[np.concatenate(parts["model_b"])]
    ids = (pd.Series(pa.concat_arrays(parts["id"]), dtype=pd.StringDtype("pyarrow")) if parts["id"]
           else pd.Series(np.arange(n_rows).astype(str)))
    out = pd.DataFrame({"id": ids,
                        "model_a": pd.Categorical.from_codes(a, categories),
                        "model_b": pd.Categorical.from_codes(b, categories)})
    if votes:
        out["winner"] = np.concatenate(parts["winner"])
    if style:
        for side in ("a", "b"):
            counts = np.concatenate(parts[f"style_{side}"]).reshape(-1, len(STYLE_FEATURES))
            for j, name in enumerate(STYLE_FEATURES):
                out[f"{name}_{side}"] = counts[:, j].astype(np.int32)
    return out[a != b].reset_index(drop=True)


def _read_battle_blocks(blocks, path: Path, names: dict, parts: dict, votes: str | None, workers,
                        in_flight: int) -> None:
    """Convert each block's columns into parts' lists (model codes, ids, vote labels, style counts)."""
    import pyarrow.compute as pc

    first_row, pending = 0, []
    for batch in blocks:
        n = len(batch["model_a"])
        for col in ("model_a", "model_b"):
            parts[col].append(_model_codes(batch[col], names, f"{path}: column {col}", first_row))
        if "id" in batch:  # a compact copy: a slice would keep the whole parsed block alive
            parts["id"].append(pc.utf8_trim_whitespace(batch["id"].cast("string")))
        if votes == "kaggle":
            parts["winner"].append(_one_hot_votes(batch, path, first_row))
        elif votes == "winner":
            parts["winner"].append(_winner_votes(batch["winner"], path, first_row))
        if workers is not None:
            for side in ("a", "b"):
                job = workers.submit(style_counts, batch[f"response_{side}"], f"{path}: column response_{side}",
                                     first_row)
                parts[f"style_{side}"].append(job)
                pending.append(job)
            while len(pending) > in_flight:
                pending.pop(0).result()
        first_row += n
    for side in ("a", "b"):  # in file order: the first bad cell is the one reported
        parts[f"style_{side}"] = [job.result() for job in parts[f"style_{side}"]]


def _open_columns(path: Path, suffix: str):
    """(column names, batches(wanted)): the file's columns and a generator of {name: pyarrow array} per block.

    CSV and Parquet are read by pyarrow, only the wanted columns and block by block; JSONL (rarely large) goes
    through the common reader. Column names are stripped of surrounding spaces.
    """
    import pyarrow as pa

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types, all meaning "not a Parquet file"
            raise DataError(f"{path}: cannot be read as Parquet ({_first_line(exc)}); check the file format") from None
        raw = {str(name).strip(): name for name in parquet.schema_arrow.names}

        def parquet_batches(wanted):
            try:
                for batch in parquet.iter_batches(batch_size=262_144, columns=[raw[c] for c in wanted]):
                    yield {c: batch.column(i) for i, c in enumerate(wanted)}
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{path}: cannot be read as Parquet ({_first_line(exc)}); check the file") from None
        return list(raw), parquet_batches
    if suffix in (".jsonl", ".json", ".jsonl.gz", ".ndjson", ".csv.gz", "dataset"):
        frame = read_table(path)
        frame.columns = [str(c).strip() for c in frame.columns]

        def frame_batches(wanted):
            columns = {}
            for c in wanted:
                values = frame[c]
                if c.startswith("response_") and values.map(lambda v: isinstance(v, (list, np.ndarray))).any():
                    columns[c] = pa.array([list(v) if isinstance(v, (list, np.ndarray)) else v for v in values])
                else:
                    columns[c] = pa.array(values.astype(str).tolist(), pa.string())
            yield columns
        return list(frame.columns), frame_batches
    return _csv_columns(path)


def _csv_columns(path: Path):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    check_csv_head(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except UnicodeDecodeError:
        raise DataError(f"{path}: {first_bad_utf8(path)}: not valid UTF-8; re-save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc}); check the file format") from None
    # Unique raw names for pyarrow (pandas' style for repeats: x, x.1); the first of each stripped name is used.
    seen: dict[str, int] = {}
    raw_names = []
    for name in header:
        count = seen.get(name, 0)
        raw_names.append(name if count == 0 else f"{name}.{count}")
        seen[name] = count + 1
    columns: dict[str, str] = {}
    for raw in raw_names:
        columns.setdefault(raw.strip(), raw)
    keyed = pa.dictionary(pa.int32(), pa.string())  # model names and vote values repeat: keep each once

    def csv_batches(wanted):
        types = {columns[c]: (keyed if c in ("model_a", "model_b", "winner", *LABELS) else pa.string())
                 for c in wanted}
        options = dict(
            read_options=pacsv.ReadOptions(column_names=raw_names, skip_rows=1, block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=[columns[c] for c in wanted], column_types=types,
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
        texts = any(c.startswith("response_") for c in wanted)
        try:
            # Without texts the wanted columns are small: one multi-threaded read is fastest and holds least (the
            # streaming reader keeps more blocks in flight). With texts, block by block, the texts never all held.
            batches = pacsv.open_csv(path, **options) if texts else pacsv.read_csv(path, **options).to_batches()
            for batch in batches:
                yield {c: batch.column(columns[c]) for c in wanted}
        except DataError:
            raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError) as exc:
            message = _first_line(exc)
            if "utf8" in message.lower() or "utf-8" in message.lower() or isinstance(exc, UnicodeDecodeError):
                raise DataError(f"{path}: {first_bad_utf8(path)}: not valid UTF-8; re-save the file as UTF-8") from None
            if message.startswith("Empty CSV file"):
                raise DataError(f"{path}: has a header but no data rows") from None
            raise DataError(f"{path}: cannot be read as CSV ({message}); check the file format") from None
    return list(columns), csv_batches


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _dictionary(column):
    """A pyarrow column as a dictionary array of strings (nulls as "")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type) or column.null_count:
        column = pc.dictionary_encode(column.cast(pa.string()).fill_null(""))
    return column


def _model_codes(column, names: dict, where: str, first_row: int) -> np.ndarray:
    """Model names of one block -> integer codes of `names` (extended with new names), names stripped."""
    column = _dictionary(column)
    values = [str(v).strip() for v in column.dictionary.to_pylist()]
    indices = column.indices.to_numpy(zero_copy_only=False)
    if "" in values:
        i = int(np.flatnonzero(indices == values.index(""))[0])
        raise DataError(f"{where.split(': column ')[0]}: row {first_row + i + 1} column {where.split(': column ')[1]}: "
                        "empty model name")
    lookup = np.array([names.setdefault(v, len(names)) for v in values], dtype=np.int32)
    return lookup[indices]


def _one_hot_votes(batch, path, first_row: int) -> np.ndarray:
    """Kaggle's three winner columns of one block -> labels 0 / 1 / 2, or a one-line error naming the row."""
    values, raw = [], []
    for col in LABELS:
        column = _dictionary(batch[col])
        strings = column.dictionary.to_pylist()
        numeric = pd.to_numeric(pd.Series(strings, dtype=object), errors="coerce").to_numpy(dtype=float)
        indices = column.indices.to_numpy(zero_copy_only=False)
        values.append(numeric[indices] if len(strings) else np.zeros(len(indices)))
        raw.append((np.array(strings, dtype=object), indices))
    values = np.stack(values, axis=1)
    ok = np.isin(values, (0.0, 1.0)).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        cells = [str(strings[indices[i]]) for strings, indices in raw]
        raise DataError(f"{path}: row {first_row + i + 1} columns {','.join(LABELS)}: {cells} is not one-hot; "
                        "exactly one of the three must be 1")
    return values.argmax(axis=1).astype(np.int8)


def _winner_votes(column, path, first_row: int) -> np.ndarray:
    column = _dictionary(column)
    strings = [str(v).strip() for v in column.dictionary.to_pylist()]
    indices = column.indices.to_numpy(zero_copy_only=False)
    codes = np.array([WINNER_NAMES.get(v, -1) for v in strings], dtype=np.int8)
    labels = codes[indices] if len(strings) else np.zeros(0, dtype=np.int8)
    bad = labels < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {first_row + i + 1} column winner: {strings[indices[i]]!r}; expected one of "
                        f"{', '.join(WINNER_NAMES)}")
    return labels


def load_predictions(path, ids: pd.Series) -> np.ndarray:
    """A prediction file (id + the three probabilities, as `arenapref predict` writes) aligned to battle ids."""
    probs, absent = probabilities_for(read_predictions(path), ids)
    if absent:
        raise DataError(f"{path}: no prediction for battle id {absent[0]!r} ({len(absent)} missing); "
                        "predict on the same battles file")
    return probs / probs.sum(axis=1, keepdims=True)


def drop_rare_models(battles: pd.DataFrame, min_battles: int) -> pd.DataFrame:
    """Battles between models that each have at least `min_battles` battles (a rating from 2 votes is noise)."""
    if min_battles <= 1:
        return battles
    counts = pd.concat([battles["model_a"], battles["model_b"]]).value_counts()
    keep = counts.index[counts >= min_battles]
    kept = battles[battles["model_a"].isin(keep) & battles["model_b"].isin(keep)]
    if kept.empty:
        raise DataError(f"no model has {min_battles} or more battles; lower --min-battles")
    return kept.reset_index(drop=True)


def battle_style_covariates(battles: pd.DataFrame) -> np.ndarray:
    """(N, 4) style covariates of the battles load_battles(style=True) read (standardised over these battles)."""
    missing = [c for c in STYLE_COUNT_COLUMNS if c not in battles.columns]
    if missing:
        raise DataError(f"battles lack the style counts {', '.join(missing)}; load them with load_battles(style=True)")
    counts = battles[list(STYLE_COUNT_COLUMNS)].to_numpy(dtype=float)
    k = len(STYLE_FEATURES)
    return style_covariates(counts[:, :k], counts[:, k:])


# -- fitting -----------------------------------------------------------------------------------------------------
@dataclass
class Votes:
    """Battles as model indices (a, b) with outcomes: `labels` (0 A, 1 B, 2 tie) for human votes, or `soft` (N, 3)
    weights; `pairs` the distinct ordered pairs, `pair_of_battle` each battle's pair, `weights` (P, 3) the summed
    outcome weights per pair (all the plain likelihood needs: exact for half ties and Davidson)."""

    a: np.ndarray
    b: np.ndarray
    n_models: int
    labels: np.ndarray | None
    soft: np.ndarray | None
    pairs: np.ndarray = field(init=False)
    pair_of_battle: np.ndarray = field(init=False)
    weights: np.ndarray = field(init=False)
    _soft_by_pair: np.ndarray | None = field(default=None, init=False, repr=False)
    _pair_starts: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        m = self.n_models
        key = self.a.astype(np.int64) * m + self.b
        if m * m <= max(4 * len(key), 1 << 22):  # few models: a lookup table, O(battles), no sort
            present = np.flatnonzero(np.bincount(key, minlength=m * m))
            lookup = np.full(m * m, -1, dtype=np.int64)
            lookup[present] = np.arange(len(present))
            self.pair_of_battle = lookup[key]
        else:
            present, self.pair_of_battle = np.unique(key, return_inverse=True)
        self.pairs = np.stack([present // m, present % m], axis=1)
        n_pairs = len(present)
        if self.labels is not None:
            cells = np.bincount(self.pair_of_battle * 3 + self.labels, minlength=3 * n_pairs)
            self.weights = cells.reshape(n_pairs, 3).astype(float)
        else:
            self.weights = np.stack([np.bincount(self.pair_of_battle, self.soft[:, k], n_pairs) for k in range(3)],
                                    axis=1)

    @property
    def n_battles(self) -> int:
        return len(self.a)

    def battle_weights(self, counts: np.ndarray | None = None) -> np.ndarray:
        """(N, 3) each battle's outcome weights, times its count in a resample when given."""
        scale = np.ones(self.n_battles) if counts is None else counts.astype(float)
        if self.labels is None:
            return self.soft * scale[:, None]
        weights = np.zeros((self.n_battles, 3))
        weights[np.arange(self.n_battles), self.labels] = scale
        return weights

    def pair_moments(self) -> np.ndarray:
        """(P, 3, 3) sum over each pair's battles of w w^T (the sandwich's meat needs the outcomes' spread)."""
        if self.labels is not None:
            return self.weights[:, :, None] * np.eye(3)[None]
        moments = np.empty((len(self.pairs), 3, 3))
        for k in range(3):
            for j in range(k, 3):
                moments[:, k, j] = moments[:, j, k] = np.bincount(self.pair_of_battle,
                                                                  self.soft[:, k] * self.soft[:, j],
                                                                  len(self.pairs))
        return moments

    def resampled_pair_weights(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, P, 3) summed weights of `rounds` resamples of the battles with replacement.

        Human votes: a battle is one of the distinct (pair, outcome) cells, so a resample is multinomial counts over
        the cells (FastChat's "faster arena elo"), nothing per battle. Soft outcomes differ battle by battle: each
        battle's count is drawn and the weighted counts summed per pair, O(battles) a round.
        """
        n, n_pairs = self.n_battles, len(self.pairs)
        if self.labels is not None:
            cells = self.weights.ravel()
            used = np.flatnonzero(cells)
            out = np.zeros((rounds, cells.size))
            out[:, used] = rng.multinomial(n, cells[used] / cells[used].sum(), size=rounds)
            return out.reshape(rounds, n_pairs, 3)
        if self._soft_by_pair is None:
            # Battles grouped by pair once, each outcome column contiguous: a round's per-pair sums are then
            # three reduceat passes. Counts are exchangeable, so they are drawn straight in that order.
            order = np.argsort(self.pair_of_battle, kind="stable")
            self._soft_by_pair = np.ascontiguousarray(self.soft[order].T)
            self._pair_starts = np.searchsorted(self.pair_of_battle[order], np.arange(n_pairs))
        out = np.empty((rounds, n_pairs, 3))
        for r in range(rounds):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for k in range(3):
                out[r, :, k] = np.add.reduceat(self._soft_by_pair[k] * counts, self._pair_starts)
        return out


def _index_models(battles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(models sorted by name, a, b): the models that play and each battle's two model indices."""
    col_a, col_b = battles["model_a"], battles["model_b"]
    if (isinstance(col_a.dtype, pd.CategoricalDtype) and isinstance(col_b.dtype, pd.CategoricalDtype)
            and col_a.cat.categories.equals(col_b.cat.categories)):
        # load_battles' columns: integer codes already, O(battles) with no string work.
        codes_a, codes_b = col_a.cat.codes.to_numpy(np.int64), col_b.cat.codes.to_numpy(np.int64)
        names = np.asarray(col_a.cat.categories.astype(str), dtype=object)
        used = np.flatnonzero(np.bincount(codes_a, minlength=len(names)) + np.bincount(codes_b, minlength=len(names)))
        order = np.argsort(names[used], kind="stable")
        remap = np.full(len(names), -1, dtype=np.int64)
        remap[used[order]] = np.arange(len(used))
        return names[used[order]], remap[codes_a], remap[codes_b]
    both = pd.concat([col_a, col_b], ignore_index=True).astype(str).to_numpy()
    models, codes = np.unique(both, return_inverse=True)
    n = len(battles)
    return models.astype(object), codes[:n].astype(np.int64), codes[n:].astype(np.int64)


def _outcome_arrays(outcomes, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(labels, soft): integer labels for one-hot votes (or labels given as such), else the (N, 3) weights."""
    outcomes = np.asarray(outcomes)
    if outcomes.ndim == 1 and len(outcomes) == n and np.isin(outcomes, (0, 1, 2)).all():
        return outcomes.astype(np.int64), None
    if outcomes.shape != (n, 3):
        raise DataError(f"outcomes have shape {outcomes.shape}; expected one label or three weights per battle ({n})")
    outcomes = outcomes.astype(float)
    if np.isin(outcomes, (0.0, 1.0)).all() and (outcomes.sum(axis=1) == 1).all():
        return outcomes.argmax(axis=1), None
    return None, outcomes


@dataclass
class _Fit:
    """One fitted model: Elo ratings (anchored), their 95% interval, the style coefficients and Davidson's nu."""

    params: np.ndarray
    ratings: np.ndarray
    low: np.ndarray
    high: np.ndarray
    coef: np.ndarray | None = None
    coef_low: np.ndarray | None = None
    coef_high: np.ndarray | None = None
    tie_weight: float | None = None


def _anchored(theta: np.ndarray, anchor_index: int | None, played: np.ndarray | None = None) -> np.ndarray:
    """(..., M) natural strengths -> Elo, the anchor (or the mean of the models that played) at 1000."""
    elo = theta * ELO_PER_NATURAL
    if played is not None:
        elo = np.where(played, elo, np.nan)
    with np.errstate(all="ignore"):
        shift = elo[..., [anchor_index]] if anchor_index is not None else np.nanmean(elo, axis=-1, keepdims=True)
    return elo - shift + INITIAL


def _fit(design: Design, weights: np.ndarray, ties: str, anchor_index: int | None, ci: str, bootstrap: int,
         draw: Callable[[int], np.ndarray], moments: np.ndarray | None, start: np.ndarray | None,
         progress: Callable[[int], None] | None) -> _Fit:
    """Point fit on `weights` (R, 3), then intervals: sandwich, or `bootstrap` rounds of `draw(rounds)` weights
    (rounds, R, 3) fitted in batches, each warm-started from the point fit."""
    m, k = design.n_models, design.n_features
    point = newton(design, weights[None], ties, start=None if start is None else start[None])[0]
    fit = _Fit(params=point, ratings=_anchored(point[:m], anchor_index),
               low=np.full(m, np.nan), high=np.full(m, np.nan),
               coef=point[m:m + k] if k else None, tie_weight=float(np.exp(point[-1])) if ties == "davidson" else None)
    if k:
        fit.coef_low, fit.coef_high = np.full(k, np.nan), np.full(k, np.nan)
    if ci == "sandwich":
        cov = sandwich(design, weights[None], moments, point, ties)
        contrast = np.eye(m) - (np.eye(m)[[anchor_index]] if anchor_index is not None else np.full((1, m), 1.0 / m))
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", contrast, cov[:m, :m], contrast), 0)) * ELO_PER_NATURAL
        fit.low, fit.high = fit.ratings - Z_95 * sd, fit.ratings + Z_95 * sd
        if k:
            coef_sd = np.sqrt(np.maximum(np.diag(cov)[m:m + k], 0))
            fit.coef_low, fit.coef_high = fit.coef - Z_95 * coef_sd, fit.coef + Z_95 * coef_sd
        return fit
    if bootstrap <= 0:
        return fit
    batch = max(1, min(bootstrap, BATCH_ELEMENTS // max(design.n_rows, 1)))
    ratings, coefs = [], []
    for done in range(0, bootstrap, batch):
        rounds = min(batch, bootstrap - done)
        sample = draw(rounds)
        params = newton(design, sample, ties, start=np.repeat(point[None], rounds, axis=0))
        # A model with no battle in a resample (or a resample without the anchor) has no rating there.
        played = design.model_totals(design.pair_sums(sample.sum(axis=2))) > 0
        ratings.append(_anchored(params[:, :m], anchor_index, played))
        coefs.append(params[:, m:m + k])
        if progress is not None:
            progress(rounds)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: a model absent from every resample
        fit.low, fit.high = np.nanpercentile(np.concatenate(ratings), [2.5, 97.5], axis=0)
        if k:
            fit.coef_low, fit.coef_high = np.percentile(np.concatenate(coefs), [2.5, 97.5], axis=0)
    return fit


@dataclass
class Board:
    """A leaderboard: `table` (model, rating, ci_low, ci_high[, rank, style_rating, style_ci_low, style_ci_high,
    style_rank], battles; best first), Davidson's tie weight, and with style control the `style` coefficients
    (feature, coef = log-odds of A winning per standard deviation of the covariate, 95% interval, the same in Elo)."""

    table: pd.DataFrame
    tie_weight: float | None = None
    style: pd.DataFrame | None = None
    style_tie_weight: float | None = None


def rate(battles: pd.DataFrame, outcomes, bootstrap: int = 100, ties: str = "half", anchor: str | None = None,
         seed: int = 0, ci: str = "bootstrap", style: np.ndarray | None = None,
         progress: Callable[[int], None] | None = None) -> Board:
    """Bradley-Terry ratings of the battles' models from `outcomes` ((N,) labels 0/1/2 or (N, 3) weights), with
    95% intervals by `ci`: "bootstrap" (`bootstrap` resamples of the battles; 0: no intervals) or "sandwich"; with
    `style` ((N, K) covariates, e.g. battle_style_covariates) also the style-controlled ratings. `progress(n)` is
    called as bootstrap rounds finish."""
    if ties not in TIES:
        raise DataError(f"ties {ties!r}: expected half or davidson")
    if ci not in CI_METHODS:
        raise DataError(f"ci {ci!r}: expected {' or '.join(CI_METHODS)}")
    models, a, b = _index_models(battles)
    if len(models) < 2:
        raise DataError("the battles involve fewer than two distinct models; a leaderboard needs at least two")
    index = {name: i for i, name in enumerate(models)}
    if anchor is not None and anchor not in index:
        raise DataError(f"anchor model {anchor!r} is not in the battles; pick one of: {', '.join(models[:10])}")
    anchor_index = index[anchor] if anchor is not None else None
    labels, soft = _outcome_arrays(outcomes, len(a))
    votes = Votes(a, b, len(models), labels, soft)
    from threadpoolctl import threadpool_limits

    # Many small solves: BLAS threads only add synchronisation (6x slower on a busy 2-core machine).
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        plain_design = Design(votes.pairs, len(models))
        plain = _fit(plain_design, votes.weights, ties, anchor_index, ci, bootstrap,
                     lambda rounds: votes.resampled_pair_weights(rng, rounds), votes.pair_moments(), None, progress)
        styled = None
        if style is not None:
            styled = _fit_style(votes, np.asarray(style, dtype=float), ties, anchor_index, ci, bootstrap, seed,
                                plain.params, progress)
    n_battles = np.bincount(np.r_[a, b], minlength=len(models))
    table = pd.DataFrame({"model": models, "rating": plain.ratings, "ci_low": plain.low, "ci_high": plain.high})
    board = Board(table=table, tie_weight=plain.tie_weight)
    if styled is not None:
        table["rank"] = _ranks(plain.ratings)
        table["style_rating"], table["style_ci_low"], table["style_ci_high"] = styled.ratings, styled.low, styled.high
        table["style_rank"] = _ranks(styled.ratings)
        names = (list(STYLE_FEATURES) if len(styled.coef) == len(STYLE_FEATURES)
                 else [f"x{j}" for j in range(len(styled.coef))])
        # A covariate that never varies (say no response has a header) is all 0: nothing measured, no interval.
        constant = ~np.asarray(style, dtype=float).any(axis=0)
        board.style = pd.DataFrame({"feature": names, "coef": styled.coef,
                                    "ci_low": np.where(constant, np.nan, styled.coef_low),
                                    "ci_high": np.where(constant, np.nan, styled.coef_high),
                                    "elo_per_sd": styled.coef * ELO_PER_NATURAL})
        board.style_tie_weight = styled.tie_weight
    table["battles"] = n_battles
    board.table = table.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)
    return board


def _fit_style(votes: Votes, covariates: np.ndarray, ties: str, anchor_index, ci: str, bootstrap: int, seed: int,
               plain_params: np.ndarray, progress) -> _Fit:
    """The contextual Bradley-Terry fit: battles as rows with their covariates, started from the plain fit."""
    if covariates.shape[0] != votes.n_battles or covariates.ndim != 2:
        raise DataError(f"style covariates have shape {covariates.shape}; expected one row per battle "
                        f"({votes.n_battles})")
    design = Design(votes.pairs, votes.n_models, votes.pair_of_battle, covariates)
    m = votes.n_models
    start = np.r_[plain_params[:m], np.zeros(covariates.shape[1]), plain_params[m:]]
    # Its own random stream: adding style control leaves the plain columns' resamples (and intervals) unchanged.
    rng = np.random.default_rng([seed, 1])
    n = votes.n_battles

    def draw(rounds):
        return np.stack([votes.battle_weights(np.bincount(rng.integers(0, n, n), minlength=n))
                         for _ in range(rounds)])

    return _fit(design, votes.battle_weights(), ties, anchor_index, ci, bootstrap, draw, None, start, progress)


def _ranks(ratings: np.ndarray) -> np.ndarray:
    """1 for the best rating; equal ratings share the better rank."""
    return pd.Series(ratings).rank(ascending=False, method="min").to_numpy(dtype=int)


def rank_correlation(human: pd.DataFrame, predicted: pd.DataFrame, column: str = "rating") -> dict:
    """Spearman and Kendall rank correlations between two leaderboards' `column` over their common models."""
    from scipy.stats import kendalltau, spearmanr

    merged = human[["model", column]].merge(predicted[["model", column]], on="model", suffixes=("_human", "_predicted"))
    if len(merged) < 2:
        return {"models": len(merged), "spearman": float("nan"), "kendall": float("nan")}
    x, y = merged[f"{column}_human"], merged[f"{column}_predicted"]
    return {"models": int(len(merged)), "spearman": float(spearmanr(x, y).statistic),
            "kendall": float(kendalltau(x, y).statistic)}


# -- chart -------------------------------------------------------------------------------------------------------
SOURCE_NAMES = {"votes": "human votes", "judge": "judge's predicted votes"}


def plot_leaderboard(tables: dict[str, pd.DataFrame], path, title: str = "Bradley-Terry ratings (Elo scale)",
                     interval: str = "95% bootstrap interval") -> None:
    """Ratings with 95% intervals, one row per model (ordered by the first table), one marker per table."""
    first = next(iter(tables.values()))
    order = first["model"].tolist()[::-1]
    fig, ax = pyplot().subplots(figsize=(8, 1.2 + 0.28 * len(order)))
    offsets = np.linspace(-0.2, 0.2, len(tables)) if len(tables) > 1 else [0.0]
    for offset, (label, table) in zip(offsets, tables.items()):
        table = table.set_index("model").reindex(order)
        y = np.arange(len(order)) + offset
        err = np.vstack([table["rating"] - table["ci_low"], table["ci_high"] - table["rating"]])
        ax.errorbar(table["rating"], y, xerr=np.nan_to_num(np.abs(err)), fmt="o", ms=4, capsize=2,
                    label=SOURCE_NAMES.get(label, label))
    ax.set_yticks(np.arange(len(order)), order, fontsize=8)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.axvline(INITIAL, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"rating ({interval})")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _interval_name(ci: str, bootstrap: int) -> str:
    if ci == "sandwich":
        return "sandwich"
    return "bootstrap" if bootstrap > 0 else "none"


def write_leaderboards(battles: pd.DataFrame, outcomes: dict[str, np.ndarray], output: Path | None,
                       bootstrap: int = 100, ties: str = "half", anchor: str | None = None, seed: int = 0,
                       ci: str = "bootstrap", style: bool = False, progress: Callable[[int], None] | None = None):
    """One leaderboard per source of outcomes ("votes": human, "judge": predicted), their rank correlation, and files:
    leaderboard.csv (human votes, or the judge's when there are no votes), leaderboard_judge.csv when both,
    leaderboard.png and leaderboard.json (settings, correlations, Davidson's tie weight, style coefficients).

    With `style` every board also carries style-controlled ratings and ranks (battles need load_battles(style=True)).
    Returns ({source: Board}, summary)."""
    covariates = battle_style_covariates(battles) if style else None
    boards = {name: rate(battles, values, bootstrap, ties, anchor, seed, ci, covariates, progress)
              for name, values in outcomes.items()}
    tables = {name: board.table for name, board in boards.items()}
    interval = _interval_name(ci, bootstrap)
    summary = {"battles": int(len(battles)), "models": int(len(next(iter(tables.values())))), "ties": ties,
               "ci": interval, "bootstrap": bootstrap if interval == "bootstrap" else 0, "anchor": anchor,
               "sources": list(boards), "style_control": bool(style)}
    if ties == "davidson":
        summary["tie_weight"] = {name: board.tie_weight for name, board in boards.items()}
    if style:
        summary["style"] = {
            "features": list(STYLE_FEATURES), "tokens": TOKENIZER,
            "covariate": "(f_a - f_b) / (f_a + f_b), 0 when both are 0, standardised over the battles",
            "coef_unit": "log-odds of A winning per standard deviation of the covariate; elo_per_sd the same in Elo",
            "coefficients": {name: {row.feature: {"coef": row.coef, "ci_low": row.ci_low, "ci_high": row.ci_high,
                                                  "elo_per_sd": row.elo_per_sd}
                                    for row in board.style.itertuples()} for name, board in boards.items()}}
        if ties == "davidson":
            summary["style"]["tie_weight"] = {name: board.style_tie_weight for name, board in boards.items()}
    if len(boards) == 2:
        summary.update(rank_correlation(tables["votes"], tables["judge"]))
        if style:
            styled = rank_correlation(tables["votes"], tables["judge"], "style_rating")
            summary.update(style_spearman=styled["spearman"], style_kendall=styled["kendall"])
    if output is None:
        return boards, summary
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (_name, table) in enumerate(tables.items()):
        filename = "leaderboard.csv" if i == 0 else "leaderboard_judge.csv"
        write_csv_atomic(table, output / filename, float_format="%.1f")
        files.append(filename)
    charted = {}
    for name, table in tables.items():
        charted[name] = table
        if style:
            charted[f"{SOURCE_NAMES.get(name, name)}, style controlled"] = table[
                ["model", "style_rating", "style_ci_low", "style_ci_high"]].set_axis(
                ["model", "rating", "ci_low", "ci_high"], axis=1)
    plot_leaderboard(charted, output / "leaderboard.png",
                     interval="95% interval" if interval == "none" else f"95% {interval} interval")
    files += ["leaderboard.png", "leaderboard.json"]
    summary["files"] = files
    write_text_atomic(json.dumps(summary, indent=2), output / "leaderboard.json")
    return boards, summary
