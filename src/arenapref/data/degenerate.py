"""Degenerate rows: what a row's text says before any model reads it (empty prompts, empty or identical responses).

A model reads such rows like any other and answers with whatever its weights say; the Predictor (inference/predictor.py)
turns the one case the data settle into a rule (identical responses: A and B equally likely) and reports the others
as per-row warnings (`predict --diagnostics`). docs/predictions.md has the counts on the arena files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The warnings a row can carry, in the order they are listed.
WARNINGS = ("empty_prompt", "empty_response_a", "empty_response_b", "identical_responses")


def blank(turns: list[str]) -> bool:
    """Every turn empty or whitespace (a `null` turn is "" once normalised)."""
    return all(not turn.strip() for turn in turns)


def same_turns(a: list[str], b: list[str]) -> bool:
    """The same turns, ignoring whitespace around each: the two sides show one answer."""
    return len(a) == len(b) and all(x.strip() == y.strip() for x, y in zip(a, b))


def identical_responses(frame: pd.DataFrame) -> np.ndarray:
    """(N,) bool: rows whose response A and response B are the same turns (`same_turns`), of a normalised frame."""
    return np.fromiter((same_turns(a, b) for a, b in zip(frame["response_a"], frame["response_b"])), dtype=bool,
                       count=len(frame))


def empty_responses(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool each: response A fully blank, response B fully blank (`blank`)."""
    side = lambda column: np.fromiter((blank(t) for t in frame[column]), dtype=bool, count=len(frame))
    return side("response_a"), side("response_b")


def row_warnings(frame: pd.DataFrame) -> list[list[str]]:
    """Per row of a normalised frame, the WARNINGS that apply to it (most rows: none)."""
    flags = {"empty_prompt": np.fromiter((blank(t) for t in frame["prompt"]), dtype=bool, count=len(frame))}
    flags["empty_response_a"], flags["empty_response_b"] = empty_responses(frame)
    flags["identical_responses"] = identical_responses(frame)
    return [[name for name in WARNINGS if flags[name][i]] for i in range(len(frame))]
