"""Conversation rendering and token-budget truncation.

Texts are tokenised once, field by field (each prompt turn, each response turn), without special tokens; the
model inputs are then assembled from token ids. That lets every field get a fair share of the budget: a short
field keeps all its tokens and hands the rest to the long ones, so a long prompt never crowds a response out.

Every packing can say what it kept: `encode_rows(..., diagnostics=[])` appends one dict per row, filled by the
same code that builds the ids (`Renderer.side` / `Renderer.joint` with `record=`), so the report is by
construction what the model read. Schema (all values JSON-serialisable):

    inputs          "joint" or "pair"
    packing         "rounds" or "fields" (joint, `TextSettings.joint_packing`); "turns" (pair: `Renderer.side`)
    max_length      the token budget of one model input (pair: of each side)
    tokens          tokens fed to the model for the row (pair: side A's plus side B's)
    truncated       True when any text token was cut or any round / turn dropped
    fields          {"prompt": [...], "response_a": [...], "response_b": [...]}: per turn of the row's lists,
                    {"kept": tokens of the turn shown, "tokens": the turn's tokens}; a dropped turn has kept 0.
                    Pair: both sides render the prompt; "prompt" holds the smaller kept count of the two sides
                    (what both towers read), "sides" each side's own
    overhead        {"special": prefix + suffix tokens, "markers": marker tokens, "ellipsis": cut-mark tokens};
                    sum of every kept + the three == tokens
    joint only:     rounds (rounds in the row), rounds_dropped (earliest rounds not shown at all)
    pair only:      turns_dropped {"a": k, "b": k} (earliest turns a side left out),
                    sides {"a": {"tokens": n, "prompt": [kept per prompt turn]}, "b": {...}}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# No arenapref import here: `export` copies this file into reward-model folders (render.py) that load without
# arenapref. Its callers turn a ValueError about saved settings into their one-line DataError.

JOINT_PACKINGS = ("rounds", "fields")
# A round cut to fit (not the latest) is shown only with at least this many text tokens: a few tokens of an old
# exchange tell the model less than the room they take from nothing, and dropping it is marked anyway.
MIN_CUT_ROUND_TOKENS = 8


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
    # Joint input packing. "rounds": a round is prompt turn t with both responses' turn t; the latest rounds are
    # kept whole, the earliest kept one is cut, and every cut is marked with an ellipsis ("…"), so no prompt turn
    # is shown without its answers (Renderer.joint). "fields": each field budgeted and cut on its own, the packing
    # of models trained before rounds existed. New settings default to rounds; a saved "text" block without the
    # key was written by such a model and reads as fields (`from_dict`), so it predicts exactly as before.
    joint_packing: str = "rounds"

    def __post_init__(self):
        if self.joint_packing not in JOINT_PACKINGS:
            raise ValueError(f"joint_packing {self.joint_packing!r}: expected one of {', '.join(JOINT_PACKINGS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TextSettings:
        """Settings saved by `to_dict` (a model directory's arenapref.json "text" block)."""
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in cls.__dataclass_fields__}
        known.setdefault("joint_packing", "fields")  # saved before round packing existed
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
        self.ellipsis = self.cut_mark()

    def cut_mark(self) -> list[int]:
        """Token ids of the mark shown where round packing cut text: "…" (one token in most vocabularies), or
        " ..." where the vocabulary reads "…" as unknown (an unknown token would mark nothing)."""
        unknown = getattr(self.tokenizer, "unk_token_id", None)
        for text in ("…", " ..."):
            ids = self.tokenize([text])[0]
            if ids and unknown not in ids:
                return ids
        return ids

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

    # -- dual tower: one side (prompt + one response) per sequence ----------------------------------------------
    def side(self, prompt: list[list[int]], response: list[list[int]], record: dict | None = None) -> list[int]:
        """prefix + (User: prompt_t Assistant: response_t)* + suffix, within max_length tokens.

        `record` (a dict) receives what the side kept: tokens, prompt and response (tokens shown per turn of each
        list, 0 for a turn left out), turns_dropped and markers (marker tokens)."""
        s = self.settings
        all_prompt, all_response = prompt, response
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
        kept_prompt, kept_response = [], []
        for t, (p, r) in enumerate(zip(prompt, response)):
            p, r = clip(p, alloc[2 * t], s.truncation_side), clip(r, alloc[2 * t + 1], s.truncation_side)
            ids += self.user + p + self.assistant + r
            kept_prompt.append(len(p))
            kept_response.append(len(r))
        if record is not None:
            shown = len(kept_prompt)  # zip stops at the shorter list
            record.update(
                tokens=len(ids) + len(self.suffix),
                prompt=[0] * (len(all_prompt) - len(prompt)) + kept_prompt + [0] * (len(prompt) - shown),
                response=[0] * (len(all_response) - len(response)) + kept_response + [0] * (len(response) - shown),
                turns_dropped=max(len(all_prompt), len(all_response)) - shown,
                markers=shown * per_turn)
        return ids + self.suffix

    def dual_tower_inputs(self, frame, diagnostics: list | None = None) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of side A (prompt + response A) and side B for every row; the prompt is tokenised once.
        `diagnostics` (a list) receives one dict per row (module docstring)."""
        prompts = self.tokenize_turn_lists(frame["prompt"])
        resp_a = self.tokenize_turn_lists(frame["response_a"])
        resp_b = self.tokenize_turn_lists(frame["response_b"])
        side_a, side_b = [], []
        for p, a, b in zip(prompts, resp_a, resp_b):
            record_a, record_b = ({}, {}) if diagnostics is not None else (None, None)
            side_a.append(self.side(p, a, record_a))
            side_b.append(self.side(p, b, record_b))
            if diagnostics is not None:
                diagnostics.append(self.pair_report(p, a, b, record_a, record_b))
        return side_a, side_b

    def pair_report(self, prompt, resp_a, resp_b, record_a: dict, record_b: dict) -> dict:
        """One row's diagnostics from its two sides' records. Each tower reads the prompt: "fields"["prompt"]
        counts the tokens of each prompt turn that both sides showed (the smaller count), "sides" each side's."""
        fields = {"prompt": [{"kept": min(ka, kb), "tokens": len(t)}
                             for t, ka, kb in zip(prompt, record_a["prompt"], record_b["prompt"])],
                  "response_a": turn_report(resp_a, record_a["response"]),
                  "response_b": turn_report(resp_b, record_b["response"])}
        dropped = {"a": record_a["turns_dropped"], "b": record_b["turns_dropped"]}
        cut = any(k < len(t) for turns, kept in ((prompt, record_a["prompt"]), (prompt, record_b["prompt"]),
                                                 (resp_a, record_a["response"]), (resp_b, record_b["response"]))
                  for t, k in zip(turns, kept))
        return {"inputs": "pair", "packing": "turns", "max_length": self.settings.max_length,
                "tokens": record_a["tokens"] + record_b["tokens"], "truncated": bool(cut or any(dropped.values())),
                "fields": fields, "turns_dropped": dropped,
                "sides": {"a": {"tokens": record_a["tokens"], "prompt": record_a["prompt"]},
                          "b": {"tokens": record_b["tokens"], "prompt": record_b["prompt"]}},
                "overhead": {"special": 2 * (len(self.prefix) + len(self.suffix)),
                             "markers": record_a["markers"] + record_b["markers"], "ellipsis": 0}}

    # -- joint families: prompt, response A and response B in one sequence --------------------------------------
    def field(self, turns: list[list[int]], marker: list[int], budget: int, kept: list | None = None) -> list[int]:
        """marker turn marker turn ... within `budget` tokens, cutting as few turns as possible.

        The field is truncated as one sequence on the truncation side: "left" keeps the latest turns whole and
        cuts (or drops) the oldest, "right" keeps the first turns whole. The first kept turn's marker always stays.
        `kept` (a list) receives per turn the tokens shown, or None for a turn not shown at all (nor its marker).
        """
        left = self.settings.truncation_side == "left"
        order = list(reversed(turns)) if left else list(turns)
        pieces, used = [], 0
        shown = [None] * len(turns)
        for k, turn in enumerate(order):
            room = budget - used - len(marker)
            if k > 0 and room <= 0:
                break
            piece = clip(turn, max(room, 0), self.settings.truncation_side)
            pieces.append(marker + piece)
            shown[len(turns) - 1 - k if left else k] = len(piece)
            used += len(marker) + len(piece)
            if len(piece) < len(turn):
                break
        if left:
            pieces.reverse()
        if kept is not None:
            kept.extend(shown)
        return [t for piece in pieces for t in piece]

    def joint(self, prompt: list[list[int]], resp_a: list[list[int]], resp_b: list[list[int]],
              record: dict | None = None) -> list[int]:
        """prefix + Prompt: p.. + Response A: a.. + Response B: b.. + suffix, within max_length tokens, packed by
        `settings.joint_packing` (`joint_rounds`, or `joint_fields` for models trained before it). `record` (a
        dict) receives the row's diagnostics (module docstring)."""
        if self.settings.joint_packing == "fields":
            return self.joint_fields(prompt, resp_a, resp_b, record)
        return self.joint_rounds(prompt, resp_a, resp_b, record)

    def joint_fields(self, prompt, resp_a, resp_b, record: dict | None = None) -> list[int]:
        """Each field gets its weighted share of the budget (default 20/40/40); a short field hands its unused share
        to the others (the same water-filling as `allocate`), then is cut on its own by `field`, so in a long
        conversation a prompt turn can be shown without the answers to it. Models trained with it keep it."""
        s = self.settings
        fields = (prompt, resp_a, resp_b)
        first_markers = sum(len(m) for m in self.field_markers)
        budget = s.max_length - len(self.prefix) - len(self.suffix) - first_markers
        # Cost of a field beyond its first marker: its turns plus the markers of turns after the first.
        costs = [sum(len(t) for t in turns) + len(m) * max(len(turns) - 1, 0)
                 for turns, m in zip(fields, self.field_markers)]
        alloc = allocate(costs, list(s.field_weights), budget)
        ids = list(self.prefix)
        shown = []
        for turns, marker, extra in zip(fields, self.field_markers, alloc):
            shown.append([])
            ids += self.field(turns, marker, len(marker) + extra, shown[-1])
        ids += self.suffix
        if record is not None:
            n_rounds = max(map(len, fields))
            # A round (turn index) is dropped when no field shows anything of it, not even a marker.
            dropped = sum(all(t >= len(f) or f[t] is None for f in shown) for t in range(n_rounds))
            markers = sum(len(m) * sum(k is not None for k in f) for m, f in zip(self.field_markers, shown))
            record.update(self.joint_report(fields, [[k or 0 for k in f] for f in shown], len(ids), markers, 0,
                                            n_rounds, dropped))
        return ids

    def joint_rounds(self, prompt, resp_a, resp_b, record: dict | None = None) -> list[int]:
        """Round-aligned packing: a round is prompt turn t with response A's and response B's turn t (a list
        shorter than the others lends empty turns). The latest rounds are kept whole, going backwards, since the
        vote is mostly about the last exchange; the earliest kept round is cut to the room left, its three turns
        sharing it by `field_weights` (`allocate`'s water-filling) and each cut on the truncation side. A cut
        round that cannot show every non-empty turn or `MIN_CUT_ROUND_TOKENS` is dropped instead (the latest
        round is always shown). So a prompt turn is never shown without its two responses, nor an answer without
        its prompt. Every cut is marked by `self.ellipsis`, counted in the budget: before a turn's text when its
        start is cut or earlier rounds were dropped (one mark per field), after it when its end is cut.

        Layout: three blocks with aligned rounds, `Prompt: p_s … p_n Response A: a_s … a_n Response B: b_s … b_n`
        (each turn after its field's marker), not rounds interleaved: the cross-encoder's "fields" pooling reads
        response A as the span from the first "Response A:" to the first "Response B:" and response B as the rest,
        and every block shows the same rounds, so the n-th marker of each block belongs to the same round.
        """
        s = self.settings
        fields = (prompt, resp_a, resp_b)
        n_rounds = max(1, *map(len, fields))
        rounds = [[f[t] if t < len(f) else [] for f in fields] for t in range(n_rounds)]
        marker_cost = sum(map(len, self.field_markers))
        mark = len(self.ellipsis)
        budget = s.max_length - len(self.prefix) - len(self.suffix)
        # Whole rounds, latest first; while earlier rounds remain, room to mark their drop stays free.
        first, used = n_rounds, 0
        while first > 0:
            cost = marker_cost + sum(map(len, rounds[first - 1]))
            if used + cost + (3 * mark if first > 1 else 0) > budget:
                break
            used += cost
            first -= 1
        start, cut = first, None  # the earliest round shown; the round shown cut (None: every shown round whole)
        alloc, before, after = [0, 0, 0], [first > 0] * 3, [False] * 3
        if first > 0:
            t = first - 1
            lengths = list(map(len, rounds[t]))
            room = budget - used - marker_cost
            plan = self.cut_round(lengths, room, dropped=t > 0)
            latest = first == n_rounds
            if plan is None and latest:  # no room even for the marks: the latest round is shown unmarked
                plan = allocate(lengths, list(s.field_weights), room), [False] * 3, [False] * 3
            if plan is not None and (latest or (
                    all(a > 0 for a, n in zip(plan[0], lengths) if n > 0)
                    and sum(plan[0]) >= min(MIN_CUT_ROUND_TOKENS, sum(lengths)))):
                start, cut = t, t
                alloc, before, after = plan
        ids = list(self.prefix)
        kept = [[0] * len(f) for f in fields]
        marks = 0
        for f, marker in enumerate(self.field_markers):
            for t in range(start, n_rounds):
                text = rounds[t][f] if t != cut else clip(rounds[t][f], alloc[f], s.truncation_side)
                head = self.ellipsis if t == start and before[f] else []
                tail = self.ellipsis if t == cut and after[f] else []
                ids += marker + head + text + tail
                marks += len(head) + len(tail)
                if t < len(fields[f]):
                    kept[f][t] = len(text)
        ids += self.suffix
        if record is not None:
            record.update(self.joint_report(fields, kept, len(ids), marker_cost * (n_rounds - start), marks,
                                            n_rounds, start))
        return ids

    def cut_round(self, lengths: list[int], room: int, dropped: bool):
        """(token shares, mark before, mark after) of one round's three turns within `room` tokens (its markers
        paid), with room for the cut marks it needs: before every turn when earlier rounds were `dropped`, and on
        the truncation side of each turn that is cut. None when the marks alone do not fit."""
        left = self.settings.truncation_side == "left"
        weights = list(self.settings.field_weights)
        clipped = [False] * 3
        while True:
            before = [dropped or (c and left) for c in clipped]
            after = [c and not left for c in clipped]
            content = room - len(self.ellipsis) * (sum(before) + sum(after))
            if content < 0:
                return None
            alloc = allocate(lengths, weights, content)
            # A turn once cut stays marked, so this ends; the marks shown follow the final shares (below), and
            # a reserved mark that is not needed only leaves a few tokens unused.
            now = [c or a < n for c, a, n in zip(clipped, alloc, lengths)]
            if now == clipped:
                break
            clipped = now
        really = [a < n for a, n in zip(alloc, lengths)]
        return alloc, [dropped or (c and left) for c in really], [c and not left for c in really]

    def joint_report(self, fields, kept, tokens: int, markers: int, ellipsis: int, n_rounds: int,
                     rounds_dropped: int) -> dict:
        cut = any(k < len(t) for turns, ks in zip(fields, kept) for t, k in zip(turns, ks))
        return {"inputs": "joint", "packing": self.settings.joint_packing, "max_length": self.settings.max_length,
                "tokens": tokens, "truncated": bool(cut or rounds_dropped),
                "fields": {name: turn_report(turns, ks) for name, turns, ks in zip(FIELD_NAMES, fields, kept)},
                "rounds": n_rounds, "rounds_dropped": rounds_dropped,
                "overhead": {"special": len(self.prefix) + len(self.suffix), "markers": markers,
                             "ellipsis": ellipsis}}

    def cross_inputs(self, frame, diagnostics: list | None = None) -> list[list[int]]:
        """One joint sequence (prompt, response A, response B) per row; `diagnostics` (a list) receives one dict
        per row (module docstring)."""
        prompts = self.tokenize_turn_lists(frame["prompt"])
        resp_a = self.tokenize_turn_lists(frame["response_a"])
        resp_b = self.tokenize_turn_lists(frame["response_b"])
        rows = []
        for p, a, b in zip(prompts, resp_a, resp_b):
            record = {} if diagnostics is not None else None
            rows.append(self.joint(p, a, b, record))
            if diagnostics is not None:
                diagnostics.append(record)
        return rows


FIELD_NAMES = ("prompt", "response_a", "response_b")


def turn_report(turns: list[list[int]], kept: list[int]) -> list[dict]:
    return [{"kept": int(k), "tokens": len(t)} for t, k in zip(turns, kept)]


def encode_rows(renderer, inputs: str, frame, diagnostics: list | None = None) -> list:
    """Model inputs per row: (side A, side B) token ids for "pair" families, one joint sequence for "joint".
    `diagnostics` (a list) receives one dict per row saying what the renderer kept (module docstring)."""
    # Without a list the calls are the ones renderers had before diagnostics (a subclass may override them).
    extra = () if diagnostics is None else (diagnostics,)
    if inputs == "pair":
        return list(zip(*renderer.dual_tower_inputs(frame, *extra)))
    return renderer.cross_inputs(frame, *extra)
