"""Command line: thin wrappers that parse flags, call the library and print. Errors are one line, exit code 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import LABELS
from .data import DataError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict which of two chatbot responses a human prefers (A wins / B wins / tie).")
console = Console()
err_console = Console(stderr=True)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars; the Trainer keeps its own


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("n", "log_loss", "prior_log_loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"):
        value = metrics[key]
        table.add_row(key, str(value) if isinstance(value, int) else f"{value:.4f}")
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "predicted A", "predicted B", "predicted tie"):
        per_class.add_column(col, justify="right")
    for j, name in enumerate(("model_a", "model_b", "tie")):
        per_class.add_row(name, *(f"{metrics[f'{m}_{name}']:.4f}" for m in ("precision", "recall", "f1")),
                          *(str(v) for v in metrics["confusion"][j]))
    outer = Table.grid(padding=1)
    outer.add_row(table)
    outer.add_row(per_class)
    return outer


def round_rows(probs, decimals: int):
    """Round probabilities so each row still sums to exactly 1 at that precision (Kaggle checks the sum)."""
    import numpy as np

    scale = 10 ** decimals
    units = np.floor(probs * scale).astype(np.int64)
    # Largest-remainder rounding: hand the missing units to the largest fractional parts.
    missing = scale - units.sum(axis=1)
    order = np.argsort(-(probs * scale - units), axis=1)
    for k in range(probs.shape[1]):
        units[np.arange(len(units)), order[:, k]] += (missing > k)
    return units / scale


def _speed_options(dtype: str, quantize: str, batch_tokens: Optional[int]) -> dict:
    """Validate the inference speed flags before any model is loaded."""
    if dtype not in ("fp32", "bf16", "fp16"):
        raise DataError(f"--dtype {dtype!r}: expected fp32, bf16 or fp16")
    if quantize not in ("none", "int8"):
        raise DataError(f"--quantize {quantize!r}: expected none or int8")
    if quantize == "int8" and dtype != "fp32":
        raise DataError("--quantize int8 quantizes the fp32 model; drop --dtype (or use --dtype fp32)")
    if batch_tokens is not None and batch_tokens < 1:
        raise DataError(f"--batch-tokens must be at least 1, got {batch_tokens}")
    return {"dtype": dtype, "quantize": None if quantize == "none" else quantize, "max_tokens": batch_tokens}


DTYPE_HELP = "Inference precision: fp32, bf16 (GPU or CPUs with bf16 units; slow on plain AVX2) or fp16 (GPU)."
QUANTIZE_HELP = "none, or int8: dynamic int8 quantization of the encoder's Linear layers (CPU)."
BATCH_TOKENS_HELP = "Encoder tokens per batch (default 8192 on CPU, 65536 on GPU)."


def _check_train_inputs(cfg) -> None:
    """Every input problem is reported before the libraries load, long before training starts."""
    from .checkpoints import plan_start
    from .data import check_output_dir, load_frame

    check_output_dir(cfg.output)
    plan_start(cfg.output, cfg.resume)
    for path in [cfg.data, cfg.valid, *(cfg.extra or [])]:
        if path:
            load_frame(path, require_labels=True)


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, help="Training file (CSV / JSONL / Parquet, Kaggle LMSYS columns)."),
    output: Optional[Path] = typer.Option(None, help="Model directory to write."),
    valid: Optional[Path] = typer.Option(None, help="Validation file; default: a held-out part of --data."),
    valid_fraction: Optional[float] = typer.Option(None, help="Share of --data held out, grouped by prompt."),
    extra: Optional[list[Path]] = typer.Option(None, help="Extra labelled file(s) used for training only (repeat)."),
    config: Optional[Path] = typer.Option(None, help="YAML file with any of these options; flags win."),
    model: Optional[str] = typer.Option(None, help="Model family: dual-tower, cross-encoder, llm, gbdt."),
    objective: Optional[str] = typer.Option(None, help="classify (3-way head) or rank (a score per side)."),
    rank_loss: Optional[str] = typer.Option(None, help="For --objective rank: davidson (Bradley-Terry with ties) or mse."),
    backbone: Optional[str] = typer.Option(None, help="Hugging Face encoder name or local path."),
    max_length: Optional[int] = typer.Option(None, help="Token budget per side."),
    epochs: Optional[float] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None, help="Encoder learning rate."),
    head_lr: Optional[float] = typer.Option(None, help="Learning rate of the new head."),
    eval_steps: Optional[int] = typer.Option(None, help="Evaluate and checkpoint every N optimizer steps."),
    seed: Optional[int] = typer.Option(None),
    bf16: Optional[bool] = typer.Option(None, "--bf16", help="bfloat16 mixed precision (where supported)."),
    fp16: Optional[bool] = typer.Option(None, "--fp16", help="float16 mixed precision (CUDA)."),
    grad_accum: Optional[int] = typer.Option(None, help="Gradient accumulation steps."),
    warmup_ratio: Optional[float] = typer.Option(None, help="Share of steps with linear warmup."),
    resume: Optional[bool] = typer.Option(None, "--resume", help="Continue from the last checkpoint in --output."),
    truncation_side: Optional[str] = typer.Option(None, help="Cut over-long fields at the right (end) or left (start)."),
    field_budget: Optional[str] = typer.Option(None, help="cross-encoder / llm: budget shares of prompt, response A, "
                                                          "response B (default 0.2,0.4,0.4)."),
    pooling: Optional[str] = typer.Option(None, help="cross-encoder: mean or first token."),
    lora_r: Optional[int] = typer.Option(None, help="llm: LoRA rank."),
    lora_alpha: Optional[float] = typer.Option(None, help="llm: LoRA alpha (scale = alpha / r)."),
    lora_dropout: Optional[float] = typer.Option(None, help="llm: dropout on the LoRA input."),
    lora_targets: Optional[str] = typer.Option(None, help="llm: all-linear or module names, e.g. q_proj,v_proj."),
    gguf_file: Optional[str] = typer.Option(None, help="llm: GGUF file inside the --backbone directory."),
    swap_augment: Optional[str] = typer.Option(None, help="A/B swap augmentation: none, random or full."),
    teacher_probs: Optional[Path] = typer.Option(None, help="Distillation: CSV of id + teacher probabilities."),
    distill_alpha: Optional[float] = typer.Option(None, help="Weight of the teacher in the loss (rest: labels)."),
    group_by_length: Optional[bool] = typer.Option(None, "--group-by-length/--no-group-by-length",
                                                   help="Batch rows of similar length together (default on)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing",
                                                          help="Trade compute for memory: recompute activations."),
):
    """Train a model and save it as a Hugging Face style directory."""
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items() if k != "config"}
    overrides["extra"] = [str(p) for p in extra] if extra else None
    from .config import load_config

    cfg = load_config(config, overrides)
    _check_train_inputs(cfg)
    _quiet_libraries()
    from .training import train as run_training

    metrics = run_training(cfg)
    if metrics:
        console.print(metrics_table(metrics, f"validation ({cfg.output})"))


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="Labelled file to score."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, or swap (average with A/B swapped)."),
    dtype: str = typer.Option("fp32", help=DTYPE_HELP),
    quantize: str = typer.Option("none", help=QUANTIZE_HELP),
    batch_tokens: Optional[int] = typer.Option(None, help=BATCH_TOKENS_HELP),
):
    """Log loss, accuracy, precision / recall / F1 and the confusion matrix on a labelled file."""
    from .data import load_frame
    from .modeldir import check_model_dir

    options = _speed_options(dtype, quantize, batch_tokens)
    check_model_dir(model)
    frame = load_frame(data, require_labels=True)
    _quiet_libraries()
    from .api import Judge, check_tta
    from .metrics import classification_metrics

    check_tta(tta)
    judge = Judge.from_pretrained(model, **options)
    metrics = classification_metrics(frame["label"].to_numpy(), judge.predict_proba(frame, tta=tta))
    if as_json:
        print(json.dumps(metrics))
    else:
        console.print(metrics_table(metrics, f"{data} ({model})"))


@app.command()
def predict(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="File to score (labels not needed)."),
    output: Path = typer.Option(..., help="CSV to write: id,winner_model_a,winner_model_b,winner_tie."),
    scores: bool = typer.Option(False, "--scores", help="Add score_a, score_b (rank models)."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, or swap (average with A/B swapped)."),
    dtype: str = typer.Option("fp32", help=DTYPE_HELP),
    quantize: str = typer.Option("none", help=QUANTIZE_HELP),
    batch_tokens: Optional[int] = typer.Option(None, help=BATCH_TOKENS_HELP),
):
    """Write a Kaggle submission: one row of probabilities per input row, same order."""
    from .data import check_output_path, load_frame, to_kaggle, write_csv_atomic
    from .modeldir import check_model_dir

    options = _speed_options(dtype, quantize, batch_tokens)
    check_output_path(output)
    check_model_dir(model)
    frame = load_frame(data)
    _quiet_libraries()
    from .api import Judge, check_tta

    check_tta(tta)
    judge = Judge.from_pretrained(model, **options)
    out = judge.predict_frame(to_kaggle(frame), scores=scores, tta=tta)
    out[list(LABELS)] = round_rows(out[list(LABELS)].to_numpy(), 6)
    write_csv_atomic(out, output, float_format="%.6f")
    console.print(f"wrote {len(out)} rows to {output}")


@app.command()
def split(
    data: Path = typer.Option(..., help="Labelled file to split."),
    output: Path = typer.Option(..., help="Directory for train.csv and holdout.csv."),
    holdout_fraction: float = typer.Option(0.2, help="Share of rows held out."),
    seed: int = typer.Option(42),
):
    """Split a file into train.csv / holdout.csv with no prompt on both sides."""
    from .data import check_output_dir, grouped_split, load_frame, to_kaggle, write_csv_atomic

    check_output_dir(output)
    frame = load_frame(data)
    train_part, holdout_part = grouped_split(frame, holdout_fraction, seed)
    output.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(to_kaggle(train_part), output / "train.csv")
    write_csv_atomic(to_kaggle(holdout_part), output / "holdout.csv")
    console.print(f"{len(train_part)} train rows, {len(holdout_part)} holdout rows -> {output}")


@app.command()
def serve(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    batch_wait_ms: float = typer.Option(5.0, help="How long a forward pass waits to gather concurrent requests."),
    max_items: int = typer.Option(256, help="Most comparisons (or ordered rank pairs) in one request; 413 past it."),
    max_body_bytes: int = typer.Option(4_000_000, help="Largest request body in bytes; 413 past it."),
):
    """HTTP service: POST /v1/compare, POST /v1/rank, GET /v1/model, GET /healthz; docs at /docs."""
    from .modeldir import check_model_dir

    check_model_dir(model)
    from .serve import port_free, run

    if not port_free(host, port):
        raise DataError(f"{host}:{port} is in use or not an address of this machine; pass another --port or --host")
    _quiet_libraries()
    from .api import Judge

    judge = Judge.from_pretrained(model)
    err_console.print(f"serving {model} on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    run(judge, host, port, batch_wait_ms=batch_wait_ms, max_items=max_items, max_body_bytes=max_body_bytes)


@app.command()
def leaderboard(
    data: Path = typer.Option(..., help="Battles: model_a, model_b and votes (winner_model_a/_b/_tie or winner)."),
    predictions: Optional[Path] = typer.Option(None, help="A judge's predictions for the same battles (id + 3 "
                                                          "probabilities, as `arenapref predict` writes)."),
    bootstrap: int = typer.Option(100, help="Bootstrap resamples of the battles for the 95% intervals (0: none)."),
    output: Optional[Path] = typer.Option(None, help="Directory for leaderboard.csv and leaderboard.png."),
    ties: str = typer.Option("half", help="half (a tie is half a win each way, as LMSYS) or davidson."),
    anchor: Optional[str] = typer.Option(None, help="Model fixed at 1000; default: the mean rating is 1000."),
    min_battles: int = typer.Option(1, help="Leave out models with fewer battles (and their battles)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
):
    """Bradley-Terry ratings on the Elo scale with bootstrap intervals, from votes and/or a judge's predictions."""
    import numpy as np

    from .leaderboard import drop_rare_models, load_battles, load_predictions, write_leaderboards

    if ties not in ("half", "davidson"):
        raise DataError(f"--ties {ties}: expected half or davidson")
    if bootstrap < 0:
        raise DataError(f"--bootstrap {bootstrap}: must be 0 or more")
    if output is not None:
        from .data import check_output_dir

        check_output_dir(output)
    battles = drop_rare_models(load_battles(data), min_battles)
    tables = {}
    if "outcome" in battles.columns:
        tables["votes"] = np.stack(battles["outcome"].to_numpy())
    if predictions is not None:
        tables["judge"] = load_predictions(predictions, battles["id"])
    if not tables:
        raise DataError(f"{data}: has no votes (winner_model_a/_b/_tie or winner columns) and no --predictions "
                        "were given; nothing to rate")
    boards, summary = write_leaderboards(battles, tables, output, bootstrap=bootstrap, ties=ties, anchor=anchor,
                                         seed=seed)
    console.print(leaderboard_table(boards, summary))
    if output is not None:
        console.print(f"wrote {', '.join(summary['files'])} to {output}")


