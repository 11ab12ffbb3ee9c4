"""Training: `train(cfg)` for any family, the neural training loop (HF Trainer), its dataset and samplers, the
linear probe, checkpoints, distillation targets, the hybrid, and grouped cross-validation.

Nothing heavy is imported here: `train` asks the model registry for the family's training function.
"""

from __future__ import annotations

from arenapref.models import MODELS
from arenapref.models.directory import write_model_card


def train(cfg, log=print) -> dict:
    """Train one model as configured (any family); returns the validation metrics of the saved model.
    The directory gets a model card (README.md) once it is complete."""
    metrics = MODELS[cfg.model].trainer()(cfg, log)
    if metrics:  # the main process of a distributed run
        write_model_card(cfg.output)
    return metrics
