"""Cross-encoder: prompt, response A and response B in one sequence, so attention compares the responses directly.

The sequence comes from `Renderer.cross_inputs` (round packing, field markers); the encoder's token states
are pooled and a Linear(H -> 3) head with N(0, 0.02) weights gives the logits. Pooling: "mean" over the whole
sequence, "first" token, or "fields": a masked mean over response A's tokens and one over response B's, side by
side (2H; tokens that have read the other response through attention), so the head can compare the two (a mean
over the whole sequence is nearly the same vector whichever response is better). The fields are found by their
markers' token ids (`field_marker_ids`, from the Renderer), the first "Response A:" and the first "Response B:"
after it.
With side features (`side_features` > 0, training/probe.py) the head reads [pooled, features of A, of B, pair + prompt];
with a style term (`style_term`) the head factors as the dual tower's (models/dual_tower.classify_logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from arenapref.models.dual_tower import (
    add_feature_buffers,
    add_style_buffers,
    classify_logits,
    encoder_config,
    encoder_from_dict,
    freeze_pooler,
)
from arenapref.models.loading import pretrained
from arenapref.models.losses import preference_loss
from arenapref.models.pooling import masked_mean


class CrossEncoderConfig(PretrainedConfig):
    model_type = "arenapref-cross-encoder"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", classifier_dropout: float = 0.0,
                 side_features: int = 0, shared_features: int = 0, field_marker_ids: list | None = None,
                 style_term: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.side_features = side_features
        self.shared_features = shared_features
        self.field_marker_ids = field_marker_ids  # token ids of "Prompt:", "Response A:", "Response B:"
        self.style_term = style_term

    @property
    def hidden(self) -> int:
        return int(self.encoder.get("hidden_size") or self.encoder.get("d_model") or self.encoder.get("dim"))

    @property
    def pooled_width(self) -> int:
        return 2 * self.hidden if self.pooling == "fields" else self.hidden


# Known to AutoConfig, so AutoTokenizer.from_pretrained(model_dir) reads config.json without a warning.
AutoConfig.register(CrossEncoderConfig.model_type, CrossEncoderConfig, exist_ok=True)


@dataclass
class CrossEncoderOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None  # always None: a joint model has no per-side score


def find_tokens(row: list[int], pattern: list[int], start: int) -> int:
    """First index >= start where `pattern` occurs in `row`, or -1."""
    first, n = pattern[0], len(pattern)
    for i in range(start, len(row) - n + 1):
        if row[i] == first and row[i:i + n] == pattern:
            return i
    return -1


class CrossEncoderModel(PreTrainedModel):
    config_class = CrossEncoderConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    main_input_name = "input_ids"
    inputs = "joint"  # one sequence per row (see models/__init__.py)

    def __init__(self, config: CrossEncoderConfig, encoder: nn.Module | None = None):
        super().__init__(config)
        if config.pooling not in ("mean", "first", "fields"):
            raise ValueError(f"pooling {config.pooling!r}: expected mean, first or fields")
        if config.pooling == "fields" and not config.field_marker_ids:
            raise ValueError("pooling 'fields' needs field_marker_ids (the Renderer's field markers)")
        self.encoder = encoder if encoder is not None else encoder_from_dict(config.encoder)
        freeze_pooler(self.encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(config.pooled_width + 2 * config.side_features + config.shared_features, 3)
        add_feature_buffers(self, config.side_features + config.shared_features)
        add_style_buffers(self)
        self.post_init()

    def _init_weights(self, module):
        # The encoder arrives pretrained; only the new head is initialised here.
        if module is getattr(self, "head", None):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_backbone(cls, backbone: str, pooling: str = "mean", side_features: int = 0,
                      shared_features: int = 0, field_marker_ids: list | None = None,
                      style_term: bool = False) -> CrossEncoderModel:
        encoder = pretrained(AutoModel, backbone)
        config = CrossEncoderConfig(encoder=encoder_config(encoder), pooling=pooling, side_features=side_features,
                                    shared_features=shared_features, field_marker_ids=field_marker_ids,
                                    style_term=style_term)
        return cls(config, encoder=encoder)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) joint sequences -> (B, H) pooled encoder states, (B, 2H) with "fields" pooling (the head's
        input besides the side features)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "first":
            return hidden[:, 0]
        if self.config.pooling == "mean":
            return masked_mean(hidden, attention_mask)
        mask_a, mask_b = self.field_masks(input_ids, attention_mask)
        return torch.cat([masked_mean(hidden, mask_a), masked_mean(hidden, mask_b)], dim=-1)

    def field_masks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(B, L) masks of response A's tokens (its first marker up to response B's) and of response B's (its first
        marker to the end). A row without the markers (not rendered by the Renderer) pools its whole sequence."""
        marker_a, marker_b = (list(m) for m in self.config.field_marker_ids[1:3])
        starts = []
        for row in input_ids.tolist():
            a = find_tokens(row, marker_a, 0)
            b = -1 if a < 0 else find_tokens(row, marker_b, a + len(marker_a))
            starts.append((a, b) if b >= 0 else (0, 0))
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        a_start = torch.tensor([a for a, _ in starts], device=input_ids.device)[:, None]
        b_start = torch.tensor([b for _, b in starts], device=input_ids.device)[:, None]
        real = attention_mask.bool()
        fallback = (b_start == 0)
        mask_a = (real & (positions >= a_start) & (positions < b_start)) | (real & fallback)
        mask_b = real & (positions >= b_start)
        return mask_a.long(), mask_b.long()

    def forward(self, input_ids, attention_mask, labels=None, soft_labels=None, features=None, **unused):
        pooled = self.dropout(self.encode(input_ids, attention_mask))
        logits = classify_logits(self, pooled, features)
        loss = None
        if labels is not None or soft_labels is not None:
            loss = preference_loss(logits, labels, soft_labels)
        return CrossEncoderOutput(loss=loss, logits=logits)
