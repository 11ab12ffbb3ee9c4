"""K-fold cross-validation grouped by prompt, for any model family, through the same train / load / predict path.

Each fold trains a model directory on the other folds (which hold out their own --valid-fraction for early choices
and calibration), loads it with Predictor.from_pretrained and predicts the fold's rows. The out-of-fold predictions
cover every row exactly once and feed `arenapref ensemble --fit-on`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.config import TrainConfig
from arenapref.data.split import prompt_groups
from arenapref.data.tables import (
    LABELS,
    check_output_dir,
    load_frame,
    to_kaggle,
    write_csv_atomic,
    write_text_atomic,
)
from arenapref.errors import DataError
from arenapref.evaluation.metrics import classification_metrics, frame_length_slices
from arenapref.inference.predictor import Predictor
from arenapref.training import train

SUMMARY_METRICS = ("log_loss", "accuracy", "f1_macro", "ece")


def grouped_folds(frame: pd.DataFrame, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, held-out indices) per fold; no prompt is on both sides, label shares kept similar."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = prompt_groups(frame)
    n_groups = len(np.unique(groups))
    if folds < 2:
        raise DataError(f"--folds {folds}: need at least 2 folds")
    if folds > n_groups:
        raise DataError(f"--folds {folds}: the data hold only {n_groups} distinct prompts; use fewer folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(frame, frame["label"], groups)]


def summarize(per_fold: list[dict]) -> dict:
    """Mean and (population) standard deviation over folds of the headline metrics."""
    out = {}
    for key in SUMMARY_METRICS:
        values = np.array([m[key] for m in per_fold], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def cross_validate(cfg: TrainConfig, folds: int, output: str | Path, keep_models: bool = False, log=print) -> dict:
    """Run the folds; writes OUTPUT/oof.csv and OUTPUT/cv_metrics.json and returns the metrics dict."""
    output = check_output_dir(output)
    if cfg.valid:
        raise DataError("cv: --valid is not used; each fold holds out --valid-fraction of its own training rows")
    frame = load_frame(cfg.data, require_labels=True)
    splits = grouped_folds(frame, folds, cfg.seed)
    output.mkdir(parents=True, exist_ok=True)
    labels = frame["label"].to_numpy()
    oof = np.full((len(frame), 3), np.nan)
    per_fold = []
    start = time.time()
    for k, (train_idx, heldout_idx) in enumerate(splits):
        fold_dir = output / f"fold-{k}"
        fold_dir.mkdir(exist_ok=True)
        write_csv_atomic(to_kaggle(frame.iloc[train_idx]), fold_dir / "train.csv")
        exclude = []
        if cfg.extra:  # extra rows sharing a prompt with this fold's held-out rows would leak them
            write_csv_atomic(to_kaggle(frame.iloc[heldout_idx]), fold_dir / "heldout.csv")
            exclude = [str(fold_dir / "heldout.csv")]
        fold_cfg = dataclasses.replace(cfg, data=str(fold_dir / "train.csv"), output=str(fold_dir / "model"),
                                       extra_exclude=list(cfg.extra_exclude) + exclude)
        log(f"fold {k + 1}/{folds}: training on {len(train_idx)} rows, predicting {len(heldout_idx)}")
        train(fold_cfg, log)
        probs = Predictor.from_pretrained(fold_dir / "model").predict_proba(
            frame.iloc[heldout_idx].reset_index(drop=True))
        oof[heldout_idx] = probs
        metrics = classification_metrics(labels[heldout_idx], probs)
        per_fold.append({"fold": k, "rows": int(len(heldout_idx)), **{m: metrics[m] for m in SUMMARY_METRICS}})
        log(f"fold {k + 1}/{folds}: log loss {metrics['log_loss']:.4f}, accuracy {metrics['accuracy']:.4f}")
        if keep_models:
            (fold_dir / "train.csv").unlink()
            (fold_dir / "heldout.csv").unlink(missing_ok=True)
        else:
            shutil.rmtree(fold_dir)

    overall = classification_metrics(labels, oof)
    result = {
        "model": cfg.model,
        "data": str(cfg.data),
        "folds": folds,
        "seed": cfg.seed,
        "rows": int(len(frame)),
        "seconds": round(time.time() - start, 1),
        "per_fold": per_fold,
        "summary": summarize(per_fold),
        "out_of_fold": {**{k: overall[k] for k in ("log_loss", "prior_log_loss", "accuracy", "f1_macro", "ece")},
                        **frame_length_slices(frame, oof)},
        "train_config": cfg.to_dict(),
    }
    predictions = pd.DataFrame({"id": frame["id"]})
    for j, name in enumerate(LABELS):
        predictions[name] = oof[:, j]
    write_csv_atomic(predictions, output / "oof.csv", float_format="%.6f")
    write_text_atomic(json.dumps(result, indent=2, default=str), output / "cv_metrics.json")
    return result
