"""train, cv and split: making models and the held-out data that judges them. The train flags are generated from
config.TrainConfig (cli/options.py); cv takes every one of them too."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from arenapref import training
from arenapref.cli.common import console, err_console, quiet_libraries, uses_transformers
from arenapref.cli.options import with_options
from arenapref.cli.tables import cv_table, metrics_table
from arenapref.config import TrainConfig, load_config
from arenapref.data.split import grouped_split
from arenapref.data.tables import check_output_dir, load_frame, to_kaggle, write_csv_atomic
from arenapref.training.checkpoints import plan_start
from arenapref.training.cv import cross_validate

CONFIG = typer.Option(None, help="YAML file with any of these options (keys as the flags, - or _); flags given win.")


def check_train_inputs(cfg: TrainConfig) -> None:
    """Every input problem is reported before the libraries load, long before training starts."""
    check_output_dir(cfg.output)
    plan_start(cfg.output, cfg.resume)
    for path in [cfg.data, cfg.valid, *(cfg.extra or [])]:
        if path:
            load_frame(path, require_labels=True)


@with_options(TrainConfig, into="flags")
def train(config: Path | None = CONFIG, flags: dict = None):
    """Train a model and save it as a Hugging Face style directory."""
    cfg = load_config(config, flags)
    check_train_inputs(cfg)
    quiet_libraries(uses_transformers(cfg.model))
    try:
        metrics = training.train(cfg)
    finally:
        training.end_distributed_run()
    if metrics:
        console.print(metrics_table(metrics, f"validation ({cfg.output})"))


@with_options(TrainConfig, into="flags", skip=("data", "output"))
def cv(
    data: Path = typer.Option(..., help="Labelled file; folds are grouped by prompt."),
    output: Path = typer.Option(..., help="Directory for oof.csv (out-of-fold predictions) and cv_metrics.json."),
    folds: int = typer.Option(5, help="Number of folds."),
    keep_models: bool = typer.Option(False, "--keep-models", help="Keep each fold's model directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    config: Path | None = CONFIG,
    flags: dict = None,
):
    """Grouped K-fold cross-validation of any recipe; every other flag is a `train` flag (e.g. --model gbdt)."""
    cfg = load_config(config, {**flags, "data": str(data), "output": str(output / "fold")})
    check_output_dir(output)  # as for train: the data and the output directory are checked before any fold starts
    for path in [cfg.data, *(cfg.extra or [])]:
        load_frame(path, require_labels=True)
    quiet_libraries(uses_transformers(cfg.model))
    log = (lambda *a: None) if as_json else (lambda msg: err_console.print(msg, markup=False, highlight=False))
    # The Trainer prints its logs to stdout (tqdm.write); with --json stdout holds the JSON object alone.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = cross_validate(cfg, folds, output, keep_models, log)
    if as_json:
        print(json.dumps({k: result[k] for k in ("model", "folds", "rows", "per_fold", "summary", "out_of_fold")}))
        return
    console.print(cv_table(result, f"{folds}-fold grouped CV of {cfg.model} on {data} ({result['seconds']:.0f}s)"))
    console.print(f"out-of-fold log loss {result['out_of_fold']['log_loss']:.4f} "
                  f"(prior {result['out_of_fold']['prior_log_loss']:.4f}); wrote {output / 'oof.csv'} and "
                  f"{output / 'cv_metrics.json'}")


def split(
    data: Path = typer.Option(..., help="Labelled file to split."),
    output: Path = typer.Option(..., help="Directory for train.csv and holdout.csv."),
    holdout_fraction: float = typer.Option(0.2, help="Share of rows held out."),
    seed: int = typer.Option(42),
):
    """Split a file into train.csv / holdout.csv with no prompt on both sides."""
    check_output_dir(output)
    frame = load_frame(data)
    train_part, holdout_part = grouped_split(frame, holdout_fraction, seed)
    output.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(to_kaggle(train_part), output / "train.csv")
    write_csv_atomic(to_kaggle(holdout_part), output / "holdout.csv")
    console.print(f"{len(train_part)} train rows, {len(holdout_part)} holdout rows -> {output}")
