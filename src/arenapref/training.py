"""Training on the Hugging Face Trainer: read data, tokenise once, train, keep the best checkpoint, save a model dir.

Works unchanged under `torchrun` / `accelerate launch` (the Trainer handles distribution) and with bf16/fp16.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import LABELS
from .config import TrainConfig
from .calibration import calibrate
from .data import DataError, grouped_split, load_frame, write_text_atomic
from .inference import PairCollator, predict_pairs, softmax
from .metrics import classification_metrics, log_loss
from .models import META_FILE, MODELS, DualTowerModel
from .text import Renderer, TextSettings


class PairDataset(Dataset):
    """Pre-tokenised pairs: every text is tokenised once per run, not once per epoch or per tower."""

    def __init__(self, side_a: list[list[int]], side_b: list[list[int]], labels: np.ndarray):
        self.side_a, self.side_b, self.labels = side_a, side_b, np.asarray(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": (self.side_a[i], self.side_b[i]), "labels": int(self.labels[i])}


def compute_metrics(eval_pred) -> dict:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    probs = softmax(logits)
    labels = np.asarray(eval_pred.label_ids)
    return {"log_loss": log_loss(labels, probs), "accuracy": float((probs.argmax(1) == labels).mean())}


def _load_tokenizer(backbone: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(backbone)
    except Exception as exc:
        raise DataError(f"backbone {backbone!r}: cannot load its tokenizer ({str(exc).splitlines()[0][:160]}); "
                        "pass a local model directory or a Hub name (the Hub must be reachable)") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _build_model(cfg: TrainConfig):
    try:
        return DualTowerModel.from_backbone(cfg.backbone, cfg.objective, cfg.rank_loss)
    except OSError as exc:
        raise DataError(f"backbone {cfg.backbone!r}: cannot load its weights ({str(exc).splitlines()[0][:160]})") from None


def _optimizer(model, cfg: TrainConfig):
    """AdamW with the encoder at `lr` and the new head (and Davidson tie weight) at `head_lr`."""
    head, encoder = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (encoder if name.startswith("encoder.") else head).append(param)
    groups = [{"params": encoder, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
              {"params": head, "lr": cfg.head_lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def load_train_valid(cfg: TrainConfig):
    """Training and validation frames: --valid, or a prompt-grouped hold-out of --data; --extra rows train only."""
    import pandas as pd

    frame = load_frame(cfg.data, require_labels=True)
    if cfg.valid:
        train_frame, valid_frame = frame, load_frame(cfg.valid, require_labels=True)
    else:
        train_frame, valid_frame = grouped_split(frame, cfg.valid_fraction, cfg.seed)
    if cfg.extra:
        extras = [load_frame(path, require_labels=True) for path in cfg.extra]
        # Ids only need to be unique within a file; prefix extra rows so they cannot collide.
        extras = [x.assign(id=[f"extra{k}-{i}" for i in x["id"]]) for k, x in enumerate(extras)]
        train_frame = pd.concat([train_frame, *extras], ignore_index=True)
    return train_frame, valid_frame


def prepare_output(cfg: TrainConfig) -> Path:
    output = Path(cfg.output)
    if output.exists() and not output.is_dir():
        raise DataError(f"{output}: exists and is a file; choose a directory for --output")
    return output


def train(cfg: TrainConfig, log=print) -> dict:
    """Train one model as configured (any family); returns the validation metrics of the saved model."""
    if MODELS[cfg.model].backend == "gbdt":
        from .models.gbdt import train_gbdt

        return train_gbdt(cfg, log)
    return train_neural(cfg, log)


def train_neural(cfg: TrainConfig, log=print) -> dict:
    """HF Trainer run for a neural family; keeps the best checkpoint by validation log loss."""
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(cfg.seed)
    output = prepare_output(cfg)
    train_frame, valid_frame = load_train_valid(cfg)
    output.mkdir(parents=True, exist_ok=True)

    tokenizer = _load_tokenizer(cfg.backbone)
    settings = TextSettings(max_length=cfg.max_length, response_weight=cfg.response_weight,
                            truncation_side=cfg.truncation_side)
    renderer = Renderer(tokenizer, settings)
    train_ds = PairDataset(*renderer.dual_tower_inputs(train_frame), train_frame["label"].to_numpy())
    valid_ds = PairDataset(*renderer.dual_tower_inputs(valid_frame), valid_frame["label"].to_numpy())
    model = _build_model(cfg)

    args = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="log_loss",
        greater_is_better=False,
        logging_steps=max(1, min(cfg.eval_steps, 10)),
        seed=cfg.seed,
        bf16=cfg.bf16,
        fp16=cfg.fp16,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        save_only_model=False,
        disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=valid_ds,
                      data_collator=PairCollator(tokenizer.pad_token_id), compute_metrics=compute_metrics,
                      optimizers=(_optimizer(model, cfg), None))
    resume = cfg.resume and any((output / "checkpoints").glob("checkpoint-*"))
    start = time.time()
    trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.time() - start

    model = trainer.model
    meta = {
        "format_version": 1,
        "model_type": cfg.model,
        "objective": cfg.objective,
        "rank_loss": cfg.rank_loss,
        "backbone": cfg.backbone,
        "labels": list(LABELS),
        "text": settings.to_dict(),
        "calibration": {"temperature": 1.0},
        "train_config": cfg.to_dict(),
        "train_rows": len(train_frame),
        "valid_rows": len(valid_frame),
        "train_seconds": round(train_seconds, 1),
    }
    if not trainer.is_world_process_zero():
        return {}
    labels = valid_ds.labels
    logits, scores = predict_pairs(model, valid_ds.side_a, valid_ds.side_b, tokenizer.pad_token_id,
                                   device=trainer.args.device)
    if cfg.objective == "rank" and cfg.rank_loss == "mse":
        meta["link"] = model.fit_link(scores, labels)
        logits, _ = predict_pairs(model, valid_ds.side_a, valid_ds.side_b, tokenizer.pad_token_id,
                                  device=trainer.args.device)
    temperature, probs = calibrate(logits, labels, log)
    meta["calibration"] = {"temperature": temperature, "fitted_on": "validation", "rows": int(len(labels))}
    metrics = classification_metrics(labels, probs)
    meta["valid_metrics"] = {k: v for k, v in metrics.items() if k != "confusion"}
    save_model_dir(output, model, tokenizer, meta)
    return metrics


def save_model_dir(output: Path, model, tokenizer, meta: dict) -> None:
    """Weights, config and tokenizer first, arenapref.json last: a directory with arenapref.json is complete."""
    (output / META_FILE).unlink(missing_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    write_text_atomic(json.dumps(meta, indent=2, default=str), output / META_FILE)
