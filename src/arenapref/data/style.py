"""Style features of a battle's two responses: the covariates of style-controlled leaderboards (as lmarena /
FastChat do) and of the judges' style term (models/style_term.py).

Per response (all assistant turns together) four counts, FastChat's style elements:

    tokens   length: matches of \\w+|[^\\w\\s] (ASCII word runs, and every other non-space character by itself:
             punctuation, and one per character of scripts such as Chinese), a cheap stand-in for a BPE tokenizer
    headers  markdown headers: lines starting with 1-6 '#' and a space
    lists    list items: lines starting with "1. " style numbers or -, *, + bullets
    bold     **bold** and __bold__ spans within a line

The markdown counts skip fenced code blocks (```...```), as FastChat does. The regular expressions are FastChat's
(add_markdown_info.py), each kind's patterns joined in one alternation, run vectorised by Arrow's RE2 kernels.

A battle's covariate per feature is (f_a - f_b) / (f_a + f_b) (0 when both are 0), standardised over the battles;
the Bradley-Terry fit then carries one coefficient per feature (log-odds of A winning per standard deviation).
FastChat divides by f_a + f_b + 1 instead; the two agree except on tiny counts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from arenapref.data.tables import parse_turns

STYLE_FEATURES = ("tokens", "headers", "lists", "bold")
TOKENIZER = r"regex \w+|[^\w\s] (ASCII words, one per other non-space character)"
_PATTERNS = {
    "tokens": r"\w+|[^\w\s]",
    "headers": r"(?m)^#{1,6}\s",
    "lists": r"(?m)^\s*\d+\.\s|^\s*[-*+]\s",
    "bold": r"\*\*[^*\n]+\*\*|__[^_\n]+__",
}
_CODE_BLOCK = r"```[^`]*```"
_TURNS = pa.schema([("t", pa.list_(pa.string()))])


def parse_turn_lists(cells: pa.Array, where: str, first_row: int = 0) -> pa.ListArray:
    """JSON-encoded turn lists (the Kaggle format) -> a list<string> array, parsed by Arrow's JSON reader.

    Each cell is wrapped as {"t": CELL} on a line of its own (a JSON-encoded cell holds no raw line break), so the
    whole column parses in C++ at once. A cell Arrow refuses is found again with the row-by-row parser, whose
    error names the row: `where` is "FILE: ... column C" context, `first_row` the 0-based row of cells[0].
    """
    if pa.types.is_list(cells.type) or pa.types.is_large_list(cells.type):
        return cells.cast(pa.list_(pa.string()))
    cells = cells.cast(pa.string())
    if len(cells) == 0:
        return pa.array([], pa.list_(pa.string()))
    lines = pc.binary_join_element_wise('{"t":', cells.fill_null("null"), "}\n", "")
    longest = pc.max(pc.binary_length(lines)).as_py()
    try:
        table = pajson.read_json(pa.BufferReader(_concatenated(lines)),
                                 read_options=pajson.ReadOptions(block_size=max(1 << 20, 2 * longest + 16)),
                                 parse_options=pajson.ParseOptions(explicit_schema=_TURNS,
                                                                   unexpected_field_behavior="ignore"))
        parsed = table.column("t").combine_chunks()
        if len(parsed) == len(cells) and parsed.null_count == 0:
            return parsed
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    # Arrow refused a cell (not JSON, not a list, a number in the list, null): the row-by-row parser says which.
    column = where.rsplit(" column ", 1)
    turns = [parse_turns(cell, f"{column[0]}: row {first_row + i + 1} column {column[-1]}")
             for i, cell in enumerate(cells.to_pylist())]
    return pa.array(turns, pa.list_(pa.string()))


def _concatenated(lines: pa.Array) -> pa.Buffer:
    """The bytes of all strings of an array back to back: its data buffer between the first and last offset."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=4 * lines.offset)
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def style_counts(cells: pa.Array, where: str = "input column response", first_row: int = 0) -> np.ndarray:
    """(n, 4) counts of STYLE_FEATURES per response (JSON-encoded turn lists or list<string>), summed over turns."""
    turns = parse_turn_lists(cells, where, first_row)
    parent = pc.list_parent_indices(turns).to_numpy()
    texts = pc.list_flatten(turns).fill_null("")
    # Most turns hold no code fence: a literal search first spares the regex replace on them.
    fenced = pc.match_substring(texts, "```")
    without_code = pc.if_else(fenced, pc.replace_substring_regex(pc.if_else(fenced, texts, ""), _CODE_BLOCK, ""),
                              texts)
    counts = np.zeros((len(turns), len(STYLE_FEATURES)), dtype=np.int64)
    for j, name in enumerate(STYLE_FEATURES):
        if name == "tokens":
            per_turn = count_tokens(texts)
        else:
            per_turn = pc.count_substring_regex(without_code, _PATTERNS[name]).to_numpy(zero_copy_only=False)
        counts[:, j] = np.bincount(parent, per_turn, minlength=len(turns)).astype(np.int64)
    return counts


# Byte classes for count_tokens: 0 space (RE2's \s: tab, newline, form feed, carriage return, space), 1 word
# (\w: ASCII letters, digits, _), 2 any other character's first byte, 3 a UTF-8 continuation byte.
_BYTE_CLASS = np.full(256, 2, dtype=np.uint8)
_BYTE_CLASS[list(b"\t\n\f\r ")] = 0
_BYTE_CLASS[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")] = 1
_BYTE_CLASS[0x80:0xC0] = 3


def count_tokens(texts: pa.Array) -> np.ndarray:
    """Matches of \\w+|[^\\w\\s] per string (RE2 semantics, as pc.count_substring_regex counts them), from
    the bytes: a token starts at each word byte after a non-word byte, and at each other character. Three times
    faster than the regex, which dominates the cost of style features on millions of battles."""
    texts = texts.cast(pa.large_string()) if not pa.types.is_large_string(texts.type) else texts
    n = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64, count=n + 1, offset=8 * texts.offset)
    if n == 0 or offsets[-1] == offsets[0]:
        return np.zeros(n, dtype=np.int64)
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8, count=int(offsets[-1] - offsets[0]),
                         offset=int(offsets[0]))
    local = offsets - offsets[0]
    kind = _BYTE_CLASS[data]
    word = kind == 1
    starts = kind == 2
    starts[1:] |= word[1:] & ~word[:-1]
    first = local[:-1][local[:-1] < len(data)]
    starts[first] |= word[first]  # a string's first byte has no word byte before it
    running = np.r_[0, np.cumsum(starts, dtype=np.int64 if len(data) >= 2**31 else np.int32)]
    return (running[local[1:]] - running[local[:-1]]).astype(np.int64)


def style_covariates(counts_a: np.ndarray, counts_b: np.ndarray) -> np.ndarray:
    """(N, 4) covariates: per feature (f_a - f_b) / (f_a + f_b), 0 when both are 0, standardised over battles.

    A feature that does not vary (say no response has a header) stays 0: it carries no information.
    """
    counts_a = np.asarray(counts_a, dtype=float)
    counts_b = np.asarray(counts_b, dtype=float)
    total = counts_a + counts_b
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, (counts_a - counts_b) / total, 0.0)
    std = ratio.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (ratio - ratio.mean(axis=0)) / safe, 0.0)
