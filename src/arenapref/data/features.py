"""Hand-made features of a comparison, for the GBDT model (and, through probe.py, the neural heads).

A row becomes three groups of numbers:
  side features   - computed for (prompt, response A) and for (prompt, response B) with the same function
  pair features   - symmetric in A and B (identical responses, word overlap between the two, both refuse, ...)
  prompt features - the prompt alone (length, turns, asks for code, ...)
The model sees [side A, side B, side A - side B, pair, prompt]. Swapping A and B therefore only swaps the first two
blocks and negates the third, which is how `swap_sides` builds the mirrored rows used for symmetric training and
prediction.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

WORD = re.compile(r"\w+", re.UNICODE)
TOKENISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # words and punctuation marks: about one subword token each
SENTENCE_END = re.compile(r"[.!?](\s|$)")
HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
BULLET = re.compile(r"^\s*[-*+•]\s+", re.MULTILINE)
NUMBERED = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)
BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
INLINE_CODE = re.compile(r"`[^`\n]+`")
URL = re.compile(r"https?://\S+")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$", re.MULTILINE)
DIGIT, UPPER, NON_ASCII = re.compile(r"\d"), re.compile(r"[A-Z]"), re.compile(r"[^\x00-\x7f]")
# Refusals and AI disclaimers: arena voters tend to punish them (and two refusals often end in a tie).
# Matched against lower-cased text: a case-insensitive pattern with this many branches is several times slower.
REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|as an ai|as a language model|as an artificial intelligence|"
    r"i cannot|i can'?t (help|assist|provide|fulfill|comply|create|generate|answer)|i'?m not able to|"
    r"i am not able to|i'?m unable to|i am unable to|i don'?t have (personal|the ability|access)|"
    r"not appropriate|against my|ethical guidelines|i must decline|i won'?t be able)")

SIDE_FEATURES = (
    "chars", "words", "tokens", "log_chars", "lines", "paragraphs", "sentences", "headers", "bullets", "numbered",
    "bold", "code_blocks", "inline_code", "urls", "table_rows", "questions", "exclamations", "digits_share",
    "upper_share", "non_ascii_share", "mean_word_len", "unique_word_share", "refusals", "refusal_start",
    "empty_turns", "empty", "prompt_recall", "prompt_jaccard", "chars_per_turn", "last_turn_chars",
    "ends_cleanly",
)
PAIR_FEATURES = ("identical", "pair_jaccard", "both_empty", "both_refuse", "any_refuse", "length_ratio_abs",
                 "same_prefix")
PROMPT_FEATURES = ("turns", "prompt_chars", "prompt_words", "prompt_lines", "prompt_questions", "prompt_code",
                   "prompt_non_ascii_share")


def _text(turns: list[str]) -> str:
    return "\n".join(turns)


def _words(lowered: str) -> list[str]:
    return WORD.findall(lowered)


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def side_features(prompt_words: set[str], turns: list[str]) -> list[float]:
    text = _text(turns)
    lowered = text.lower()
    words = _words(lowered)
    word_set = set(words)
    chars = len(text)
    stripped = lowered.strip()
    refusals = len(REFUSAL.findall(lowered))
    overlap = len(prompt_words & word_set)
    return [
        chars, len(words), len(TOKENISH.findall(text)), np.log1p(chars), text.count("\n"),
        len(re.findall(r"\n\s*\n", text)), len(SENTENCE_END.findall(text)), len(HEADER.findall(text)),
        len(BULLET.findall(text)), len(NUMBERED.findall(text)), len(BOLD.findall(text)), text.count("```") // 2,
        len(INLINE_CODE.findall(text)), len(URL.findall(text)), len(TABLE_ROW.findall(text)), text.count("?"),
        text.count("!"), _share(len(DIGIT.findall(text)), chars), _share(len(UPPER.findall(text)), chars),
        _share(len(NON_ASCII.findall(text)), chars), _share(sum(map(len, words)), len(words)),
        _share(len(word_set), len(words)), refusals, float(bool(REFUSAL.match(stripped[:80]))) if stripped else 0.0,
        sum(not t.strip() for t in turns), float(not stripped),
        _share(overlap, len(prompt_words)), _share(overlap, len(prompt_words | word_set)),
        chars / max(len(turns), 1), len(turns[-1]) if turns else 0,
        float(stripped[-1:] in ".!?)`*\"'") if stripped else 0.0,
    ]


def pair_features(a_turns: list[str], b_turns: list[str], side_a: list[float], side_b: list[float]) -> list[float]:
    ta, tb = _text(a_turns).strip(), _text(b_turns).strip()
    wa, wb = set(_words(ta.lower())), set(_words(tb.lower()))
    refuse = SIDE_FEATURES.index("refusals")
    longer, shorter = max(len(ta), len(tb)), min(len(ta), len(tb))
    return [
        float(ta == tb), _share(len(wa & wb), len(wa | wb)), float(not ta and not tb),
        float(side_a[refuse] > 0 and side_b[refuse] > 0), float(side_a[refuse] > 0 or side_b[refuse] > 0),
        np.log1p(longer) - np.log1p(shorter), float(ta[:50] == tb[:50] and bool(ta)),
    ]


def prompt_features(turns: list[str]) -> list[float]:
    text = _text(turns)
    return [len(turns), len(text), len(_words(text.lower())), text.count("\n"), text.count("?"),
            float("```" in text or "def " in text or "{" in text), _share(len(NON_ASCII.findall(text)), len(text))]


def feature_blocks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Arrays side_a, side_b (N, S), pair (N, P), prompt (N, Q) for a normalised frame."""
    side_a, side_b, pair, prompt = [], [], [], []
    for p, a, b in zip(frame["prompt"], frame["response_a"], frame["response_b"]):
        prompt_words = set(_words(_text(p).lower()))
        fa, fb = side_features(prompt_words, a), side_features(prompt_words, b)
        side_a.append(fa)
        side_b.append(fb)
        pair.append(pair_features(a, b, fa, fb))
        prompt.append(prompt_features(p))
    as_array = lambda rows, width: np.asarray(rows, dtype=np.float64).reshape(len(frame), width)
    return {"side_a": as_array(side_a, len(SIDE_FEATURES)), "side_b": as_array(side_b, len(SIDE_FEATURES)),
            "pair": as_array(pair, len(PAIR_FEATURES)), "prompt": as_array(prompt, len(PROMPT_FEATURES))}


