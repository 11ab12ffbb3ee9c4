"""Read preference data from CSV / JSONL / Parquet or a datasets folder, validate it, split it by prompt.

Two layouts are read: the Kaggle LMSYS one (`id, prompt, response_a, response_b`, winner columns) and TRL's
chosen/rejected pairs, strings or conversations (formats.py converts them to the Kaggle one).

A loaded frame always has: `id` (str), `prompt`, `response_a`, `response_b` (lists of str, one per turn, `null`
turns as ""), `label` (0 = A wins, 1 = B wins, 2 = tie, -1 = unlabelled), and `model_a` / `model_b` / `subset` when
present.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.formats import check_pair_columns, is_pairwise, pairwise_to_arena
from arenapref.errors import DataError

# Label order everywhere: probabilities, one-hot columns, class indices 0 / 1 / 2.
LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
TEXT_COLUMNS = ("prompt", "response_a", "response_b")
REQUIRED_COLUMNS = ("id",) + TEXT_COLUMNS


def check_input_file(path: str | Path) -> str:
    """Fail with a clear line if `path` is not a readable, non-empty file (or a datasets folder); returns its
    (lower-case) format suffix, "dataset" for a datasets folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    if path.is_dir():
        if is_dataset_dir(path):
            return "dataset"
        raise DataError(f"{path}: is a directory, expected a .csv, .jsonl or .parquet file (or a Hugging Face "
                        "datasets folder written by save_to_disk)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a header row and data rows")
    return "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()


def is_dataset_dir(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset, or a DatasetDict of splits)."""
    return path.is_dir() and any((path / name).is_file() for name in DATASET_DIR_FILES)


DATASET_DIR_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


def load_dataset_dir(path: Path):
    """datasets.load_from_disk(path) as one Dataset: a DatasetDict must hold one split (else name the split's
    folder)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path}: is a Hugging Face datasets folder; reading it needs the datasets package "
                        "(pip install datasets)") from None
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, pyarrow errors...
        raise _unreadable_dataset(path, exc) from None
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset)
        if len(splits) != 1:
            raise DataError(f"{path}: holds the splits {', '.join(splits)}; pass one split's folder, e.g. "
                            f"{path / splits[0]}")
        dataset = dataset[splits[0]]
    return dataset


