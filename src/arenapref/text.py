"""Conversation rendering and token-budget truncation.

Texts are tokenised once, field by field (each prompt turn, each response turn), without special tokens; the
model inputs are then assembled from token ids. That lets every field get a fair share of the budget: a short
field keeps all its tokens and hands the rest to the long ones, so a long prompt never crowds a response out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class TextSettings:
    max_length: int = 256
    # Relative weight of a response turn against a prompt turn when both are longer than their share.
    response_weight: float = 2.0
    # "right" drops the end of an over-long field, "left" drops its beginning.
    truncation_side: str = "right"
    user_marker: str = "User:"
    assistant_marker: str = "Assistant:"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TextSettings":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def allocate(lengths: list[int], weights: list[float], budget: int) -> list[int]:
    """Weighted water-filling: field i gets min(length_i, its weighted share), surplus flows to the others."""
    alloc = [0] * len(lengths)
    active = [i for i, n in enumerate(lengths) if n > 0]
    remaining = max(budget, 0)
    while active:
        total_w = sum(weights[i] for i in active)
        fitting = [i for i in active if lengths[i] <= remaining * weights[i] / total_w]
        if not fitting:
            shares = [int(remaining * weights[i] / total_w) for i in active]
            # Hand out rounding leftovers one token at a time so the whole budget is used.
            spare = remaining - sum(shares)
            for k in range(spare):
                shares[k % len(shares)] += 1
            for i, share in zip(active, shares):
                alloc[i] = min(share, lengths[i])
            break
        for i in fitting:
            alloc[i] = lengths[i]
            remaining -= lengths[i]
        active = [i for i in active if i not in fitting]
    return alloc


def clip(ids: list[int], n: int, side: str) -> list[int]:
    if len(ids) <= n:
        return ids
    return ids[len(ids) - n:] if side == "left" else ids[:n]


class Renderer:
    """Turns tokenised conversations into encoder inputs for one tokenizer and one set of text settings."""

    def __init__(self, tokenizer, settings: TextSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.prefix = [first] if first is not None else []
        self.suffix = [last] if last is not None else []
        self.user = self.tokenize([settings.user_marker])[0]
        self.assistant = self.tokenize([settings.assistant_marker])[0]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def tokenize_turn_lists(self, turn_lists) -> list[list[list[int]]]:
        """Tokenise every turn of every row in one batched call; returns per row, per turn, token ids."""
        flat = [t for turns in turn_lists for t in turns]
        ids = iter(self.tokenize(flat))
        return [[next(ids) for _ in turns] for turns in turn_lists]

    def side(self, prompt: list[list[int]], response: list[list[int]]) -> list[int]:
        """prefix + (User: prompt_t Assistant: response_t)* + suffix, within max_length tokens."""
        s = self.settings
        n_turns = len(prompt)
        per_turn = len(self.user) + len(self.assistant)
        fixed = len(self.prefix) + len(self.suffix)
        # Keep the most recent turns whose markers fit with room for at least a few tokens per field.
        while n_turns > 1 and fixed + n_turns * (per_turn + 8) > s.max_length:
            n_turns -= 1
        prompt, response = prompt[-n_turns:], response[-n_turns:]
        budget = s.max_length - fixed - n_turns * per_turn
        lengths, weights = [], []
        for p, r in zip(prompt, response):
            lengths += [len(p), len(r)]
            weights += [1.0, s.response_weight]
        alloc = allocate(lengths, weights, budget)
        ids = list(self.prefix)
        for t, (p, r) in enumerate(zip(prompt, response)):
            ids += self.user + clip(p, alloc[2 * t], s.truncation_side)
            ids += self.assistant + clip(r, alloc[2 * t + 1], s.truncation_side)
        return ids + self.suffix

    def dual_tower_inputs(self, frame) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of side A (prompt + response A) and side B for every row; the prompt is tokenised once."""
        prompts = self.tokenize_turn_lists(frame["prompt"])
        resp_a = self.tokenize_turn_lists(frame["response_a"])
        resp_b = self.tokenize_turn_lists(frame["response_b"])
        side_a = [self.side(p, a) for p, a in zip(prompts, resp_a)]
        side_b = [self.side(p, b) for p, b in zip(prompts, resp_b)]
        return side_a, side_b


def lengths_of(sequences: list[list[int]]) -> np.ndarray:
    return np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