def leaderboard_table(boards: dict, summary: dict) -> Table:
    import math

    names = list(boards)
    first = boards[names[0]]
    table = Table(title=f"Bradley-Terry ratings, Elo scale ({summary['battles']} battles, ties: {summary['ties']})")
    table.add_column("#", justify="right")
    table.add_column("model")
    for name in names:
        table.add_column(f"{name} rating", justify="right")
        table.add_column("95% CI", justify="right", no_wrap=True)
    table.add_column("battles", justify="right")
    indexed = {name: board.set_index("model") for name, board in boards.items()}
    for i, row in first.iterrows():
        cells = []
        for name in names:
            r = indexed[name].loc[row["model"]]
            ci = "-" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.0f}, {r['ci_high']:.0f}]"
            cells += [f"{r['rating']:.0f}", ci]
        table.add_row(str(i + 1), row["model"], *cells, str(row["battles"]))
    if "spearman" in summary:
        table.caption = (f"rank correlation, votes vs judge: Spearman {summary['spearman']:.3f}, "
                         f"Kendall {summary['kendall']:.3f} ({summary['models']} models)")
    return table


@app.command()
def report(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="Labelled file to analyse."),
    output: Path = typer.Option(..., help="Directory for index.html and its PNG figures."),
    worst: int = typer.Option(20, help="How many worst-predicted rows to list."),
):
    """An HTML report: metrics, reliability before/after calibration, confusion matrix, log loss by length and
    turns, position bias, worst-predicted rows."""
    from .data import check_output_dir, load_frame
    from .modeldir import check_model_dir

    check_model_dir(model)
    check_output_dir(output)
    frame = load_frame(data, require_labels=True)
    _quiet_libraries()
    from .api import Judge
    from .report import write_report

    judge = Judge.from_pretrained(model)
    path = write_report(judge, frame, output, model_name=str(model), data_name=str(data), worst=worst)
    console.print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except DataError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:  # not about a file: a bug or a system fault, keep the traceback
            raise
        # A file the user named or a disk that filled up: one line, not a traceback.
        err_console.print(f"error: {exc.filename}: {exc.strerror or exc}", markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
