"""Prompt groups and grouped splits: the same prompt appears in several battles, so every split keeps a prompt's
rows on one side (else validation leaks)."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from arenapref.data.tables import load_frame
from arenapref.errors import DataError


def prompt_key(turns: list[str]) -> str:
    """The first prompt turn, normalised (Unicode NFKC, case folded, punctuation and runs of spaces collapsed):
    "Hello!" and "hello" are one prompt. A follow-up turn does not make a new prompt: the conversation started
    the same way. A first turn with no letters or digits keeps its exact text."""
    first = turns[0] if turns else ""
    key = " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", first).casefold()).split())
    return key or first


_NON_WORD = re.compile(r"[\W_]+")


def prompt_groups(frame: pd.DataFrame) -> np.ndarray:
    """One integer per row; rows whose prompts share a `prompt_key` share a group (a split must not cut a group)."""
    return pd.factorize(frame["prompt"].map(prompt_key))[0]


def shared_prompts(frame: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """Boolean mask over `frame`'s rows whose prompt (by `prompt_key`) also appears in `other`."""
    return frame["prompt"].map(prompt_key).isin(set(other["prompt"].map(prompt_key))).to_numpy()


def grouped_split(frame: pd.DataFrame, valid_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows so that no prompt appears on both sides; about `valid_fraction` of rows go to validation."""
    from sklearn.model_selection import GroupShuffleSplit

    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid fraction {valid_fraction}: must be between 0 and 1 (exclusive)")
    splitter = GroupShuffleSplit(n_splits=1, test_size=valid_fraction, random_state=seed)
    train_idx, valid_idx = next(splitter.split(frame, groups=prompt_groups(frame)))
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise DataError(f"{len(frame)} rows are too few to hold out {valid_fraction:.0%} for validation; add rows")
    return frame.iloc[np.sort(train_idx)].reset_index(drop=True), frame.iloc[np.sort(valid_idx)].reset_index(drop=True)


def load_train_valid(cfg, log=None):
    """Training and validation frames: --valid, or a prompt-grouped hold-out of --data; --extra rows train only.

    --extra rows whose prompt is held out for validation are left out (and counted in the log): they would leak
    it. A --valid file sharing prompts with --data is reported (a warning, and `validation_scope` says so)."""
    frame = load_frame(cfg.data, require_labels=True)
    if cfg.valid:
        train_frame, valid_frame = frame, load_frame(cfg.valid, require_labels=True)
        shared = shared_prompts(valid_frame, train_frame)
        valid_frame.attrs["rows_sharing_a_training_prompt"] = int(shared.sum())
        if shared.any():
            i = int(np.flatnonzero(shared)[0])
            (log or print)(f"warning: {cfg.valid}: {int(shared.sum())} of {len(valid_frame)} rows share a prompt with "
                           f"{cfg.data} (first: row {i + 1}, id {valid_frame['id'].iloc[i]!r}); their validation "
                           "figures are in-sample (optimistic). Pass only --data to hold out whole prompts")
    else:
        train_frame, valid_frame = grouped_split(frame, cfg.valid_fraction, cfg.seed)
    if cfg.extra:
        # cv names its held-out fold here: an extra row with one of its prompts would leak it the same way.
        held_out = pd.concat([valid_frame] + [load_frame(p) for p in getattr(cfg, "extra_exclude", [])])
        extras = []
        for k, path in enumerate(cfg.extra):
            x = load_frame(path, require_labels=True)
            leaked = shared_prompts(x, held_out)
            if leaked.any():
                (log or print)(f"{path}: leaving out {int(leaked.sum())} of {len(x)} rows whose prompt is held out "
                               "for validation")
                x = x[~leaked].reset_index(drop=True)
            # Ids only need to be unique within a file; prefix extra rows so they cannot collide.
            extras.append(x.assign(id=[f"extra{k}-{i}" for i in x["id"]], is_extra=True))
        train_frame = train_frame.assign(is_extra=False)
        train_frame = pd.concat([train_frame, *extras], ignore_index=True)
    return train_frame, valid_frame


def validation_scope(valid_frame: pd.DataFrame, scope: str) -> str:
    """`scope` (what the validation figures are out of sample for), plus any --valid rows with a training prompt."""
    shared = valid_frame.attrs.get("rows_sharing_a_training_prompt", 0)
    if shared:
        scope += (f"; {shared} of {len(valid_frame)} rows share a prompt with the training rows (--valid overlaps "
                  "--data): in-sample for those")
    return scope
