"""evaluate, predict and ensemble: scoring files with a trained model, and blending prediction files. The inference
flags (--dtype, --quantize, --batch-tokens, --workers) are generated from config.InferenceOptions; `compare`
(cli/compare.py) shares them and MODEL / TTA / DIAGNOSTICS."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arenapref.api import Judge, check_tta, concat_predictions
from arenapref.cli.common import (
    JUDGE_HELP,
    checked_model,
    console,
    err_console,
    launch_device,
    quiet_libraries,
    round_rows,
    uses_transformers,
)
from arenapref.cli.options import with_options
from arenapref.cli.tables import (
    consistency_table,
    diagnostics_summary_table,
    metrics_table,
    pairwise_table,
    style_table,
)
from arenapref.config import InferenceOptions
from arenapref.data.predictions import read_predictions
from arenapref.data.tables import LABELS, atomic_path, check_output_path, iter_frames, load_frame, write_csv_atomic
from arenapref.errors import DataError
from arenapref.evaluation.ensemble import METHODS, align, blend, fit_weights
from arenapref.evaluation.metrics import (
    classification_metrics,
    diagnostics_summary,
    frame_length_slices,
    frame_pairwise_accuracy,
    log_loss,
)
from arenapref.inference.sharded import Launch, ShardedRun, merge_parts, run_launched, write_block

MODEL = typer.Option(..., help="Model directory written by `arenapref train`.")
TTA = typer.Option("none", help="Test-time augmentation: none, or swap (average with A/B swapped).")
DIAGNOSTICS_HELP = ("Per-row diagnostics: tokens kept of each field and turn, rounds dropped, whether anything was "
                    "cut, warnings for empty prompts and empty or identical responses, and with --tta swap how far "
                    "the two orders disagree.")
DIAGNOSTICS = typer.Option(False, "--diagnostics", help=DIAGNOSTICS_HELP)
FORMATS = ("csv", "jsonl")


def ensemble(
    predictions: list[Path] = typer.Argument(..., help="Prediction CSVs (id + 3 probabilities) to blend."),
    output: Path = typer.Option(..., help="CSV to write: the blended predictions."),
    weights: str | None = typer.Option(None, help="Comma-separated weights, one per file (default: equal)."),
    fit_on: Path | None = typer.Option(None, help="Labelled file: fit the weights on these rows (use oof.csv)."),
    method: str = typer.Option("linear", help="linear (probability average) or loglinear (log-probability sum)."),
):
    """Blend prediction files with given weights, or fit the weights to minimise log loss on labelled rows."""
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


@with_options(InferenceOptions, into="inference")
def evaluate(
    model: Path = MODEL,
    data: Path = typer.Option(..., help="Labelled file to score."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    tta: str = TTA,
    diagnostics: bool = typer.Option(False, "--diagnostics",
                                     help="Add counts of the per-row diagnostics: rows cut to fit the model, rows "
                                          "with rounds dropped, each warning (see `predict --diagnostics`)."),
    inference: dict = None,
):
    """Log loss, accuracy, precision / recall / F1 and the confusion matrix on a labelled file (Kaggle columns or
    chosen/rejected pairs), plus RewardBench-style pairwise accuracy, the longer-answer baseline and position
    consistency (how often the top label flips when A and B are exchanged).

    Under `torchrun --nproc_per_node N -m arenapref evaluate ...` (or `accelerate launch`) each process scores a
    share of the rows on its own device and rank 0 computes the metrics on all of them (docs/scale-out.md)."""
    run_launched(evaluate_rows, model, data, as_json, tta, diagnostics, inference)


def evaluate_rows(model, data, as_json, tta, diagnostics, inference, run: ShardedRun | None = None):
    options = InferenceOptions(**inference).validate()
    model, meta = checked_model(model, options, say=run is None or run.is_main)
    frame = load_frame(data, require_labels=True)
    quiet_libraries(uses_transformers(meta["model_type"]))
    check_tta(tta)
    options.check_tta(tta)
    judge = Judge.from_pretrained(model, **options.load_kwargs(), **launch_device(run))
    # Both orders from the passes the answer needs anyway (a neural model: two, with or without --tta swap).
    if run is None:
        result = judge.predict_all(frame, tta=tta, both_orders=True, diagnostics=diagnostics)
    else:
        share = frame.iloc[run.launch.share(len(frame))].reset_index(drop=True)
        part = judge.predict_all(share, tta=tta, both_orders=True, diagnostics=diagnostics) if len(share) else None
        run.report(len(share), len(frame))
        parts = run.gather_main(part)
        if not run.is_main:
            return
        result = concat_predictions([p for p in parts if p is not None])
    probs = result.probs
    metrics = {**classification_metrics(frame["label"].to_numpy(), probs), **frame_length_slices(frame, probs),
               "pairwise": frame_pairwise_accuracy(frame, probs, result.scores if judge.scores_sides else None),
               "position_consistency": result.position_consistency()}
    if diagnostics:
        metrics["diagnostics"] = diagnostics_summary(result.diagnostics)
    metrics["style"] = options.style
    coefficients = judge.style_coefficients()
    if coefficients is not None:
        metrics["style_coefficients"] = coefficients
    if as_json:
        print(json.dumps(metrics))
        return
    controlled = ", style controlled" if options.style == "controlled" else ""
    console.print(metrics_table(metrics, f"{data} ({model}{controlled})"))
    for name in ("shorter_won", "longer_won"):
        part = metrics[name]
        if part["rows"]:
            console.print(f"rows where the {name.replace('_', ' ')}: {part['rows']}, log loss "
                          f"{part['log_loss']:.4f}, accuracy {part['accuracy']:.4f}")
    if metrics["pairwise"]["rows"]:
        console.print(pairwise_table(metrics["pairwise"]))
    console.print(consistency_table(metrics["position_consistency"], tta))
    if coefficients is not None:
        console.print(style_table(coefficients, options.style))
    if diagnostics:
        console.print(diagnostics_summary_table(metrics["diagnostics"]))


@with_options(InferenceOptions, into="inference")
def predict(
    model: Path | None = typer.Option(None, help=JUDGE_HELP),
    data: Path = typer.Option(..., help="File to score (labels not needed)."),
    output: Path = typer.Option(..., help="File to write: id,winner_model_a,winner_model_b,winner_tie (+ chosen_side "
                                          "for chosen/rejected input), as CSV or JSON lines (--format)."),
    scores: bool = typer.Option(False, "--scores", help="Add score_a, score_b (rank models)."),
    tta: str = TTA,
    output_format: str | None = typer.Option(
        None, "--format", metavar="[csv|jsonl]",
        help="csv: the Kaggle submission; jsonl: one JSON object per row with the probabilities, the verdict "
             "(a_wins, b_wins, tie or ambiguous) and, with --diagnostics, the row's diagnostics. Default: jsonl "
             "when --output ends in .jsonl, else csv."),
    diagnostics: bool = typer.Option(False, "--diagnostics", help=DIAGNOSTICS_HELP + " Needs --format jsonl."),
    inference: dict = None,
    chunk_rows: int = typer.Option(20_000, help="Rows read and scored at a time (memory stays bounded on any file)."),
    engine: str = typer.Option("local", metavar="[local|ray]",
                               help="local: this process (or each process of a torchrun / accelerate launch); ray: "
                                    "read and score with Ray Data on a Ray cluster and write --output as Parquet "
                                    "(pip install \"ray[data]\"; docs/scale-out.md)."),
    address: str | None = typer.Option(None, help="--engine ray: the cluster to use (auto: the running one; "
                                                   "default: start one on this machine)."),
):
    """Write a Kaggle submission (or JSON lines with verdicts and diagnostics): one row of probabilities per input
    row, same order.

    Under `torchrun --nproc_per_node N -m arenapref predict ...` (or `accelerate launch`) each process scores a
    share of every chunk on its own device and rank 0 merges the shares into the same file (docs/scale-out.md)."""
    if engine not in ("local", "ray"):
        raise DataError(f"--engine {engine!r}: expected local or ray")
    if engine == "ray":
        return predict_ray(model, data, output, scores, tta, output_format, diagnostics, inference, address)
    if address is not None:
        raise DataError("--address names a Ray cluster: add --engine ray (or drop --address)")
    run_launched(predict_file, model, data, output, scores, tta, output_format, diagnostics, inference, chunk_rows)


def predict_ray(model, data, output, scores, tta, output_format, diagnostics, inference, address):
    from arenapref.ray_data import predict_with_ray  # lazy: ray is an optional dependency

    for flag, given in (("--scores", scores), ("--diagnostics", diagnostics),
                        ("--format", output_format not in (None, "parquet"))):
        if given:
            raise DataError(f"{flag} is not available with --engine ray, which writes the probabilities as Parquet")
    if Launch.from_env() is not None:
        raise DataError("--engine ray spreads the work over a Ray cluster itself: run it without torchrun")
    options = InferenceOptions(**inference).validate()
    model, _ = checked_model(model, options)
    rows = predict_with_ray(model, data, output, address, tta, inference)
    console.print(f"wrote {rows} rows to {output}")


def predict_file(model, data, output, scores, tta, output_format, diagnostics, inference, chunk_rows,
                 run: ShardedRun | None = None):
    options = InferenceOptions(**inference).validate()
    output_format = check_format(output_format, output, diagnostics)
    check_output_path(output)
    model, meta = checked_model(model, options, say=run is None or run.is_main)
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    chunks = iter_frames(data, chunk_rows)
    first = next(chunks)  # a bad file fails here, before the model is loaded
    quiet_libraries(uses_transformers(meta["model_type"]))
    check_tta(tta)
    options.check_tta(tta)
    judge = Judge.from_pretrained(model, **options.load_kwargs(), **launch_device(run))
    chunks = itertools.chain([first], chunks)
    if run is None:
        rows = stream_predictions(judge, chunks, output, scores, tta, output_format, diagnostics)
    else:
        rows = stream_share(run, judge, chunks, output, scores, tta, output_format, diagnostics)
        if not run.is_main:
            return
    console.print(f"wrote {rows} rows to {output}")


def check_format(output_format: str | None, output: Path, diagnostics: bool) -> str:
    """The output format asked for (or read from OUTPUT's extension), checked against --diagnostics."""
    if output_format is None:
        output_format = "jsonl" if output.suffix.lower() == ".jsonl" else "csv"
    if output_format not in FORMATS:
        raise DataError(f"--format {output_format!r}: expected csv or jsonl")
    if diagnostics and output_format == "csv":
        raise DataError("--diagnostics writes one object per row: add --format jsonl (the Kaggle CSV has no room "
                        "for it)")
    return output_format


def score_chunk(judge, frame: pd.DataFrame, scores: bool, tta: str, jsonl: bool, diagnostics: bool,
                progress=None) -> pd.DataFrame:
    """One chunk's output rows, probabilities rounded as written."""
    out = judge.predict_frame(frame, scores=scores, tta=tta, progress=progress, verdict=jsonl,
                              diagnostics=diagnostics)
    out[list(LABELS)] = round_rows(out[list(LABELS)].to_numpy(), 6)
    if frame.attrs.get("pairwise"):  # chosen/rejected input: where its seeded sides put the chosen one
        out["chosen_side"] = ["a" if label == 0 else "b" for label in frame["label"]]
    return out


def chunk_text(out: pd.DataFrame, jsonl: bool, header: bool) -> str:
    """A chunk's rows as the output file holds them (a CSV with `header`: the column names first)."""
    if jsonl:
        return "".join(json_lines(out))
    return out.to_csv(None, index=False, header=header, float_format="%.6f")


def stream_predictions(judge, chunks, output: Path, scores: bool, tta: str, output_format: str = "csv",
                       diagnostics: bool = False) -> int:
    """Score chunk after chunk into a temporary file beside OUTPUT, renamed over it at the end (atomic)."""
    written = 0
    jsonl = output_format == "jsonl"
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh, Progress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
            transient=True, disable=not err_console.is_terminal) as bar:
        task = None
        for frame, total in chunks:
            if task is None:
                task = bar.add_task("rows", total=total)
            out = score_chunk(judge, frame, scores, tta, jsonl, diagnostics, lambda k: bar.advance(task, k))
            fh.write(chunk_text(out, jsonl, header=written == 0))
            written += len(out)
    return written


