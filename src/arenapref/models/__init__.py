"""Model registry: the name used on the command line -> its family (how it is trained, saved and loaded).

Three backends exist. "neural": a transformers model trained by the HF Trainer (training.py) and served by
inference.NeuralBackend; its `recipe` (models/families.py, models/llm.py) says how it tokenises, builds, loads and
saves. "gbdt": hand-made features + LightGBM (models/gbdt.py). "hybrid": a neural model and a gbdt in one
directory, their probabilities averaged (models/hybrid.py). Recipes are imported lazily so that loading a GBDT
model never has to import a transformers model class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# Written last when a model directory is saved: its presence means the directory is complete.
META_FILE = "arenapref.json"


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Family:
    backend: str                  # "neural" | "gbdt" | "hybrid"
    recipe: str | None = None     # neural: "module:object" of the family's recipe (see models/families.py)
    rank_recipe: str | None = None  # a family whose --objective rank needs another recipe (the llm's)

    def load_recipe(self, objective: str | None = None):
        return _resolve(self.rank_recipe if objective == "rank" and self.rank_recipe else self.recipe)

    def load_class(self):
        """The PreTrainedModel class of our own neural families (None for the llm: a Hugging Face class)."""
        return getattr(self.load_recipe(), "model_cls", None)


MODELS = {
    "dual-tower": Family("neural", "arenapref.models.families:DUAL_TOWER"),
    "cross-encoder": Family("neural", "arenapref.models.families:CROSS_ENCODER"),
    "llm": Family("neural", "arenapref.models.llm:LLM", "arenapref.models.llm:LLM_RANK"),
    "gbdt": Family("gbdt"),
    "hybrid": Family("hybrid"),   # a neural part + the gbdt, probabilities averaged (models/hybrid.py)
}


def __getattr__(name):  # `from arenapref.models import DualTowerModel` keeps working without an eager import
    if name in ("DualTowerModel", "DualTowerConfig"):
        return getattr(importlib.import_module("arenapref.models.dual_tower"), name)
    if name in ("CrossEncoderModel", "CrossEncoderConfig"):
        return getattr(importlib.import_module("arenapref.models.cross_encoder"), name)
    raise AttributeError(name)
