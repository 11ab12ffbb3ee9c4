"""What the command modules share: the consoles, quieting the libraries, rounding probabilities for a CSV."""

from __future__ import annotations

import os

import numpy as np
from rich.console import Console

from arenapref.inference.sharded import ShardedRun
from arenapref.models import MODELS
from arenapref.models.directory import DEFAULT_JUDGE, check_model_dir

console = Console()
err_console = Console(stderr=True)


JUDGE_HELP = ("Model directory written by `arenapref train`, or the name of a shipped judge (`arenapref models`); "
              f"default: the shipped {DEFAULT_JUDGE}.")


def checked_model(model, options, say: bool = True) -> tuple:
    """(model, its arenapref.json) for a scoring command: --model as given, or the shipped default judge when none
    is (said on stderr unless `say` is False: stdout may be JSON); the directory checked, and the inference options
    against its family."""
    if model is None and say:
        err_console.print(f"no --model given: using the shipped judge {DEFAULT_JUDGE} (see `arenapref models`)",
                          markup=False, highlight=False)
    if model is None:
        model = DEFAULT_JUDGE
    meta = check_model_dir(model)
    options.check_applies(meta["model_type"], model)
    return model, meta


def quiet_libraries(uses_transformers: bool = True) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not uses_transformers:  # importing transformers (and torch) costs seconds; GBDT models never need it
        return
    # Imported here: `arenapref --help` and gbdt-only commands never load transformers (or torch).
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars; the Trainer keeps its own


def uses_transformers(model_type: str) -> bool:
    return MODELS[model_type].backend != "gbdt"


def round_rows(probs, decimals: int):
    """Round probabilities so each row still sums to exactly 1 at that precision (Kaggle checks the sum) and no
    probability rounds to 0 (a 0 on the true class is an infinite log loss): every entry keeps at least one unit."""
    scale = 10 ** decimals
    rows = np.arange(len(probs))
    units = np.maximum(np.floor(probs * scale).astype(np.int64), 1)
    # Largest-remainder rounding: hand the missing units to the largest fractional parts; a row the floor pushed
    # over (entries raised to one unit) gives its surplus back from its largest entry.
    missing = scale - units.sum(axis=1)
    order = np.argsort(-(probs * scale - units), axis=1)
    for k in range(probs.shape[1]):
        units[rows, order[:, k]] += (missing > k)
    units[rows, units.argmax(axis=1)] -= np.maximum(-missing, 0)  # the largest entry holds at least a third
    return units / scale


def launch_device(run: ShardedRun | None) -> dict:
    """A launched process's device (cuda:LOCAL_RANK, or the CPU with its share of the threads), as a
    `from_pretrained` keyword; nothing when the process runs alone."""
    if run is None:
        return {}
    device = run.launch.device()
    if device == "cpu":
        run.launch.split_cpu_threads()
    return {"device": device}
