"""Model registry: the name used on the command line -> the class that builds and loads it."""

from .dual_tower import DualTowerConfig, DualTowerModel

MODELS = {"dual-tower": DualTowerModel}
CONFIGS = {DualTowerConfig.model_type: DualTowerModel}

# Written last when a model directory is saved: its presence means the directory is complete.
META_FILE = "arenapref.json"
