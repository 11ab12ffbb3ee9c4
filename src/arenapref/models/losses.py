"""Losses shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


def preference_loss(logits: torch.Tensor, labels: torch.Tensor | None,
                    soft_labels: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy against soft labels when given (distillation targets, already mixed with the hard labels),
    else against the hard labels. Soft CE differs from KL(teacher || model) only by the teacher's entropy, a
    constant, so the gradients are those of the KL."""
    if soft_labels is None:
        soft_labels = nn.functional.one_hot(labels, 3)
    return -(soft_labels.float() * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
