"""Pairwise preference files in the Hugging Face / TRL formats, read as arena rows.

TRL's preference data has `chosen` and `rejected` columns, either

* strings ("standard" format) with the prompt in a `prompt` column: one prompt turn, one response turn; or
* conversations: lists of `{"role", "content"}` messages, with the prompt explicit in a `prompt` column (a list of
  messages that goes before each side) or implicit (the messages both sides share).

Anthropic's raw hh-rlhf strings ("\\n\\nHuman: ... \\n\\nAssistant: ...", no prompt column) are read as the
conversations they spell out.

A conversation becomes the Kaggle turn lists: every user message starts a turn (its text is a prompt turn),
the assistant messages until the next user message are that turn's response (joined by a blank line; none is a
`null` turn); system messages are put before the next user message's text. Both sides must have the same prompt
turns (a pair differs only in its assistant replies). Earlier assistant turns that both sides share stay in both
response lists, turn by turn, as in the Kaggle data (hh_rlhf_harmless_test.csv has that shape): the vote is on the
whole conversation.

Each pair is put on the A/B sides by a seeded hash of its content (`SIDE_SEED`), so about half the chosen
responses are A and half B (a model cannot learn the position) and the same pair gets the same sides in every file
and format. The labels record it: a chosen/rejected row is an arena row where the chosen side won, never a tie.
`chosen_model` / `rejected_model` columns (RewardBench) become `model_a` / `model_b`; a `subset` column is kept.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd

from arenapref.errors import DataError

SIDE_SEED = 0
ROLES = ("system", "user", "assistant")
_HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant): ?")


def is_pairwise(columns) -> bool:
    """A TRL-style preference table: `chosen` and `rejected` and no Kaggle response columns."""
    columns = set(columns)
    return {"chosen", "rejected"} <= columns and not {"response_a", "response_b"} & columns


def check_pair_columns(columns, where: str) -> None:
    columns = set(columns)
    if ("chosen" in columns) != ("rejected" in columns) and not {"response_a", "response_b"} & columns:
        have, lack = ("chosen", "rejected") if "chosen" in columns else ("rejected", "chosen")
        raise DataError(f"{where}: has a {have} column but no {lack} column; a preference pair file needs both "
                        "(prompt, chosen, rejected), or use the Kaggle columns")


def _as_list(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def _looks_conversational(cell) -> bool:
    """A list of messages (or its JSON text); an empty list counts (its row then fails with a clear error)."""
    cell = _as_list(cell)
    if isinstance(cell, str):
        text = cell.lstrip()
        if not text.startswith("["):
            return False
        try:
            cell = json.loads(text)
        except json.JSONDecodeError:
            return False
    if not isinstance(cell, list):
        return False
    return not cell or (isinstance(_as_list(cell[0]), dict) and "role" in _as_list(cell[0]))


def detect_kind(raw: pd.DataFrame) -> str:
    """"conversational" when the first row's `chosen` is a list of messages (or its JSON text), else "string"."""
    return "conversational" if len(raw) and _looks_conversational(raw["chosen"].iloc[0]) else "string"


def _content(value, where: str) -> str:
    value = _as_list(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # multimodal content parts: the text parts, in order
        texts = []
        for part in value:
            part = _as_list(part)
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise DataError(f"{where}: content part {json.dumps(part, default=str)[:60]} is not text; only "
                                "text messages can be judged")
        return "\n\n".join(texts)
    raise DataError(f"{where}: content is {type(value).__name__}, expected a string")


def messages_of(cell, where: str) -> list[tuple[str, str]]:
    """A cell holding a list of {"role", "content"} messages (a list, an array, or its JSON text) -> (role, text)."""
    value = _as_list(cell)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: not a JSON list of messages; write it as "
                            '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]') from None
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list of {{role, content}} messages, got {type(value).__name__}")
    out = []
    for k, message in enumerate(value):
        message = _as_list(message)
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(f"{where}: message {k + 1} is {json.dumps(message, default=str)[:60]}; every message "
                            "needs a role and a content")
        role = message["role"]
        if role not in ROLES:
            raise DataError(f"{where}: message {k + 1} has role {role!r}; expected one of {', '.join(ROLES)}")
        out.append((role, _content(message["content"], f"{where}: message {k + 1}")))
    return out


