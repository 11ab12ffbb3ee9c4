"""The GBDT family: hand-made features (features.py) + LightGBM multiclass. Trains in seconds on a CPU.

Position symmetry: every training row is used twice, as is and with A and B swapped (label A <-> B), and every
prediction averages the row with its mirror (probabilities of A and B mapped back). The model so has no built-in
preference for a position; a real position bias in the data would have to be learned from other features.

Saved directory: model.txt (the LightGBM booster, text format), arenapref.json (model_type "gbdt", feature names,
parameters, calibration), written last like every model directory.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import LABELS
from ..calibration import calibrate
from ..data import DataError, check_output_dir, load_train_valid, write_text_atomic
from ..features import feature_blocks, feature_matrix, feature_names, swap_sides
from ..metrics import classification_metrics
from . import META_FILE

BOOSTER_FILE = "model.txt"
SWAP_LABELS = np.array([1, 0, 2])  # label (or probability column) of a row once A and B are exchanged


def lgb_params(cfg) -> dict:
    return {
        "objective": "multiclass", "num_class": 3, "learning_rate": cfg.gbdt_learning_rate,
        "num_leaves": cfg.gbdt_num_leaves, "min_data_in_leaf": cfg.gbdt_min_data_in_leaf,
        # Small data: strong regularisation and row/feature subsampling keep the trees from chasing noise.
        "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 5.0,
        "seed": cfg.seed, "deterministic": True, "verbose": -1,
        # One thread: the data are small, and OpenMP threads spin-waiting on a busy machine cost 10x the time.
        "num_threads": 1,
    }


def mirrored_training_set(blocks: dict, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and their A/B mirrors, labels swapped accordingly."""
    features = np.vstack([feature_matrix(blocks), feature_matrix(swap_sides(blocks))])
    return features, np.concatenate([labels, SWAP_LABELS[labels]])


def symmetric_proba(booster, blocks: dict) -> np.ndarray:
    """Average of the row's prediction and its mirror's (columns mapped back): exactly symmetric in A and B."""
    direct = booster.predict(feature_matrix(blocks))
    mirrored = booster.predict(feature_matrix(swap_sides(blocks)))[:, SWAP_LABELS]
    return (direct + mirrored) / 2


def train_gbdt(cfg, log=print) -> dict:
    """Fit on the training part (rows + mirrors), calibrate on validation, save the model directory."""
    import lightgbm as lgb

    output = check_output_dir(cfg.output)
    train_frame, valid_frame = load_train_valid(cfg)
    start = time.time()
    train_blocks, valid_blocks = feature_blocks(train_frame), feature_blocks(valid_frame)
    features, labels = mirrored_training_set(train_blocks, train_frame["label"].to_numpy())
    names = feature_names()
    params = lgb_params(cfg)
    booster = lgb.train(params, lgb.Dataset(features, labels, feature_name=names), cfg.gbdt_rounds)

    valid_labels = valid_frame["label"].to_numpy()
    temperature, probs = calibrate(np.log(symmetric_proba(booster, valid_blocks)), valid_labels, log)
    metrics = classification_metrics(valid_labels, probs)
    rows = len(train_frame)
    if cfg.gbdt_refit:
        # With ~1000 rows the held-out part is too valuable to leave out: refit on everything with the same
        # settings and keep the temperature measured on the held-out part (the validation metrics stay honest:
        # they are those of the model that did not see it).
        features, labels = mirrored_training_set(
            {k: np.concatenate([train_blocks[k], valid_blocks[k]]) for k in train_blocks},
            np.concatenate([train_frame["label"].to_numpy(), valid_labels]))
        booster = lgb.train(params, lgb.Dataset(features, labels, feature_name=names), cfg.gbdt_rounds)
        rows += len(valid_frame)
    train_seconds = time.time() - start
    log(f"gbdt: {rows} training rows (x2 mirrored){' incl. validation (refit)' if cfg.gbdt_refit else ''}, "
        f"{cfg.gbdt_rounds} rounds, {train_seconds:.1f}s")

    meta = {
        "format_version": 1,
        "model_type": "gbdt",
        "labels": list(LABELS),
        "features": names,
        "lightgbm_params": params,
        "rounds": cfg.gbdt_rounds,
        "refit_on_validation": cfg.gbdt_refit,
        "calibration": {"temperature": temperature, "fitted_on": "validation", "rows": int(len(valid_labels))},
        "train_config": cfg.to_dict(),
        "train_rows": len(train_frame),
        "valid_rows": len(valid_frame),
        "train_seconds": round(train_seconds, 1),
        "valid_metrics": {k: v for k, v in metrics.items() if k != "confusion"},
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / META_FILE).unlink(missing_ok=True)
    write_text_atomic(booster.model_to_string(), output / BOOSTER_FILE)
    write_text_atomic(json.dumps(meta, indent=2, default=str), output / META_FILE)
    return metrics


@contextmanager
def native_stderr_silenced():
    """LightGBM's C++ side prints "[LightGBM] [Fatal] ..." straight to stderr before raising; the exception becomes
    our one-line error instead, so the native print is dropped (file descriptor 2 points to /dev/null meanwhile)."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class GBDTBackend:
    """A saved GBDT model directory: features -> LightGBM -> symmetric probabilities, returned as log-probs."""

    def __init__(self, booster, meta: dict):
        self.booster = booster
        self.meta = meta

    @classmethod
    def load(cls, path, meta: dict) -> "GBDTBackend":
        import lightgbm as lgb

        booster_path = Path(path) / BOOSTER_FILE
        if not booster_path.is_file():
            raise DataError(f"{booster_path}: missing; the model directory is incomplete, retrain or restore it")
        try:
            with native_stderr_silenced():
                booster = lgb.Booster(model_str=booster_path.read_text(encoding="utf-8"))
        except Exception as exc:  # LightGBM raises LightGBMError (and others) on a damaged file
            raise DataError(f"{booster_path}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                            "the file is corrupt or truncated, retrain or restore it") from None
        expected = len(meta.get("features", []))
        if booster.num_feature() != expected:
            raise DataError(f"{booster_path}: has {booster.num_feature()} features, {META_FILE} lists {expected}; "
                            "the directory mixes two models, retrain it")
        if booster.num_model_per_iteration() != 3:
            raise DataError(f"{booster_path}: not a 3-class model; retrain it with `arenapref train --model gbdt`")
        return cls(booster, meta)

    def predict_logits(self, frame, progress=None):
        probs = symmetric_proba(self.booster, feature_blocks(frame))
        if progress is not None:
            progress(len(frame))
        # Log-probabilities are logits whose softmax gives the probabilities back (and temperature applies).
        return np.log(np.clip(probs, 1e-12, 1.0)), None
