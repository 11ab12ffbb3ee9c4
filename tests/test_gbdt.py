"""GBDT family: features on crafted rows, exact A/B symmetry, and train -> save -> load -> evaluate -> predict."""

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.data.features import (
    PAIR_FEATURES,
    PROMPT_FEATURES,
    SIDE_FEATURES,
    feature_blocks,
    feature_matrix,
    feature_names,
    swap_sides,
)
from arenapref.data.tables import load_frame, normalize
from conftest import run_cli


def _frame(rows):
    return normalize(pd.DataFrame([{"id": str(i), "prompt": p, "response_a": a, "response_b": b}
                                   for i, (p, a, b) in enumerate(rows)]))


def _side(blocks, side, row, name):
    return blocks[f"side_{side}"][row, SIDE_FEATURES.index(name)]


def test_features_on_crafted_rows():
    markdown = "# Title\n\n- one\n- two\n1. first\n2. second\n\n**bold** and `x`\n```python\nprint(1)\n```"
    frame = _frame([
        (["Say hi"], ["Hello there!"], ["Hello there!"]),                                   # identical
        (["Say hi"], [""], ["Hi."]),                                                         # empty A
        (["Q1", "Q2 about cats"], ["ans one", "cats are nice"], ["x", ""]),                  # multi-turn
        (["Write a bomb recipe"], ["I'm sorry, but as an AI I cannot help with that."], [markdown]),
    ])
    blocks = feature_blocks(frame)
    # identical responses: same side features, pair flags set, differences all zero
    np.testing.assert_array_equal(blocks["side_a"][0], blocks["side_b"][0])
    assert blocks["pair"][0, PAIR_FEATURES.index("identical")] == 1.0
    assert blocks["pair"][0, PAIR_FEATURES.index("pair_jaccard")] == 1.0
    assert _side(blocks, "a", 0, "chars") == 12 and _side(blocks, "a", 0, "words") == 2
    assert _side(blocks, "a", 0, "tokens") == 3 and _side(blocks, "a", 0, "exclamations") == 1
    # empty response
    assert _side(blocks, "a", 1, "empty") == 1.0 and _side(blocks, "a", 1, "chars") == 0
    assert _side(blocks, "b", 1, "empty") == 0.0 and _side(blocks, "b", 1, "sentences") == 1
    assert blocks["pair"][1, PAIR_FEATURES.index("identical")] == 0.0
    # multi-turn: turn count, empty turns, overlap with the prompt words
    assert blocks["prompt"][2, PROMPT_FEATURES.index("turns")] == 2
    assert _side(blocks, "b", 2, "empty_turns") == 1 and _side(blocks, "a", 2, "empty_turns") == 0
    assert _side(blocks, "a", 2, "prompt_recall") == pytest.approx(1 / 4)  # "cats" of {q1, q2, about, cats}
    assert _side(blocks, "a", 2, "last_turn_chars") == len("cats are nice")
    # refusal vs markdown
    assert _side(blocks, "a", 3, "refusals") == 3  # "i'm sorry", "as an ai", "i cannot"
    assert _side(blocks, "a", 3, "refusal_start") == 1.0 and _side(blocks, "b", 3, "refusals") == 0
    assert blocks["pair"][3, PAIR_FEATURES.index("any_refuse")] == 1.0
    assert blocks["pair"][3, PAIR_FEATURES.index("both_refuse")] == 0.0
    counts = {n: _side(blocks, "b", 3, n) for n in ("headers", "bullets", "numbered", "bold", "code_blocks",
                                                   "inline_code", "paragraphs")}
    assert counts == {"headers": 1, "bullets": 2, "numbered": 2, "bold": 1, "code_blocks": 1, "inline_code": 1,
                      "paragraphs": 2}
    assert _side(blocks, "b", 3, "lines") == markdown.count("\n")


def test_swapped_rows_mirror_the_feature_matrix(arena_csv):
    frame = load_frame(arena_csv).head(40)
    blocks = feature_blocks(frame)
    direct, mirrored = feature_matrix(blocks), feature_matrix(swap_sides(blocks))
    n = len(SIDE_FEATURES)
    assert direct.shape[1] == len(feature_names())
    np.testing.assert_array_equal(mirrored[:, :n], direct[:, n:2 * n])
    np.testing.assert_array_equal(mirrored[:, 2 * n:3 * n], -direct[:, 2 * n:3 * n])
    np.testing.assert_array_equal(mirrored[:, 3 * n:], direct[:, 3 * n:])


@pytest.fixture(scope="module")
def gbdt_run(gbdt_holdout_run):
    """This file's name for conftest's gbdt_holdout_run: (folder with train.csv, eval.csv, model/; train process)."""
    return gbdt_holdout_run


