"""A scalar reward model over a Hugging Face encoder: masked mean of the encoder states -> Linear(H -> 1).

`arenapref export` copies this file, unchanged, into an exported dual-tower reward model as
`modeling_arenapref_reward.py`, and config.json's `auto_map` points at it, so the directory loads with transformers
alone (no arenapref):

    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)
    model(input_ids=ids, attention_mask=mask).logits[:, 0]     # one reward per sequence

It imports only torch and transformers. The pooling and the head are those of arenapref's dual tower (rank
objective, no side features); the export folds the model's score scale and calibration temperature into the head.
"""

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class ArenaprefRewardConfig(PretrainedConfig):
    model_type = "arenapref_reward_encoder"

    def __init__(self, encoder=None, **kwargs):
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)
        self.encoder = encoder or {}

    @property
    def hidden(self) -> int:
        return int(self.encoder.get("hidden_size") or self.encoder.get("d_model") or self.encoder.get("dim"))


def _encoder_config(values: dict):
    values = dict(values)
    return AutoConfig.for_model(values.pop("model_type"), **values)


class ArenaprefRewardModel(PreTrainedModel):
    """logits (B, 1) = Linear(masked mean of the encoder's last hidden states)."""

    config_class = ArenaprefRewardConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"

    def __init__(self, config: ArenaprefRewardConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(_encoder_config(config.encoder))
        self.score = nn.Linear(config.hidden, 1)
        self.post_init()

    def _init_weights(self, module):
        # The encoder and the head come from the checkpoint; a fresh head starts small.
        if module is getattr(self, "score", None):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        if attention_mask is None:
            pad = self.config.pad_token_id
            attention_mask = (input_ids != pad).long() if pad is not None else torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-6)
        logits = self.score(pooled)
        loss = None
        if labels is not None:  # a regression target per sequence, as for any num_labels=1 classifier
            loss = nn.functional.mse_loss(logits[:, 0].float(), labels.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)
