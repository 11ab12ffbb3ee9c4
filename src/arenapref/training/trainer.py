"""The Hugging Face Trainer with our preference loss (imported only when a neural model trains)."""

from __future__ import annotations

from arenapref.models.losses import preference_loss
from arenapref.training.samplers import LengthGroupedTrainer


class PreferenceTrainer(LengthGroupedTrainer):
    """The HF Trainer with our loss: a per-batch mean cross-entropy, against soft labels when distilling.
    Batches are grouped by length (samplers.py; `group_by_length=False` restores random batches).

    Our own models (dual tower, cross-encoder) compute it in forward; Hugging Face classifiers (the llm family)
    get it here, so soft labels reach every family. The loss is a per-batch mean, so the Trainer must divide it by
    the accumulation steps (its default would assume a model taking `num_items_in_batch` already did).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, model_computes_loss: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_computes_loss = model_computes_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model_computes_loss:
            outputs = model(**inputs)
            loss = outputs.loss
        else:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            loss = preference_loss(outputs.logits, inputs.get("labels"), inputs.get("soft_labels"))
        return (loss, outputs) if return_outputs else loss