def swap_sides(blocks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same rows with responses A and B exchanged (pair and prompt features are symmetric)."""
    return {**blocks, "side_a": blocks["side_b"], "side_b": blocks["side_a"]}


def feature_names() -> list[str]:
    """Column names of feature_matrix."""
    return ([f"a_{n}" for n in SIDE_FEATURES] + [f"b_{n}" for n in SIDE_FEATURES]
            + [f"diff_{n}" for n in SIDE_FEATURES] + list(PAIR_FEATURES) + list(PROMPT_FEATURES))


def feature_matrix(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """[side A, side B, A - B, pair, prompt] as one (N, F) matrix."""
    return np.hstack([blocks["side_a"], blocks["side_b"], blocks["side_a"] - blocks["side_b"], blocks["pair"],
                      blocks["prompt"]])

SIDE_COUNT = len(SIDE_FEATURES)
SHARED_COUNT = len(PAIR_FEATURES) + len(PROMPT_FEATURES)
# Standardised features are clipped to +-FEATURE_CLIP: a value far outside the training range (a feature almost
# constant in training, e.g. the non-ASCII share on English rows) must not swing the logits without bound.
FEATURE_CLIP = 5.0


def signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def head_features(frame) -> np.ndarray:
    """(N, 2 * SIDE_COUNT + SHARED_COUNT) float32: [side A, side B, pair + prompt], signed-log scaled."""
    blocks = feature_blocks(frame)
    return signed_log(np.hstack([blocks["side_a"], blocks["side_b"], blocks["pair"],
                                 blocks["prompt"]])).astype(np.float32)


def swap_features(features: np.ndarray) -> np.ndarray:
    """The rows' features with responses A and B exchanged (pair and prompt features are symmetric). Columns past
    [side A, side B, pair + prompt] are the style differences (f_a - f_b) / (f_a + f_b) a model with a style term
    reads (models/style_term.py): they change sign."""
    s, base = SIDE_COUNT, 2 * SIDE_COUNT + SHARED_COUNT
    return np.hstack([features[:, s:2 * s], features[:, :s], features[:, 2 * s:base], -features[:, base:]])


def single_side_features(prompts: list[list[str]], responses: list[list[str]]) -> np.ndarray:
    """(n, SIDE_COUNT) features of (prompt turns, response turns) scored on their own (rank models)."""
    rows = [side_features(set(WORD.findall("\n".join(p).lower())), r) for p, r in zip(prompts, responses)]
    return signed_log(np.asarray(rows, dtype=np.float64).reshape(len(rows), SIDE_COUNT)).astype(np.float32)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (SIDE_COUNT + SHARED_COUNT,) of training features; side columns pooled over A and B."""
    s = SIDE_COUNT
    sides = np.vstack([features[:, :s], features[:, s:2 * s]]).astype(np.float64)
    shared = features[:, 2 * s:2 * s + SHARED_COUNT].astype(np.float64)
    mean = np.concatenate([sides.mean(0), shared.mean(0)])
    std = np.concatenate([sides.std(0), shared.std(0)])
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def standardize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Raw features -> standardised [side A, side B, shared]; statistics without shared columns drop them."""
    s = SIDE_COUNT
    q = len(mean) - s
    side = lambda block: (block - mean[:s]) / std[:s]
    shared = (features[:, 2 * s:2 * s + q] - mean[s:]) / std[s:]
    return np.clip(np.hstack([side(features[:, :s]), side(features[:, s:2 * s]), shared]), -FEATURE_CLIP, FEATURE_CLIP)


# -- content features: what a style-controlled judge's content term reads (models/gbdt.py, models/style_term.py) --
# A style-controlled judge splits its A-vs-B logit into a style term (linear in the leaderboard's four style
# differences: tokens, headers, lists, bold; data/style.py) and a content term that must not see style, or
# "controlled" would only move length from one term to the other. So the content term reads the side features
# that do not grow with a response's length or markdown: shares and rates, and presence (0/1) in place of counts.
# Length, line, sentence, markdown and code counts, and the unique-word share (it falls as a text grows), are left
# out; so is the pair's length ratio. Repeating a response word for word leaves every content feature unchanged.
CONTENT_SIDE_FEATURES = ("digits_share", "upper_share", "non_ascii_share", "mean_word_len", "refusal_start", "empty",
                         "prompt_recall", "prompt_jaccard", "ends_cleanly")
PRESENCE_SIDE_FEATURES = ("refusals", "empty_turns", "urls")  # read as "any" (0/1)
CONTENT_PAIR_FEATURES = ("identical", "pair_jaccard", "both_empty", "both_refuse", "any_refuse", "same_prefix")


def _content_side(side: np.ndarray) -> np.ndarray:
    take = [SIDE_FEATURES.index(n) for n in CONTENT_SIDE_FEATURES]
    presence = [SIDE_FEATURES.index(n) for n in PRESENCE_SIDE_FEATURES]
    return np.hstack([side[:, take], (side[:, presence] > 0).astype(np.float64)])


def content_side_mask() -> np.ndarray:
    """(SIDE_COUNT,) 1 for the side features a style-term neural head reads (the content side features; counts of
    refusals, empty turns and URLs kept as counts), 0 for the rest: length and markdown go to the style term. The
    shared features stay whole: symmetric in A and B, they move only the tie's probability."""
    keep = set(CONTENT_SIDE_FEATURES) | set(PRESENCE_SIDE_FEATURES)
    return np.array([float(n in keep) for n in SIDE_FEATURES], dtype=np.float32)


def content_names() -> list[str]:
    """Column names of content_matrix."""
    side = list(CONTENT_SIDE_FEATURES) + [f"any_{n}" for n in PRESENCE_SIDE_FEATURES]
    return ([f"a_{n}" for n in side] + [f"b_{n}" for n in side] + [f"diff_{n}" for n in side]
            + list(CONTENT_PAIR_FEATURES) + list(PROMPT_FEATURES))


def content_matrix(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """[content A, content B, A - B, content pair, prompt] as one (N, C) matrix; swap_sides mirrors it as it mirrors
    feature_matrix."""
    a, b = _content_side(blocks["side_a"]), _content_side(blocks["side_b"])
    pair = blocks["pair"][:, [PAIR_FEATURES.index(n) for n in CONTENT_PAIR_FEATURES]]
    return np.hstack([a, b, a - b, pair, blocks["prompt"]])
