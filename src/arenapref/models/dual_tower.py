"""Dual tower: one shared encoder reads prompt+response A and prompt+response B.

classify: masked mean pooling per side, concat, Linear(2H -> 3) with N(0, 0.02) weights and zero bias, cross-entropy.
          With side features (`side_features` > 0, training/probe.py) the head reads [pooled A, pooled B, features of A,
          features of B, pair + prompt features] instead; with none it is exactly that plain head. With a style term
          (`style_term`, models/style_term.py) the head factors: P(tie) from its tie row, P(A wins | not a tie)
          from its A-vs-B rows, which read no length or markdown side feature, plus the style term of the rows'
          style differences (fixed weights, fitted by the probe): classify_logits.
rank:     a scalar score per side. `rank_loss="davidson"` (default) trains a Bradley-Terry model with ties
          (Davidson 1970): P(A) ∝ e^{s_a}, P(B) ∝ e^{s_b}, P(tie) ∝ ν e^{(s_a+s_b)/2}, so the same scores give proper
          3-way probabilities. `rank_loss="mse"` is the MSE rank regression (per side: win 1, loss 0, tie 0.5);
          its scores become probabilities through the same Davidson form with a scale β and ν fitted afterwards on
          validation data (`fit_link`). With side features, a side's score reads [pooled side, its features].
Both sides of every row go through the one shared encoder together: the (B, 2, L) batch is flattened to 2B
sequences, sorted by real length and encoded in up to `side_chunks` sub-batches, each cut to its own longest
sequence (models/packing.py), so a short side never pays for its long partner's padding. Inference
(inference.predict_pairs) goes further: it sorts the sides of all rows together and calls `encode` / `head_logits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from arenapref.data.features import FEATURE_CLIP, content_side_mask
from arenapref.data.style import STYLE_FEATURES
from arenapref.models.loading import pretrained
from arenapref.models.packing import plan_chunks
from arenapref.models.pooling import masked_mean

# The side features a style-term head reads (data/features.content_side_mask): length and markdown are the style term's.
CONTENT_MASK = content_side_mask()


class DualTowerConfig(PretrainedConfig):
    model_type = "arenapref-dual-tower"

    def __init__(self, encoder: dict | None = None, objective: str = "classify", rank_loss: str = "davidson",
                 classifier_dropout: float = 0.0, side_features: int = 0, shared_features: int = 0,
                 style_term: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder or {}
        self.objective = objective
        self.rank_loss = rank_loss
        self.classifier_dropout = classifier_dropout
        # Hand-made features beside the pooled vectors (training/probe.py): per side, and shared by both sides.
        self.side_features = side_features
        self.shared_features = shared_features
        # A-vs-B as style term + content term (models/style_term.py); the features then carry 4 style differences.
        self.style_term = style_term

    @property
    def hidden(self) -> int:
        return int(self.encoder.get("hidden_size") or self.encoder.get("d_model") or self.encoder.get("dim"))


# Known to AutoConfig, so AutoTokenizer.from_pretrained(model_dir) reads config.json without a warning.
AutoConfig.register(DualTowerConfig.model_type, DualTowerConfig, exist_ok=True)


@dataclass
class DualTowerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None


def add_feature_buffers(model: nn.Module, width: int) -> None:
    """Training-set mean and std of the side features (probe.feature_stats), saved with the weights."""
    if not width:
        return
    model.register_buffer("feature_mean", torch.zeros(width))
    model.register_buffer("feature_std", torch.ones(width))


def add_style_buffers(model: nn.Module) -> None:
    """A style-term model's fixed style coefficients and scales (models/style_term.StyleTerm, set by the probe)."""
    if not getattr(model.config, "style_term", False):
        return
    model.register_buffer("style_coef", torch.zeros(len(STYLE_FEATURES)))
    model.register_buffer("style_scale", torch.ones(len(STYLE_FEATURES)))