def hh_messages(text: str, where: str) -> list[tuple[str, str]]:
    """Anthropic hh-rlhf's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript -> messages."""
    parts = _HH_MARKER.split(text)
    if parts[0].strip():
        raise DataError(f"{where}: text before the first \"Human:\" turn; expected a transcript that starts with "
                        "\"\\n\\nHuman:\"")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [(roles[parts[i]], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def is_hh_transcript(text) -> bool:
    return isinstance(text, str) and text.lstrip("\n").startswith("Human:") and "\n\nAssistant:" in text


def turns_of(messages: list[tuple[str, str]]) -> list[list]:
    """Messages -> [prompt text, response text or None] per turn (see the module docstring)."""
    turns: list[list] = []
    system: list[str] = []
    for role, text in messages:
        if role == "system":
            system.append(text)
        elif role == "user":
            text = "\n\n".join(system + [text])
            system = []
            if turns and turns[-1][1] is None:  # two user messages in a row: one prompt turn
                turns[-1][0] += "\n\n" + text
            else:
                turns.append([text, None])
        else:  # assistant
            if system and turns and turns[-1][1] is None:  # a system message between a user turn and its reply
                turns[-1][0] += "\n\n" + "\n\n".join(system)
                system = []
            if not turns or system:  # a reply before any user message, or after a system message
                turns.append(["\n\n".join(system), None])
                system = []
            turn = turns[-1]
            turn[1] = text if turn[1] is None else turn[1] + "\n\n" + text
    if system:
        turns.append(["\n\n".join(system), None])
    return turns


def pair_turns(chosen: list[tuple[str, str]], rejected: list[tuple[str, str]], where: str):
    """(prompt turns, chosen response turns, rejected response turns) of two conversations."""
    tc, tr = turns_of(chosen), turns_of(rejected)
    if not tc and not tr:
        raise DataError(f"{where}: chosen and rejected hold no messages")
    prompts_c, prompts_r = [t[0] for t in tc], [t[0] for t in tr]
    if prompts_c != prompts_r:
        if len(prompts_c) != len(prompts_r):
            what = f"chosen has {len(prompts_c)} user turns, rejected {len(prompts_r)}"
        else:
            k = next(i for i, (a, b) in enumerate(zip(prompts_c, prompts_r)) if a != b)
            what = f"user turn {k + 1} differs between chosen and rejected"
        raise DataError(f"{where}: {what}; a pair must share its prompt turns and differ only in the assistant "
                        "replies")
    reply = lambda turn: "" if turn[1] is None else turn[1]  # no reply: a `null` turn
    return prompts_c, [reply(t) for t in tc], [reply(t) for t in tr]


def chosen_on_a(prompt: list, chosen: list, rejected: list, seed: int = SIDE_SEED) -> bool:
    """The pair's seeded coin: True puts the chosen response on side A."""
    key = json.dumps([seed, prompt, chosen, rejected], ensure_ascii=False).encode("utf-8")
    return hashlib.blake2b(key, digest_size=8).digest()[0] & 1 == 0


def _text(cell, where: str) -> str:
    cell = _as_list(cell)
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ""
    if not isinstance(cell, str):
        raise DataError(f"{where}: expected a string, got {type(cell).__name__} (this file's first row holds "
                        "strings, so every row must)")
    return cell


def pairwise_to_arena(raw: pd.DataFrame, where: str, first_row: int = 1, kind: str | None = None,
                      seed: int = SIDE_SEED) -> tuple[pd.DataFrame, str]:
    """A chosen/rejected table -> a Kaggle-format table (turn lists as lists, one-hot labels) and its kind
    ("string" or "conversational"; pass the first chunk's kind for the later chunks of a file)."""
    kind = kind or detect_kind(raw)
    has_prompt = "prompt" in raw.columns
    prompts, resp_a, resp_b, win_a = [], [], [], []
    for i in range(len(raw)):
        row = first_row + i
        at = lambda col: f"{where}: row {row} column {col}"
        chosen_cell, rejected_cell = raw["chosen"].iloc[i], raw["rejected"].iloc[i]
        prompt_cell = raw["prompt"].iloc[i] if has_prompt else None
        if kind == "conversational":
            chosen, rejected = messages_of(chosen_cell, at("chosen")), messages_of(rejected_cell, at("rejected"))
            prefix: list = []
            if has_prompt and _looks_conversational(prompt_cell):
                prefix = messages_of(prompt_cell, at("prompt"))
            elif has_prompt and not any(role == "user" for role, _ in chosen):
                # A string prompt beside conversations that carry none: the user turn they answer.
                prefix = [("user", _text(prompt_cell, at("prompt")))]
            p, c, r = pair_turns(prefix + chosen, prefix + rejected, f"{where}: row {row}")
        else:
            chosen, rejected = _text(chosen_cell, at("chosen")), _text(rejected_cell, at("rejected"))
            if has_prompt:
                p, c, r = [_text(prompt_cell, at("prompt"))], [chosen], [rejected]
            elif is_hh_transcript(chosen) and is_hh_transcript(rejected):
                p, c, r = pair_turns(hh_messages(chosen, at("chosen")), hh_messages(rejected, at("rejected")),
                                     f"{where}: row {row}")
            else:
                raise DataError(f"{where}: row {row}: chosen and rejected are plain strings and there is no prompt "
                                "column; add a prompt column (TRL's format: prompt, chosen, rejected), write them "
                                "as lists of {role, content} messages, or use the Kaggle columns")
        on_a = chosen_on_a(p, c, r, seed)
        prompts.append(p)
        resp_a.append(c if on_a else r)
        resp_b.append(r if on_a else c)
        win_a.append(on_a)
    win_a = np.array(win_a, dtype=bool)
    if "id" in raw.columns:
        ids = raw["id"].astype(str).to_numpy()
    else:  # TRL datasets seldom carry ids: the row number, unique file-wide
        ids = [str(first_row + i) for i in range(len(raw))]
    out = pd.DataFrame({"id": ids, "prompt": prompts, "response_a": resp_a, "response_b": resp_b,
                        "winner_model_a": win_a.astype(int), "winner_model_b": (~win_a).astype(int),
                        "winner_tie": 0})
    if "chosen_model" in raw.columns and "rejected_model" in raw.columns:
        chosen_model = raw["chosen_model"].astype(str).to_numpy()
        rejected_model = raw["rejected_model"].astype(str).to_numpy()
        out["model_a"] = np.where(win_a, chosen_model, rejected_model)
        out["model_b"] = np.where(win_a, rejected_model, chosen_model)
    if "subset" in raw.columns:
        out["subset"] = raw["subset"].to_numpy()
    return out, kind


# -- writing pairs (arenapref label) --------------------------------------------------------------------------------
def conversation(prompt: list[str], response: list[str]) -> list[dict]:
    """Turn lists -> the side's messages, user and assistant alternating."""
    messages = []
    for p, r in zip(prompt, response):
        messages += [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
    return messages


def trl_pair(prompt: list[str], chosen: list[str], rejected: list[str], conversational: bool) -> dict:
    """One pair in TRL's format. Strings: prompt, chosen, rejected of a one-turn row. Conversational (explicit
    prompt): the messages both sides share, up to and including the last user message they share, as `prompt`;
    the rest of each side as `chosen` / `rejected` (so prompt + chosen is the whole chosen conversation)."""
    if not conversational:
        return {"prompt": prompt[0], "chosen": chosen[0], "rejected": rejected[0]}
    side_c, side_r = conversation(prompt, chosen), conversation(prompt, rejected)
    shared = 0
    while shared < min(len(side_c), len(side_r)) and side_c[shared] == side_r[shared]:
        shared += 1
    while shared and side_c[shared - 1]["role"] != "user":
        shared -= 1
    return {"prompt": side_c[:shared], "chosen": side_c[shared:], "rejected": side_r[shared:]}


def judged_pairs(frame: pd.DataFrame, probs: np.ndarray, scores: np.ndarray | None, min_confidence: float,
                 conversational: bool) -> tuple[pd.DataFrame, dict]:
    """The pairs a judge is confident about, in TRL's format (`arenapref label`).

    A row's chosen side is the likelier winner; rows where a tie is the likeliest outcome are dropped, and so are
    rows whose max(P(A wins), P(B wins)) is under `min_confidence`. `margin` is s_chosen - s_rejected on the
    Davidson logit scale: per-response scores of a rank model, else log P(chosen wins) / P(rejected wins) (the
    same number for a Davidson model), usable as TRL's `margin` column."""
    probs = np.asarray(probs, dtype=np.float64)
    best = probs.argmax(axis=1)
    top = probs[:, :2].max(axis=1)
    tie = best == 2
    unsure = ~tie & (top < min_confidence)
    keep = np.flatnonzero(~tie & ~unsure)
    records = []
    for i in keep:
        c = int(best[i])
        prompt, sides = frame["prompt"].iloc[i], (frame["response_a"].iloc[i], frame["response_b"].iloc[i])
        if scores is not None:
            margin = float(scores[i, c] - scores[i, 1 - c])
        else:
            margin = float(np.log(max(probs[i, c], 1e-12)) - np.log(max(probs[i, 1 - c], 1e-12)))
        record = {"id": frame["id"].iloc[i], **trl_pair(prompt, sides[c], sides[1 - c], conversational),
                  "p_chosen": float(probs[i, c]), "p_rejected": float(probs[i, 1 - c]), "p_tie": float(probs[i, 2]),
                  "margin": margin}
        if "subset" in frame.columns:
            record["subset"] = frame["subset"].iloc[i]
        records.append(record)
    columns = ["id", "prompt", "chosen", "rejected", "p_chosen", "p_rejected", "p_tie", "margin"]
    out = pd.DataFrame(records, columns=columns + (["subset"] if "subset" in frame.columns else []))
    return out, {"rows": len(frame), "kept": len(keep), "ties": int(tie.sum()), "unsure": int(unsure.sum())}
