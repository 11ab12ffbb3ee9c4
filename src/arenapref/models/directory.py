"""Check a model directory before any work, without importing torch: every way it can be wrong is one line.

A command that reads a model directory calls `check_model_dir` first, so a wrong path, an unfinished training
run or a damaged weights file is reported in a second, not after loading libraries and data for a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
from importlib import metadata
from pathlib import Path

from arenapref.data.tables import LABELS, read_table, write_text_atomic
from arenapref.errors import DataError
from arenapref.models import (  # the registry imports no model code until a family is used
    META_FILE,
    MODELS,
)


def read_meta(path: str | Path) -> dict:
    """arenapref.json of a model directory; a missing, unfinished or damaged directory raises DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"model directory {path} not found; pass the --output directory of `arenapref train`, or the "
                        "name of a shipped judge (`arenapref models` lists them)")
    if not path.is_dir():
        raise DataError(f"{path}: is a file, expected a model directory written by `arenapref train`")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        if not any(path.iterdir()):
            raise DataError(f"{path}: model directory is empty; train one with `arenapref train --output {path}`")
        if any((path / name).exists() for name in ("checkpoints", "config.json", "neural", "gbdt")):
            raise DataError(f"{path}: unfinished model directory (no {META_FILE}: training stopped before saving); "
                            "rerun the same `arenapref train` command with --resume")
        raise DataError(f"{path}: not an arenapref model directory (no {META_FILE}); train one with `arenapref train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: corrupt ({exc}); retrain or restore the model directory") from None
    if not isinstance(meta, dict) or meta.get("model_type") not in MODELS:
        kind = meta.get("model_type") if isinstance(meta, dict) else None
        raise DataError(f"{meta_path}: unknown model type {kind!r}; expected one of {', '.join(MODELS)}")
    return meta


def check_safetensors(path: Path) -> None:
    """A .safetensors file whose header parses and whose size matches it (a truncated copy fails here)."""
    size = path.stat().st_size
    what = "retrain or restore the model directory"
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise DataError(f"{path}: truncated ({size} bytes, not a safetensors file); {what}")
        header_len = struct.unpack("<Q", head)[0]
        if header_len > min(size - 8, 100_000_000):
            raise DataError(f"{path}: corrupt (bad safetensors header); {what}")
        try:
            header = json.loads(fh.read(header_len))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise DataError(f"{path}: corrupt (unreadable safetensors header); {what}") from None
    expected = 8 + header_len + end
    if size != expected:
        state = "truncated" if size < expected else "corrupt"
        raise DataError(f"{path}: {state} ({size} bytes, its header says {expected}); {what}")


# Judges shipped inside the package (`make judge` trains them), usable by name wherever a model directory is.
JUDGES_DIR = Path(__file__).resolve().parents[1] / "judges"
DEFAULT_JUDGE = "arena-minilm"


def shipped_judges() -> dict[str, Path]:
    """Name -> directory of every judge shipped inside the package."""
    if not JUDGES_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(JUDGES_DIR.iterdir()) if (p / META_FILE).is_file()}


