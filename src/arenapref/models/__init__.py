"""Model registry: the name used on the command line -> its family (how it is trained, how it is loaded).

Three backends exist. "neural": a transformers model trained by the HF Trainer (training/neural.py) and served by
inference.backend.NeuralBackend; its `recipe` (models/families.py, models/llm.py) says how it tokenises, builds,
loads and saves. "gbdt": hand-made features + LightGBM (models/gbdt.py). "hybrid": a neural model and a gbdt in
one directory, their probabilities averaged (training/hybrid.py, inference/hybrid.py).

Every entry point is a "module:attribute" string resolved on first use, as transformers' Auto classes do: loading a
GBDT model never imports a transformers model class, and `training.train` / `Predictor.from_pretrained` (higher
layers) ask the registry instead of each writing its own `if family == ...` dispatch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# Written last when a model directory is saved: its presence means the directory is complete.
META_FILE = "arenapref.json"


def _resolve(target: str):
    module, name = target.split(":")
    value = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


NEURAL_TRAIN = "arenapref.training.neural:train_neural"
NEURAL_LOAD = "arenapref.inference.backend:load_neural"


@dataclass(frozen=True)
class Family:
    backend: str                  # "neural" | "gbdt" | "hybrid"
    train: str                    # "module:function" (cfg: TrainConfig, log) -> validation metrics
    load: str                     # "module:function" (path, meta, **inference options) -> a backend
    recipe: str | None = None     # neural: "module:object" of the family's recipe (see models/families.py)
    rank_recipe: str | None = None  # a family whose --objective rank needs another recipe (the llm's)

    def trainer(self):
        return _resolve(self.train)

    def loader(self):
        return _resolve(self.load)

    def load_recipe(self, objective: str | None = None):
        return _resolve(self.rank_recipe if objective == "rank" and self.rank_recipe else self.recipe)


MODELS = {
    "dual-tower": Family("neural", NEURAL_TRAIN, NEURAL_LOAD, "arenapref.models.families:DUAL_TOWER"),
    "cross-encoder": Family("neural", NEURAL_TRAIN, NEURAL_LOAD, "arenapref.models.families:CROSS_ENCODER"),
    "llm": Family("neural", NEURAL_TRAIN, NEURAL_LOAD, "arenapref.models.llm:LLM", "arenapref.models.llm:LLM_RANK"),
    "gbdt": Family("gbdt", "arenapref.models.gbdt:train_gbdt", "arenapref.models.gbdt:GBDTBackend.load"),
    # a neural part + the gbdt, probabilities averaged
    "hybrid": Family("hybrid", "arenapref.training.hybrid:train_hybrid",
                     "arenapref.inference.hybrid:HybridBackend.load"),
}


def __getattr__(name):  # `from arenapref.models import DualTowerModel` keeps working without an eager import
    if name in ("DualTowerModel", "DualTowerConfig"):
        return getattr(importlib.import_module("arenapref.models.dual_tower"), name)
    if name in ("CrossEncoderModel", "CrossEncoderConfig"):
        return getattr(importlib.import_module("arenapref.models.cross_encoder"), name)
    raise AttributeError(name)
