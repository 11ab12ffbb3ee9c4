"""Model registry: the name used on the command line -> its family (how it is trained, saved and loaded).

Two backends exist. "neural": a transformers PreTrainedModel trained by the HF Trainer (training.py) and served by
inference.NeuralBackend. "gbdt": hand-made features + LightGBM (models/gbdt.py). Classes are imported lazily so
that loading a GBDT model never has to import a transformers model class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# Written last when a model directory is saved: its presence means the directory is complete.
META_FILE = "arenapref.json"


@dataclass(frozen=True)
class Family:
    backend: str                  # "neural" | "gbdt"
    model_class: str | None = None  # "module:Class" of the PreTrainedModel, for neural families

    def load_class(self):
        module, name = self.model_class.split(":")
        return getattr(importlib.import_module(module), name)


MODELS = {
    "dual-tower": Family("neural", "arenapref.models.dual_tower:DualTowerModel"),
}


def __getattr__(name):  # `from arenapref.models import DualTowerModel` keeps working without an eager import
    if name in ("DualTowerModel", "DualTowerConfig"):
        return getattr(importlib.import_module("arenapref.models.dual_tower"), name)
    raise AttributeError(name)
