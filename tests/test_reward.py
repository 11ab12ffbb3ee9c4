"""Reward models for the ecosystem: TRL-format pairs in (strings, conversations, every file type), RewardBench-style
accuracy, the llm ranker, scalar reward-model export loaded without arenapref, judge-labelled pairs out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arenapref.data.formats import chosen_on_a, judged_pairs, trl_pair
from arenapref.data.tables import iter_frames, load_frame, normalize
from arenapref.errors import DataError
from arenapref.evaluation.metrics import pairwise_accuracy
from conftest import bot, run_cli, user
from test_bad_input import assert_clean_error


@pytest.fixture(scope="module")
def pairs(trl_pairs):
    """This file's name for conftest's trl_pairs (the models gbdt_pairs_model, llm_ranker and dual_tower_ranker
    are trained on them)."""
    return trl_pairs


# -- reading -------------------------------------------------------------------------------------------------------

def test_string_pairs_get_seeded_balanced_sides_and_keep_the_chosen_one(pairs, tmp_path):
    import datasets

    frame = load_frame(pairs["csv"])
    strings = pairs["strings"].reset_index(drop=True)
    assert frame.attrs["pairwise"] == "string" and len(frame) == len(strings) > 100
    assert set(frame["label"]) == {0, 1}
    assert 0.35 < (frame["label"] == 0).mean() < 0.65  # no position leak: chosen is A about half the time
    chosen = np.where(frame["label"] == 0, frame["response_a"], frame["response_b"])
    rejected = np.where(frame["label"] == 0, frame["response_b"], frame["response_a"])
    assert [c[0] for c in chosen] == strings["chosen"].tolist()
    assert [r[0] for r in rejected] == strings["rejected"].tolist()
    assert frame["prompt"].str[0].tolist() == strings["prompt"].tolist()
    assert frame["subset"].tolist() == strings["subset"].tolist()
    assert frame["id"].tolist() == [str(i + 1) for i in range(len(frame))]  # no id column: row numbers
    # The same pairs from JSONL, Parquet and a datasets folder, and in chunks: the same rows and sides.
    strings.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    strings.to_parquet(tmp_path / "p.parquet")
    datasets.Dataset.from_pandas(strings, preserve_index=False).save_to_disk(str(tmp_path / "ds"))
    for path in ("p.jsonl", "p.parquet", "ds"):
        other = load_frame(tmp_path / path)
        pd.testing.assert_frame_equal(other, frame)
        chunks = pd.concat([f for f, _ in iter_frames(tmp_path / path, 37)], ignore_index=True)
        pd.testing.assert_frame_equal(chunks, frame)
    # The seed decides: another seed flips about half of the coins.
    flips = [chosen_on_a(p, [c], [r], 0) != chosen_on_a(p, [c], [r], 1)
             for p, c, r in zip(frame["prompt"], strings["chosen"], strings["rejected"])]
    assert 0.3 < np.mean(flips) < 0.7


def test_conversations_map_to_kaggle_turns(pairs):
    # Shared history: earlier assistant turns that both sides share stay in both response lists.
    history = [user("Hi"), bot("Hello!"), user("A joke?")]
    raw = pd.DataFrame({"chosen": [history + [bot("Knock knock.")]], "rejected": [history + [bot("No.")]]})
    row = normalize(raw).iloc[0]
    a, b = (row["response_a"], row["response_b"]) if row["label"] == 0 else (row["response_b"], row["response_a"])
    assert row["prompt"] == ["Hi", "A joke?"] and a == ["Hello!", "Knock knock."] and b == ["Hello!", "No."]
    # Explicit prompt (TRL), a system message, two assistant messages in a row, a reply-less final user turn.
    raw = pd.DataFrame({"prompt": [[{"role": "system", "content": "Be brief."}, user("2+2?")]],
                        "chosen": [[bot("4"), bot("Sure."), user("And 3+3?")]],
                        "rejected": [[bot("5"), user("And 3+3?")]], "id": ["x"]})
    row = normalize(raw).iloc[0]
    chosen = row["response_a"] if row["label"] == 0 else row["response_b"]
    assert row["id"] == "x" and row["prompt"] == ["Be brief.\n\n2+2?", "And 3+3?"] and chosen == ["4\n\nSure.", ""]
    # A string prompt beside conversations that hold no user message: the user turn they answer.
    raw = pd.DataFrame({"prompt": ["Name a colour."], "chosen": [[bot("Blue")]], "rejected": [[bot("7")]]})
    assert normalize(raw).iloc[0]["prompt"] == ["Name a colour."]
    # Anthropic's raw hh-rlhf transcripts.
    hh = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant: "
    raw = pd.DataFrame({"chosen": [hh + "Knock knock."], "rejected": [hh + "No."]})
    pd.testing.assert_frame_equal(normalize(raw)[["prompt", "response_a", "response_b", "label"]],
                                  normalize(pd.DataFrame({"chosen": [history + [bot("Knock knock.")]],
                                                          "rejected": [history + [bot("No.")]]}))[
                                      ["prompt", "response_a", "response_b", "label"]])
    # The conversational fixture: every real row, multi-turn ones included, comes back turn for turn.
    frame = load_frame(pairs["jsonl"])
    turns = pairs["turns"].reset_index(drop=True)
    assert frame.attrs["pairwise"] == "conversational" and frame["prompt"].tolist() == turns["prompt"].tolist()
    assert (frame["prompt"].map(len) > 1).any()
    chosen = np.where(frame["label"] == 0, frame["response_a"], frame["response_b"]).tolist()
    assert chosen == turns["chosen"].tolist()


def test_trl_pair_round_trips_through_the_reader():
    prompt, chosen, rejected = ["Hi", "A joke?"], ["Hello!", "Knock knock."], ["Hello!", "No."]
    pair = trl_pair(prompt, chosen, rejected, conversational=True)
    # Explicit prompt: everything both sides share up to the last shared user message.
    assert pair == {"prompt": [user("Hi"), bot("Hello!"), user("A joke?")], "chosen": [bot("Knock knock.")],
                    "rejected": [bot("No.")]}
    row = normalize(pd.DataFrame([pair])).iloc[0]
    assert row["prompt"] == prompt
    assert (row["response_a"], row["response_b"]) == ((chosen, rejected) if row["label"] == 0 else (rejected, chosen))
    assert trl_pair(["Q"], ["a"], ["b"], conversational=False) == {"prompt": "Q", "chosen": "a", "rejected": "b"}


BAD_PAIRS = [
    ("no_rejected.csv", pd.DataFrame({"prompt": ["q"], "chosen": ["a"]}), ("no_rejected.csv", "no rejected column")),
    ("no_prompt.csv", pd.DataFrame({"chosen": ["a"], "rejected": ["b"]}), ("row 1", "no prompt column")),
    ("differ.jsonl", pd.DataFrame({"chosen": [[user("q"), bot("a")], [user("q"), bot("a")]],
                                   "rejected": [[user("q"), bot("b")], [user("other"), bot("b")]]}),
     ("differ.jsonl: row 2", "user turn 1 differs")),
    ("role.jsonl", pd.DataFrame({"chosen": [[user("q"), {"role": "tool", "content": "x"}]],
                                 "rejected": [[user("q"), bot("b")]]}),
     ("row 1 column chosen", "message 2 has role 'tool'")),
    ("mixed.jsonl", pd.DataFrame({"chosen": [[user("q"), bot("a")], "plain text"],
                                  "rejected": [[user("q"), bot("b")], [user("q"), bot("b")]]}),
     ("row 2 column chosen", "not a JSON list of messages")),
    ("content.jsonl", pd.DataFrame({"chosen": [[user("q"), {"role": "assistant", "content": 3}]],
                                    "rejected": [[user("q"), bot("b")]]}),
     ("row 1 column chosen", "message 2", "content is int")),
    ("no_role.jsonl", pd.DataFrame({"chosen": [[user("q"), {"content": "a"}]], "rejected": [[user("q"), bot("b")]]}),
     ("row 1 column chosen", "needs a role and a content")),
]


@pytest.mark.parametrize("name,frame,fragments", BAD_PAIRS, ids=[c[0] for c in BAD_PAIRS])
def test_malformed_pairs_are_one_line_errors(tmp_path, name, frame, fragments):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    with pytest.raises(DataError):
        load_frame(path)
    proc = run_cli("train", "--data", path, "--output", tmp_path / "m", "--model", "gbdt", check=False)
    assert_clean_error(proc, *fragments, not_written=(tmp_path / "m",))


def test_datasets_folder_with_several_splits_names_them(tmp_path, gbdt_pairs_model):
    import datasets

    part = datasets.Dataset.from_dict({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]})
    datasets.DatasetDict({"train": part, "test": part}).save_to_disk(str(tmp_path / "dd"))
    proc = run_cli("evaluate", "--model", gbdt_pairs_model, "--data", tmp_path / "dd", check=False)
    assert_clean_error(proc, "holds the splits train, test", str(tmp_path / "dd" / "train"))
    assert len(load_frame(tmp_path / "dd" / "test")) == 1


# -- train, evaluate, predict, cv on TRL files ----------------------------------------------------------------------

@pytest.mark.slow
def test_trl_files_train_evaluate_predict_and_cv_end_to_end(pairs, gbdt_pairs_model, tmp_path):
    meta = json.loads((gbdt_pairs_model / "arenapref.json").read_text())
    assert meta["model_type"] == "gbdt"
    # evaluate a conversational file (multi-turn rows too): log-loss metrics and pairwise accuracy per subset
    proc = run_cli("evaluate", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--json")
    metrics = json.loads(proc.stdout)
    frame = load_frame(pairs["jsonl"])
    assert metrics["n"] == len(frame) and 0 < metrics["log_loss"] < 2
    pairwise = metrics["pairwise"]
    assert pairwise["by"] == "probability" and pairwise["rows"] == len(frame)
    assert set(pairwise["subsets"]) == {"easy", "hard"}
    # predict writes the probabilities and where the chosen response went; accuracy by hand from them
    out = tmp_path / "pred.csv"
    run_cli("predict", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--output", out)
    pred = pd.read_csv(out, dtype={"id": str})
    assert pred["id"].tolist() == frame["id"].tolist()
    assert pred["chosen_side"].tolist() == ["a" if label == 0 else "b" for label in frame["label"]]
    p_a, p_b = pred["winner_model_a"].to_numpy(), pred["winner_model_b"].to_numpy()
    on_a = pred["chosen_side"].to_numpy() == "a"
    p_chosen, p_rejected = np.where(on_a, p_a, p_b), np.where(on_a, p_b, p_a)
    correct = p_chosen > p_rejected
    assert abs(pairwise["accuracy"] - correct.mean()) < 0.02  # predict rounds to 6 decimals
    length = lambda turns: len("\n".join(turns))
    chosen_turns = pairs["turns"]["chosen"].map(length).to_numpy()
    rejected_turns = pairs["turns"]["rejected"].map(length).to_numpy()
    assert pairwise["longer_wins"] == pytest.approx(np.mean(chosen_turns > rejected_turns))
    hard = (pairs["turns"]["subset"] == "hard").to_numpy()
    assert pairwise["subsets"]["hard"]["rows"] == hard.sum()
    assert pairwise["subsets"]["hard"]["longer_wins"] == pytest.approx(np.mean((chosen_turns > rejected_turns)[hard]))
    # the tables print the same figures
    text = run_cli("evaluate", "--model", gbdt_pairs_model, "--data", pairs["jsonl"]).stdout
    assert "pairwise accuracy: P(chosen) > P(rejected)" in text and f"{pairwise['accuracy']:.4f}" in text
    # cross-validation reads the pairs too
    proc = run_cli("cv", "--data", pairs["csv"], "--output", tmp_path / "cv", "--folds", 2, "--model", "gbdt",
                   "--gbdt-rounds", 20, "--json")
    assert json.loads(proc.stdout)["rows"] == len(pairs["strings"])


def test_rewardbench_accuracy_equals_a_hand_computation():
    labels = np.array([0, 1, 0, 1, 2, 0, 1])
    scores = np.array([[2.0, 1.0],    # chosen A above: right
                       [0.5, 0.5],    # equal scores: wrong (RewardBench)
                       [0.1, 0.3],    # chosen A below: wrong
                       [-1.0, 0.0],   # chosen B above: right
                       [9.0, 0.0],    # a tie row: not counted
                       [1.0, 0.0],    # right
                       [3.0, 1.0]])   # chosen B below: wrong
    length_a = np.array([10, 5, 5, 3, 1, 7, 7])
    length_b = np.array([3, 9, 5, 8, 1, 9, 2])  # longer chosen: yes, yes, equal (wrong), yes, -, no, no
    subsets = np.array(["x", "x", "y", "y", "y", "x", "y"])
    probs = np.full((7, 3), 1 / 3)
    out = pairwise_accuracy(labels, probs, scores, length_a, length_b, subsets)
    assert out["by"] == "score" and out["rows"] == 6
    assert out["accuracy"] == pytest.approx(3 / 6) and out["longer_wins"] == pytest.approx(3 / 6)
    assert out["subsets"]["x"] == {"rows": 3, "accuracy": pytest.approx(2 / 3), "longer_wins": pytest.approx(2 / 3)}
    assert out["subsets"]["y"] == {"rows": 3, "accuracy": pytest.approx(1 / 3), "longer_wins": pytest.approx(1 / 3)}
    # Without scores the probabilities decide, by the same strict rule (uniform probabilities: all wrong).
    by_probs = pairwise_accuracy(labels, probs, None, length_a, length_b)
    assert by_probs["by"] == "probability" and by_probs["accuracy"] == 0.0 and "subsets" not in by_probs
    probs = np.array([[0.6, 0.3, 0.1]] * 7)
    assert pairwise_accuracy(labels, probs, None, length_a, length_b)["accuracy"] == pytest.approx(3 / 6)
    none = pairwise_accuracy(np.array([2, 2]), np.full((2, 3), 1 / 3), None, np.ones(2), np.ones(2))
    assert none["rows"] == 0 and none["accuracy"] is None


# -- label ---------------------------------------------------------------------------------------------------------

def test_judged_pairs_drop_ties_and_unsure_rows_and_give_margins():
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "prompt": [["q1"], ["q2"], ["q3"], ["q4"]],
                          "response_a": [["A1"], ["A2"], ["A3"], ["A4"]],
                          "response_b": [["B1"], ["B2"], ["B3"], ["B4"]]})
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.2, 0.75, 0.05], [0.45, 0.4, 0.15]])
    out, counts = judged_pairs(frame, probs, None, 0.5, conversational=False)
    assert counts == {"rows": 4, "kept": 2, "ties": 1, "unsure": 1}
    assert out["id"].tolist() == ["a", "c"] and out["chosen"].tolist() == ["A1", "B3"]
    assert out["rejected"].tolist() == ["B1", "A3"] and out["prompt"].tolist() == ["q1", "q3"]
    assert out["p_chosen"].tolist() == [0.7, 0.75] and out["p_tie"].tolist() == [0.1, 0.05]
    assert out["margin"].to_numpy() == pytest.approx(np.log([0.7 / 0.2, 0.75 / 0.2]))
    scores = np.array([[1.0, -1.0], [0.0, 0.0], [0.5, 2.0], [0.0, 0.0]])
    out, _ = judged_pairs(frame, probs, scores, 0.0, conversational=True)
    assert out["margin"].tolist() == [2.0, 1.5, 0.0]
    assert out["prompt"].iloc[0] == [user("q1")] and out["chosen"].iloc[0] == [bot("A1")]


@pytest.mark.slow
def test_label_writes_trl_pairs_that_datasets_loads(pairs, gbdt_pairs_model, small_csv, tmp_path):
    import datasets

    from arenapref import Judge

    judge = Judge.from_pretrained(gbdt_pairs_model)
    # String pairs from a one-turn Kaggle test file (no labels), three file types
    single = load_frame(small_csv)
    single = single[single["prompt"].map(len) == 1].drop(columns="label")
    test_csv = tmp_path / "test.csv"
    from arenapref.data.tables import to_kaggle

    to_kaggle(single.assign(label=-1)).to_csv(test_csv, index=False)
    probs = judge.predict_proba(single)
    for suffix, loader in ((".jsonl", "json"), (".parquet", "parquet"), (".csv", "csv")):
        out = tmp_path / f"labels{suffix}"
        proc = run_cli("label", "--model", gbdt_pairs_model, "--data", test_csv, "--output", out,
                       "--min-confidence", 0.6)
        assert "string pairs" in proc.stdout
        loaded = datasets.load_dataset(loader, data_files=str(out), split="train")
        assert {"prompt", "chosen", "rejected", "p_chosen", "p_rejected", "p_tie", "margin"} <= set(loaded.column_names)
        expected = (probs[:, :2].max(1) >= 0.6) & (probs.argmax(1) != 2)
        assert len(loaded) == expected.sum() > 0
        assert min(loaded["p_chosen"]) >= 0.6 and all(c > r for c, r in zip(loaded["p_chosen"], loaded["p_rejected"]))
        first = int(np.flatnonzero(expected)[0])
        row = single.iloc[first]
        a_won = probs[first, 0] > probs[first, 1]
        assert loaded[0]["prompt"] == row["prompt"][0]
        assert loaded[0]["chosen"] == (row["response_a"] if a_won else row["response_b"])[0]
    # Conversational pairs in, conversational pairs out; --both-orders is the swap average
    out = tmp_path / "conv.jsonl"
    proc = run_cli("label", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--output", out, "--both-orders")
    assert "conversational pairs" in proc.stdout
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")
    frame = load_frame(pairs["jsonl"])
    swap = judge.predict_proba(frame, tta="swap")
    keep = swap.argmax(1) != 2
    assert len(loaded) == keep.sum()
    assert np.allclose(loaded["p_chosen"], swap[keep, :2].max(1))
    turns = pairs["turns"].reset_index(drop=True)[keep].reset_index(drop=True)
    for i in range(0, len(loaded), 17):
        row = loaded[i]
        assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
        whole = row["prompt"] + row["chosen"]
        assert [m["content"] for m in whole if m["role"] == "user"] == turns["prompt"][i]
    # CSV cannot hold message lists: refused before any work
    proc = run_cli("label", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--output", tmp_path / "c.csv",
                   check=False)
    assert_clean_error(proc, "conversational", "c.jsonl", not_written=(tmp_path / "c.csv",))
    proc = run_cli("label", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--output", tmp_path / "c.txt",
                   check=False)
    assert_clean_error(proc, "unknown output format .txt")
    proc = run_cli("label", "--model", gbdt_pairs_model, "--data", pairs["jsonl"], "--output", out,
                   "--min-confidence", 1.5, check=False)
    assert_clean_error(proc, "--min-confidence 1.5")


# -- reward models: the llm ranker, export, loading without arenapref, TRL ----------------------------------------

ISOLATED = textwrap.dedent('''
    import sys
    sys.modules["arenapref"] = None  # arenapref must not be importable here
    try:
        import arenapref
    except ImportError:
        pass
    else:
        raise SystemExit("arenapref is importable")
    import json
    import torch
    from transformers import AutoModelForSequenceClassification
    directory, remote, cases = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
    sys.path.insert(0, directory)
    import render
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=remote).eval()
    renderer = render.load_renderer(directory)
    result = {"scores": render.reward_scores(model, renderer, cases["prompts"], cases["responses"]),
              "num_labels": model.config.num_labels, "pad_token_id": model.config.pad_token_id,
              "class": type(model).__name__}
    if sys.argv[4] == "trl":
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer
        data = Dataset.from_dict({"prompt": ["What is 2+2?", "Name a colour.", "Hi", "Capital of France?"],
                                  "chosen": ["4", "Blue.", "Hello! How can I help?", "Paris."],
                                  "rejected": ["5", "Seven.", "Go away.", "London."]})
        before = {k: v.clone() for k, v in model.named_parameters()}
        args = RewardConfig(output_dir=sys.argv[5], max_steps=1, per_device_train_batch_size=2, report_to=[],
                            learning_rate=1e-2, save_strategy="no", logging_steps=1, use_cpu=True,
                            dataloader_num_workers=0, max_length=64)
        trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=renderer.tokenizer)
        out = trainer.train()
        result["trl_loss"] = out.training_loss
        result["trl_changed"] = any(not torch.equal(before[k], v) for k, v in model.named_parameters())
    print("RESULT " + json.dumps(result))
''')


def run_isolated(export_dir: Path, remote: bool, cases: dict, tmp_path: Path, trl: bool = False) -> dict:
    """Load the export in a fresh interpreter that cannot import arenapref, from a folder outside the repo."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), TOKENIZERS_PARALLELISM="false")
    script = tmp_path / "isolated.py"
    script.write_text(ISOLATED)
    proc = subprocess.run([sys.executable, str(script), str(export_dir), "1" if remote else "0", json.dumps(cases),
                           "trl" if trl else "-", str(tmp_path / "trl")], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(text for text in proc.stdout.splitlines() if text.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def score_cases(frame: pd.DataFrame) -> dict:
    """Every response of the rows (multi-turn and over-long ones included) with its prompt."""
    prompts = frame["prompt"].tolist() * 2
    responses = frame["response_a"].tolist() + frame["response_b"].tolist()
    return {"prompts": prompts, "responses": responses}


def test_llm_rank_scores_responses_with_davidson_ties(llm_ranker, pairs, small_csv):
    import math

    from arenapref import Judge

    meta = json.loads((llm_ranker / "arenapref.json").read_text())
    config = json.loads((llm_ranker / "config.json").read_text())
    assert meta["objective"] == "rank" and meta["text"]["truncation_side"] == "right"
    # checkpoints were written and the best one restored (the ranker is a plain nn.Module around the classifier)
    log = json.loads((llm_ranker / "training_log.json").read_text())
    assert log["best_metric"] is not None and not (llm_ranker / "checkpoints").exists()
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert math.isfinite(config["davidson_log_nu"]) and config["davidson_log_nu"] < 0  # no ties in these pairs
    judge = Judge.from_pretrained(llm_ranker, device="cpu")
    assert judge.scores_sides
    frame = load_frame(small_csv).head(6)
    logits, scores = judge.predict_logits(frame)
    single = judge.score_responses(frame["prompt"].tolist(), frame["response_a"].tolist())
    assert np.allclose(scores[:, 0], single, atol=1e-5)
    probs = judge.predict_proba(frame)
    assert np.allclose(np.log(probs[:, 0] / probs[:, 1]), scores[:, 0] - scores[:, 1], atol=1e-5)
    assert probs[:, 2].min() > 0  # Davidson: the same two scores give a tie probability
    ranking = judge.rank("Name a prime number.", ["7", "8", "Seven is prime."])
    assert [r["index"] for r in ranking] == list(np.argsort(-np.array([r["score"] for r in sorted(
        ranking, key=lambda r: r["index"])]), kind="stable"))
    metrics = json.loads(run_cli("evaluate", "--model", llm_ranker, "--data", pairs["csv"], "--json").stdout)
    assert metrics["pairwise"]["by"] == "score" and metrics["pairwise"]["rows"] == len(pairs["strings"])


def with_temperature(model_dir: Path, tmp_path: Path, temperature: float) -> Path:
    """A copy of a model directory with another calibration temperature (a tiny validation part keeps 1.0), so an
    export must fold it into the head to give the Judge's scores."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    meta = json.loads((model / "arenapref.json").read_text())
    meta["calibration"]["temperature"] = temperature
    (model / "arenapref.json").write_text(json.dumps(meta))
    return model


def test_exported_llm_reward_model_loads_without_arenapref_and_trains_in_trl(llm_ranker, small_csv, tmp_path):
    from arenapref import Judge

    llm_ranker = with_temperature(llm_ranker, tmp_path, 0.6)
    out = tmp_path / "reward"
    proc = run_cli("export", "--model", llm_ranker, "--output", out)
    assert "LlamaForSequenceClassification" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["num_labels"] == 1 if "num_labels" in config else len(config["id2label"]) == 1
    assert config["pad_token_id"] is not None and "davidson_log_nu" in config["arenapref"]
    assert not list(out.glob("modeling_*.py"))  # a standard class: no remote code
    assert config["arenapref"]["temperature"] == 0.6
    frame = load_frame(small_csv).head(10)  # multi-turn rows, long ones cut to the token budget
    cases = score_cases(frame)
    judge = Judge.from_pretrained(llm_ranker, device="cpu")
    expected = judge.score_responses(cases["prompts"], cases["responses"])
    result = run_isolated(out, False, cases, tmp_path, trl=True)
    assert result["class"] == "LlamaForSequenceClassification" and result["num_labels"] == 1
    assert result["pad_token_id"] is not None
    assert np.abs(np.array(result["scores"]) - expected).max() < 1e-5
    assert np.std(expected) > 1e-4  # the scores differ between responses: the comparison means something
    assert np.isfinite(result["trl_loss"]) and result["trl_changed"]
    # refusing to overwrite
    proc = run_cli("export", "--model", llm_ranker, "--output", out, check=False)
    assert_clean_error(proc, "exists and is not empty")


def test_exported_dual_tower_reward_model_gives_the_judges_scores_without_arenapref(dual_tower_ranker, small_csv,
                                                                                   tmp_path):
    from arenapref import Judge

    model = with_temperature(dual_tower_ranker, tmp_path, 1.7)
    out = tmp_path / "reward"
    run_cli("export", "--model", model, "--output", out)
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_arenapref_reward.")
    assert config["arenapref"]["temperature"] == 1.7
    assert (out / "modeling_arenapref_reward.py").is_file() and (out / "render.py").is_file()
    frame = load_frame(small_csv).head(10)
    cases = score_cases(frame)
    judge = Judge.from_pretrained(model, device="cpu")
    expected = judge.score_responses(cases["prompts"], cases["responses"])
    _, pair_scores = judge.predict_logits(frame)
    assert np.allclose(expected[:10], pair_scores[:, 0], atol=1e-5)  # the pair path gives the same scores
    result = run_isolated(out, True, cases, tmp_path)
    assert result["class"] == "ArenaprefRewardModel" and result["num_labels"] == 1
    assert np.abs(np.array(result["scores"]) - expected).max() < 1e-5
    assert np.std(expected) > 1e-4


def test_export_refuses_models_without_a_per_response_score(rank_model, gbdt_pairs_model, tiny_model, tmp_path):
    proc = run_cli("export", "--model", rank_model, "--output", tmp_path / "a", check=False)
    assert_clean_error(proc, "side features", "--no-head-features", not_written=(tmp_path / "a",))
    proc = run_cli("export", "--model", gbdt_pairs_model, "--output", tmp_path / "b", check=False)
    assert_clean_error(proc, "gbdt", "no per-response score", "--objective rank", not_written=(tmp_path / "b",))
    proc = run_cli("export", "--model", tiny_model, "--output", tmp_path / "c", check=False)
    assert_clean_error(proc, "3-way dual-tower classifier", "--objective rank", not_written=(tmp_path / "c",))


def test_llm_rank_flags_are_checked(tmp_path, pairs, tiny_llama):
    base = ("train", "--data", pairs["csv"], "--output", tmp_path / "m", "--backbone", tiny_llama)
    proc = run_cli(*base, "--model", "llm", "--objective", "rank", "--rank-loss", "mse", check=False)
    assert_clean_error(proc, "--rank-loss", "--model llm")
    proc = run_cli(*base, "--model", "llm", "--objective", "rank", "--field-budget", "0.3,0.35,0.35", check=False)
    assert_clean_error(proc, "--field-budget")
    proc = run_cli(*base, "--model", "cross-encoder", "--objective", "rank", check=False)
    assert_clean_error(proc, "--objective rank", "dual-tower or llm")
