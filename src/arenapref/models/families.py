"""Recipes of the neural model families: what the training loop and the Judge need to know about each `--model`.

A neural family has
  name, inputs        "pair" (two sides, shape (B, 2, L)) or "joint" (one sequence per row, shape (B, L));
  tokenizer(source)   the tokenizer of a backbone or of a saved directory (pad token set);
  build(cfg, tok)     a trainable model from cfg.backbone;
  load(path)          the saved model, ready for inference;
  is_head(name)       whether a parameter belongs to the new head (it gets --head-lr);
  for_saving(model)   the model to write with save_pretrained;
  model_computes_loss whether forward(labels=, soft_labels=) returns the loss (else the Trainer computes it).
Families on another backend (gbdt) are dispatched by `Family.backend` in models/__init__.py instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from arenapref.data.features import SHARED_COUNT, SIDE_COUNT
from arenapref.data.text import Renderer, TextSettings
from arenapref.errors import DataError
from arenapref.models.cross_encoder import CrossEncoderModel
from arenapref.models.dual_tower import DualTowerModel
from arenapref.models.loading import (
    load_tokenizer,
    load_weights,
    local_backbone,
    pretrained,
    read_config,
    referenced_encoder,
)


class EncoderFamily:
    """Our own PreTrainedModel subclass around a Hugging Face encoder (dual tower, cross-encoder)."""

    model_computes_loss = True

    def __init__(self, name: str, model_cls, inputs: str, build):
        self.name, self.model_cls, self.inputs, self._build = name, model_cls, inputs, build

    def tokenizer(self, source, cfg=None):
        return load_tokenizer(source)

    def build(self, cfg, tokenizer):
        try:
            return self._build(self.model_cls, dataclasses.replace(cfg, backbone=local_backbone(cfg.backbone)),
                               tokenizer)
        except OSError as exc:
            raise DataError(f"backbone {cfg.backbone!r}: cannot load its weights "
                            f"({str(exc).splitlines()[0][:160]})") from None

    def load(self, path: Path, meta: dict | None = None, verify: bool = True):
        config = read_config(path)
        expected = self.model_cls.config_class.model_type
        if config.get("model_type") != expected:
            raise DataError(f"{path / 'config.json'}: model type {config.get('model_type')!r} does not match "
                            f"{self.name!r} in arenapref.json; the directory mixes two models")
        reference = (meta or {}).get("backbone_reference")
        if reference:  # saved with --backbone-weights reference: the head here, the encoder where it is installed
            encoder = referenced_encoder(reference, path, verify)
            return load_weights(lambda p: self.head_only(p, encoder), path)
        return load_weights(lambda p: pretrained(self.model_cls, p), path)

    def head_only(self, path: Path, encoder):
        """The model of a directory that holds every weight but the encoder's, around the given encoder."""
        from safetensors.torch import load_file

        model = self.model_cls(self.model_cls.config_class.from_pretrained(path), encoder=encoder)
        missing, unexpected = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
        if unexpected or any(not k.startswith("encoder.") for k in missing):
            raise DataError(f"{path / 'model.safetensors'}: does not hold this model's head "
                            f"({(unexpected or [k for k in missing if not k.startswith('encoder.')])[0]}); "
                            "retrain or restore the directory")
        return model.eval()

    @staticmethod
    def is_head(name: str) -> bool:
        return not name.startswith("encoder.")

    @staticmethod
    def for_saving(model):
        return model


def feature_widths(cfg) -> tuple[int, int]:
    """(per-side, shared) side-feature columns of the head: none for the plain head (--no-head-features); a rank
    head scores each side alone, so it reads only that side's features."""
    if not cfg.head_features:
        return 0, 0
    return SIDE_COUNT, 0 if cfg.objective == "rank" else SHARED_COUNT


def field_marker_ids(tokenizer) -> list:
    """Token ids of the joint rendering's field markers (what "fields" pooling looks for)."""
    return [list(m) for m in Renderer(tokenizer, TextSettings()).field_markers]


DUAL_TOWER = EncoderFamily("dual-tower", DualTowerModel, "pair",
                           lambda cls, cfg, tokenizer: cls.from_backbone(cfg.backbone, cfg.objective, cfg.rank_loss,
                                                                         *feature_widths(cfg), cfg.style_term))
CROSS_ENCODER = EncoderFamily("cross-encoder", CrossEncoderModel, "joint",
                              lambda cls, cfg, tokenizer: cls.from_backbone(cfg.backbone, cfg.pooling,
                                                                            *feature_widths(cfg),
                                                                            field_marker_ids(tokenizer),
                                                                            cfg.style_term))
