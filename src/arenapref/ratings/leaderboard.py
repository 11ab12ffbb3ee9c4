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
import re
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
from arenapref.ratings.categories import CATEGORIES, category_bits, user_texts
from arenapref.ratings.style import (
    STYLE_FEATURES,
    TOKENIZER,
    style_counts,
    style_covariates,
)

SCALE, BASE, INITIAL = 400.0, 10.0, 1000.0
ELO_PER_NATURAL = SCALE / math.log(BASE)  # natural-log strength -> Elo points
# LMArena's winner values; both-bad votes (`tie (bothbad)` in older data, `both_bad` now) read as code 3, then
# counted as ties or dropped (load_battles' both_bad).
BOTH_BAD_CODE = 3
WINNER_NAMES = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": BOTH_BAD_CODE, "both_bad": BOTH_BAD_CODE}
BOTH_BAD = ("tie", "drop")
CI_METHODS = ("bootstrap", "sandwich")
STYLE_COUNT_COLUMNS = tuple(f"{name}_{side}" for side in ("a", "b") for name in STYLE_FEATURES)
# Rows of bootstrap work held at once: (rounds in a batch) x (pair rows) stays about this size (8 MB an array).
BATCH_ELEMENTS = 1_000_000
CSV_BLOCK_BYTES = 4 << 20  # pyarrow's unit of parallel parsing; a row longer than this fails
BOARD_THREADS = min(2, os.cpu_count() or 1)  # category boards fitted at once


# -- reading battles ---------------------------------------------------------------------------------------------
def load_battles(path, style: bool = False, both_bad: str = "tie", weights: str | None = None,
                 covariates: tuple[str, ...] = (), category: str | None = None,
                 prompt_categories: bool = False, prompt_text: bool = False) -> pd.DataFrame:
    """Battles file -> id, model_a, model_b (categorical) and, if it has votes, `winner` (0 A, 1 B, 2 tie); with
    `style` also the STYLE_COUNT_COLUMNS counts of the two responses (style.py), the texts themselves not kept.

    Only those columns are read (with pyarrow, block by block, so a file of millions of battles costs memory for
    its model and vote columns only, never for the texts a plain leaderboard does not use). Votes come from
    Kaggle's one-hot winner_model_a / winner_model_b / winner_tie columns, or from an LMArena / FastChat `winner`
    column (model_a, model_b, tie, and both-bad votes as `tie (bothbad)` or `both_bad`): `both_bad` "tie" counts
    those as ties (the column `both_bad` marks them), "drop" leaves them out. Self-battles (model_a == model_b)
    carry no information and are dropped.

    Optional columns: `weights` (a numeric column, >= 0) -> `weight`; `covariates` (numeric columns) ->
    `covariate:NAME`; `category` (any column) -> `category` (stripped text); `prompt_categories` -> the bit mask
    of each prompt's built-in categories (categories.py) as `prompt_categories`, from the `prompt` column;
    `prompt_text` -> its user turns joined by blank lines as `prompt_text` (the per-prompt model embeds them).
    """
    import pyarrow as pa

    if both_bad not in BOTH_BAD:
        raise DataError(f"both-bad votes {both_bad!r}: expected {' or '.join(BOTH_BAD)}")
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
    extra = {"weight": [weights] if weights else [], "category": [category] if category else [],
             "covariate": list(covariates)}
    for role, names in extra.items():
        for name in names:
            if name not in present:
                raise DataError(f"{path}: no column {name!r} (asked for as the battles' {role}); the file has: "
                                f"{', '.join(present[:20])}")
    wanted += [c for c in [*extra["weight"], *extra["category"], *extra["covariate"]] if c not in wanted]
    if style:
        missing = [c for c in ("response_a", "response_b") if c not in present]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; style control measures the two "
                            "responses' texts (Kaggle columns response_a, response_b)")
        wanted += ["response_a", "response_b"]
    if prompt_categories or prompt_text:
        if "prompt" not in present:
            raise DataError(f"{path}: missing column prompt; the built-in prompt categories are read from the "
                            "prompt text (Kaggle column prompt)")
        wanted += ["prompt"] if "prompt" not in wanted else []
    names: dict[str, int] = {}
    parts: dict[str, list] = {"model_a": [], "model_b": [], "id": [], "winner": [], "style_a": [], "style_b": [],
                              "weight": [], "category": [], "prompt": [], "prompt_text": [],
                              **{f"covariate:{c}": [] for c in covariates}}
    columns = {"weight": weights, "category": category, "covariates": tuple(covariates), "style": style,
               "prompt": prompt_categories, "prompt_text": prompt_text}
    # Text work (Arrow kernels, which release the GIL) runs on worker threads while the next block is read;
    # at most a few blocks of text are in flight.
    n_workers = min(4, os.cpu_count() or 1)
    workers = ThreadPoolExecutor(max_workers=n_workers) if style or prompt_categories or prompt_text else None
    try:
        _read_battle_blocks(batches(wanted), path, names, parts, votes, columns, workers, 4 * n_workers)
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
    keep = a != b
    if votes:
        winner = np.concatenate(parts["winner"])
        both = winner == BOTH_BAD_CODE
        if votes == "winner":
            out["both_bad"] = both
        if both_bad == "drop":
            keep &= ~both
        winner[both] = 2
        out["winner"] = winner
    if style:
        for side in ("a", "b"):
            counts = np.concatenate(parts[f"style_{side}"]).reshape(-1, len(STYLE_FEATURES))
            for j, name in enumerate(STYLE_FEATURES):
                out[f"{name}_{side}"] = counts[:, j].astype(np.int32)
    if weights:
        out["weight"] = np.concatenate(parts["weight"])
    if category:
        out["category"] = pd.Categorical(np.concatenate(parts["category"]))
    for name in covariates:
        out[f"covariate:{name}"] = np.concatenate(parts[f"covariate:{name}"])
    if prompt_categories:
        out["prompt_categories"] = np.concatenate(parts["prompt"])
    if prompt_text:
        out["prompt_text"] = np.concatenate(parts["prompt_text"])
    dropped = int(votes == "winner" and both_bad == "drop" and out["both_bad"].sum())
    out = out[keep].reset_index(drop=True)
    if dropped:
        out = out.drop(columns="both_bad")
        out.attrs["both_bad_dropped"] = dropped
    return out