def set_style_term(model: nn.Module, term) -> None:
    model.style_coef.copy_(torch.as_tensor(term.coef, dtype=model.style_coef.dtype))
    model.style_scale.copy_(torch.as_tensor(term.scale, dtype=model.style_scale.dtype))


def style_logit(model: nn.Module, features: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) style term t = x . beta of a style-term model (x: the style differences carried after the features,
    over their training scale; a feature constant in training stays 0). "controlled" predictions pass style
    differences of 0 (inference/backend.model_features)."""
    base = 2 * model.config.side_features + model.config.shared_features
    ratios = features[:, base:base + len(STYLE_FEATURES)].to(device=like.device, dtype=like.dtype)
    scale = model.style_scale.to(like.dtype)
    x = torch.where(scale > 0, ratios / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(ratios))
    return x @ model.style_coef.to(like.dtype)


def factored_logits(d: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, 3) log-probabilities of P(tie) = sigmoid(u), P(A wins | not a tie) = sigmoid(d)."""
    decisive = nn.functional.logsigmoid(-u)
    return torch.stack([decisive + nn.functional.logsigmoid(d), decisive + nn.functional.logsigmoid(-d),
                        nn.functional.logsigmoid(u)], dim=1)


def classify_logits(model: nn.Module, pooled: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """A 3-way head's logits from (B, P) pooled inputs (a dual tower's two sides side by side, a cross-encoder's
    pair) and raw features. A style-term head (models/style_term.py) factors them: P(tie) = sigmoid(u), u the tie
    row on every feature with the two side blocks replaced by their mean (exchanging which answer is longer leaves
    it as it is); P(A wins | not a tie) = sigmoid(d + t), d = row 0 - row 1 on the pooled inputs and the content
    features only (length and markdown masked), t the style term."""
    feats = standardized_features(model, features, pooled)
    if feats is None:
        return model.head(pooled)
    if not getattr(model.config, "style_term", False):
        return model.head(torch.cat([pooled, *feats], dim=-1))
    side_a, side_b, shared = feats
    mask = torch.as_tensor(CONTENT_MASK, device=pooled.device, dtype=pooled.dtype)
    content = model.head(torch.cat([pooled, side_a * mask, side_b * mask, shared], dim=-1))
    both = (side_a + side_b) / 2
    u = model.head(torch.cat([pooled, both, both, shared], dim=-1))[:, 2]
    return factored_logits(content[:, 0] - content[:, 1] + style_logit(model, features, pooled), u)


def set_feature_stats(model: nn.Module, mean, std) -> None:
    """Statistics of probe.feature_stats; a model without shared features (rank) keeps the per-side ones."""
    width = model.feature_mean.numel()
    model.feature_mean.copy_(torch.as_tensor(mean[:width], dtype=model.feature_mean.dtype))
    model.feature_std.copy_(torch.as_tensor(std[:width], dtype=model.feature_std.dtype))


def standardized_features(model: nn.Module, features: torch.Tensor | None, like: torch.Tensor):
    """(B, 2S + Q) raw side features -> (side A, side B, shared) standardised blocks, clipped to +-FEATURE_CLIP
    like probe.standardize, or None for a model without."""
    s, q = model.config.side_features, model.config.shared_features
    if not s and not q:
        return None
    if features is None:
        raise ValueError("this model reads side features: pass features=probe.head_features(frame)")
    f = features.to(device=like.device, dtype=like.dtype)
    shared = standardize_columns(model, f[:, 2 * s:2 * s + q], slice(s, s + q))
    side_a, side_b = standardize_columns(model, f[:, :s]), standardize_columns(model, f[:, s:2 * s])
    return side_a, side_b, shared


def standardize_columns(model: nn.Module, block: torch.Tensor, columns: slice | None = None) -> torch.Tensor:
    """Raw features -> standardised by the model's training statistics (default: the per-side columns), clipped
    to +-FEATURE_CLIP like probe.standardize."""
    columns = columns or slice(0, model.config.side_features)
    mean, std = model.feature_mean[columns].to(block.dtype), model.feature_std[columns].to(block.dtype)
    return ((block - mean) / std).clamp(-FEATURE_CLIP, FEATURE_CLIP)


def encoder_config(encoder) -> dict:
    """The encoder's config as config.json keeps it: without `_name_or_path`, where the backbone was loaded from on
    the training machine (arenapref.json records the backbone by the name the user gave)."""
    values = encoder.config.to_dict()
    values.pop("_name_or_path", None)
    return values


def encoder_from_dict(values: dict):
    values = dict(values)
    return AutoModel.from_config(AutoConfig.for_model(values.pop("model_type"), **values))


def freeze_pooler(encoder: nn.Module) -> None:
    """A backbone's own pooler (BERT's tanh layer over [CLS], in all-MiniLM-L6-v2 too) is computed but never read: we
    pool the token states ourselves. Left trainable, it is a parameter that never reaches the loss, which stops
    DistributedDataParallel without find_unused_parameters (what the Trainer runs under gradient checkpointing)."""
    pooler = getattr(encoder, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


class DualTowerModel(PreTrainedModel):
    config_class = DualTowerConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    main_input_name = "input_ids"
    # Sub-batches per forward pass (see packing.py). 1 = a single (2B, L) pass over the whole padded batch.
    side_chunks = 3

    def __init__(self, config: DualTowerConfig, encoder: nn.Module | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else encoder_from_dict(config.encoder)
        freeze_pooler(self.encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        side, shared = config.side_features, config.shared_features
        if config.objective == "classify":
            self.head = nn.Linear(2 * config.hidden + 2 * side + shared, 3)
        elif config.objective == "rank":
            self.head = nn.Linear(config.hidden + side, 1)
        else:
            raise ValueError(f"objective {config.objective!r}: expected classify or rank")
        add_feature_buffers(self, side + shared)
        add_style_buffers(self)
        # Davidson tie parameter (learned for rank/davidson, fitted afterwards for rank/mse) and score scale. A 3-way
        # head never reads it: trainable there, it would never reach the loss (see freeze_pooler).
        self.log_nu = nn.Parameter(torch.zeros(()),
                                   requires_grad=config.objective == "rank" and config.rank_loss == "davidson")
        self.register_buffer("link_scale", torch.ones(()))
        self.post_init()

    def _init_head(self):
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _init_weights(self, module):
        # The encoder arrives pretrained (or is initialised by its own class); only our head needs this.
        if module is getattr(self, "head", None):
            self._init_head()

    @classmethod
    def from_backbone(cls, backbone: str, objective: str = "classify", rank_loss: str = "davidson",
                      side_features: int = 0, shared_features: int = 0, style_term: bool = False) -> DualTowerModel:
        encoder = pretrained(AutoModel, backbone)
        config = DualTowerConfig(encoder=encoder_config(encoder), objective=objective, rank_loss=rank_loss,
                                 side_features=side_features, shared_features=shared_features, style_term=style_term)
        return cls(config, encoder=encoder)

    # Gradient checkpointing: transformers' own `activation_checkpointing_enable` (what the Trainer calls) walks all
    # submodules and switches on the encoder's checkpointed layers; no override needed.

    def davidson_logits(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, 2) side scores -> (B, 3) logits whose softmax is the Davidson tie model."""
        s = scores * self.link_scale
        tie = self.log_nu + s.mean(dim=1)
        return torch.stack([s[:, 0], s[:, 1], tie], dim=1)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, L) token ids -> (n, H) masked-mean pooled encoder states; one encoder call."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask)

    def encode_sides(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, L) -> (n, H), in sub-batches of similar length, each trimmed to its longest member."""
        if self.side_chunks <= 1:
            return self.encode(input_ids, attention_mask)
        positions = torch.arange(1, attention_mask.shape[1] + 1, device=attention_mask.device)
        # Extent = index of the last real token + 1 (right padding makes it the length; left padding stays safe).
        extent = (attention_mask.bool() * positions).amax(dim=1).clamp(min=1)
        order = torch.argsort(extent, descending=True, stable=True)
        sorted_extent = extent[order].tolist()
        pooled = []
        for start, end in plan_chunks(sorted_extent, self.side_chunks):
            rows, width = order[start:end], sorted_extent[start]
            pooled.append(self.encode(input_ids[rows, :width], attention_mask[rows, :width]))
        return torch.cat(pooled)[torch.argsort(order)]

    def head_logits(self, pooled: torch.Tensor, features: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 2, H) pooled sides (+ (B, 2S + Q) raw side features) -> logits (B, 3) and, for rank models, side
        scores (B, 2)."""
        pooled = self.dropout(pooled)
        if self.config.objective == "classify":
            return classify_logits(self, pooled.reshape(pooled.shape[0], -1), features), None
        feats = standardized_features(self, features, pooled)
        if feats is not None:
            pooled = torch.cat([pooled, torch.stack(feats[:2], dim=1)], dim=-1)
        scores = self.head(pooled).squeeze(-1)
        # Scores on the link's scale, as side_scores gives them (the MSE fit's scale is 1 until fit_link sets it).
        return self.davidson_logits(scores), scores * self.link_scale

    def side_scores(self, input_ids, attention_mask, features: torch.Tensor | None = None) -> torch.Tensor:
        """Rank objective: (B, L) single sides (prompt + one response), with their (B, S) side features when the
        model reads them, -> (B,) scores on the Davidson logit scale.

        Scores one response without a partner, so ranking n responses costs n encoder passes, not n(n-1).
        """
        if self.config.objective != "rank":
            raise ValueError("side_scores needs a rank-objective model; a classify head only compares two sides")
        pooled = self.encode(input_ids, attention_mask)
        if self.config.side_features:
            if features is None:
                raise ValueError("this model reads side features: pass features=probe.single_side_features(...)")
            pooled = torch.cat([pooled, standardize_columns(self, features.to(pooled))], dim=-1)
        return self.head(pooled).squeeze(-1) * self.link_scale

    def forward(self, input_ids, attention_mask, labels=None, soft_labels=None, features=None, **unused):
        batch, sides, length = input_ids.shape
        pooled = self.encode_sides(input_ids.view(-1, length), attention_mask.view(-1, length))
        logits, scores = self.head_logits(pooled.view(batch, sides, -1), features)
        loss = None
        if labels is not None or soft_labels is not None:
            loss = self.loss(logits, scores, labels, soft_labels)
        return DualTowerOutput(loss=loss, logits=logits, scores=scores)

    def loss(self, logits, scores, labels, soft_labels):
        if soft_labels is None:
            soft_labels = nn.functional.one_hot(labels, 3).to(logits.dtype)
        if self.config.objective == "rank" and self.config.rank_loss == "mse":
            # The MSE rank regression: per-side targets win 1, loss 0, tie 0.5.
            target = soft_labels[:, :2] + 0.5 * soft_labels[:, 2:3]
            return nn.functional.mse_loss(scores.float(), target.float())
        return -(soft_labels.float() * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()

    @torch.no_grad()
    def fit_link(self, scores: np.ndarray, labels: np.ndarray) -> dict:
        """Fit the Davidson scale β and tie weight ν on held-out (scores, labels) by maximum likelihood."""
        s = torch.as_tensor(scores, dtype=torch.float64)
        y = torch.as_tensor(labels, dtype=torch.long)
        params = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # log β, log ν
        opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            with torch.enable_grad():
                scaled = s * params[0].exp()
                logits = torch.stack([scaled[:, 0], scaled[:, 1], params[1] + scaled.mean(1)], dim=1)
                loss = nn.functional.cross_entropy(logits, y)
                loss.backward()
            return loss

        opt.step(closure)
        scale, log_nu = float(params[0].exp()), float(params[1])
        if not (math.isfinite(scale) and math.isfinite(log_nu)):
            scale, log_nu = 1.0, 0.0
        self.link_scale.fill_(scale)
        self.log_nu.data.fill_(log_nu)
        return {"scale": scale, "log_nu": log_nu}
