"""Tokenise once: a run's rendered token ids, cached on disk and reused while nothing they depend on changed.

The key hashes everything the ids depend on: the text settings, the tokenizer (its class, vocabulary and special
tokens) and the rows' content (ids and texts). Change any of them and the key changes, so a stale cache is never
read; a damaged cache file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from arenapref.data.text import encode_rows


def default_cache_dir() -> Path:
    """Where a run's token ids are kept: $ARENAPREF_CACHE, else $XDG_CACHE_HOME/arenapref (~/.cache/arenapref),
    under tokens/. Outside the model directory, so a trained model holds only what loading needs; entries are keyed
    by content, so any run on the same rows and settings reuses them, and the folder can be deleted at any time."""
    root = (os.environ.get("ARENAPREF_CACHE")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arenapref")
    return Path(root) / "tokens"


FORMAT = 2  # 2: special tokens spelled in text are split (text.Renderer.tokenize)


def tokenizer_fingerprint(tokenizer) -> str:
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # normaliser / pre-tokeniser settings change ids without changing the vocabulary
        digest.update(backend.to_str().encode())
    return digest.hexdigest()


def frame_fingerprint(frame) -> str:
    digest = hashlib.sha256()
    for row in zip(frame["id"], frame["prompt"], frame["response_a"], frame["response_b"]):
        digest.update(json.dumps(row, ensure_ascii=False, default=list).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def cache_key(renderer, inputs: str, frame) -> str:
    text = renderer.settings.to_dict()
    # joint_packing changes joint ids only. "fields" is the packing of the ids cached before the setting existed:
    # left out of the key there (and for pair inputs), those entries are still found; "rounds" gets its own key.
    if inputs == "pair" or text["joint_packing"] == "fields":
        del text["joint_packing"]
    parts = {"format": FORMAT, "inputs": inputs, "text": text,
             "tokenizer": tokenizer_fingerprint(renderer.tokenizer), "rows": frame_fingerprint(frame)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _pack(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in sequences])
    flat = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def _read(path: Path, inputs: str, n_rows: int) -> list | None:
    try:
        with np.load(path) as stored:
            columns = [_unpack(stored[f"flat{k}"], stored[f"offsets{k}"]) for k in range(2 if inputs == "pair" else 1)]
    except Exception:  # damaged or truncated file: tokenise again and replace it
        return None
    if any(len(c) != n_rows for c in columns):
        return None
    return list(zip(*columns)) if inputs == "pair" else columns[0]


def _write(path: Path, rows: list, inputs: str) -> None:
    columns = [[r[0] for r in rows], [r[1] for r in rows]] if inputs == "pair" else [rows]
    arrays = {}
    for k, column in enumerate(columns):
        arrays[f"flat{k}"], arrays[f"offsets{k}"] = _pack(column)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a killed run leaves no half-written entry under the real name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_encode_rows(renderer, inputs: str, frame, cache_dir: str | Path | None, log=None) -> tuple[list, bool]:
    """data.text.encode_rows(renderer, inputs, frame), read from `cache_dir` when an entry with the same key exists.

    Returns (rows, hit): rows are (side A, side B) pairs for inputs="pair", one sequence per row for "joint".
    With cache_dir None it just tokenises.
    """
    if cache_dir is None:
        return encode_rows(renderer, inputs, frame), False
    path = Path(cache_dir) / f"{inputs}-{cache_key(renderer, inputs, frame)}.npz"
    if path.is_file():
        rows = _read(path, inputs, len(frame))
        if rows is not None:
            if log:
                log(f"token cache hit: {len(frame)} rows from {path}")
            return rows, True
    rows = encode_rows(renderer, inputs, frame)
    _write(path, rows, inputs)
    if log:
        log(f"tokenised {len(frame)} rows; cached in {path}")
    return rows, False
