"""Training checkpoints that survive a kill at any moment, and the decision where a training run starts.

The Hugging Face Trainer writes `checkpoints/checkpoint-N/` in place (weights, optimizer, scheduler, RNG states,
trainer_state.json), so a kill while it writes leaves a newest checkpoint that is only half there, and the Trainer's
own `resume_from_checkpoint=True` would pick it. We therefore mark a checkpoint complete only after the Trainer has
finished it (its `on_save` event): every file is flushed to disk, then a small manifest (file names and sizes) is
written atomically. Resuming uses the newest checkpoint whose manifest matches the files on disk and removes the
half-written ones. No torch import here, so the command line can check all this before loading any library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from arenapref.data.tables import write_text_atomic
from arenapref.errors import DataError
from arenapref.models.directory import META_FILE

COMPLETE_FILE = "arenapref-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_root(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """checkpoint-N folders under root, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def mark_complete(checkpoint: str | Path) -> None:
    """Flush every file of a finished checkpoint to disk, then write the manifest that says it is whole."""
    checkpoint = Path(checkpoint)
    files = {}
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != COMPLETE_FILE):
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
        files[str(path.relative_to(checkpoint))] = path.stat().st_size
    write_text_atomic(json.dumps({"files": files}, indent=1), checkpoint / COMPLETE_FILE)


def is_complete(checkpoint: str | Path) -> bool:
    """The manifest exists and every file it lists is there with the same size."""
    checkpoint = Path(checkpoint)
    try:
        files = json.loads((checkpoint / COMPLETE_FILE).read_text(encoding="utf-8"))["files"]
        return bool(files) and all((checkpoint / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def plan_start(output: str | Path, resume: bool) -> tuple[Path | None, list[Path]]:
    """Where a training run starts: (checkpoint to resume from or None, checkpoint folders to remove first).

    Without --resume, checkpoints of an unfinished run are never thrown away silently (that would lose the hours
    a resume could save): the user must choose. Checkpoints of a finished run (arenapref.json present) are stale.
    """
    output = Path(output)
    root = checkpoint_root(output)
    dirs = checkpoint_dirs(root)
    if resume:
        complete = [d for d in dirs if is_complete(d)]
        last = complete[-1] if complete else None
        return last, [d for d in dirs if d not in complete]
    if dirs and not (output / META_FILE).is_file():
        raise DataError(f"{output}: holds an unfinished training run ({dirs[-1].name}); pass --resume to continue "
                        f"it, or delete {root} to start over")
    return None, dirs


def remove_checkpoints(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