def _unreadable_dataset(path: Path, exc: Exception) -> DataError:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"{path}: cannot be read as a datasets folder ({msg[:160]}); write it again with save_to_disk")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, JSONL or Parquet file (or a datasets folder) as strings/objects, with errors that name it."""
    path = Path(path)
    suffix = check_input_file(path)
    if suffix == "dataset":
        dataset = load_dataset_dir(path)
        try:
            frame = dataset.to_pandas()
        except Exception as exc:  # arrow files cut short or damaged after the metadata was read
            raise _unreadable_dataset(path, exc) from None
        if len(frame) == 0:
            raise DataError(f"{path}: the dataset has no rows")
        return frame
    try:
        if suffix in (".jsonl", ".json", ".jsonl.gz", ".ndjson"):
            frame = _read_jsonl(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_csv(path)
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: {first_bad_utf8(path)}: not valid UTF-8; re-save the file as UTF-8") from None
    except Exception as exc:  # pandas / pyarrow raise many types; all mean "this is not a readable table"
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind} ({msg}); check the file format") from None
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return frame


def first_bad_utf8(path: Path) -> str:
    """'line L' of the first byte that is not UTF-8 (pandas' own offset is per chunk, useless to a user)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line} (byte {exc.start})"
    return "somewhere"


def check_csv_head(path: Path) -> None:
    """Catch the two non-CSV files people pass most often before a parser reports something cryptic."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        raise DataError(f"{path}: looks binary, not a CSV; pass a CSV, .jsonl or .parquet file")
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        raise DataError(f"{path}: is an HTML page, not a CSV; download the raw file")


def _read_csv(path: Path) -> pd.DataFrame:
    check_csv_head(path)
    # keep_default_na=False: a text cell "null" or "" must stay text, not become NaN.
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def _read_jsonl(path: Path) -> pd.DataFrame:
    frames = list(_jsonl_chunks(path))
    if not frames:
        raise DataError(f"{path}: has no data rows")
    return frames[0]


def iter_frames(path: str | Path, chunk_rows: int = 10_000):
    """Normalised frames of at most `chunk_rows` rows, in file order, reading the file as it goes (CSV / JSONL in
    chunks, Parquet by record batches): a file of any length in bounded memory. Ids must be unique file-wide.
    Yields (frame, total rows of the file, or None when the format cannot tell without reading it all)."""
    path = Path(path)
    suffix = check_input_file(path)
    seen: dict[str, int] = {}
    first_row = 1
    pair_kind = None  # a chosen/rejected file's kind is the first chunk's (formats.detect_kind)
    try:
        if path.is_dir():
            dataset = load_dataset_dir(path)
            total = len(dataset)
            chunks = dataset.to_pandas(batch_size=chunk_rows, batched=True)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            total = parquet.metadata.num_rows
            chunks = (batch.to_pandas() for batch in parquet.iter_batches(batch_size=chunk_rows))
        elif suffix in (".jsonl", ".json", ".jsonl.gz", ".ndjson"):
            total, chunks = None, _jsonl_chunks(path, chunk_rows)
        else:
            check_csv_head(path)
            total = None
            chunks = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunk_rows)
        for raw in chunks:
            if len(raw) == 0:
                continue
            frame = normalize(raw, str(path), first_row=first_row, pair_kind=pair_kind)
            pair_kind = frame.attrs.get("pairwise")
            for offset, row_id in enumerate(frame["id"]):
                if row_id in seen:
                    raise DataError(f"{path}: row {first_row + offset} column id: id {row_id!r} already used by row "
                                    f"{seen[row_id]}; ids must be unique")
                seen[row_id] = first_row + offset
            yield frame, total
            first_row += len(frame)
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: {first_bad_utf8(path)}: not valid UTF-8; re-save the file as UTF-8") from None
    except Exception as exc:  # pandas / pyarrow raise many types; all mean "this is not a readable table"
        kind = "a datasets folder" if path.is_dir() else "Parquet" if suffix == ".parquet" else "CSV"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind} ({msg}); check the file format") from None
    if first_row == 1:
        raise DataError(f"{path}: has a header but no data rows")


def _jsonl_chunks(path: Path, chunk_rows: int | None = None):
    """Frames of `chunk_rows` JSON lines (None: the whole file as one frame)."""
    rows = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rows.append(_json_object(line, path, lineno))
            if len(rows) == chunk_rows:
                yield pd.DataFrame(rows)
                rows = []
    if rows:
        yield pd.DataFrame(rows)


def _json_object(line: str, path: Path, lineno: int) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                        "fix or remove the line") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}: line {lineno}: expected a JSON object per line")
    return row


def parse_turns(cell, where: str) -> list[str]:
    """A JSON-encoded list of turns (or an actual list) -> list of str; `null` turns become ""."""
    value = cell
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: not a JSON list of strings; write it as e.g. [\"turn 1\", \"turn 2\"]") from None
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a JSON list of strings, got {type(value).__name__}")
    turns = []
    for item in value:
        if item is None:
            turns.append("")
        elif isinstance(item, str):
            turns.append(item)
        else:
            raise DataError(f"{where}: list holds {json.dumps(item)[:40]} ({type(item).__name__}); "
                            "every turn must be a string (or null)")
    return turns


def _parse_labels(frame: pd.DataFrame, path, first_row: int = 1) -> np.ndarray:
    values = np.zeros((len(frame), 3))
    for j, col in enumerate(LABELS):
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: row {i + first_row} column {col}: {frame[col].iloc[i]!r} is not a number; "
                            "use 0 or 1")
        values[:, j] = numeric.to_numpy(dtype=float)
    ok = np.isin(values, (0.0, 1.0)).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"{path}: row {i + first_row} columns {','.join(LABELS)}: {values[i].tolist()} is not one-hot; "
            "exactly one of the three must be 1"
        )
    return values.argmax(axis=1)


def load_frame(path: str | Path, require_labels: bool = False) -> pd.DataFrame:
    """Read and validate a preference file; returns the normalised frame described in the module docstring."""
    return normalize(read_table(path), str(path), require_labels)


def normalize(raw: pd.DataFrame, where: str = "input", require_labels: bool = False,
              first_row: int = 1, pair_kind: str | None = None) -> pd.DataFrame:
    """Validate a Kaggle-format frame (turn cells as JSON strings or lists) and normalise it. Errors name rows
    counting from `first_row` (a chunk of a longer file starts further down).

    A TRL-style chosen/rejected frame (formats.py) is converted first: its rows get seeded A/B sides and labels
    saying which side was chosen, and the frame's `attrs["pairwise"]` says its kind ("string" or
    "conversational"; `pair_kind` fixes it for the later chunks of a file)."""
    raw = raw.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    check_pair_columns(raw.columns, where)
    if is_pairwise(raw.columns):
        raw, pair_kind = pairwise_to_arena(raw, where, first_row, pair_kind)
    else:
        pair_kind = None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{where}: missing required column(s) {', '.join(missing)}; "
                        f"expected {', '.join(REQUIRED_COLUMNS)}")
    has_labels = all(c in raw.columns for c in LABELS)
    if require_labels and not has_labels:
        raise DataError(f"{where}: missing label column(s) {', '.join(c for c in LABELS if c not in raw.columns)}; "
                        "training and evaluation need winner_model_a, winner_model_b, winner_tie")
    ids = raw["id"].astype(str).str.strip()
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iloc[i]).to_numpy())[0])
        raise DataError(f"{where}: row {i + first_row} column id: id {ids.iloc[i]!r} already used by row "
                        f"{first + first_row}; "
                        "ids must be unique")
    out = pd.DataFrame({"id": ids.to_numpy()})
    for col in TEXT_COLUMNS:
        cells = raw[col].tolist()
        out[col] = [parse_turns(c, f"{where}: row {i + first_row} column {col}") for i, c in enumerate(cells)]
    for i, (p, a, b) in enumerate(zip(out["prompt"], out["response_a"], out["response_b"])):
        if not (len(p) == len(a) == len(b)):
            raise DataError(f"{where}: row {i + first_row}: prompt has {len(p)} turns, response_a {len(a)}, "
                            f"response_b {len(b)}; "
                            "each list needs one entry per turn")
        if not p:
            raise DataError(f"{where}: row {i + first_row}: prompt is an empty list; each row needs at least one turn")
    out["label"] = _parse_labels(raw, where, first_row) if has_labels else -1
    for col in ("model_a", "model_b", "subset"):
        if col in raw.columns:
            out[col] = raw[col].astype(str).to_numpy()
    if pair_kind:
        out.attrs["pairwise"] = pair_kind
    return out


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(3)[np.asarray(labels)]


def to_kaggle(frame: pd.DataFrame) -> pd.DataFrame:
    """The normalised frame back in the Kaggle CSV layout (JSON-encoded turn lists, one-hot labels if known)."""
    out = pd.DataFrame({"id": frame["id"]})
    for col in ("model_a", "model_b"):
        if col in frame.columns:
            out[col] = frame[col]
    for col in TEXT_COLUMNS:
        out[col] = [json.dumps(t, ensure_ascii=False) for t in frame[col]]
    if (frame["label"] >= 0).all():
        onehot = one_hot(frame["label"].to_numpy()).astype(int)
        for j, col in enumerate(LABELS):
            out[col] = onehot[:, j]
    if "subset" in frame.columns:
        out["subset"] = frame["subset"]
    return out


def _check_writable(folder: Path, path: Path) -> None:
    """Create and delete a scratch file: os.access is wrong for root and for read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".arenapref-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"{path}: folder {folder} is not writable ({exc.strerror}); "
                        "choose another output path") from None