def _read_battle_blocks(blocks, path: Path, names: dict, parts: dict, votes: str | None, columns: dict, workers,
                        in_flight: int) -> None:
    """Convert each block's columns into parts' lists (model codes, ids, vote labels, weights, categories,
    covariates, style counts, prompt category bits)."""
    import pyarrow.compute as pc

    first_row, pending = 0, []

    def submit(key, fn, column, where):
        job = workers.submit(fn, column, where, first_row)
        parts[key].append(job)
        pending.append(job)

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
        if columns["weight"]:
            weight = _numbers(batch[columns["weight"]], path, columns["weight"], first_row)
            negative = np.flatnonzero(weight < 0)
            if len(negative):
                raise DataError(f"{path}: row {first_row + int(negative[0]) + 1} column {columns['weight']}: "
                                f"{weight[negative[0]]:g} is negative; battle weights must be 0 or more")
            parts["weight"].append(weight)
        if columns["category"]:
            parts["category"].append(_texts(batch[columns["category"]]))
        for name in columns["covariates"]:
            parts[f"covariate:{name}"].append(_numbers(batch[name], path, name, first_row))
        if columns["style"]:
            for side in ("a", "b"):
                submit(f"style_{side}", style_counts, batch[f"response_{side}"], f"{path}: column response_{side}")
        if columns["prompt"]:
            submit("prompt", category_bits, batch["prompt"], f"{path}: column prompt")
        if columns["prompt_text"]:
            submit("prompt_text", user_texts, batch["prompt"], f"{path}: column prompt")
        while len(pending) > in_flight:
            pending.pop(0).result()
        first_row += n
    for key in ("style_a", "style_b", "prompt", "prompt_text"):  # in file order: the first bad cell is the one reported
        parts[key] = [job.result() for job in parts[key]]


def _texts(column) -> np.ndarray:
    """A column as stripped strings (null as ""), an object array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    strings = pc.utf8_trim_whitespace(column.cast(pa.string()).fill_null(""))
    return np.asarray(strings.to_numpy(zero_copy_only=False), dtype=object)


def _numbers(column, path: Path, name: str, first_row: int) -> np.ndarray:
    """A numeric column of one block as float64, or a one-line error naming the first cell that is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    else:
        strings = pc.utf8_trim_whitespace(column.cast(pa.string()).fill_null(""))
        try:
            values = pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = pd.to_numeric(pd.Series(strings.to_pylist(), dtype=object), errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}: row {first_row + i + 1} column {name}: {column[i].as_py()!r} is not a number; "
                        "this column must hold a finite number in every row")
    return values.astype(float)


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
                turns = c.startswith("response_") or c == "prompt"
                if turns and values.map(lambda v: isinstance(v, (list, np.ndarray))).any():
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
        texts = any(c.startswith("response_") or c == "prompt" for c in wanted)
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


def common_models_mask(battles: pd.DataFrame, min_battles: int) -> np.ndarray:
    """(N,) True for the battles between models that each have at least `min_battles` battles."""
    if min_battles <= 1:
        return np.ones(len(battles), dtype=bool)
    counts = pd.concat([battles["model_a"], battles["model_b"]]).value_counts()
    keep = counts.index[counts >= min_battles]
    return (battles["model_a"].isin(keep) & battles["model_b"].isin(keep)).to_numpy()


def drop_rare_models(battles: pd.DataFrame, min_battles: int) -> pd.DataFrame:
    """Battles between models that each have at least `min_battles` battles (a rating from 2 votes is noise)."""
    if min_battles <= 1:
        return battles
    kept = battles[common_models_mask(battles, min_battles)]
    if kept.empty:
        raise DataError(f"no model has {min_battles} or more battles; lower --min-battles")
    return kept.reset_index(drop=True)


def battle_covariates(battles: pd.DataFrame, style: bool) -> tuple[np.ndarray | None, list[str]]:
    """(N, K) covariates of the contextual fit and their names: with `style` the style features
    (battle_style_covariates), then every `covariate:NAME` column load_battles read, standardised over these
    battles (a constant column stays 0); (None, []) when there are none."""
    blocks, names = [], []
    if style:
        blocks.append(battle_style_covariates(battles))
        names += list(STYLE_FEATURES)
    for column in battles.columns:
        if isinstance(column, str) and column.startswith("covariate:"):
            values = battles[column].to_numpy(dtype=float)
            std = values.std()
            blocks.append(((values - values.mean()) / std if std > 0 else np.zeros_like(values))[:, None])
            names.append(column.split(":", 1)[1])
    return (np.hstack(blocks) if blocks else None), names