def stream_share(run: ShardedRun, judge, chunks, output: Path, scores: bool, tta: str, output_format: str,
                 diagnostics: bool) -> int:
    """A launched process's part: its slice of every chunk, written to its part file; then, once every process
    has written its part, rank 0 merges them into a temporary file beside OUTPUT renamed over it (atomic).
    Returns the rows written (rank 0) or scored (the others)."""
    jsonl = output_format == "jsonl"
    run.open_parts(output)
    scored = seen = 0
    with open(run.part_path, "w", encoding="utf-8") as fh:
        for frame, _ in chunks:
            share = frame.iloc[run.launch.share(len(frame))].reset_index(drop=True)
            share.attrs = dict(frame.attrs)
            seen += len(frame)
            if len(share) == 0:
                write_block(fh, 0, "")
                continue
            out = score_chunk(judge, share, scores, tta, jsonl, diagnostics)
            write_block(fh, len(out), chunk_text(out, jsonl, header=False),
                        "" if jsonl else out.iloc[:0].to_csv(None, index=False))
            fh.flush()
            scored += len(out)
        fh.flush()
        os.fsync(fh.fileno())
    run.report(scored, seen)
    run.gather_all(scored)  # every part is complete once every process has reported
    if not run.is_main:
        return scored
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        rows = merge_parts(run.all_parts(), fh, header=not jsonl)
        if rows != seen:  # pragma: no cover - the parts are written from the same chunks
            raise RuntimeError(f"merged {rows} rows of {seen}")
    return rows


# The order of a JSON line's keys: the Kaggle columns, the verdict, then what the flags add.
JSONL_KEYS = ("id", *LABELS, "verdict", "score_a", "score_b", "chosen_side", "diagnostics")


def json_lines(out: pd.DataFrame):
    """One JSON object per row of `predict_frame`'s output (probabilities already rounded), keys in JSONL_KEYS
    order."""
    keys = [k for k in JSONL_KEYS if k in out.columns]
    columns = [out[k].tolist() for k in keys]  # tolist: Python numbers, not numpy ones
    for values in zip(*columns):
        yield json.dumps(dict(zip(keys, values)), ensure_ascii=False) + "\n"
