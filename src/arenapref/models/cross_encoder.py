"""Cross-encoder: prompt, response A and response B in one sequence, so attention compares the responses directly.

The sequence comes from `Renderer.cross_inputs` (per-field budgets, field markers); the encoder's token states
are pooled (masked mean, or the first token) and a Linear(H -> 3) head with N(0, 0.02) weights gives the logits.
With side features (`side_features` > 0, probe.py) the head reads [pooled, features of A, of B, pair + prompt].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from .dual_tower import add_feature_buffers, encoder_from_dict, standardized_features
from .heads import preference_loss
from .pooling import masked_mean


class CrossEncoderConfig(PretrainedConfig):
    model_type = "arenapref-cross-encoder"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", classifier_dropout: float = 0.0,
                 side_features: int = 0, shared_features: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.side_features = side_features
        self.shared_features = shared_features

    @property
    def hidden(self) -> int:
        return int(self.encoder.get("hidden_size") or self.encoder.get("d_model") or self.encoder.get("dim"))


# Known to AutoConfig, so AutoTokenizer.from_pretrained(model_dir) reads config.json without a warning.
AutoConfig.register(CrossEncoderConfig.model_type, CrossEncoderConfig, exist_ok=True)


@dataclass
class CrossEncoderOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None  # always None: a joint model has no per-side score


class CrossEncoderModel(PreTrainedModel):
    config_class = CrossEncoderConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    main_input_name = "input_ids"
    inputs = "joint"  # one sequence per row (see models/__init__.py)

    def __init__(self, config: CrossEncoderConfig, encoder: nn.Module | None = None):
        super().__init__(config)
        if config.pooling not in ("mean", "first"):
            raise ValueError(f"pooling {config.pooling!r}: expected mean or first")
        self.encoder = encoder if encoder is not None else encoder_from_dict(config.encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(config.hidden + 2 * config.side_features + config.shared_features, 3)
        add_feature_buffers(self, config.side_features + config.shared_features)
        self.post_init()

    def _init_weights(self, module):
        # The encoder arrives pretrained; only the new head is initialised here.
        if module is getattr(self, "head", None):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_backbone(cls, backbone: str, pooling: str = "mean", side_features: int = 0,
                      shared_features: int = 0) -> "CrossEncoderModel":
        encoder = AutoModel.from_pretrained(backbone)
        config = CrossEncoderConfig(encoder=encoder.config.to_dict(), pooling=pooling, side_features=side_features,
                                    shared_features=shared_features)
        return cls(config, encoder=encoder)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) joint sequences -> (B, H) pooled encoder states (the head's input besides the side features)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask) if self.config.pooling == "mean" else hidden[:, 0]

    def forward(self, input_ids, attention_mask, labels=None, soft_labels=None, features=None, **unused):
        pooled = self.dropout(self.encode(input_ids, attention_mask))
        feats = standardized_features(self, features, pooled)
        logits = self.head(pooled if feats is None else torch.cat([pooled, *feats], dim=-1))
        loss = None
        if labels is not None or soft_labels is not None:
            loss = preference_loss(logits, labels, soft_labels)
        return CrossEncoderOutput(loss=loss, logits=logits)
