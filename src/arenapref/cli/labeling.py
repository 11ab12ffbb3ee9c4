"""select, auto-label and label: which battles humans should label next, which the judge may label alone, and
judge-labelled pairs for DPO / reward training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from arenapref.api import Judge
from arenapref.cli.common import (
    checked_model,
    console,
    err_console,
    launch_device,
    quiet_libraries,
    round_rows,
    uses_transformers,
)
from arenapref.cli.options import with_options
from arenapref.config import InferenceOptions
from arenapref.data.formats import judged_pairs
from arenapref.data.tables import (
    check_output_path,
    check_table_output,
    load_frame,
    write_csv_atomic,
    write_table_atomic,
)
from arenapref.errors import DataError
from arenapref.evaluation.metrics import softmax
from arenapref.inference.sharded import ShardedRun, run_launched
from arenapref.labeling.strategies import (
    auto_label_frame,
    calibration_summary,
    check_strategy,
    committee_dirs,
    confident_rows,
    drop_excluded,
    error_at,
    picks_frame,
    score_pool,
)
from arenapref.models.directory import check_model_dir

STRATEGY_HELP = ("random (the default: no strategy beat it in bench/active.py on arena data, see docs/labeling.md), "
                 "entropy "
                 "(most uncertain), margin (top two outcomes closest), swap-disagreement (the A/B and B/A answers "
                 "differ most), committee (models disagree most).")
MODEL = typer.Option(..., help="Model directory written by `arenapref train`.")
POOL = typer.Option(..., help="Pool of unlabelled battles (id, prompt, response_a, response_b).")
AS_JSON = typer.Option(False, "--json", help="Print a JSON summary instead of text.")


def _pool(data: Path, exclude: list[Path] | None):
    """The pool of battles (labels not needed) without the --exclude ids; at least one row must remain."""
    frame = load_frame(data)
    pool, dropped = drop_excluded(frame, exclude)
    if len(pool) == 0:
        raise DataError(f"{data}: all {len(frame)} battles are excluded (--exclude); nothing left to choose from")
    return frame, pool, dropped


def select(
    model: Path = MODEL,
    data: Path = POOL,
    count: int = typer.Option(..., help="How many battles to pick for human labelling."),
    output: Path = typer.Option(..., help="CSV to write: rank, id, strategy, score, prob_model_a, prob_model_b, "
                                          "prob_tie, best first."),
    strategy: str = typer.Option("random", help=STRATEGY_HELP),
    diverse: bool = typer.Option(False, "--diverse", help="A batch without near-duplicates: cluster the 5 x COUNT "
                                                          "best-scoring battles on their features, best of each."),
    committee: list[Path] | None = typer.Option(None, help="--strategy committee: model directories, or an "
                                                              "`arenapref cv --keep-models` output (repeat)."),
    exclude: list[Path] | None = typer.Option(None, help="File(s) with an id column: battles already labelled "
                                                            "or picked, never picked again (repeat)."),
    seed: int = typer.Option(0, help="Seed of the random strategy and of the diverse batch's clustering."),
    as_json: bool = AS_JSON,
):
    """Choose which battles of a pool humans should label next: the COUNT whose label is expected to help most."""
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
    quiet_libraries(any(uses_transformers(m["model_type"]) for m in metas))
    judge = Judge.from_pretrained(model)
    judges = [Judge.from_pretrained(d) for d in members]
    if strategy == "committee" and not judges:  # a hybrid: its parts are the committee
        judges = [part for _, part in judge.backend.parts]
    result = score_pool(judge, pool, strategy, count, committee=judges, diverse=diverse, seed=seed)
    name = strategy + ("+diverse" if diverse else "")
    out = picks_frame(pool, result, name)
    probs = ["prob_model_a", "prob_model_b", "prob_tie"]
    out[probs] = round_rows(out[probs].to_numpy(), 6)
    write_csv_atomic(out, output, float_format="%.6f")
    summary = {"picked": len(out), "pool": len(frame), "excluded": dropped, "candidates": len(pool),
               "strategy": name, "score_picked_min": float(out["score"].min()),
               "score_picked_max": float(out["score"].max()), "score_pool_median": float(np.median(result["scores"])),
               "output": str(output)}
    if as_json:
        print(json.dumps(summary))
        return
    if len(out) < count:
        err_console.print(f"note: only {len(out)} battles left to pick from, asked for {count}", markup=False)
    console.print(f"picked {len(out)} of {len(pool)} battles ({dropped} excluded) by {name}: scores "
                  f"{summary['score_picked_min']:.4f}-{summary['score_picked_max']:.4f} (pool median "
                  f"{summary['score_pool_median']:.4f}); wrote {output}")


def auto_label(
    model: Path = MODEL,
    data: Path = POOL,
    output: Path = typer.Option(..., help="CSV to write: the auto-labelled battles in the Kaggle layout (predicted "
                                          "winner one-hot) plus prob_model_a, prob_model_b, prob_tie, confidence."),
    max_error: float = typer.Option(0.1, help="Largest expected error allowed: the mean of 1 - max probability "
                                               "over the auto-labelled battles."),
    exclude: list[Path] | None = typer.Option(None, help="File(s) with an id column: battles to leave out "
                                                            "(repeat)."),
    check: Path | None = typer.Option(None, help="Labelled file: apply the same confidence threshold there and "
                                                    "report the realised error beside the expected one."),
    as_json: bool = AS_JSON,
):
    """The battles the judge is confident enough about to skip human review, at a chosen expected error rate."""
    if not 0.0 < max_error < 1.0:
        raise DataError(f"--max-error {max_error}: must be between 0 and 1 (e.g. 0.1 for 10% expected errors)")
    check_output_path(output)
    meta = check_model_dir(model)
    frame, pool, dropped = _pool(data, exclude)
    checked = load_frame(check, require_labels=True) if check is not None else None
    quiet_libraries(uses_transformers(meta["model_type"]))
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


@with_options(InferenceOptions, into="inference")
def label(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train` (the judge)."),
    data: Path = typer.Option(..., help="Pairs to judge: Kaggle columns (labels not needed) or "
                                        "prompt/chosen/rejected."),
    output: Path = typer.Option(..., help="File to write, by extension: .jsonl, .parquet or .csv (one-turn pairs)."),
    min_confidence: float = typer.Option(0.0, help="Keep pairs whose max(P(A wins), P(B wins)) is at least this."),
    both_orders: bool = typer.Option(False, "--both-orders", help="Judge each pair in both orders and average "
                                                                  "(cancels position bias; twice the compute; a "
                                                                  "rank model scores each side alone: no effect)."),
    inference: dict = None,
):
    """Judge-labelled pairs for DPO / reward training: prompt, chosen, rejected in TRL's format, plus p_chosen,
    p_rejected, p_tie and margin, for the pairs the judge is confident about (predicted ties dropped).

    Under `torchrun --nproc_per_node N -m arenapref label ...` (or `accelerate launch`) each process judges a share
    of the pairs on its own device and rank 0 writes the file (docs/scale-out.md)."""
    run_launched(label_pairs, model, data, output, min_confidence, both_orders, inference)


def label_pairs(model, data, output, min_confidence, both_orders, inference, run: ShardedRun | None = None):
    options = InferenceOptions(**inference).validate()
    options.check_tta("swap" if both_orders else "none")
    if not 0.0 <= min_confidence <= 1.0:
        raise DataError(f"--min-confidence {min_confidence}: must be between 0 and 1")
    check_table_output(output)
    model, meta = checked_model(model, options, say=run is None or run.is_main)
    frame = load_frame(data)
    conversational = frame.attrs.get("pairwise") == "conversational" or any(len(p) > 1 for p in frame["prompt"])
    if conversational and output.suffix.lower() == ".csv":
        why = "the input is conversational" if frame.attrs.get("pairwise") == "conversational" else \
            "some rows have several turns"
        raise DataError(f"{output}: {why}, so the pairs are lists of messages, which a CSV cell cannot hold in "
                        f"TRL's format; write {output.with_suffix('.jsonl')} or .parquet")
    quiet_libraries(uses_transformers(meta["model_type"]))
    judge = Judge.from_pretrained(model, **options.load_kwargs(), **launch_device(run))
    # A per-response score reads each side alone, so it needs no second order (and margin stays s_c - s_r).
    tta = "swap" if both_orders and not judge.scores_sides else "none"
    if run is None:
        logits, scores = judge.predict_logits(frame, tta=tta)
    else:
        share = frame.iloc[run.launch.share(len(frame))].reset_index(drop=True)
        part = judge.predict_logits(share, tta=tta) if len(share) else None
        run.report(len(share), len(frame))
        parts = [p for p in run.gather_main(part) or [] if p is not None]
        if not run.is_main:
            return
        logits = np.concatenate([p[0] for p in parts])
        scores = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
    pairs, counts = judged_pairs(frame, softmax(logits), scores if judge.scores_sides else None, min_confidence,
                                 conversational)
    write_table_atomic(pairs, output)
    console.print(f"kept {counts['kept']} of {counts['rows']} pairs ({counts['ties']} predicted ties, "
                  f"{counts['unsure']} under --min-confidence {min_confidence:g} dropped); wrote "
                  f"{'conversational' if conversational else 'string'} pairs to {output}")
