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


class SequenceCollator:
    """Pads one joint sequence per row (cross-encoder, llm) on the right: input_ids (B, L)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        length = max(len(row["input_ids"]) for row in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row["input_ids"])] = torch.as_tensor(row["input_ids"], dtype=torch.long)
            mask[i, : len(row["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        if "soft_labels" in rows[0]:
            batch["soft_labels"] = torch.tensor(np.array([row["soft_labels"] for row in rows]), dtype=torch.float32)
        return batch


def collator_for(inputs: str, pad_id: int):
    """The collator of a family's input kind: "pair" -> (B, 2, L), "joint" -> (B, L)."""
    return PairCollator(pad_id) if inputs == "pair" else SequenceCollator(pad_id)


def encode_rows(renderer, inputs: str, frame) -> list:
    """Model inputs per row: (side A, side B) token ids for "pair" families, one joint sequence for "joint"."""
    if inputs == "pair":
        return list(zip(*renderer.dual_tower_inputs(frame)))
    return renderer.cross_inputs(frame)


def padded_cost(inputs: str, rows: list) -> np.ndarray:
    """Tokens a row occupies in a batch: both sides of a pair share one padded length."""
    if inputs == "pair":
        return np.array([2 * max(len(a), len(b)) for a, b in rows], dtype=np.int64)
    return np.array([len(r) for r in rows], dtype=np.int64)


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
def predict_rows(model, rows: list, inputs: str, pad_id: int, max_tokens: int = 16384,
                 device: str | torch.device = "cpu", progress=None):
    """Logits (N, 3) and, for rank models, side scores (N, 2), in the input order.

    `rows` are pairs of sides (inputs="pair") or joint sequences (inputs="joint").
    """
    model.eval()
    n = len(rows)
    collate = collator_for(inputs, pad_id)
    logits = np.zeros((n, 3), dtype=np.float32)
    scores = None
    for batch_idx in token_budget_batches(padded_cost(inputs, rows), max_tokens):
        batch = collate([{"input_ids": rows[i]} for i in batch_idx])
        out = model(**{k: v.to(device) for k, v in batch.items()})
        logits[batch_idx] = out.logits.float().cpu().numpy()
        if getattr(out, "scores", None) is not None:
            if scores is None:
                scores = np.zeros((n, 2), dtype=np.float32)
            scores[batch_idx] = out.scores.float().cpu().numpy()
        if progress is not None:
            progress(len(batch_idx))
    return logits, scores


def predict_pairs(model, side_a: list[list[int]], side_b: list[list[int]], pad_id: int,
                  max_tokens: int = 16384, device: str | torch.device = "cpu", progress=None):
    """Dual-tower shortcut of `predict_rows`."""
    return predict_rows(model, list(zip(side_a, side_b)), "pair", pad_id, max_tokens, device, progress)


@torch.inference_mode()
def score_sides(model, sides: list[list[int]], pad_id: int, max_tokens: int = 16384,
                device: str | torch.device = "cpu") -> np.ndarray:
    """Rank models: one score per single side (prompt + one response), in the input order."""
    model.eval()
    lengths = np.array([len(side) for side in sides], dtype=np.int64)
    scores = np.zeros(len(sides), dtype=np.float32)
    for batch_idx in token_budget_batches(lengths, max_tokens):
        length = max(int(lengths[batch_idx].max()), 1)
        ids = torch.full((len(batch_idx), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_idx), length), dtype=torch.long)
        for row, i in enumerate(batch_idx):
            ids[row, : lengths[i]] = torch.as_tensor(sides[i], dtype=torch.long)
            mask[row, : lengths[i]] = 1
        scores[batch_idx] = model.side_scores(ids.to(device), mask.to(device)).float().cpu().numpy()
    return scores


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class NeuralBackend:
    """A transformers model directory (weights + tokenizer): renders rows into token ids, returns raw logits."""

    def __init__(self, model, tokenizer, meta: dict, device: str | torch.device = "cpu", inputs: str = "pair"):
        from .text import Renderer, TextSettings

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.device = torch.device(device)
        self.inputs = inputs  # "pair" (dual tower) or "joint" (cross-encoder, llm)
        self.settings = TextSettings.from_dict(meta.get("text", {}))
        self.renderer = Renderer(tokenizer, self.settings)
        self.max_tokens = 16384

    @classmethod
    def load(cls, path, meta: dict, recipe, device: str | torch.device = "cpu") -> "NeuralBackend":
        """`recipe`: the family's recipe (models/families.py), which checks and loads the weights."""
        from pathlib import Path

        from .data import DataError

        path = Path(path)
        model = recipe.load(path)
        try:
            tokenizer = recipe.tokenizer(path)
        except DataError as exc:
            raise DataError(f"{path}: tokenizer files missing or corrupt ({str(exc)[:160]})") from None
        return cls(model, tokenizer, meta, device, recipe.inputs)

    def predict_logits(self, frame, progress=None):
        """Uncalibrated logits (N, 3) and side scores (N, 2) or None, for a normalised frame."""
        return predict_rows(self.model, encode_rows(self.renderer, self.inputs, frame), self.inputs,
                            self.tokenizer.pad_token_id or 0, self.max_tokens, self.device, progress)

    @property
    def scores_sides(self) -> bool:
        """Rank-objective models score one response without a partner (ranking n responses costs n passes)."""
        return (self.inputs == "pair" and hasattr(self.model, "side_scores")
                and getattr(self.model.config, "objective", None) == "rank")

    def score_responses(self, prompts: list[list[str]], responses: list[list[str]]) -> np.ndarray:
        """Uncalibrated score of each (prompt turns, response turns), rendered exactly like one side of a pair."""
        prompt_ids = self.renderer.tokenize_turn_lists(prompts)
        response_ids = self.renderer.tokenize_turn_lists(responses)
        sides = [self.renderer.side(p, r) for p, r in zip(prompt_ids, response_ids)]
        return score_sides(self.model, sides, self.tokenizer.pad_token_id or 0, self.max_tokens, self.device)