def check_output_path(path: str | Path) -> Path:
    """Fail early (before hours of work) if an output file cannot be written where asked."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass a file name for the output, e.g. {path / 'predictions.csv'}")
    if not parent.is_dir():
        raise DataError(f"{path}: folder {parent} does not exist; create it or choose another output path")
    _check_writable(parent, path)
    return path


def check_output_dir(path: str | Path) -> Path:
    """Fail early if an output directory cannot be created or written (missing parents are created later)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is a file; choose a directory for the output")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{path}: {existing} is a file, not a folder; choose another output directory")
    _check_writable(existing, path)
    return path


def write_csv_atomic(frame: pd.DataFrame, path: str | Path, **kwargs) -> None:
    write_text_atomic(frame.to_csv(index=False, **kwargs), check_output_path(path))


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def new_file_mode() -> int:
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """A temporary file beside `path` (with the usual file mode) for the caller to write; once the block ends it
    is fsynced and renamed over `path`, on any error removed: a kill never leaves a truncated file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp makes files private (0600); outputs get the usual mode
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write to a temporary file in the same folder, then rename: a kill never leaves a truncated file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def check_table_output(path: str | Path) -> Path:
    """`check_output_path`, and an extension write_table_atomic knows."""
    path = check_output_path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown output format {path.suffix or '(no extension)'}; name the file .csv, "
                        ".jsonl or .parquet")
    return path


def write_table_atomic(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV, JSONL (one JSON object per line, lists stay lists) or Parquet by the file's extension, written to a
    temporary file beside it and renamed (a kill never leaves a truncated file)."""
    path = check_table_output(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        write_csv_atomic(frame, path)
    elif suffix == ".jsonl":
        records = frame.to_dict(orient="records")
        write_text_atomic("".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records),
                          path)
    else:
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
