"""Batched inference: rows sorted by length, batches sized by a token budget, dynamic padding, order restored."""

from __future__ import annotations

import numpy as np
import torch


class PairCollator:
    """Pads the two sides of every row to the longest side in the batch: input_ids (B, 2, L)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        length = max(len(side) for row in rows for side in row["input_ids"])
        ids = torch.full((len(rows), 2, length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), 2, length), dtype=torch.long)
        for i, row in enumerate(rows):
            for j, side in enumerate(row["input_ids"]):
                ids[i, j, : len(side)] = torch.as_tensor(side, dtype=torch.long)
                mask[i, j, : len(side)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        if "soft_labels" in rows[0]:
            batch["soft_labels"] = torch.tensor(np.array([row["soft_labels"] for row in rows]), dtype=torch.float32)
        return batch


def token_budget_batches(lengths: np.ndarray, max_tokens: int, max_rows: int = 256) -> list[np.ndarray]:
    """Row indices sorted longest first, cut into batches whose padded size (rows x longest) stays in budget."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = int(min(max(max_tokens // longest, 1), max_rows))
        batches.append(order[start:start + size])
        start += size
    return batches


@torch.inference_mode()
def predict_pairs(model, side_a: list[list[int]], side_b: list[list[int]], pad_id: int,
                  max_tokens: int = 16384, device: str | torch.device = "cpu", progress=None):
    """Logits (N, 3) and, for rank models, side scores (N, 2), in the input order."""
    model.eval()
    n = len(side_a)
    # Both sides of a row share one padded length, so a row costs 2 x its longer side.
    lengths = np.array([2 * max(len(a), len(b)) for a, b in zip(side_a, side_b)], dtype=np.int64)
    collate = PairCollator(pad_id)
    logits = np.zeros((n, 3), dtype=np.float32)
    scores = None
    for batch_idx in token_budget_batches(lengths, max_tokens):
        batch = collate([{"input_ids": (side_a[i], side_b[i])} for i in batch_idx])
        out = model(**{k: v.to(device) for k, v in batch.items()})
        logits[batch_idx] = out.logits.float().cpu().numpy()
        if out.scores is not None:
            if scores is None:
                scores = np.zeros((n, 2), dtype=np.float32)
            scores[batch_idx] = out.scores.float().cpu().numpy()
        if progress is not None:
            progress(len(batch_idx))
    return logits, scores


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class NeuralBackend:
    """A transformers model directory (weights + tokenizer): renders rows into token ids, returns raw logits."""

    def __init__(self, model, tokenizer, meta: dict, device: str | torch.device = "cpu"):
        from .text import Renderer, TextSettings

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.device = torch.device(device)
        self.settings = TextSettings.from_dict(meta.get("text", {}))
        self.renderer = Renderer(tokenizer, self.settings)
        self.max_tokens = 16384

    @classmethod
    def load(cls, path, meta: dict, model_cls, device: str | torch.device = "cpu") -> "NeuralBackend":
        import json
        from pathlib import Path

        from transformers import AutoTokenizer

        from .data import DataError
        from .models import META_FILE

        path = Path(path)
        config_path = path / "config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{config_path}: missing or corrupt; retrain or restore the model directory") from None
        if config.get("model_type") != model_cls.config_class.model_type:
            raise DataError(f"{config_path}: model type {config.get('model_type')!r} does not match "
                            f"{meta['model_type']!r} in {META_FILE}; the directory mixes two models")
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise DataError(f"{weights}: missing; the model directory is incomplete, retrain or restore it")
        try:
            model = model_cls.from_pretrained(path)
        except Exception as exc:  # safetensors / torch raise several types for a damaged file
            raise DataError(f"{weights}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                            "the file is corrupt or truncated, retrain or restore it") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:
            raise DataError(f"{path}: tokenizer files missing or corrupt ({str(exc).splitlines()[0][:120]})") from None
        return cls(model, tokenizer, meta, device)

    def predict_logits(self, frame, progress=None):
        """Uncalibrated logits (N, 3) and side scores (N, 2) or None, for a normalised frame."""
        side_a, side_b = self.renderer.dual_tower_inputs(frame)
        return predict_pairs(self.model, side_a, side_b, self.tokenizer.pad_token_id or 0,
                             self.max_tokens, self.device, progress)