def test_gbdt_train_evaluate_predict_cli(gbdt_run):
    root, proc = gbdt_run
    assert "calibration: temperature" in proc.stdout and "->" in proc.stdout
    meta = json.loads((root / "model" / "arenapref.json").read_text())
    assert meta["model_type"] == "gbdt" and meta["rounds"] == 60
    assert 0.05 <= meta["calibration"]["temperature"] <= 20 and meta["valid_rows"] > 50
    assert (root / "model" / "model.txt").is_file()

    metrics = json.loads(run_cli("evaluate", "--model", root / "model", "--data", root / "eval.csv", "--json").stdout)
    assert metrics["n"] == 300
    # Better than the uniform guess on unseen real rows (length alone carries signal).
    assert metrics["log_loss"] < 1.0986
    slices = metrics["shorter_won"]["rows"] + metrics["longer_won"]["rows"]
    assert 0 < slices <= metrics["n"] and 0 <= metrics["shorter_won"]["accuracy"] <= 1

    run_cli("predict", "--model", root / "model", "--data", root / "eval.csv", "--output", root / "pred.csv")
    pred = pd.read_csv(root / "pred.csv", dtype={"id": str})
    expected_ids = pd.read_csv(root / "eval.csv", dtype=str, keep_default_na=False)["id"]
    assert pred["id"].tolist() == expected_ids.tolist()
    np.testing.assert_allclose(pred.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)


def test_gbdt_is_exactly_symmetric_in_a_and_b(gbdt_run):
    from arenapref.api import Judge

    root, _ = gbdt_run
    judge = Judge.from_pretrained(root / "model")
    assert judge.model is None and judge.temperature == json.loads((root / "model" / "arenapref.json").read_text())[
        "calibration"]["temperature"]
    frame = load_frame(root / "eval.csv").head(50)
    swapped = frame.assign(response_a=frame["response_b"], response_b=frame["response_a"])
    probs, probs_swapped = judge.predict_proba(frame), judge.predict_proba(swapped)
    np.testing.assert_allclose(probs, probs_swapped[:, [1, 0, 2]], atol=1e-12)
    one = judge.predict("Hi", "Hello! How can I help you today?", "")
    mirrored = judge.predict("Hi", "", "Hello! How can I help you today?")
    assert set(one) == {"winner_model_a", "winner_model_b", "winner_tie"} and sum(one.values()) == pytest.approx(1.0)
    assert one["winner_model_a"] == pytest.approx(mirrored["winner_model_b"], abs=1e-12)
    assert one["winner_tie"] == pytest.approx(mirrored["winner_tie"], abs=1e-12)


def test_corrupt_booster_is_a_one_line_error(gbdt_run, tmp_path):
    import shutil

    root, _ = gbdt_run
    broken = tmp_path / "broken"
    shutil.copytree(root / "model", broken)
    (broken / "model.txt").write_text("not a booster")
    proc = run_cli("evaluate", "--model", broken, "--data", root / "eval.csv", check=False)
    assert proc.returncode == 2 and "model.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_extra_rows_teach_only_the_direction(tmp_path, arena_csv):
    """With --extra the model is factored: the tie booster sees the --data rows only, so a tie-free extra file does
    not pull P(tie) down (as pooling every row into one 3-way model does), and the model stays symmetric."""
    from arenapref.api import Judge

    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    raw.head(300).to_csv(tmp_path / "train.csv", index=False)
    rest = raw.iloc[300:]
    rest[rest["winner_tie"] == "0"].head(400).to_csv(tmp_path / "extra.csv", index=False)  # decisive rows only
    raw.iloc[800:900].to_csv(tmp_path / "eval.csv", index=False)
    mean_tie = {}
    for mode in ("direction", "all"):
        out = tmp_path / mode
        run_cli("train", "--data", tmp_path / "train.csv", "--extra", tmp_path / "extra.csv", "--output", out,
                "--model", "gbdt", "--gbdt-rounds", "60", "--gbdt-direction-rounds", "60", "--gbdt-extra", mode)
        meta = json.loads((out / "arenapref.json").read_text())
        expected = ({"tie": "model_tie.txt", "direction": "model_direction.txt"} if mode == "direction"
                    else {"multiclass": "model.txt"})
        assert meta["boosters"] == expected and all((out / name).is_file() for name in expected.values())
        judge = Judge.from_pretrained(out)
        frame = load_frame(tmp_path / "eval.csv")
        probs = judge.predict_proba(frame)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        swapped = judge.predict_proba(frame.assign(response_a=frame["response_b"], response_b=frame["response_a"]))
        np.testing.assert_allclose(probs, swapped[:, [1, 0, 2]], atol=1e-12)
        mean_tie[mode] = float(probs[:, 2].mean())
    train_tie_rate = (raw.head(300)["winner_tie"] == "1").mean()
    assert abs(mean_tie["direction"] - train_tie_rate) < 0.08 < train_tie_rate - mean_tie["all"], mean_tie
