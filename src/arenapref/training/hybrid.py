"""Training the hybrid family: the gbdt part, the neural part, then the blend's validation metrics (the
family itself: inference/hybrid.py)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from arenapref.data.tables import check_output_dir
from arenapref.errors import DataError
from arenapref.evaluation.metrics import classification_metrics
from arenapref.inference.hybrid import PARTS
from arenapref.models import META_FILE
from arenapref.models.directory import training_meta, write_meta
from arenapref.models.gbdt import train_gbdt
from arenapref.training.neural import train_neural, uses_direction


def train_hybrid(cfg, log=print) -> dict:
    output = check_output_dir(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / META_FILE).unlink(missing_ok=True)
    start = time.time()
    valid: dict = {}
    gbdt_cfg = dataclasses.replace(cfg, model="gbdt", output=str(output / "gbdt"))
    log(f"hybrid: training the gbdt part into {gbdt_cfg.output}")
    train_gbdt(gbdt_cfg, log, valid_out=valid.setdefault("gbdt", {}))
    neural_cfg = dataclasses.replace(cfg, model=cfg.hybrid_neural, output=str(output / "neural"))
    if not uses_direction(neural_cfg):  # a neural part without the direction model would learn the extra tie rate
        neural_cfg = dataclasses.replace(neural_cfg, extra=[])
    log(f"hybrid: training the {cfg.hybrid_neural} part into {neural_cfg.output}"
        + (" (the --extra files train the gbdt part only)" if cfg.extra and not neural_cfg.extra else ""))
    if not train_neural(neural_cfg, log, valid_out=valid.setdefault("neural", {})):
        return {}  # not the main process of a distributed run
    labels = valid["gbdt"]["labels"]
    if not np.array_equal(labels, valid["neural"]["labels"]):  # pragma: no cover - same seed, same split
        raise DataError("hybrid: the two parts were validated on different rows; rerun with one --seed")
    weight = cfg.hybrid_weight
    probs = weight * valid["neural"]["probs"] + (1 - weight) * valid["gbdt"]["probs"]
    metrics = classification_metrics(labels, probs)
    part_metrics = {name: classification_metrics(labels, valid[name]["probs"])["log_loss"] for name in PARTS}
    log(f"hybrid: validation log loss {metrics['log_loss']:.4f} (neural part {part_metrics['neural']:.4f}, "
        f"gbdt part {part_metrics['gbdt']:.4f})")
    meta = training_meta(
        "hybrid", cfg,
        parts={"neural": {"path": "neural", "weight": weight, "model_type": cfg.hybrid_neural,
                          "backbone": neural_cfg.backbone, "objective": neural_cfg.objective},
               "gbdt": {"path": "gbdt", "weight": 1 - weight, "model_type": "gbdt"}},
        # Each part carries its own temperatures (plain and swap TTA); the blend of calibrated probabilities is
        # used as is.
        calibration={"temperature": 1.0, "temperature_swap": 1.0},
        train_seconds=round(time.time() - start, 1),
        valid_rows=int(len(labels)),
        valid_metrics={k: v for k, v in metrics.items() if k != "confusion"},
        valid_log_loss_of_parts=part_metrics,
        valid_metrics_scope="the parts' validation rows; each part's temperature cross-fitted; fixed weights",
    )
    write_meta(output, meta)
    return metrics
