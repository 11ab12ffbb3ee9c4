"""The hybrid family: a neural judge (the dual tower by default) and the gbdt, probabilities averaged.

The two err differently: the gbdt reads hand-made features through trees, the neural model reads the text (with
the same features in a linear head, probe.py). Averaging their calibrated probabilities with a fixed weight
(`hybrid_weight` for the neural part, 0.5 by default; fixed, not fitted, so nothing is tuned to one split) gives
a lower log loss than either on the arena sample's grouped CV (README, "Choosing the recipe").

Both parts train on the same rows and are calibrated on the same validation part (same seed, same grouped
split). `--extra` files teach both parts who wins without their tie rate: the gbdt part's factored model, and the
direction model under the neural part's head (probe.py; a neural part without a probed 3-way head and side
features does not read them).

Saved directory: neural/ and gbdt/, each a complete model directory of its family, and arenapref.json
(model_type "hybrid", the parts and their weights, the blend's validation metrics), written last.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from .. import LABELS
from ..data import DataError, check_output_dir, write_text_atomic
from ..metrics import classification_metrics
from . import META_FILE

PARTS = ("neural", "gbdt")


def train_hybrid(cfg, log=print) -> dict:
    from ..training import train_neural, uses_direction
    from .gbdt import train_gbdt

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
    meta = {
        "format_version": 1,
        "model_type": "hybrid",
        "labels": list(LABELS),
        "parts": {"neural": {"path": "neural", "weight": weight, "model_type": cfg.hybrid_neural},
                  "gbdt": {"path": "gbdt", "weight": 1 - weight, "model_type": "gbdt"}},
        # Each part carries its own temperatures (plain and swap TTA); the blend of calibrated probabilities is
        # used as is.
        "calibration": {"temperature": 1.0, "temperature_swap": 1.0},
        "train_config": cfg.to_dict(),
        "train_seconds": round(time.time() - start, 1),
        "valid_rows": int(len(labels)),
        "valid_metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "valid_log_loss_of_parts": part_metrics,
        "valid_metrics_scope": "the parts' validation rows; each part's temperature cross-fitted; fixed weights",
    }
    write_text_atomic(json.dumps(meta, indent=2, default=str), output / META_FILE)
    return metrics


class HybridBackend:
    """The parts' Judges; predict_logits = log of the weighted mean of their calibrated probabilities."""

    def __init__(self, parts: list, meta: dict):
        self.parts, self.meta = parts, meta  # [(weight, Judge)]

    @classmethod
    def load(cls, path, meta: dict, **options) -> "HybridBackend":
        from ..api import Judge

        path = Path(path)
        parts = meta.get("parts")
        if not isinstance(parts, dict) or set(parts) != set(PARTS):
            raise DataError(f"{path / META_FILE}: a hybrid model needs the parts {', '.join(PARTS)}; retrain it")
        loaded = []
        for name in PARTS:
            part = path / str(parts[name].get("path", name))
            try:
                judge = Judge.from_pretrained(part, **(options if name == "neural" else {}))
            except DataError as exc:
                raise DataError(f"hybrid model {path}, part {name}: {exc}") from None
            loaded.append((float(parts[name]["weight"]), judge))
        return cls(loaded, meta)

    # Swap TTA is applied inside each part, with that part's own swap-TTA temperature, before the blend.
    handles_tta = True

    def predict_logits(self, frame, progress=None, tta: str = "none"):
        from ..metrics import softmax

        probs = sum(weight * softmax(judge.predict_logits(frame, progress if i == 0 else None, tta=tta)[0])
                    for i, (weight, judge) in enumerate(self.parts))
        return np.log(np.clip(probs, 1e-12, 1.0)), None

    def one_sided_logits(self, frame):
        """Each part's answer as given and with A and B exchanged (mapped back), blended with the part weights."""
        direct = mirrored = 0.0
        for weight, judge in self.parts:
            d, m, _ = judge.predict_both_orders(frame)
            direct, mirrored = direct + weight * d, mirrored + weight * m
        return np.log(np.clip(direct, 1e-12, 1.0)), np.log(np.clip(mirrored, 1e-12, 1.0))
