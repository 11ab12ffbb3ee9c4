"""Command line: thin wrappers that parse flags, call the library and print. Errors are one line, exit code 2."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from arenapref.data.tables import LABELS
from arenapref.errors import DataError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict which of two chatbot responses a human prefers (A wins / B wins / tie).")
console = Console()
err_console = Console(stderr=True)


def _quiet_libraries(uses_transformers: bool = True) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not uses_transformers:  # importing transformers (and torch) costs seconds; GBDT models never need it
        return
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars; the Trainer keeps its own


def _uses_transformers(model_type: str) -> bool:
    from arenapref.models import MODELS

    return MODELS[model_type].backend != "gbdt"


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
    """Round probabilities so each row still sums to exactly 1 at that precision (Kaggle checks the sum) and no
    probability rounds to 0 (a 0 on the true class is an infinite log loss): every entry keeps at least one unit."""
    import numpy as np

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


def _speed_options(dtype: str, quantize: str, batch_tokens: Optional[int], workers: Optional[int]) -> dict:
    """Validate the inference speed flags before any model is loaded."""
    if dtype not in ("fp32", "bf16", "fp16"):
        raise DataError(f"--dtype {dtype!r}: expected fp32, bf16 or fp16")
    if quantize not in ("none", "int8"):
        raise DataError(f"--quantize {quantize!r}: expected none or int8")
    if quantize == "int8" and dtype != "fp32":
        raise DataError("--quantize int8 quantizes the fp32 model; drop --dtype (or use --dtype fp32)")
    if batch_tokens is not None and batch_tokens < 1:
        raise DataError(f"--batch-tokens must be at least 1, got {batch_tokens}")
    if workers is not None and workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    return {"dtype": dtype, "quantize": None if quantize == "none" else quantize, "max_tokens": batch_tokens,
            "workers": workers}


def _check_speed_options_apply(options: dict, meta: dict, model: Path) -> None:
    """The speed flags act on a neural encoder: a gbdt model has none, so setting one would change nothing."""
    if meta["model_type"] != "gbdt":
        return
    given = {"--dtype": options["dtype"] != "fp32", "--quantize": options["quantize"] is not None,
             "--batch-tokens": options["max_tokens"] is not None, "--workers": options["workers"] is not None}
    for flag, set_ in given.items():
        if set_:
            raise DataError(f"{flag} applies to neural models; {model} is a gbdt model (LightGBM on features): drop "
                            f"{flag}")


DTYPE_HELP = "Inference precision: fp32, bf16 (GPU or CPUs with bf16 units; slow on plain AVX2) or fp16 (GPU)."
QUANTIZE_HELP = "none, or int8: dynamic int8 quantization of the encoder's Linear layers (CPU)."
BATCH_TOKENS_HELP = ("Encoder tokens in flight, shared by the CPU workers (default 8192 on CPU, 4096 with --quantize "
                     "int8, 65536 on GPU).")
WORKERS_HELP = ("Encoder calls run at once on a CPU, each with an equal share of the torch threads (default 2 with 2+ "
                "threads, else 1; GPU 1).")


def _check_train_inputs(cfg) -> None:
    """Every input problem is reported before the libraries load, long before training starts."""
    from arenapref.data.tables import check_output_dir, load_frame
    from arenapref.training.checkpoints import plan_start

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
    model: Optional[str] = typer.Option(None, help="Model family: hybrid, dual-tower, cross-encoder, llm, gbdt."),
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
    report_to: Optional[str] = typer.Option(None, help="Neural families: also log to tensorboard (OUTPUT/logs), wandb, "
                                                       "... (comma-separated Trainer report_to names)."),
    truncation_side: Optional[str] = typer.Option(None, help="Cut over-long fields at the right (end) or left (start)."),
    field_budget: Optional[str] = typer.Option(None, help="cross-encoder / llm: budget shares of prompt, response A, "
                                                          "response B (default 0.2,0.4,0.4)."),
    pooling: Optional[str] = typer.Option(None, help="cross-encoder: mean, first token, or fields (A's and B's tokens)."),
    lora_r: Optional[int] = typer.Option(None, help="llm: LoRA rank."),
    lora_alpha: Optional[float] = typer.Option(None, help="llm: LoRA alpha (scale = alpha / r)."),
    lora_dropout: Optional[float] = typer.Option(None, help="llm: dropout on the LoRA input."),
    lora_targets: Optional[str] = typer.Option(None, help="llm: all-linear or module names, e.g. q_proj,v_proj."),
    gguf_file: Optional[str] = typer.Option(None, help="llm: GGUF file inside the --backbone directory."),
    head_features: Optional[bool] = typer.Option(None, "--head-features/--no-head-features",
                                                 help="dual-tower / cross-encoder: hand-made side features in the head."),
    probe: Optional[bool] = typer.Option(None, "--probe/--no-probe",
                                         help="dual-tower / cross-encoder: fit the head on the frozen encoder first."),
    probe_c: Optional[float] = typer.Option(None, help="Linear probe's inverse L2 strength (default: grouped CV)."),
    hybrid_neural: Optional[str] = typer.Option(None, help="--model hybrid: the neural part (dual-tower, "
                                                            "cross-encoder or llm)."),
    hybrid_weight: Optional[float] = typer.Option(None, help="--model hybrid: the neural part's share (0-1)."),
    swap_augment: Optional[str] = typer.Option(None, help="A/B swap augmentation: none, random or full."),
    teacher_probs: Optional[Path] = typer.Option(None, help="Distillation: CSV of id + teacher probabilities."),
    distill_alpha: Optional[float] = typer.Option(None, help="Weight of the teacher in the loss (rest: labels)."),
    group_by_length: Optional[bool] = typer.Option(None, "--group-by-length/--no-group-by-length",
                                                   help="Batch rows of similar length together (default on)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing",
                                                          help="Trade compute for memory: recompute activations."),
    gbdt_rounds: Optional[int] = typer.Option(None, help="--model gbdt: boosting rounds."),
    gbdt_learning_rate: Optional[float] = typer.Option(None, help="--model gbdt: LightGBM learning rate."),
    gbdt_num_leaves: Optional[int] = typer.Option(None, help="--model gbdt: leaves per tree."),
    gbdt_min_data_in_leaf: Optional[int] = typer.Option(None, help="--model gbdt: minimum rows per leaf."),
    gbdt_refit: Optional[bool] = typer.Option(None, "--gbdt-refit/--no-gbdt-refit",
                                              help="--model gbdt: refit on training + validation rows (default on)."),
    gbdt_extra: Optional[str] = typer.Option(None, help="--model gbdt with --extra: direction (extra rows teach only "
                                                        "A vs B; ties from --data) or all (one 3-way model)."),
    gbdt_direction_rounds: Optional[int] = typer.Option(None, help="--model gbdt, factored: rounds of the A-vs-B model."),
    gbdt_direction_leaves: Optional[int] = typer.Option(None, help="--model gbdt, factored: leaves of the A-vs-B model."),
):
    """Train a model and save it as a Hugging Face style directory."""
    overrides = train_overrides(locals())  # before any import adds names to locals()
    from arenapref.config import load_config

    cfg = load_config(config, overrides)
    _check_train_inputs(cfg)
    _quiet_libraries(_uses_transformers(cfg.model))
    from arenapref.training import train as run_training

    metrics = run_training(cfg)
    if metrics:
        console.print(metrics_table(metrics, f"validation ({cfg.output})"))


def train_overrides(params: dict) -> dict:
    """`train` flag values as TrainConfig overrides (None = not given; paths as strings)."""
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in params.items() if k != "config"}
    overrides["extra"] = [str(p) for p in params.get("extra") or []] or None
    return overrides


def parse_train_flags(args: list[str], command: str) -> dict:
    """Parse `train` flags passed through another command (cv), with train's own names, types and checks."""
    from typer.exceptions import TyperException

    train_command = typer.main.get_command(app).commands["train"]
    try:
        params = train_command.make_context("train", list(args), resilient_parsing=False).params
    except typer.Exit:  # e.g. --help among the passed-through flags
        raise DataError(f"{command}: see `arenapref train --help` for the train flags {command} accepts") from None
    except TyperException as exc:
        raise DataError(f"{command}: {exc.format_message()}; see `arenapref train --help` for the flags") from None
    for own in ("data", "output"):
        if params.get(own) is not None:
            raise DataError(f"{command}: --{own} is an option of {command} itself, give it once")
    return params


