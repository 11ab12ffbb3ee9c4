"""The hybrid family at inference: a neural judge (the dual tower by default) and the gbdt, probabilities averaged.

The two err differently: the gbdt reads hand-made features through trees, the neural model reads the text (with
the same features in a linear head, training/probe.py). Averaging their calibrated probabilities with a fixed weight
(`hybrid_weight` for the neural part, 0.5 by default; fixed, not fitted, so nothing is tuned to one split) gives
a lower log loss than either on the arena sample's grouped CV (docs/benchmarks.md, "Choosing the recipe").

Both parts train on the same rows and are calibrated on the same validation part (same seed, same grouped
split). `--extra` files teach both parts who wins without their tie rate: the gbdt part's factored model, and the
direction model under the neural part's head (training/probe.py; a neural part without a probed 3-way head and side
features does not read them). Training: training/hybrid.py.

Saved directory: neural/ and gbdt/, each a complete model directory of its family, and arenapref.json
(model_type "hybrid", the parts and their weights, the blend's validation metrics), written last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arenapref.errors import DataError
from arenapref.evaluation.metrics import softmax
from arenapref.inference.predictor import Predictor
from arenapref.models import META_FILE

PARTS = ("neural", "gbdt")


class HybridBackend:
    """The parts' Predictors; predict_logits = log of the weighted mean of their calibrated probabilities."""

    def __init__(self, parts: list, meta: dict):
        self.parts, self.meta = parts, meta  # [(weight, Judge)]

    @classmethod
    def load(cls, path, meta: dict, verify: bool = True, **options) -> HybridBackend:
        path = Path(path)
        parts = meta.get("parts")
        if not isinstance(parts, dict) or set(parts) != set(PARTS):
            raise DataError(f"{path / META_FILE}: a hybrid model needs the parts {', '.join(PARTS)}; retrain it")
        loaded = []
        for name in PARTS:
            part = path / str(parts[name].get("path", name))
            try:
                judge = Predictor.from_pretrained(part, verify=verify, **(options if name == "neural" else {}))
            except DataError as exc:
                raise DataError(f"hybrid model {path}, part {name}: {exc}") from None
            loaded.append((float(parts[name]["weight"]), judge))
        return cls(loaded, meta)

    # The part that answers every row when a cascade (Predictor.set_cascade, neural_fraction < 1) sends only the
    # least certain rows through the others: the gbdt (PARTS order).
    cheap_part = PARTS.index("gbdt")

    part_names = PARTS

    # Swap TTA is applied inside each part, with that part's own swap-TTA temperature, before the blend.
    handles_tta = True

    # The neural part reads rendered text and reports what it kept; the gbdt part reads whole texts.
    reports_diagnostics = True

    @property
    def has_style_term(self) -> bool:
        """Style can be taken out of the blend only when every part has a style term (models/style_term.py)."""
        return all(judge.has_style_term for _, judge in self.parts)

    def predict_logits(self, frame, progress=None, tta: str = "none", diagnostics: list | None = None,
                       style: str = "as-voted"):
        """`diagnostics` (a list) receives the neural part's per-row rendering report (data/text.py), from the
        pass on the rows as given (with tta="swap" the swapped pass reads the same turns, A and B exchanged)."""
        probs = 0.0
        for i, (weight, judge) in enumerate(self.parts):
            extra = {"diagnostics": diagnostics} if diagnostics is not None and PARTS[i] == "neural" else {}
            logits = judge.predict_logits(frame, progress if i == 0 else None, tta=tta, style=style, **extra)[0]
            probs = probs + weight * softmax(logits)
        return np.log(np.clip(probs, 1e-12, 1.0)), None

    def one_sided_logits(self, frame, style: str = "as-voted"):
        """Each part's answer as given and with A and B exchanged (mapped back), blended with the part weights."""
        direct = mirrored = 0.0
        for weight, judge in self.parts:
            d, m, _ = judge.predict_both_orders(frame, style=style)
            direct, mirrored = direct + weight * d, mirrored + weight * m
        return np.log(np.clip(direct, 1e-12, 1.0)), np.log(np.clip(mirrored, 1e-12, 1.0))
