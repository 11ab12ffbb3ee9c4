"""Training: `train(cfg)` for any family, the neural training loop (HF Trainer), its dataset and samplers, the
linear probe, checkpoints, distillation targets, the hybrid, and grouped cross-validation.

Nothing heavy is imported here: `train` asks the model registry for the family's training function.
"""

from __future__ import annotations

import sys

from arenapref.models import MODELS
from arenapref.models.directory import write_model_card


def train(cfg, log=print) -> dict:
    """Train one model as configured (any family); returns the validation metrics of the saved model.
    The directory gets a model card (README.md) once it is complete."""
    metrics = MODELS[cfg.model].trainer()(cfg, log)
    if metrics:  # the main process of a distributed run
        write_model_card(cfg.output)
    return metrics


def end_distributed_run() -> None:
    """The end of a process of a torchrun / accelerate launch: each process waits until the main one has saved the
    model, then the process group is taken down. A process that exits with its gloo group still up can abort
    ("terminate called without an active exception"), and torchrun then fails the whole run. Does nothing outside a
    distributed run, and imports nothing: no process group exists unless torch.distributed was loaded."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