def category_masks(battles: pd.DataFrame, builtin: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """{category: (N,) mask} of the battles' categories: each value of the `category` column load_battles read
    (empty values in none), then each `builtin` prompt category (categories.CATEGORIES) from `prompt_categories`."""
    masks = {}
    if "category" in battles.columns:
        values = battles["category"].astype(str).to_numpy()
        for value in sorted(set(values) - {""}):
            masks[value] = values == value
    if builtin:
        if "prompt_categories" not in battles.columns:
            raise DataError("battles lack their prompt categories; load them with load_battles(prompt_categories="
                            "True)")
        bits = battles["prompt_categories"].to_numpy()
        for name in builtin:
            if name not in CATEGORIES:
                raise DataError(f"prompt category {name!r}: expected all or some of {', '.join(CATEGORIES)}")
            masks[name] = (bits >> CATEGORIES.index(name)) & 1 == 1
    return masks


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
    weights, and optional per-battle `battle_weight` c (N,) multiplying each battle's outcome; `pairs` the distinct
    ordered pairs, `pair_of_battle` each battle's pair, `weights` (P, 3) the summed (weighted) outcome weights per
    pair (all the plain likelihood needs: exact for half ties and Davidson)."""

    a: np.ndarray
    b: np.ndarray
    n_models: int
    labels: np.ndarray | None
    soft: np.ndarray | None
    battle_weight: np.ndarray | None = None
    pairs: np.ndarray = field(init=False)
    pair_of_battle: np.ndarray = field(init=False)
    weights: np.ndarray = field(init=False)
    _soft_by_pair: np.ndarray | None = field(default=None, init=False, repr=False)
    _pair_starts: np.ndarray | None = field(default=None, init=False, repr=False)
    _cells: tuple | None = field(default=None, init=False, repr=False)

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
            cells = np.bincount(self.pair_of_battle * 3 + self.labels, self.battle_weight, minlength=3 * n_pairs)
            self.weights = cells.reshape(n_pairs, 3).astype(float)
        else:
            soft = self.scaled_soft()
            self.weights = np.stack([np.bincount(self.pair_of_battle, soft[:, k], n_pairs) for k in range(3)], axis=1)

    @property
    def n_battles(self) -> int:
        return len(self.a)

    def scaled_soft(self) -> np.ndarray:
        return self.soft if self.battle_weight is None else self.soft * self.battle_weight[:, None]

    def battle_outcomes(self) -> np.ndarray:
        """(N, 3) each battle's outcome weights before its battle weight: one-hot votes or the soft outcomes."""
        if self.labels is None:
            return self.soft
        out = np.zeros((self.n_battles, 3))
        out[np.arange(self.n_battles), self.labels] = 1.0
        return out

    def battle_weights(self, counts: np.ndarray | None = None) -> np.ndarray:
        """(N, 3) each battle's outcome weights (times its battle weight), times its count in a resample if given."""
        scale = np.ones(self.n_battles) if counts is None else counts.astype(float)
        if self.battle_weight is not None:
            scale = scale * self.battle_weight
        if self.labels is None:
            return self.soft * scale[:, None]
        weights = np.zeros((self.n_battles, 3))
        weights[np.arange(self.n_battles), self.labels] = scale
        return weights

    def pair_spread(self) -> tuple:
        """Per pair, what the sandwich's meat needs of its battles (bradley_terry.sandwich): the sums of c^2,
        c^2 w (P, 3) and c^2 w w^T (P, 3, 3), c a battle's weight and w its outcome."""
        n_pairs = len(self.pairs)
        squared = None if self.battle_weight is None else self.battle_weight ** 2
        if self.labels is not None:
            first = (self.weights if squared is None else
                     np.bincount(self.pair_of_battle * 3 + self.labels, squared, 3 * n_pairs).reshape(n_pairs, 3))
            return first.sum(axis=1), first, first[:, :, None] * np.eye(3)[None]
        scale = np.ones(self.n_battles) if squared is None else squared
        count = np.bincount(self.pair_of_battle, scale, n_pairs)
        first = np.stack([np.bincount(self.pair_of_battle, scale * self.soft[:, k], n_pairs) for k in range(3)], 1)
        second = np.empty((n_pairs, 3, 3))
        for k in range(3):
            for j in range(k, 3):
                second[:, k, j] = second[:, j, k] = np.bincount(self.pair_of_battle,
                                                                scale * self.soft[:, k] * self.soft[:, j], n_pairs)
        return count, first, second

    def battle_spread(self) -> tuple | None:
        """pair_spread with every battle a row of its own (style control); None when unweighted (the default)."""
        if self.battle_weight is None:
            return None
        outcomes, squared = self.battle_outcomes(), self.battle_weight ** 2
        second = outcomes[:, :, None] * outcomes[:, None, :] * squared[:, None, None]
        return squared, outcomes * squared[:, None], second

    def resampled_pair_weights(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, P, 3) summed weights of `rounds` resamples of the battles with replacement.

        Human votes: a battle is one of the distinct (pair, outcome, battle weight) cells, so a resample is
        multinomial counts over the cells (FastChat's "faster arena elo"), nothing per battle; without weights the
        cells are the (pair, outcome) ones. Soft outcomes differ battle by battle: each battle's count is drawn and
        the weighted counts summed per pair, O(battles) a round.
        """
        n, n_pairs = self.n_battles, len(self.pairs)
        if self.labels is not None and self.battle_weight is None:
            cells = self.weights.ravel()
            used = np.flatnonzero(cells)
            out = np.zeros((rounds, cells.size))
            out[:, used] = multinomial_counts(rng, n, cells[used] / cells[used].sum(), rounds)
            return out.reshape(rounds, n_pairs, 3)
        if self.labels is not None:
            return self._resampled_weighted_cells(rng, rounds)
        if self._soft_by_pair is None:
            # Battles grouped by pair once, each outcome column contiguous: a round's per-pair sums are then
            # three reduceat passes. Counts are exchangeable, so they are drawn straight in that order.
            order = np.argsort(self.pair_of_battle, kind="stable")
            self._soft_by_pair = np.ascontiguousarray(self.scaled_soft()[order].T)
            self._pair_starts = np.searchsorted(self.pair_of_battle[order], np.arange(n_pairs))
        out = np.empty((rounds, n_pairs, 3))
        for r in range(rounds):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for k in range(3):
                out[r, :, k] = np.add.reduceat(self._soft_by_pair[k] * counts, self._pair_starts)
        return out

    def _resampled_weighted_cells(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        if self._cells is None:
            # Distinct (pair, outcome, weight) cells, counted once: as many as the distinct weights allow.
            levels, level_of = np.unique(self.battle_weight, return_inverse=True)
            key = (self.pair_of_battle * 3 + self.labels) * len(levels) + level_of
            keys, counts = np.unique(key, return_counts=True)
            self._cells = (keys // len(levels), levels[keys % len(levels)], counts / counts.sum())
        target, value, share = self._cells
        size = 3 * len(self.pairs)
        out = np.empty((rounds, size))
        chunk = max(1, (1 << 22) // len(share))  # drawn counts held at once: about 32 MB
        for start in range(0, rounds, chunk):
            drawn = multinomial_counts(rng, self.n_battles, share, min(chunk, rounds - start))
            for r, counts in enumerate(drawn):
                out[start + r] = np.bincount(target, counts * value, size)
        return out.reshape(rounds, len(self.pairs), 3)


def multinomial_counts(rng: np.random.Generator, n: int, share: np.ndarray, rounds: int) -> np.ndarray:
    """(rounds, k) exact multinomial(n, share) draws, 2-3x faster than numpy's (a binomial per cell, in turn) on
    the tens of thousands of cells of an Arena bootstrap.

    Independent Poisson(n share) counts first (vectorised), then each round's total made exactly n: a shortfall d
    by adding d items that each fall in a cell with probability `share` (a sum of independent multinomials with the
    same shares is one), an excess d by removing d of the drawn items chosen uniformly without replacement (a
    uniformly random n-subset of multinomial items is multinomial). Given its total, Poisson counts are
    multinomial, so the result is multinomial(n, share) exactly.
    """
    share = np.asarray(share, dtype=float)
    counts = rng.poisson(n * share, size=(rounds, len(share)))
    edges = np.cumsum(share)
    edges[-1] = 1.0  # rounding: every uniform draw lands in a cell
    for r in range(rounds):
        total = int(counts[r].sum())
        if total < n:
            counts[r] += np.bincount(np.searchsorted(edges, rng.random(n - total), side="right"),
                                     minlength=len(share))[:len(share)]
        elif total > n:
            gone = rng.choice(total, total - n, replace=False)
            counts[r] -= np.bincount(np.searchsorted(np.cumsum(counts[r]), gone, side="right"),
                                     minlength=len(share))
    return counts


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
    """One fitted model: Elo ratings (anchored), their standard errors and interval, the style coefficients (with
    theirs) and Davidson's nu."""

    params: np.ndarray
    ratings: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    coef: np.ndarray | None = None
    coef_se: np.ndarray | None = None
    coef_low: np.ndarray | None = None
    coef_high: np.ndarray | None = None
    tie_weight: float | None = None


def _anchored(theta: np.ndarray, anchor_index: int | None, played: np.ndarray | None = None,
              anchor_rating: float = INITIAL) -> np.ndarray:
    """(..., M) natural strengths -> Elo, the anchor model at `anchor_rating` (or the mean of the models that
    played at 1000)."""
    elo = theta * ELO_PER_NATURAL
    if played is not None:
        elo = np.where(played, elo, np.nan)
    with np.errstate(all="ignore"):
        if anchor_index is not None:
            return elo - elo[..., [anchor_index]] + anchor_rating
        return elo - np.nanmean(elo, axis=-1, keepdims=True) + INITIAL


def normal_quantile(level: float) -> float:
    """z with P(|Z| <= z) = level for a standard normal Z (1.96 at 0.95)."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))


def _fit(design: Design, weights: np.ndarray, ties: str, anchor_index: int | None, ci: str, bootstrap: int,
         draw: Callable[[int], np.ndarray], spread: tuple | None, start: np.ndarray | None,
         progress: Callable[[int], None] | None, level: float = 0.95, anchor_rating: float = INITIAL) -> _Fit:
    """Point fit on `weights` (R, 3), then standard errors and `level` intervals: sandwich, or `bootstrap` rounds of
    `draw(rounds)` weights (rounds, R, 3) fitted in batches, each warm-started from the point fit (standard error:
    the resampled ratings' standard deviation; interval: their percentiles)."""
    m, k = design.n_models, design.n_features
    point = newton(design, weights[None], ties, start=None if start is None else start[None])[0]
    nan_m = np.full(m, np.nan)
    fit = _Fit(params=point, ratings=_anchored(point[:m], anchor_index, anchor_rating=anchor_rating),
               se=nan_m, low=nan_m, high=nan_m,
               coef=point[m:m + k] if k else None, tie_weight=float(np.exp(point[-1])) if ties == "davidson" else None)
    if k:
        fit.coef_se, fit.coef_low, fit.coef_high = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    if ci == "sandwich":
        z = normal_quantile(level)
        cov = sandwich(design, weights[None], spread, point, ties)
        contrast = np.eye(m) - (np.eye(m)[[anchor_index]] if anchor_index is not None else np.full((1, m), 1.0 / m))
        fit.se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", contrast, cov[:m, :m], contrast), 0)) * ELO_PER_NATURAL
        fit.low, fit.high = fit.ratings - z * fit.se, fit.ratings + z * fit.se
        if k:
            fit.coef_se = np.sqrt(np.maximum(np.diag(cov)[m:m + k], 0))
            fit.coef_low, fit.coef_high = fit.coef - z * fit.coef_se, fit.coef + z * fit.coef_se
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
        ratings.append(_anchored(params[:, :m], anchor_index, played, anchor_rating))
        coefs.append(params[:, m:m + k])
        if progress is not None:
            progress(rounds)
    tails = [50 * (1 - level), 50 * (1 + level)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: a model absent from every resample
        ratings = np.concatenate(ratings)
        fit.low, fit.high = np.nanpercentile(ratings, tails, axis=0)
        fit.se = np.nanstd(ratings, axis=0, ddof=1)
        if k:
            coefs = np.concatenate(coefs)
            fit.coef_low, fit.coef_high = np.percentile(coefs, tails, axis=0)
            fit.coef_se = np.std(coefs, axis=0, ddof=1)
    return fit


@dataclass
class Board:
    """A leaderboard: `table` (model, rating, se, ci_low, ci_high, rank_ub[, rank, style_rating, style_se,
    style_ci_low, style_ci_high, style_rank, style_rank_ub], battles; best first), Davidson's tie weight, with style
    control the `style` coefficients (feature, coef = log-odds of A winning per standard deviation of the covariate,
    se, interval, the same in Elo), and `pairs`: per ordered pair of models the (weighted) wins of each side, ties
    and the number of battles, for the win-fraction and battle-count matrices."""

    table: pd.DataFrame
    tie_weight: float | None = None
    style: pd.DataFrame | None = None
    style_tie_weight: float | None = None
    pairs: pd.DataFrame | None = None


def rate(battles: pd.DataFrame, outcomes, bootstrap: int = 100, ties: str = "half", anchor: str | None = None,
         seed: int = 0, ci: str = "bootstrap", style: np.ndarray | None = None,
         progress: Callable[[int], None] | None = None, weights: np.ndarray | None = None, ci_level: float = 0.95,
         anchor_rating: float = INITIAL, style_names: list[str] | None = None) -> Board:
    """Bradley-Terry ratings of the battles' models from `outcomes` ((N,) labels 0/1/2 or (N, 3) weights), with
    standard errors and `ci_level` intervals by `ci`: "bootstrap" (`bootstrap` resamples of the battles; 0: none) or
    "sandwich"; with `style` ((N, K) covariates named `style_names`, e.g. battle_style_covariates) also the
    style-controlled ratings. `weights` (N,) multiply each battle's outcome in the fit and go with it into every
    resample (a battle of weight 0 is left out). `anchor` pins that model at `anchor_rating`; without it the mean
    rating is 1000. `progress(n)` is called as bootstrap rounds finish."""
    if ties not in TIES:
        raise DataError(f"ties {ties!r}: expected half or davidson")
    if ci not in CI_METHODS:
        raise DataError(f"ci {ci!r}: expected {' or '.join(CI_METHODS)}")
    if not 0 < ci_level < 1:
        raise DataError(f"ci level {ci_level}: expected a number between 0 and 1 (0.95 for 95% intervals)")
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        bad = ~np.isfinite(weights) | (weights < 0)
        if len(weights) != len(battles) or bad.any():
            where = f"battle {int(np.flatnonzero(bad)[0]) + 1}" if bad.any() else f"{len(weights)} weights"
            raise DataError(f"battle weights: {where} is not a finite number >= 0; expected one per battle "
                            f"({len(battles)})")
        kept = weights > 0
        if not kept.any():
            raise DataError("battle weights are all 0; nothing to rate")
        if not kept.all():
            battles, weights = battles[kept], weights[kept]
            outcomes = np.asarray(outcomes)[kept]
            style = None if style is None else np.asarray(style)[kept]
    models, a, b = _index_models(battles)
    if len(models) < 2:
        raise DataError("the battles involve fewer than two distinct models; a leaderboard needs at least two")
    index = {name: i for i, name in enumerate(models)}
    if anchor is not None and anchor not in index:
        raise DataError(f"anchor model {anchor!r} is not in the battles; pick one of: {', '.join(models[:10])}")
    anchor_index = index[anchor] if anchor is not None else None
    labels, soft = _outcome_arrays(outcomes, len(a))
    votes = Votes(a, b, len(models), labels, soft, weights)
    from threadpoolctl import threadpool_limits

    # Many small solves: BLAS threads only add synchronisation (6x slower on a busy 2-core machine).
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        plain_design = Design(votes.pairs, len(models))
        plain = _fit(plain_design, votes.weights, ties, anchor_index, ci, bootstrap,
                     lambda rounds: votes.resampled_pair_weights(rng, rounds), votes.pair_spread(), None, progress,
                     ci_level, anchor_rating)
        styled = None
        if style is not None:
            styled = _fit_style(votes, np.asarray(style, dtype=float), ties, anchor_index, ci, bootstrap, seed,
                                plain.params, progress, ci_level, anchor_rating)
    n_battles = np.bincount(np.r_[a, b], minlength=len(models))
    table = pd.DataFrame({"model": models, "rating": plain.ratings, "se": plain.se, "ci_low": plain.low,
                          "ci_high": plain.high, "rank_ub": upper_bound_ranks(plain.ratings, plain.low, plain.high)})
    board = Board(table=table, tie_weight=plain.tie_weight, pairs=_pair_table(votes, models))
    if styled is not None:
        table["rank"] = _ranks(plain.ratings)
        table["style_rating"], table["style_se"] = styled.ratings, styled.se
        table["style_ci_low"], table["style_ci_high"] = styled.low, styled.high
        table["style_rank"] = _ranks(styled.ratings)
        table["style_rank_ub"] = upper_bound_ranks(styled.ratings, styled.low, styled.high)
        k = len(styled.coef)
        names = (list(style_names) if style_names is not None
                 else list(STYLE_FEATURES) if k == len(STYLE_FEATURES) else [f"x{j}" for j in range(k)])
        if len(names) != k:
            raise DataError(f"{len(names)} style covariate names for {k} covariates")
        # A covariate that never varies (say no response has a header) is all 0: nothing measured, no interval.
        constant = ~np.asarray(style, dtype=float).any(axis=0)
        board.style = pd.DataFrame({"feature": names, "coef": styled.coef,
                                    "se": np.where(constant, np.nan, styled.coef_se),
                                    "ci_low": np.where(constant, np.nan, styled.coef_low),
                                    "ci_high": np.where(constant, np.nan, styled.coef_high),
                                    "elo_per_sd": styled.coef * ELO_PER_NATURAL})
        board.style_tie_weight = styled.tie_weight
    table["battles"] = n_battles
    board.table = table.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)
    return board


def upper_bound_ranks(ratings: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """LMArena's "Rank (UB)": 1 + the number of models whose interval's lower bound is above this model's upper
    bound (models it is statistically behind). Without an interval a model's bounds are its rating."""
    low = np.where(np.isnan(low), ratings, low)
    high = np.where(np.isnan(high), ratings, high)
    return 1 + (low[None, :] > high[:, None]).sum(axis=1)


def _pair_table(votes: Votes, models: np.ndarray) -> pd.DataFrame:
    """Per ordered pair: model_a, model_b, (weighted) A wins, B wins, ties, and the number of battles."""
    counts = np.bincount(votes.pair_of_battle, minlength=len(votes.pairs))
    return pd.DataFrame({"model_a": models[votes.pairs[:, 0]], "model_b": models[votes.pairs[:, 1]],
                         "a_wins": votes.weights[:, 0], "b_wins": votes.weights[:, 1], "ties": votes.weights[:, 2],
                         "battles": counts})


def _fit_style(votes: Votes, covariates: np.ndarray, ties: str, anchor_index, ci: str, bootstrap: int, seed: int,
               plain_params: np.ndarray, progress, level: float = 0.95, anchor_rating: float = INITIAL) -> _Fit:
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

    return _fit(design, votes.battle_weights(), ties, anchor_index, ci, bootstrap, draw, votes.battle_spread(), start,
                progress, level, anchor_rating)


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
MATRIX_MODELS = 30  # models shown in the win-fraction and battle-count matrices: the best rated


def plot_leaderboard(tables: dict[str, pd.DataFrame], path, title: str = "Bradley-Terry ratings (Elo scale)",
                     interval: str = "95% bootstrap interval", reference: float = INITIAL) -> None:
    """Ratings with their intervals, one row per model (ordered by the first table), one marker per table."""
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
    ax.axvline(reference, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"rating ({interval})")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def pair_matrices(board: Board) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models best first, wins (M, M): row model's (weighted) wins over the column model in either seat,
    battles (M, M): the battles between the two in either seat)."""
    order = board.table["model"].tolist()
    index = {name: i for i, name in enumerate(order)}
    i = board.pairs["model_a"].map(index).to_numpy()
    j = board.pairs["model_b"].map(index).to_numpy()
    wins, battles = np.zeros((len(order), len(order))), np.zeros((len(order), len(order)))
    np.add.at(wins, (i, j), board.pairs["a_wins"].to_numpy())
    np.add.at(wins, (j, i), board.pairs["b_wins"].to_numpy())
    np.add.at(battles, (i, j), board.pairs["battles"].to_numpy())
    np.add.at(battles, (j, i), board.pairs["battles"].to_numpy())
    return order, wins, battles


def win_fractions(wins: np.ndarray) -> np.ndarray:
    """Row model's share of the decisive (non-tied) battles against the column model; NaN where there are none."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wins + wins.T > 0, wins / (wins + wins.T), np.nan)


def plot_matrix(values: np.ndarray, models: list[str], path, title: str, fmt: str, cmap: str,
                limits: tuple | None = None) -> None:
    """A models x models heat map (row model against column model), each cell annotated."""
    n = len(models)
    fig, ax = pyplot().subplots(figsize=(2.5 + 0.42 * n, 2 + 0.38 * n))
    shown = np.ma.masked_invalid(values)
    image = ax.imshow(shown, cmap=cmap, vmin=None if limits is None else limits[0],
                      vmax=None if limits is None else limits[1])
    size = max(4, 9 - n // 6)
    low, high = image.get_clim()
    for r in range(n):
        for c in range(n):
            if not np.isnan(values[r, c]) and (fmt != "d" or values[r, c] > 0):
                share = (values[r, c] - low) / (high - low) if high > low else 0.5
                dark = share > 0.75 or (cmap == "RdBu" and share < 0.25)  # white text on the dark cells
                ax.text(c, r, format(values[r, c], ".2f" if fmt == "f" else ".0f"), ha="center", va="center",
                        fontsize=size, color="white" if dark else "black")
    ax.set_xticks(np.arange(n), models, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(n), models, fontsize=7)
    ax.set_xlabel("model B")
    ax.set_ylabel("model A")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.6)
    fig.tight_layout()
    save_figure(fig, path)


def plot_pair_matrices(board: Board, folder: Path, suffix: str = "", label: str = "human votes") -> list[str]:
    """win_fraction{suffix}.png and battle_count{suffix}.png for a board, models ordered by rating (the best
    MATRIX_MODELS); returns the file names."""
    models, wins, battles = pair_matrices(board)
    top = min(len(models), MATRIX_MODELS)
    shown = f"top {top} of {len(models)} models by rating" if top < len(models) else "models ordered by rating"
    names = [f"win_fraction{suffix}.png", f"battle_count{suffix}.png"]
    plot_matrix(win_fractions(wins)[:top, :top], models[:top], folder / names[0],
                f"Fraction of A's wins in decisive A vs B battles ({label}; {shown})", "f", "RdBu", (0, 1))
    plot_matrix(battles[:top, :top], models[:top], folder / names[1],
                f"Battles between A and B, either seat ({shown})", "d", "Blues")
    return names


def _interval_name(ci: str, bootstrap: int) -> str:
    if ci == "sandwich":
        return "sandwich"
    return "bootstrap" if bootstrap > 0 else "none"


def _level_name(level: float) -> str:
    return f"{100 * level:g}%"


def write_leaderboards(battles: pd.DataFrame, outcomes: dict[str, np.ndarray], output: Path | None,
                       bootstrap: int = 100, ties: str = "half", anchor: str | None = None, seed: int = 0,
                       ci: str = "bootstrap", style: bool = False, progress: Callable[[int], None] | None = None,
                       anchor_rating: float = INITIAL, ci_level: float = 0.95,
                       categories: dict[str, np.ndarray] | None = None, min_battles: int = 1, plots: bool = False):
    """One leaderboard per source of outcomes ("votes": human, "judge": predicted), their rank correlation, and files:
    leaderboard.csv (human votes, or the judge's when there are no votes), leaderboard_judge.csv when both,
    leaderboard.png and leaderboard.json (settings, correlations, Davidson's tie weight, style coefficients); with
    `plots` also the win-fraction and battle-count matrices (win_fraction.png, battle_count.png).

    What the battles carry is used: `weight` as per-battle weights, `covariate:NAME` columns beside the style
    features (`style`: battles need load_battles(style=True)) in the contextual fit. `categories` ({name: (N,)
    mask}, category_masks) adds a board per category, fitted on its battles alone (models with fewer than
    `min_battles` there left out, covariates standardised over them) into categories/NAME/, and category_ranks.csv:
    each model's Rank (UB) overall and per category (style controlled with `style`). Returns ({source: Board},
    summary)."""
    settings = dict(bootstrap=bootstrap, ties=ties, anchor=anchor, seed=seed, ci=ci, progress=progress,
                    ci_level=ci_level, anchor_rating=anchor_rating)
    output = None if output is None else Path(output)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    jobs = [(battles, outcomes)]  # the overall board, then a board per category that has enough battles
    entries = {}
    for name, mask in (categories or {}).items():
        mask = np.asarray(mask, dtype=bool)
        subset = battles[mask]
        keep = common_models_mask(subset, min_battles)
        entry = entries[name] = {"battles": int(mask.sum())}
        subset = subset[keep].reset_index(drop=True)
        models = set(subset["model_a"].astype(str)) | set(subset["model_b"].astype(str))
        entry.update(rated_battles=int(len(subset)), models=len(models))
        if len(models) < 2:
            entry["skipped"] = f"fewer than two models with {max(min_battles, 1)}+ battles in the category"
        elif anchor is not None and anchor not in models:
            entry["skipped"] = f"the anchor model {anchor} has no battles in the category"
        else:
            entry["job"] = len(jobs)
            jobs.append((subset, {source: np.asarray(v)[mask][keep] for source, v in outcomes.items()}))
    # Boards are independent (each its own seeded resamples): two at a time on two cores, the multinomial draws
    # and solves releasing the GIL. One BLAS limit around them all: rate()'s own, entered and left by two threads
    # in turn, would otherwise restore each other's setting.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), ThreadPoolExecutor(max_workers=min(BOARD_THREADS, len(jobs))) as pool:
        results = list(pool.map(lambda job: _leaderboards(job[0], job[1], style, settings), jobs))
    boards, summary = results[0]
    extra_files = []
    if categories:
        summary["categories"], category_boards, used = entries, {}, set()
        for name, entry in entries.items():
            if "job" not in entry:
                continue
            category_boards[name], category_summary = results[entry.pop("job")]
            category_summary["category"] = name
            if output is not None:
                folder = output / "categories" / _folder_name(name, used)
                folder.mkdir(parents=True, exist_ok=True)
                _write_files(category_boards[name], category_summary, folder, plots)
                entry["dir"] = str(folder.relative_to(output))
        ranks = _category_ranks(boards, category_boards, list(categories))
        summary["category_ranks"] = ranks
        if output is not None:
            frame = pd.DataFrame([{"model": model, **row} for model, row in ranks["models"].items()])
            write_csv_atomic(frame.astype({c: "Int64" for c in frame.columns if c != "model"}),
                             output / "category_ranks.csv")
            extra_files.append("category_ranks.csv")
    if output is not None:
        _write_files(boards, summary, output, plots, extra_files)
    return boards, summary


def _leaderboards(battles: pd.DataFrame, outcomes: dict, style: bool, settings: dict) -> tuple[dict, dict]:
    """The boards of every source of outcomes on these battles, and their summary (no files)."""
    covariates, names = battle_covariates(battles, style)
    weights = battles["weight"].to_numpy(dtype=float) if "weight" in battles.columns else None
    boards = {name: rate(battles, values, style=covariates, weights=weights, style_names=names or None, **settings)
              for name, values in outcomes.items()}
    tables = {name: board.table for name, board in boards.items()}
    ci, bootstrap, ties = settings["ci"], settings["bootstrap"], settings["ties"]
    interval = _interval_name(ci, bootstrap)
    summary = {"battles": int(len(battles)), "models": int(len(next(iter(tables.values())))), "ties": ties,
               "ci": interval, "ci_level": settings["ci_level"],
               "bootstrap": bootstrap if interval == "bootstrap" else 0,
               "anchor": settings["anchor"], "sources": list(boards), "style_control": bool(style),
               "weighted": weights is not None}
    if settings["anchor"] is not None:
        summary["anchor_rating"] = settings["anchor_rating"]
    if "both_bad" in battles.columns:
        summary["both_bad"] = {"counted_as": "tie", "battles": int(battles["both_bad"].sum())}
    elif battles.attrs.get("both_bad_dropped"):
        summary["both_bad"] = {"counted_as": "dropped", "battles": int(battles.attrs["both_bad_dropped"])}
    if ties == "davidson":
        summary["tie_weight"] = {name: board.tie_weight for name, board in boards.items()}
    if covariates is not None:
        summary["covariates"] = names[len(STYLE_FEATURES):] if style else names
        summary["style"] = {
            "features": names, "tokens": TOKENIZER,
            "covariate": "style features: (f_a - f_b) / (f_a + f_b), 0 when both are 0; own covariates as given; "
                         "all standardised over the battles",
            "coef_unit": "log-odds of A winning per standard deviation of the covariate; elo_per_sd the same in Elo",
            "coefficients": {name: {row.feature: {"coef": row.coef, "se": row.se, "ci_low": row.ci_low,
                                                  "ci_high": row.ci_high, "elo_per_sd": row.elo_per_sd}
                                    for row in board.style.itertuples()} for name, board in boards.items()}}
        if ties == "davidson":
            summary["style"]["tie_weight"] = {name: board.style_tie_weight for name, board in boards.items()}
    if len(boards) == 2:
        summary.update(rank_correlation(tables["votes"], tables["judge"]))
        if covariates is not None:
            styled = rank_correlation(tables["votes"], tables["judge"], "style_rating")
            summary.update(style_spearman=styled["spearman"], style_kendall=styled["kendall"])
    return boards, summary


def _folder_name(name: str, used: set) -> str:
    """A file-system-safe folder name for a category value, unique among `used`."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "category"
    folder, i = base, 2
    while folder.lower() in used:
        folder, i = f"{base}-{i}", i + 1
    used.add(folder.lower())
    return folder


def _category_ranks(boards: dict, category_boards: dict, names: list[str]) -> dict:
    """Each model's Rank (UB) on the first source's overall board and per category of `names` (None where it has
    no rating there, or the category no board), style controlled when the boards are."""
    source = next(iter(boards))
    column = "style_rank_ub" if "style_rank_ub" in boards[source].table.columns else "rank_ub"
    empty = pd.Series(dtype=float)
    per_category = {name: category_boards[name][source].table.set_index("model")[column]
                    if name in category_boards else empty for name in names}
    models = {}
    for row in boards[source].table.itertuples():
        ranks = {"overall": int(getattr(row, column))}
        for name, series in per_category.items():
            ranks[name] = int(series[row.model]) if row.model in series.index else None
        models[row.model] = ranks
    return {"source": source, "rank": column, "models": models}


def _write_files(boards: dict, summary: dict, folder: Path, plots: bool, extra_files: list | None = None) -> None:
    """A board set's CSV(s), rating chart, optional matrices and JSON summary into `folder`."""
    tables = {name: board.table for name, board in boards.items()}
    files = []
    for i, table in enumerate(tables.values()):
        filename = "leaderboard.csv" if i == 0 else "leaderboard_judge.csv"
        write_csv_atomic(table, folder / filename, float_format="%.1f")
        files.append(filename)
    charted = {}
    contextual = "style" in summary
    for name, table in tables.items():
        charted[name] = table
        if contextual:
            label = "style controlled" if summary["style_control"] else "covariates controlled"
            charted[f"{SOURCE_NAMES.get(name, name)}, {label}"] = table[
                ["model", "style_rating", "style_ci_low", "style_ci_high"]].set_axis(
                ["model", "rating", "ci_low", "ci_high"], axis=1)
    interval, level = summary["ci"], _level_name(summary["ci_level"])
    title = "Bradley-Terry ratings (Elo scale)" + (f": {summary['category']}" if "category" in summary else "")
    plot_leaderboard(charted, folder / "leaderboard.png", title=title,
                     interval=f"{level} interval" if interval == "none" else f"{level} {interval} interval",
                     reference=summary.get("anchor_rating", INITIAL))
    files.append("leaderboard.png")
    if plots:
        for i, (name, board) in enumerate(boards.items()):
            files += plot_pair_matrices(board, folder, "" if i == 0 else "_judge", SOURCE_NAMES.get(name, name))
    files += [*(extra_files or []), "leaderboard.json"]
    summary["files"] = files
    write_text_atomic(json.dumps(summary, indent=2), folder / "leaderboard.json")
