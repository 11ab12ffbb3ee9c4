"""Conversation rendering and token-budget truncation.

Texts are tokenised once, field by field (each prompt turn, each response turn), without special tokens; the
model inputs are then assembled from token ids. That lets every field get a fair share of the budget: a short
field keeps all its tokens and hands the rest to the long ones, so a long prompt never crowds a response out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass


@dataclass
class TextSettings:
    max_length: int = 256
    # Relative weight of a response turn against a prompt turn when both are longer than their share.
    response_weight: float = 2.0
    # "right" drops the end of an over-long field, "left" drops its beginning.
    truncation_side: str = "right"
    user_marker: str = "User:"
    assistant_marker: str = "Assistant:"
    # Joint (cross-encoder / llm) input: relative budget of prompt, response A, response B, and the marker that
    # starts every turn of each field.
    field_weights: tuple = (0.2, 0.4, 0.4)
    field_markers: tuple = ("Prompt:", "Response A:", "Response B:")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TextSettings:
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in cls.__dataclass_fields__}
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
        # Decoders often pad with their end token; a final token equal to the pad id would be read as padding by
        # last-token pooling, so such a suffix is left out.
        self.suffix = [last] if last is not None and last != tokenizer.pad_token_id else []
        specials = set(getattr(tokenizer, "all_special_tokens", [])) | {t.content for t in getattr(
            tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)}
        specials = sorted((t for t in specials if t), key=len, reverse=True)
        self.spelled_special = re.compile("|".join(map(re.escape, specials))) if specials else None
        self.user = self.tokenize([settings.user_marker])[0]
        self.assistant = self.tokenize([settings.assistant_marker])[0]
        self.field_markers = self.tokenize(list(settings.field_markers))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of plain text. User text that spells a special token ("[SEP]", "</s>", "<|endoftext|>") is
        text, never that token: split_special_tokens stops the tokenizer's added-token matching, and a text that
        still spells one is tokenised with each such spelling cut after its first character, because some
        vocabularies (sentencepiece ones) also hold the special tokens as ordinary pieces."""
        if not texts:
            return []
        ids = self._ids(list(texts))
        if self.spelled_special is not None:
            for i, text in enumerate(texts):
                if self.spelled_special.search(text):
                    ids[i] = [t for piece in self._ids(self._cut_specials(text)) for t in piece]
        return ids

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False,
                              split_special_tokens=True)["input_ids"]

    def _cut_specials(self, text: str) -> list[str]:
        pieces, pos = [], 0
        for match in self.spelled_special.finditer(text):
            pieces += [text[pos:match.start()], match.group()[0], match.group()[1:]]
            pos = match.end()
        return [p for p in pieces + [text[pos:]] if p]

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

    def field(self, turns: list[list[int]], marker: list[int], budget: int) -> list[int]:
        """marker turn marker turn ... within `budget` tokens, cutting as few turns as possible.

        The field is truncated as one sequence on the truncation side: "left" keeps the latest turns whole and
        cuts (or drops) the oldest, "right" keeps the first turns whole. The first kept turn's marker always stays.
        """
        left = self.settings.truncation_side == "left"
        order = list(reversed(turns)) if left else list(turns)
        kept, used = [], 0
        for k, turn in enumerate(order):
            room = budget - used - len(marker)
            if k > 0 and room <= 0:
                break
            piece = clip(turn, max(room, 0), self.settings.truncation_side)
            kept.append(marker + piece)
            used += len(marker) + len(piece)
            if len(piece) < len(turn):
                break
        if left:
            kept.reverse()
        return [t for piece in kept for t in piece]

    def joint(self, prompt: list[list[int]], resp_a: list[list[int]], resp_b: list[list[int]]) -> list[int]:
        """prefix + Prompt: p.. + Response A: a.. + Response B: b.. + suffix, within max_length tokens.

        Each field gets its weighted share of the budget (default 20/40/40); a short field hands its unused share
        to the others (the same water-filling as `allocate`). Every field's first marker is always present.
        """
        s = self.settings
        fields = (prompt, resp_a, resp_b)
        first_markers = sum(len(m) for m in self.field_markers)
        budget = s.max_length - len(self.prefix) - len(self.suffix) - first_markers
        # Cost of a field beyond its first marker: its turns plus the markers of turns after the first.
        costs = [sum(len(t) for t in turns) + len(m) * max(len(turns) - 1, 0)
                 for turns, m in zip(fields, self.field_markers)]
        alloc = allocate(costs, list(s.field_weights), budget)
        ids = list(self.prefix)
        for turns, marker, extra in zip(fields, self.field_markers, alloc):
            ids += self.field(turns, marker, len(marker) + extra)
        return ids + self.suffix

    def cross_inputs(self, frame) -> list[list[int]]:
        """One joint sequence (prompt, response A, response B) per row."""
        prompts = self.tokenize_turn_lists(frame["prompt"])
        resp_a = self.tokenize_turn_lists(frame["response_a"])
        resp_b = self.tokenize_turn_lists(frame["response_b"])
        return [self.joint(p, a, b) for p, a, b in zip(prompts, resp_a, resp_b)]


def encode_rows(renderer, inputs: str, frame) -> list:
    """Model inputs per row: (side A, side B) token ids for "pair" families, one joint sequence for "joint"."""
    if inputs == "pair":
        return list(zip(*renderer.dual_tower_inputs(frame)))
    return renderer.cross_inputs(frame)
