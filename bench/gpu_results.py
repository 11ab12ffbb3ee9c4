"""Helpers of bench/gpu_check.sh, standard library only (they run before any carried wheel is installed):

    python bench/gpu_results.py wheels WHEEL_DIR          # wheels whose package is missing here or older
    python bench/gpu_results.py env PYPROJECT             # one JSON line: device, versions, unmet requirements
    python bench/gpu_results.py losses PATH...            # finite|nan, final training loss, log loss

`wheels` prints the carried wheels worth installing: a package the machine lacks, or has at a lower version than
the wheel's (a newer one already there is kept: replacing it could break the packages built against it).
`losses` reads what a step left: a model directory (training_log.json's logged losses, arenapref.json's validation
figures; a hybrid's neural/ part too), a prediction CSV (every probability and score finite, rows summing to 1) or
a step's output (its last JSON line: evaluate --json, bench/speed.py). It prints three tab-separated fields:
`finite` or `nan` (any loss or probability not finite) or `-` (nothing to read), the last logged training loss,
and the log loss (validation for a model directory, the file's for evaluate, the low-precision pipeline's for
speed.py).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from importlib import metadata
from pathlib import Path

LOSS_KEYS = ("loss", "eval_loss", "eval_log_loss", "train_loss")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(text: str) -> tuple:
    """"2.13.0+cu130" -> (2, 13, 0); enough to order release versions without `packaging`."""
    parts = []
    for piece in re.split(r"[.+-]", text):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def wheels(folder: str) -> None:
    for wheel in sorted(Path(folder).glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        have = installed_version(normalise(name))
        if have is None or version_key(have) < version_key(version):
            print(wheel)


def requirement(line: str) -> tuple[str, str | None]:
    """'torch>=2.13,<3' -> ('torch', '2.13')."""
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", line)
    name, spec = match.group(1), match.group(2)
    low = re.search(r">=\s*([0-9][0-9.]*)", spec)
    return normalise(name), low.group(1) if low else None


def pyproject_dependencies(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, flags=re.S | re.M)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def env(pyproject: str) -> None:
    import platform

    info: dict = {"python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["bf16_supported"] = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            info["gpu_memory_gib"] = round(total / 2**30, 1)
            info["gpu_free_gib"] = round(free / 2**30, 1)
            info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as exc:  # the line must come out whatever is broken
        info["torch_error"] = repr(exc)[:200]
    for name in ("transformers", "accelerate", "peft", "tokenizers", "safetensors", "huggingface-hub", "lightgbm",
                 "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "typer", "pydantic", "click"):
        info[name] = installed_version(name)
    unmet = []
    for line in pyproject_dependencies(pyproject):
        name, low = requirement(line)
        have = installed_version(name)
        if have is None or (low and version_key(have) < version_key(low)):
            unmet.append(f"{line} (have {have})")
    info["unmet_requirements"] = unmet
    print(json.dumps(info))


def finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def model_losses(folder: Path) -> tuple[list, float | None, float | None]:
    """(every loss read, last training loss, validation log loss) of a model directory (a hybrid's neural/ too)."""
    values, final, valid = [], None, None
    for part in (folder, folder / "neural"):
        log = part / "training_log.json"
        if log.is_file():
            for entry in json.loads(log.read_text(encoding="utf-8")).get("log_history", []):
                values += [entry[k] for k in LOSS_KEYS if k in entry]
                if "loss" in entry:
                    final = entry["loss"]
        meta = part / "arenapref.json"
        if meta.is_file():
            metrics = json.loads(meta.read_text(encoding="utf-8")).get("valid_metrics") or {}
            if "log_loss" in metrics:
                values.append(metrics["log_loss"])
                valid = metrics["log_loss"] if valid is None else valid  # the directory's own figure first
    return values, final, valid


def csv_losses(path: Path) -> tuple[list, None, None]:
    values = []
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            probs = [float(row[k]) for k in ("winner_model_a", "winner_model_b", "winner_tie")]
            values += probs + [float(row[k]) for k in ("score_a", "score_b") if row.get(k)]
            if abs(sum(probs) - 1) > 1e-3:
                values.append(float("nan"))
    return values, None, None


def output_losses(path: Path) -> tuple[list, None, float | None]:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.startswith("{")]
    for line in reversed(lines):
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "log_loss" in result:  # evaluate --json (its prior_log_loss is the constant baseline's)
            return [result["log_loss"]], None, result["log_loss"]
        # bench/speed.py: log_loss_fp32 and log_loss_<low precision> (not log_loss_change_*)
        losses = {k: v for k, v in result.items() if re.fullmatch(r"log_loss_(fp32|bf16|fp16|int8)", k)}
        if losses:
            low = [v for k, v in losses.items() if k != "log_loss_fp32"]
            return list(losses.values()), None, low[-1] if low else losses["log_loss_fp32"]
    return [], None, None


def losses(paths: list[str]) -> None:
    values, final, figure = [], None, None
    for name in paths:
        path = Path(name)
        if path.is_dir():
            read = model_losses(path)
        elif path.suffix == ".csv" and path.is_file():
            read = csv_losses(path)
        elif path.is_file():
            read = output_losses(path)
        else:
            continue
        values += read[0]
        final = read[1] if read[1] is not None else final
        figure = read[2] if read[2] is not None else figure
    verdict = "-" if not values else ("finite" if finite(values) else "nan")
    show = lambda v: "-" if v is None else f"{v:.4f}"
    print(f"{verdict}\t{show(final)}\t{show(figure)}")


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("wheels", "env", "losses"):
        sys.exit(__doc__.split("\n\n")[1])
    command, args = sys.argv[1], sys.argv[2:]
    if command == "wheels":
        wheels(args[0])
    elif command == "env":
        env(args[0])
    else:
        losses(args)


if __name__ == "__main__":
    main()