def _check_cv_inputs(cfg, output: Path) -> None:
    """As for train: the data and the output directory are checked before any fold starts."""
    from arenapref.data.tables import check_output_dir, load_frame

    check_output_dir(output)
    for path in [cfg.data, *(cfg.extra or [])]:
        load_frame(path, require_labels=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cv(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Labelled file; folds are grouped by prompt."),
    output: Path = typer.Option(..., help="Directory for oof.csv (out-of-fold predictions) and cv_metrics.json."),
    folds: int = typer.Option(5, help="Number of folds."),
    keep_models: bool = typer.Option(False, "--keep-models", help="Keep each fold's model directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
):
    """Grouped K-fold cross-validation of any recipe; every other flag is a `train` flag (e.g. --model gbdt)."""
    from arenapref.config import load_config
    from arenapref.training.cv import cross_validate

    params = parse_train_flags(ctx.args, "cv")
    overrides = train_overrides(params)
    overrides.update(data=str(data), output=str(output / "fold"))
    cfg = load_config(params.get("config"), overrides)
    _check_cv_inputs(cfg, output)
    _quiet_libraries(_uses_transformers(cfg.model))
    log = (lambda *a: None) if as_json else (lambda msg: err_console.print(msg, markup=False, highlight=False))
    # The Trainer prints its logs to stdout (tqdm.write); with --json stdout holds the JSON object alone.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = cross_validate(cfg, folds, output, keep_models, log)
    if as_json:
        print(json.dumps({k: result[k] for k in ("model", "folds", "rows", "per_fold", "summary", "out_of_fold")}))
        return
    table = Table(title=f"{folds}-fold grouped CV of {cfg.model} on {data} ({result['seconds']:.0f}s)")
    table.add_column("fold", justify="right")
    for key in ("rows", "log_loss", "accuracy", "f1_macro", "ece"):
        table.add_column(key, justify="right")
    for m in result["per_fold"]:
        table.add_row(str(m["fold"] + 1), str(m["rows"]), *(f"{m[k]:.4f}" for k in ("log_loss", "accuracy", "f1_macro", "ece")))
    summary = result["summary"]
    table.add_row("mean ± std", str(result["rows"]),
                  *(f"{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in ("log_loss", "accuracy", "f1_macro", "ece")))
    console.print(table)
    console.print(f"out-of-fold log loss {result['out_of_fold']['log_loss']:.4f} "
                  f"(prior {result['out_of_fold']['prior_log_loss']:.4f}); wrote {output / 'oof.csv'} and "
                  f"{output / 'cv_metrics.json'}")


@app.command()
def ensemble(
    predictions: list[Path] = typer.Argument(..., help="Prediction CSVs (id + 3 probabilities) to blend."),
    output: Path = typer.Option(..., help="CSV to write: the blended predictions."),
    weights: Optional[str] = typer.Option(None, help="Comma-separated weights, one per file (default: equal)."),
    fit_on: Optional[Path] = typer.Option(None, help="Labelled file: fit the weights on these rows (use oof.csv)."),
    method: str = typer.Option("linear", help="linear (probability average) or loglinear (log-probability sum)."),
):
    """Blend prediction files with given weights, or fit the weights to minimise log loss on labelled rows."""
    import numpy as np
    import pandas as pd

    from arenapref.data.tables import check_output_path, load_frame, write_csv_atomic
    from arenapref.evaluation.ensemble import (
        METHODS,
        align,
        blend,
        fit_weights,
        read_predictions,
    )
    from arenapref.evaluation.metrics import log_loss

    if method not in METHODS:
        raise DataError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if weights is not None and fit_on is not None:
        raise DataError("--weights and --fit-on are exclusive: give weights, or fit them on labelled rows")
    check_output_path(output)
    frames = [read_predictions(p) for p in predictions]
    if fit_on is not None:
        labelled = load_frame(fit_on, require_labels=True)
        ids, arrays = align(frames, predictions, labelled["id"])
        labels = labelled["label"].to_numpy()
        chosen = fit_weights(arrays, labels, method)
        for path, array, w in zip(predictions, arrays, chosen):
            console.print(f"{path}: log loss {log_loss(labels, array):.4f}, weight {w:.4f}")
        console.print(f"blend ({method}): log loss {log_loss(labels, blend(arrays, chosen, method)):.4f} "
                      f"on {len(labels)} rows of {fit_on}")
    else:
        ids, arrays = align(frames, predictions)
        if weights is None:
            chosen = np.full(len(arrays), 1.0 / len(arrays))
        else:
            try:
                chosen = np.array([float(w) for w in weights.split(",")])
            except ValueError:
                raise DataError(f"--weights {weights!r}: expected comma-separated numbers, e.g. 0.7,0.3") from None
            if len(chosen) != len(arrays) or (chosen < 0).any() or chosen.sum() <= 0:
                raise DataError(f"--weights {weights!r}: need {len(arrays)} non-negative numbers, not all zero")
    blended = blend(arrays, chosen, method)
    out = pd.DataFrame({"id": ids})
    out[list(LABELS)] = round_rows(blended, 6)
    write_csv_atomic(out, output, float_format="%.6f")
    console.print(f"weights {','.join(f'{w:.4f}' for w in chosen)}; wrote {len(out)} rows to {output}")


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="Labelled file to score."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, or swap (average with A/B swapped)."),
    dtype: str = typer.Option("fp32", help=DTYPE_HELP),
    quantize: str = typer.Option("none", help=QUANTIZE_HELP),
    batch_tokens: Optional[int] = typer.Option(None, help=BATCH_TOKENS_HELP),
    workers: Optional[int] = typer.Option(None, help=WORKERS_HELP),
):
    """Log loss, accuracy, precision / recall / F1 and the confusion matrix on a labelled file (Kaggle columns or
    chosen/rejected pairs), plus RewardBench-style pairwise accuracy and the longer-answer baseline."""
    from arenapref.data.tables import load_frame
    from arenapref.models.directory import check_model_dir

    options = _speed_options(dtype, quantize, batch_tokens, workers)
    meta = check_model_dir(model)
    _check_speed_options_apply(options, meta, model)
    frame = load_frame(data, require_labels=True)
    _quiet_libraries(_uses_transformers(meta["model_type"]))
    from arenapref.api import Judge, check_tta
    from arenapref.evaluation.metrics import (
        classification_metrics,
        frame_length_slices,
        frame_pairwise_accuracy,
        softmax,
    )

    check_tta(tta)
    judge = Judge.from_pretrained(model, **options)
    logits, scores = judge.predict_logits(frame, tta=tta)
    probs = softmax(logits)
    metrics = {**classification_metrics(frame["label"].to_numpy(), probs), **frame_length_slices(frame, probs),
               "pairwise": frame_pairwise_accuracy(frame, probs, scores if judge.scores_sides else None)}
    if as_json:
        print(json.dumps(metrics))
    else:
        console.print(metrics_table(metrics, f"{data} ({model})"))
        for name in ("shorter_won", "longer_won"):
            part = metrics[name]
            if part["rows"]:
                console.print(f"rows where the {name.replace('_', ' ')}: {part['rows']}, log loss "
                              f"{part['log_loss']:.4f}, accuracy {part['accuracy']:.4f}")
        if metrics["pairwise"]["rows"]:
            console.print(pairwise_table(metrics["pairwise"]))


def pairwise_table(pairwise: dict) -> Table:
    """RewardBench-style accuracy (and the longer-answer baseline), overall and per subset."""
    how = "score(chosen) > score(rejected)" if pairwise["by"] == "score" else "P(chosen) > P(rejected)"
    table = Table(title=f"pairwise accuracy: {how}",
                  caption="rows with a winner; strictly above (equal counts as wrong, as in RewardBench)")
    for col, justify in (("subset", "left"), ("rows", "right"), ("accuracy", "right"), ("longer wins", "right")):
        table.add_column(col, justify=justify)
    for name, part in [*pairwise.get("subsets", {}).items(), ("all", pairwise)]:
        table.add_row(name, str(part["rows"]), f"{part['accuracy']:.4f}", f"{part['longer_wins']:.4f}")
    return table


@app.command()
def predict(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="File to score (labels not needed)."),
    output: Path = typer.Option(..., help="CSV to write: id,winner_model_a,winner_model_b,winner_tie (+ chosen_side "
                                          "for chosen/rejected input)."),
    scores: bool = typer.Option(False, "--scores", help="Add score_a, score_b (rank models)."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, or swap (average with A/B swapped)."),
    dtype: str = typer.Option("fp32", help=DTYPE_HELP),
    quantize: str = typer.Option("none", help=QUANTIZE_HELP),
    batch_tokens: Optional[int] = typer.Option(None, help=BATCH_TOKENS_HELP),
    workers: Optional[int] = typer.Option(None, help=WORKERS_HELP),
    chunk_rows: int = typer.Option(20_000, help="Rows read and scored at a time (memory stays bounded on any file)."),
):
    """Write a Kaggle submission: one row of probabilities per input row, same order."""
    from arenapref.data.tables import check_output_path, iter_frames
    from arenapref.models.directory import check_model_dir

    options = _speed_options(dtype, quantize, batch_tokens, workers)
    check_output_path(output)
    meta = check_model_dir(model)
    _check_speed_options_apply(options, meta, model)
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    chunks = iter_frames(data, chunk_rows)
    first = next(chunks)  # a bad file fails here, before the model is loaded
    _quiet_libraries(_uses_transformers(meta["model_type"]))
    from arenapref.api import Judge, check_tta

    check_tta(tta)
    judge = Judge.from_pretrained(model, **options)
    rows = stream_predictions(judge, itertools.chain([first], chunks), output, scores, tta)
    console.print(f"wrote {rows} rows to {output}")


def stream_predictions(judge, chunks, output: Path, scores: bool, tta: str) -> int:
    """Score chunk after chunk into a temporary file beside OUTPUT, renamed over it at the end (atomic)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from arenapref.data.tables import atomic_path

    written = 0
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh, Progress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
            transient=True, disable=not err_console.is_terminal) as bar:
        task = None
        for frame, total in chunks:
            if task is None:
                task = bar.add_task("rows", total=total)
            out = judge.predict_frame(frame, scores=scores, tta=tta, progress=lambda k: bar.advance(task, k))
            out[list(LABELS)] = round_rows(out[list(LABELS)].to_numpy(), 6)
            if frame.attrs.get("pairwise"):  # chosen/rejected input: where its seeded sides put the chosen one
                out["chosen_side"] = ["a" if label == 0 else "b" for label in frame["label"]]
            out.to_csv(fh, index=False, header=written == 0, float_format="%.6f")
            written += len(out)
    return written


@app.command()
def split(
    data: Path = typer.Option(..., help="Labelled file to split."),
    output: Path = typer.Option(..., help="Directory for train.csv and holdout.csv."),
    holdout_fraction: float = typer.Option(0.2, help="Share of rows held out."),
    seed: int = typer.Option(42),
):
    """Split a file into train.csv / holdout.csv with no prompt on both sides."""
    from arenapref.data.split import grouped_split
    from arenapref.data.tables import (
        check_output_dir,
        load_frame,
        to_kaggle,
        write_csv_atomic,
    )

    check_output_dir(output)
    frame = load_frame(data)
    train_part, holdout_part = grouped_split(frame, holdout_fraction, seed)
    output.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(to_kaggle(train_part), output / "train.csv")
    write_csv_atomic(to_kaggle(holdout_part), output / "holdout.csv")
    console.print(f"{len(train_part)} train rows, {len(holdout_part)} holdout rows -> {output}")


@app.command()
def label(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train` (the judge)."),
    data: Path = typer.Option(..., help="Pairs to judge: Kaggle columns (labels not needed) or prompt/chosen/rejected."),
    output: Path = typer.Option(..., help="File to write, by extension: .jsonl, .parquet or .csv (one-turn pairs)."),
    min_confidence: float = typer.Option(0.0, help="Keep pairs whose max(P(A wins), P(B wins)) is at least this."),
    both_orders: bool = typer.Option(False, "--both-orders", help="Judge each pair in both orders and average "
                                                                  "(cancels position bias; twice the compute; a "
                                                                  "rank model scores each side alone: no effect)."),
    dtype: str = typer.Option("fp32", help=DTYPE_HELP),
    quantize: str = typer.Option("none", help=QUANTIZE_HELP),
    batch_tokens: Optional[int] = typer.Option(None, help=BATCH_TOKENS_HELP),
    workers: Optional[int] = typer.Option(None, help=WORKERS_HELP),
):
    """Judge-labelled pairs for DPO / reward training: prompt, chosen, rejected in TRL's format, plus p_chosen,
    p_rejected, p_tie and margin, for the pairs the judge is confident about (predicted ties dropped)."""
    from arenapref.data.tables import check_table_output, load_frame, write_table_atomic
    from arenapref.models.directory import check_model_dir

    options = _speed_options(dtype, quantize, batch_tokens, workers)
    if not 0.0 <= min_confidence <= 1.0:
        raise DataError(f"--min-confidence {min_confidence}: must be between 0 and 1")
    check_table_output(output)
    meta = check_model_dir(model)
    _check_speed_options_apply(options, meta, model)
    frame = load_frame(data)
    conversational = frame.attrs.get("pairwise") == "conversational" or any(len(p) > 1 for p in frame["prompt"])
    if conversational and output.suffix.lower() == ".csv":
        why = "the input is conversational" if frame.attrs.get("pairwise") == "conversational" else \
            "some rows have several turns"
        raise DataError(f"{output}: {why}, so the pairs are lists of messages, which a CSV cell cannot hold in "
                        f"TRL's format; write {output.with_suffix('.jsonl')} or .parquet")
    _quiet_libraries(_uses_transformers(meta["model_type"]))
    from arenapref.api import Judge
    from arenapref.data.formats import judged_pairs
    from arenapref.evaluation.metrics import softmax

    judge = Judge.from_pretrained(model, **options)
    # A per-response score reads each side alone, so it needs no second order (and margin stays s_c - s_r).
    logits, scores = judge.predict_logits(frame, tta="swap" if both_orders and not judge.scores_sides else "none")
    pairs, counts = judged_pairs(frame, softmax(logits), scores if judge.scores_sides else None, min_confidence,
                                 conversational)
    write_table_atomic(pairs, output)
    console.print(f"kept {counts['kept']} of {counts['rows']} pairs ({counts['ties']} predicted ties, "
                  f"{counts['unsure']} under --min-confidence {min_confidence:g} dropped); wrote "
                  f"{'conversational' if conversational else 'string'} pairs to {output}")


@app.command()
def export(
    model: Path = typer.Option(..., help="Rank-objective model directory (llm, or dual-tower with --no-head-features)."),
    output: Path = typer.Option(..., help="New directory for the reward model."),
):
    """Write a rank model as a scalar reward model: a Hugging Face *ForSequenceClassification directory with one
    output that transformers loads without arenapref (TRL, OpenRLHF, vLLM conventions)."""
    from arenapref.export.reward_model import exportable_meta

    exportable_meta(model)  # a model without per-response scores fails here, before torch loads
    _quiet_libraries()
    from arenapref.export.reward_model import export_reward_model

    summary = export_reward_model(model, output)
    remote = ", trust_remote_code=True" if summary["trust_remote_code"] else ""
    console.print(f"wrote {output}: {summary['architecture']} with num_labels=1 (Davidson log nu "
                  f"{summary['davidson_log_nu']:.4f}); load it with "
                  f"AutoModelForSequenceClassification.from_pretrained(\"{output}\"{remote})")


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
    from arenapref.models.directory import check_model_dir

    check_model_dir(model)
    from arenapref.serve import port_free, run

    if not port_free(host, port):
        raise DataError(f"{host}:{port} is in use or not an address of this machine; pass another --port or --host")
    _quiet_libraries()
    from arenapref.api import Judge

    judge = Judge.from_pretrained(model)
    err_console.print(f"serving {model} on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    run(judge, host, port, batch_wait_ms=batch_wait_ms, max_items=max_items, max_body_bytes=max_body_bytes)


@app.command()
def leaderboard(
    data: Path = typer.Option(..., help="Battles: model_a, model_b and votes (winner_model_a/_b/_tie or winner)."),
    predictions: Optional[Path] = typer.Option(None, help="A judge's predictions for the same battles (id + 3 "
                                                          "probabilities, as `arenapref predict` writes)."),
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples of the battles for the 95% intervals "
                                                       "(--ci bootstrap; default 100, 0: no intervals)."),
    ci: str = typer.Option("bootstrap", help="bootstrap (resample the battles) or sandwich (intervals from the one "
                                             "fit's robust covariance, no resampling)."),
    style_control: bool = typer.Option(False, "--style-control", help="Also rate with the responses' length and "
                                       "markdown (headers, lists, bold) taken out; reads response_a/response_b."),
    output: Optional[Path] = typer.Option(None, help="Directory for leaderboard.csv and leaderboard.png."),
    ties: str = typer.Option("half", help="half (a tie is half a win each way, as LMSYS) or davidson."),
    anchor: Optional[str] = typer.Option(None, help="Model fixed at 1000; default: the mean rating is 1000."),
    min_battles: int = typer.Option(1, help="Leave out models with fewer battles (and their battles)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
):
    """Bradley-Terry ratings on the Elo scale with 95% intervals, from votes and/or a judge's predictions,
    optionally style controlled."""
    from arenapref.ratings.leaderboard import (
        CI_METHODS,
        drop_rare_models,
        load_battles,
        load_predictions,
        write_leaderboards,
    )

    if ties not in ("half", "davidson"):
        raise DataError(f"--ties {ties}: expected half or davidson")
    if ci not in CI_METHODS:
        raise DataError(f"--ci {ci}: expected {' or '.join(CI_METHODS)}")
    if bootstrap is not None and bootstrap < 0:
        raise DataError(f"--bootstrap {bootstrap}: must be 0 or more")
    if ci == "sandwich" and bootstrap:
        raise DataError(f"--ci sandwich takes its intervals from the fit, without resampling; drop --bootstrap "
                        f"{bootstrap} (or use --ci bootstrap)")
    rounds = (100 if bootstrap is None else bootstrap) if ci == "bootstrap" else 0
    if output is not None:
        from arenapref.data.tables import check_output_dir

        check_output_dir(output)
    battles = drop_rare_models(load_battles(data, style=style_control), min_battles)
    tables = {}
    if "winner" in battles.columns:
        tables["votes"] = battles["winner"].to_numpy()
    if predictions is not None:
        tables["judge"] = load_predictions(predictions, battles["id"])
    if not tables:
        raise DataError(f"{data}: has no votes (winner_model_a/_b/_tie or winner columns) and no --predictions "
                        "were given; nothing to rate")
    total = rounds * len(tables) * (2 if style_control else 1)
    with _bootstrap_progress(total) as advance:
        boards, summary = write_leaderboards(battles, tables, output, bootstrap=rounds, ties=ties, anchor=anchor,
                                             seed=seed, ci=ci, style=style_control, progress=advance)
    console.print(leaderboard_table(boards, summary))
    if output is not None:
        console.print(f"wrote {', '.join(summary['files'])} to {output}")


class _bootstrap_progress:
    """A rich progress bar on stderr over `total` bootstrap rounds (nothing when there are none); the context
    yields the callback the library calls with each batch of finished rounds."""

    def __init__(self, total: int):
        self.total = total
        self.progress = None

    def __enter__(self):
        if self.total <= 0 or not err_console.is_terminal:  # a log file gets no bar (and no stray blank line)
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("bootstrap"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=err_console, transient=True)
        self.progress.start()
        task = self.progress.add_task("bootstrap", total=self.total)
        return lambda rounds: self.progress.advance(task, rounds)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def leaderboard_table(boards: dict, summary: dict) -> Table:
    import math

    names = list(boards)
    tables = {name: board.table for name, board in boards.items()}
    first = tables[names[0]]
    styled = summary.get("style_control", False)
    table = Table(title=f"Bradley-Terry ratings, Elo scale ({summary['battles']} battles, ties: {summary['ties']}, "
                        f"95% intervals: {summary['ci']})")
    table.add_column("#", justify="right")
    table.add_column("model")
    for name in names:
        table.add_column(f"{name} rating", justify="right")
        table.add_column("95% CI", justify="right", no_wrap=True)
        if styled:
            table.add_column(f"{name} style-controlled", justify="right")
            table.add_column("95% CI", justify="right", no_wrap=True)
            table.add_column("style rank (change)", justify="right")
    table.add_column("battles", justify="right")
    indexed = {name: board.set_index("model") for name, board in tables.items()}

    def interval(low, high):
        return "-" if math.isnan(low) else f"[{low:.0f}, {high:.0f}]"

    for i, row in first.iterrows():
        cells = []
        for name in names:
            r = indexed[name].loc[row["model"]]
            cells += [f"{r['rating']:.0f}", interval(r["ci_low"], r["ci_high"])]
            if styled:
                cells += [f"{r['style_rating']:.0f}", interval(r["style_ci_low"], r["style_ci_high"]),
                          f"{int(r['style_rank'])} ({int(r['rank'] - r['style_rank']):+d})"]
        table.add_row(str(i + 1), row["model"], *cells, str(row["battles"]))
    captions = []
    if "spearman" in summary:
        captions.append(f"rank correlation, votes vs judge: Spearman {summary['spearman']:.3f}, "
                        f"Kendall {summary['kendall']:.3f} ({summary['models']} models)")
    if styled:
        for name, board in boards.items():
            coefs = ", ".join(f"{c.feature} {c.coef:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                              if not math.isnan(c.ci_low) else f"{c.feature} {c.coef:+.3f}"
                              for c in board.style.itertuples())
            captions.append(f"style coefficients ({name}, log-odds per sd): {coefs}")
    if captions:
        table.caption = "\n".join(captions)
    return table


STRATEGY_HELP = ("random (the default: no strategy beat it in bench/active.py on arena data, see the README), entropy "
                 "(most uncertain), margin (top two outcomes closest), swap-disagreement (the A/B and B/A answers "
                 "differ most), committee (models disagree most).")


def _pool(data: Path, exclude: Optional[list[Path]]):
    """The pool of battles (labels not needed) without the --exclude ids; at least one row must remain."""
    from arenapref.data.tables import load_frame
    from arenapref.labeling.strategies import drop_excluded

    frame = load_frame(data)
    pool, dropped = drop_excluded(frame, exclude)
    if len(pool) == 0:
        raise DataError(f"{data}: all {len(frame)} battles are excluded (--exclude); nothing left to choose from")
    return frame, pool, dropped


@app.command()
def select(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="Pool of unlabelled battles (id, prompt, response_a, response_b)."),
    count: int = typer.Option(..., help="How many battles to pick for human labelling."),
    output: Path = typer.Option(..., help="CSV to write: rank, id, strategy, score, prob_model_a, prob_model_b, "
                                          "prob_tie, best first."),
    strategy: str = typer.Option("random", help=STRATEGY_HELP),
    diverse: bool = typer.Option(False, "--diverse", help="A batch without near-duplicates: cluster the 5 x COUNT "
                                                          "best-scoring battles on their features, best of each."),
    committee: Optional[list[Path]] = typer.Option(None, help="--strategy committee: model directories, or an "
                                                              "`arenapref cv --keep-models` output (repeat)."),
    exclude: Optional[list[Path]] = typer.Option(None, help="File(s) with an id column: battles already labelled "
                                                            "or picked, never picked again (repeat)."),
    seed: int = typer.Option(0, help="Seed of the random strategy and of the diverse batch's clustering."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of text."),
):
    """Choose which battles of a pool humans should label next: the COUNT whose label is expected to help most."""
    import numpy as np

    from arenapref.data.tables import check_output_path, write_csv_atomic
    from arenapref.labeling.strategies import check_strategy, committee_dirs
    from arenapref.models.directory import check_model_dir

    check_strategy(strategy)
    if count < 1:
        raise DataError(f"--count {count}: must be at least 1")
    if committee and strategy != "committee":
        raise DataError(f"--committee is used by --strategy committee only (got --strategy {strategy})")
    check_output_path(output)
    meta = check_model_dir(model)
    members = committee_dirs(committee) if committee else []
    if strategy == "committee" and not members and meta["model_type"] != "hybrid":
        raise DataError("--strategy committee needs models that can disagree: pass --committee DIR (the output of "
                        "`arenapref cv --keep-models`, or model directories; repeat), or a hybrid --model")
    frame, pool, dropped = _pool(data, exclude)
    metas = [meta] + [check_model_dir(d) for d in members]
    _quiet_libraries(any(_uses_transformers(m["model_type"]) for m in metas))
    from arenapref.api import Judge
    from arenapref.labeling.strategies import picks_frame, score_pool

    judge = Judge.from_pretrained(model)
    judges = [Judge.from_pretrained(d) for d in members]
    if strategy == "committee" and not judges:  # a hybrid: its parts are the committee
        judges = [part for _, part in judge.backend.parts]
    result = score_pool(judge, pool, strategy, count, committee=judges, diverse=diverse, seed=seed)
    name = strategy + ("+diverse" if diverse else "")
    out = picks_frame(pool, result, name)
    out[["prob_model_a", "prob_model_b", "prob_tie"]] = round_rows(out[["prob_model_a", "prob_model_b",
                                                                        "prob_tie"]].to_numpy(), 6)
    write_csv_atomic(out, output, float_format="%.6f")
    scores = result["scores"]
    summary = {"picked": len(out), "pool": len(frame), "excluded": dropped, "candidates": len(pool),
               "strategy": name, "score_picked_min": float(out["score"].min()),
               "score_picked_max": float(out["score"].max()), "score_pool_median": float(np.median(scores)),
               "output": str(output)}
    if as_json:
        print(json.dumps(summary))
        return
    if len(out) < count:
        err_console.print(f"note: only {len(out)} battles left to pick from, asked for {count}", markup=False)
    console.print(f"picked {len(out)} of {len(pool)} battles ({dropped} excluded) by {name}: scores "
                  f"{summary['score_picked_min']:.4f}-{summary['score_picked_max']:.4f} (pool median "
                  f"{summary['score_pool_median']:.4f}); wrote {output}")


@app.command("auto-label")
def auto_label(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    data: Path = typer.Option(..., help="Pool of unlabelled battles (id, prompt, response_a, response_b)."),
    output: Path = typer.Option(..., help="CSV to write: the auto-labelled battles in the Kaggle layout (predicted "
                                          "winner one-hot) plus prob_model_a, prob_model_b, prob_tie, confidence."),
    max_error: float = typer.Option(0.1, help="Largest expected error allowed: the mean of 1 - max probability "
                                               "over the auto-labelled battles."),
    exclude: Optional[list[Path]] = typer.Option(None, help="File(s) with an id column: battles to leave out "
                                                            "(repeat)."),
    check: Optional[Path] = typer.Option(None, help="Labelled file: apply the same confidence threshold there and "
                                                    "report the realised error beside the expected one."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of text."),
):
    """The battles the judge is confident enough about to skip human review, at a chosen expected error rate."""
    from arenapref.data.tables import check_output_path, load_frame, write_csv_atomic
    from arenapref.labeling.strategies import (
        auto_label_frame,
        calibration_summary,
        confident_rows,
        error_at,
    )
    from arenapref.models.directory import check_model_dir

    if not 0.0 < max_error < 1.0:
        raise DataError(f"--max-error {max_error}: must be between 0 and 1 (e.g. 0.1 for 10% expected errors)")
    check_output_path(output)
    meta = check_model_dir(model)
    frame, pool, dropped = _pool(data, exclude)
    checked = load_frame(check, require_labels=True) if check is not None else None
    _quiet_libraries(_uses_transformers(meta["model_type"]))
    from arenapref.api import Judge

    judge = Judge.from_pretrained(model)
    probs = judge.predict_proba(pool)
    rows, expected, threshold = confident_rows(probs, max_error)
    calibration = calibration_summary(meta)
    write_csv_atomic(auto_label_frame(pool, probs, rows), output, float_format="%.6f")
    if len(rows) == 0:  # a valid answer, not an error: the file has the header and no rows
        best = float(1 - probs.max(axis=1).max())
        message = (f"no battle of {data} is confident enough for --max-error {max_error:g} (the most confident has "
                   f"expected error {best:.3f}); wrote {output} with no rows: label these by hand or raise --max-error")
        if as_json:
            print(json.dumps({"auto_labelled": 0, "candidates": int(len(pool)), "excluded": dropped,
                              "max_error": max_error, "best_expected_error": best, "calibration": calibration,
                              "output": str(output)}))
        else:
            console.print(message)
        return
    summary = {"auto_labelled": int(len(rows)), "candidates": int(len(pool)), "excluded": dropped,
               "share": len(rows) / len(pool), "max_error": max_error, "expected_error": expected,
               "min_confidence": threshold, "calibration": calibration, "output": str(output)}
    labels = pool["label"].to_numpy()[rows]
    if (labels >= 0).all():  # the pool was labelled after all: the realised error on the very rows written
        summary["realised_error"] = float((probs[rows].argmax(axis=1) != labels).mean())
    if checked is not None:
        summary["check"] = {"data": str(check), **error_at(judge.predict_proba(checked), checked["label"].to_numpy(),
                                                            threshold)}
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"auto-labelled {len(rows)} of {len(pool)} battles ({len(rows) / len(pool):.1%}; {dropped} "
                  f"excluded): confidence >= {threshold:.4f}, expected error {expected:.4f} (--max-error "
                  f"{max_error:g}); wrote {output}")
    console.print(f"calibration it rests on: {calibration['text']}")
    if "realised_error" in summary:
        console.print(f"realised error on these rows (labels in {data}): {summary['realised_error']:.4f}")
    if checked is not None:
        c = summary["check"]
        if c["rows"]:
            console.print(f"check on {check}: {c['rows']} of {c['of']} rows at confidence >= {threshold:.4f}, "
                          f"expected error {c['expected_error']:.4f}, realised {c['realised_error']:.4f}")
        else:
            console.print(f"check on {check}: no row of {c['of']} reaches confidence {threshold:.4f}")


@app.command()
def report(
    output: Path = typer.Option(..., help="Directory for index.html and its PNG figures."),
    model: Optional[Path] = typer.Option(None, help="Model directory written by `arenapref train`."),
    data: Optional[Path] = typer.Option(None, help="Labelled file to analyse (with --model)."),
    campaign: Optional[Path] = typer.Option(None, help="Output directory of `python bench/active.py --output`: "
                                                       "adds its learning curves and labels saved per strategy."),
    worst: int = typer.Option(20, help="How many worst-predicted rows to list."),
):
    """An HTML report: metrics, reliability before/after calibration, confusion matrix, log loss by length and
    turns, position bias, worst-predicted rows; and / or a selection campaign's learning curves."""
    from arenapref.data.tables import check_output_dir, load_frame
    from arenapref.models.directory import check_model_dir

    if (model is None) != (data is None):
        raise DataError("report: --model and --data go together (a model and the labelled rows to judge it on)")
    if model is None and campaign is None:
        raise DataError("report: nothing to report; pass --model and --data, and / or --campaign DIR")
    if model is not None:
        check_model_dir(model)
    check_output_dir(output)
    frame = load_frame(data, require_labels=True) if data is not None else None
    from arenapref.evaluation.report import load_campaign, write_report

    curves = load_campaign(campaign) if campaign is not None else None
    judge = None
    if model is not None:
        _quiet_libraries()
        from arenapref.api import Judge

        judge = Judge.from_pretrained(model)
    path = write_report(judge, frame, output, model_name=str(model or ""), data_name=str(data or ""), worst=worst,
                        campaign=curves)
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