def judge_catalog() -> list[dict]:
    """Each shipped judge: name, size on disk, family and backbone, and what judges/catalog.json says of it (what it
    is for, its measured figures and the command that measured them)."""
    try:
        catalog = json.loads((JUDGES_DIR / "catalog.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        catalog = {}
    rows = []
    for name, path in shipped_judges().items():
        meta = read_meta(path)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        neural = meta.get("parts", {}).get("neural", {})
        rows.append({"name": name, "path": str(path), "bytes": size, "model_type": meta["model_type"],
                     "backbone": meta.get("backbone") or neural.get("backbone"), **catalog.get(name, {})})
    return rows


def resolve_model(path: str | Path) -> Path:
    """A model directory as given, or, where no such path exists, the shipped judge of that name."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1:
        return shipped_judges().get(path.name, path)
    return path


def check_model_dir(path: str | Path, verify: bool = True) -> dict:
    """read_meta plus the files every model needs: a readable config.json and intact weights, and (`verify`) every
    file's content against the sha256 that arenapref.json recorded when the model was saved. Returns the meta.
    `path` may name a shipped judge (resolve_model)."""
    path = resolve_model(path)
    meta = read_meta(path)
    config_path = path / "config.json"
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{config_path}: corrupt (not JSON); retrain or restore the model directory") from None
        if not isinstance(config, dict):
            raise DataError(f"{config_path}: corrupt (not a JSON object); retrain or restore the model directory")
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)
    if verify and os.environ.get(NO_VERIFY_ENV, "") in ("", "0"):
        verify_files(path, meta)
    return meta


# Path-valued training options: a model directory records each file by name and content hash (in "provenance"),
# never as a path of the machine that trained it.
FILE_OPTIONS = ("data", "valid", "extra", "extra_exclude", "teacher_probs")
# Library versions recorded with every trained model (read from the installed metadata: nothing is imported).
VERSIONED = ("arenapref", "torch", "transformers", "peft", "lightgbm", "scikit-learn", "numpy", "pandas", "tokenizers")


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (a datasets save_to_disk folder) by relative name and content."""
    digest = hashlib.sha256()
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def provenance(cfg) -> dict:
    """What a model was trained from: each input file by name, sha256 and row count, and the library versions."""
    files = {}
    for option in FILE_OPTIONS:
        value = getattr(cfg, option, None)
        paths = value if isinstance(value, list) else [value] if value else []
        records = [{"name": Path(p).name, "sha256": file_digest(Path(p)), "rows": len(read_table(p))}
                   for p in paths if Path(p).exists()]
        if records:
            files[option] = records
    versions = {}
    for package in VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"files": files, "versions": versions, "python": platform.python_version()}


def portable_config(cfg) -> dict:
    """The training options as a model directory keeps them: files by name (their hashes are in provenance), no
    output path (the directory is wherever it is now)."""
    values = cfg.to_dict()
    values.pop("output", None)
    for option in FILE_OPTIONS:
        value = values.get(option)
        if isinstance(value, list):
            values[option] = [Path(p).name for p in value]
        elif value:
            values[option] = Path(value).name
    return values


def training_meta(model_type: str, cfg, **fields) -> dict:
    """arenapref.json of a freshly trained model: the fields every family writes, then the family's own."""
    return {"format_version": 1, "model_type": model_type, "labels": list(LABELS), **fields,
            "train_config": portable_config(cfg), "provenance": provenance(cfg)}


CARD_FILE = "README.md"
TRAINING_LOG = "training_log.json"
# Written after arenapref.json (the card, the training curve): not read by loading, so not hashed.
NOT_HASHED = (META_FILE, CARD_FILE, TRAINING_LOG)
# Loading a model whose files were changed on purpose (edited weights): ARENAPREF_NO_VERIFY=1 or verify=False.
NO_VERIFY_ENV = "ARENAPREF_NO_VERIFY"
_verified: dict[tuple, str] = {}  # (file, size, mtime) -> sha256: a file is hashed once per process


def saved_files(output: Path) -> dict:
    """sha256 of every file loading reads: the directory's own files, and a hybrid part's arenapref.json (which in
    turn lists that part's files)."""
    files = {}
    for entry in sorted(Path(output).iterdir()):
        if entry.is_file() and entry.name not in NOT_HASHED:
            files[entry.name] = file_digest(entry)
        elif entry.is_dir() and (entry / META_FILE).is_file():
            files[f"{entry.name}/{META_FILE}"] = file_digest(entry / META_FILE)
    return files


def write_meta(output: str | Path, meta: dict) -> None:
    """arenapref.json, written last: its presence means the directory is complete, and its "files" entry holds the
    sha256 of every file written before it."""
    output = Path(output)
    write_text_atomic(json.dumps({**meta, "files": saved_files(output)}, indent=2, default=str), output / META_FILE)


def verify_files(path: Path, meta: dict) -> None:
    """Every file arenapref.json lists that is present has the content it had when the model was saved (a truncated
    file was reported by the structural checks before; directories saved before hashes were recorded list none)."""
    files = meta.get("files") or {}
    for name, expected in files.items():
        file = path / name
        if not file.is_file():  # a missing file is reported by the loader that needs it, with what to do
            continue
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _verified:
            _verified[key] = file_digest(file)
        if _verified[key] != expected:
            raise DataError(f"{file}: content differs from the sha256 recorded in {META_FILE} when the model was "
                            f"saved (changed or corrupted since); restore it or retrain, or set {NO_VERIFY_ENV}=1 to "
                            "load it anyway")


def write_model_card(path: str | Path) -> None:
    """A short model card (README.md, Hugging Face style front matter) from a finished directory's arenapref.json:
    what the model is, what it was trained on, its validation figures and what they are out of sample for, and how
    to load it."""
    path = Path(path)
    meta = read_meta(path)
    cfg = meta.get("train_config", {})
    family = meta["model_type"]
    backbone = meta.get("backbone") or (cfg.get("backbone") if family in ("hybrid",) else None)
    valid = meta.get("valid_metrics", {})
    figures = " | ".join(f"{name} {valid[key]:.4f}" for key, name in (
        ("log_loss", "log loss"), ("prior_log_loss", "constant prior"), ("accuracy", "accuracy"),
        ("f1_macro", "macro F1"), ("ece", "ECE")) if isinstance(valid.get(key), (int, float)))
    parts = meta.get("parts", {})
    calibration = meta.get("calibration", {})
    what = {"gbdt": "LightGBM on hand-made features of the two responses",
            "dual-tower": "dual tower: one shared encoder reads prompt + each response",
            "cross-encoder": "cross-encoder: prompt, response A and response B in one sequence",
            "llm": "decoder sequence classifier (LoRA) on prompt, response A and response B",
            "hybrid": "the average of a neural judge's and a gbdt's calibrated probabilities"}.get(family, family)
    if family == "llm" and meta.get("objective") == "rank":
        what = "decoder reward model (LoRA): one score per prompt + response, Davidson ties"
    lines = [
        "---",
        "library_name: arenapref",
        "tags: [preference-model, pairwise-preference, lmsys-arena]",
        *([f"base_model: {backbone}"] if backbone and not str(backbone).startswith("/") else []),
        "---",
        "",
        f"# arenapref {family} model",
        "",
        f"Predicts which of two chatbot responses a human prefers: P(A wins), P(B wins), P(tie), in the label order "
        f"{', '.join(meta.get('labels', []))}. Family: **{family}** ({what}).",
        "",
        f"- objective: {meta.get('objective', 'classify')}" + (f" ({meta.get('rank_loss')} loss; one score per "
                                                               "response)" if meta.get("objective") == "rank" else ""),
        *([f"- backbone: `{backbone}`"] if backbone else []),
        *(["- parts: " + ", ".join(f"{name} ({p.get('model_type')}, weight {p.get('weight'):g})"
                                    for name, p in parts.items())] if parts else []),
        f"- training data: `{cfg.get('data')}`" + (f" plus extra rows from {', '.join(cfg['extra'])}"
                                                  if cfg.get("extra") else "")
        + (f", {meta['train_rows']} training rows" if "train_rows" in meta else ""),
        f"- validation: {meta.get('valid_rows', '?')} rows"
        + (f" from `{cfg['valid']}`" if cfg.get("valid") else
           f" held out of the training file ({cfg.get('valid_fraction')}, grouped by prompt)"),
        f"- calibration temperature: {calibration.get('temperature', 1.0):.4f} "
        f"(swap TTA: {calibration.get('temperature_swap', calibration.get('temperature', 1.0)):.4f})",
        *(["- style term (log-odds of A winning per standard deviation, 95% interval): " + ", ".join(
            f"{r['feature']} {r['coef']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            for r in meta["style_term"]["coefficients"]) + '; `style="controlled"` takes it out']
          if "style_term" in meta else []),
        f"- trained in {meta.get('train_seconds', '?')} s",
        "",
        "## Validation",
        "",
        figures or "no validation figures",
        "",
        f"Scope: {meta.get('valid_metrics_scope', 'validation rows held out from training')}.",
        "",
        "## Use",
        "",
        "```python",
        "from arenapref import Judge",
        f'judge = Judge.from_pretrained("{path.name}")  # this directory',
        'judge.predict("What is 2+2?", "4", "It is 4, because 2+2=4.")',
        "```",
        "",
        "```bash",
        f"arenapref evaluate --model {path.name} --data holdout.csv",
        f"arenapref predict --model {path.name} --data test.csv --output submission.csv",
        f"arenapref serve --model {path.name}",
        "```",
        "",
    ]
    write_text_atomic("\n".join(lines), path / CARD_FILE)
