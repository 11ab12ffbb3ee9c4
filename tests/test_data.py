import json

import numpy as np
import pandas as pd
import pytest

from arenapref.data.split import grouped_split, prompt_groups
from arenapref.data.tables import load_frame, parse_turns, to_kaggle
from arenapref.errors import DataError


def test_real_sample_loads_every_row(arena_csv):
    frame = load_frame(arena_csv, require_labels=True)
    assert len(frame) == 999
    assert np.bincount(frame["label"]).tolist() == [352, 352, 295]  # counts from the data README
    assert (frame["prompt"].map(len) > 1).sum() == 131  # multi-turn rows
    assert (frame["response_a"] == frame["response_b"]).sum() == 7  # identical responses
    # null turns become empty strings, never None
    assert all(isinstance(t, str) for col in ("prompt", "response_a", "response_b")
               for turns in frame[col] for t in turns)
    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    null_rows = raw.index[raw["response_a"].str.contains(r"\bnull\b") | raw["response_b"].str.contains(r"\bnull\b")
                          | raw["prompt"].str.contains(r"\bnull\b")]
    assert len(null_rows) > 0
    i = null_rows[0]
    cells = {c: json.loads(raw.loc[i, c]) for c in ("prompt", "response_a", "response_b")}
    for col, turns in cells.items():
        assert frame.loc[i, col] == ["" if t is None else t for t in turns]
    assert frame["id"].tolist() == raw["id"].tolist()
    assert frame["model_a"].iloc[0] == raw["model_a"].iloc[0]


def test_other_real_sets_load(arena_csv):
    for name, counts in (("hh_rlhf_harmless_test.csv", [1142, 1170, 0]), ("pandalm_human_test.csv", [422, 472, 105])):
        frame = load_frame(arena_csv.parent / name, require_labels=True)
        assert np.bincount(frame["label"], minlength=3).tolist() == counts


def test_parse_turns():
    assert parse_turns('["a", null, "c"]', "x") == ["a", "", "c"]
    assert parse_turns(["a", None], "x") == ["a", ""]
    assert parse_turns("[]", "x") == []
    with pytest.raises(DataError, match="x: not a JSON list"):
        parse_turns("hello", "x")
    with pytest.raises(DataError, match=r"holds 1 \(int\)"):
        parse_turns("[1, 2]", "x")
    with pytest.raises(DataError, match="expected a JSON list"):
        parse_turns('{"a": 1}', "x")


def test_jsonl_and_parquet_match_csv(small_csv, tmp_path):
    csv_frame = load_frame(small_csv, require_labels=True)
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    raw.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    raw.to_parquet(tmp_path / "d.parquet")
    # JSONL with real lists instead of JSON-encoded strings is accepted too
    lists = to_kaggle(csv_frame)
    for col in ("prompt", "response_a", "response_b"):
        lists[col] = csv_frame[col]
    lists.to_json(tmp_path / "lists.jsonl", orient="records", lines=True)
    for name in ("d.jsonl", "d.parquet", "lists.jsonl"):
        other = load_frame(tmp_path / name, require_labels=True)
        pd.testing.assert_frame_equal(other[csv_frame.columns], csv_frame, check_dtype=False)


def test_grouped_split_never_shares_a_prompt(arena_csv):
    frame = load_frame(arena_csv)
    train, valid = grouped_split(frame, 0.2, seed=3)
    assert len(train) + len(valid) == len(frame)
    assert 0.15 < len(valid) / len(frame) < 0.25
    key = lambda f: set(f["prompt"].map(json.dumps))
    assert not key(train) & key(valid)
    groups = prompt_groups(frame)
    assert len(set(groups)) < len(frame)  # the sample really has repeated prompts


def test_labels_must_be_one_hot(small_csv, tmp_path):
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    raw.loc[4, "winner_model_b"] = "1"
    raw.loc[4, "winner_model_a"] = "1"
    raw.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"row 5 .*not one-hot"):
        load_frame(tmp_path / "bad.csv", require_labels=True)


def test_kaggle_round_trip(small_csv, tmp_path):
    frame = load_frame(small_csv)
    to_kaggle(frame).to_csv(tmp_path / "again.csv", index=False)
    pd.testing.assert_frame_equal(load_frame(tmp_path / "again.csv"), frame)
