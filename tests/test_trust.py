"""No silent wrong answers and honest validation (each test fails on the code before its fix)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.data.split import prompt_groups
from arenapref.data.tables import load_frame, to_kaggle
from conftest import run_cli

SPECIALS = ("[SEP]", "[PAD]", "[CLS]", "[MASK]", "<s>", "</s>", "<unk>", "<|endoftext|>")


def test_judge_decodes_raw_kaggle_cells(gbdt_model, small_csv):
    from arenapref import Judge

    judge = Judge.from_pretrained(gbdt_model)
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)  # cells are JSON-encoded strings
    expected = judge.predict_proba(load_frame(small_csv))
    np.testing.assert_allclose(judge.predict_proba(raw), expected, atol=1e-12)
    np.testing.assert_allclose(judge.predict_frame(raw)[["winner_model_a", "winner_model_b", "winner_tie"]],
                               expected, atol=1e-12)
    bad = raw.head(3).copy()
    bad.loc[1, "prompt"] = "not json"
    with pytest.raises(ValueError, match=r"row 2 column prompt"):
        judge.predict_proba(bad)


@pytest.mark.parametrize("backbone", ["tiny_deberta", "tiny_llama"])
def test_text_that_spells_a_special_token_stays_text(backbone, request):
    from arenapref.data.text import Renderer, TextSettings
    from arenapref.models.loading import load_tokenizer

    tokenizer = load_tokenizer(request.getfixturevalue(backbone))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    special_ids = set(tokenizer.all_special_ids)
    renderer = Renderer(tokenizer, TextSettings(max_length=256))
    text = "before " + " ".join(SPECIALS) + " after"
    ids = renderer.side(*renderer.tokenize_turn_lists([[text], [text]]))
    inner = ids[len(renderer.prefix):len(ids) - len(renderer.suffix)]
    assert not special_ids & set(inner), f"special ids {special_ids & set(inner)} from plain text"
    assert len(inner) > len(SPECIALS) * 2  # spelled out piece by piece


def test_special_tokens_through_the_api_and_the_service(rank_model):
    from fastapi.testclient import TestClient

    from arenapref import Judge
    from arenapref.serve import create_app

    judge = Judge.from_pretrained(rank_model)
    seen = []
    tokenize = judge.backend.renderer.tokenize
    judge.backend.renderer.tokenize = lambda texts: seen.extend(tokenize(texts)) or tokenize(texts)
    text = "a " + " ".join(SPECIALS) + " b"
    expected = judge.predict(text, text, "plain")
    special_ids = set(judge.tokenizer.all_special_ids)
    assert seen and not any(special_ids & set(ids) for ids in seen)
    # the service renders through the same path: the same probabilities
    with TestClient(create_app(Judge.from_pretrained(rank_model))) as client:
        got = client.post("/v1/compare", json={"prompt": text, "response_a": text, "response_b": "plain"}).json()
    assert np.allclose([got[k] for k in expected], list(expected.values()), atol=1e-6)


@pytest.mark.parametrize("flags, fragment", [
    (("--model", "gbdt", "--swap-augment", "full"), "--swap-augment does not apply to --model gbdt"),
    (("--model", "gbdt", "--teacher-probs", "t.csv"), "--teacher-probs does not apply to --model gbdt"),
    (("--model", "dual-tower", "--lora-r", "4"), "--lora-r does not apply to --model dual-tower"),
    (("--model", "dual-tower", "--pooling", "mean"), "--pooling does not apply to --model dual-tower"),
    (("--model", "llm", "--no-probe"), "--probe does not apply to --model llm"),
    (("--model", "dual-tower", "--rank-loss", "mse"), "--rank-loss applies to --objective rank only"),
    (("--model", "gbdt", "--gbdt-extra", "all"), "--gbdt-extra says how the gbdt uses --extra"),
    (("--model", "dual-tower", "--distill-alpha", "0.3"), "--distill-alpha weighs the --teacher-probs"),
    (("--gbdt-rounds", "10", "--lora-r", "4"), "--lora-r does not apply to --model hybrid"),
])
def test_flags_a_family_never_reads_are_refused(tmp_path, small_csv, flags, fragment):
    proc = run_cli("train", "--data", small_csv, "--output", tmp_path / "m", *flags, check=False)
    assert proc.returncode != 0 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_rounded_probabilities_never_reach_zero():
    from arenapref.cli.app import round_rows

    probs = np.array([[1 - 2e-9, 1e-9, 1e-9], [0.5, 0.5, 0.0], [0.3333334, 0.3333333, 0.3333333], [0, 0, 1.0]])
    rounded = round_rows(probs, 6)
    assert (rounded >= 1e-6).all()
    np.testing.assert_array_equal(np.round(rounded.sum(axis=1), 9), 1.0)
    assert np.abs(rounded - probs).max() <= 2.1e-6


def test_predict_writes_no_zero(tmp_path, gbdt_model, small_csv):
    out = tmp_path / "pred.csv"
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", out)
    values = pd.read_csv(out)[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert (values >= 1e-6).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-9)


def test_scores_have_one_definition(tmp_path, rank_model, small_csv):
    import shutil

    from arenapref import Judge

    model = tmp_path / "rank"
    shutil.copytree(rank_model, model)
    meta = json.loads((model / "arenapref.json").read_text())
    meta["calibration"]["temperature"] = 1.7  # a temperature tells raw scores from calibrated ones
    (model / "arenapref.json").write_text(json.dumps(meta))
    judge = Judge.from_pretrained(model)
    frame = load_frame(small_csv).head(6)
    by_rank = judge.score_responses(list(frame["prompt"]), list(frame["response_a"]))
    by_frame = judge.predict_frame(to_kaggle(frame), scores=True)["score_a"].to_numpy()
    out = tmp_path / "scored.csv"
    run_cli("predict", "--model", model, "--data", small_csv, "--output", out, "--scores")
    by_cli = pd.read_csv(out)["score_a"].to_numpy()[:6]
    np.testing.assert_allclose(by_frame, by_rank, atol=1e-5)
    np.testing.assert_allclose(by_cli, by_rank, atol=1e-5)
    ranked = judge.rank(frame["prompt"][0], [frame["response_a"][0], frame["response_b"][0]])
    assert np.isclose(max(r["score"] for r in ranked if r["index"] == 0), by_rank[0], atol=1e-5)


def test_near_identical_prompts_share_a_group():
    frame = pd.DataFrame({"prompt": [["Hello!"], ["hello"], ["  HELLO  "], ["Hello", "and more"], ["Goodbye"],
                                     ["!!!"], ["???"]]})
    groups = prompt_groups(frame)
    assert len(set(groups[:4])) == 1 and len(set(groups)) == 4  # "!!!" and "???" keep their own text


def test_sample_groups(arena_csv):
    assert len(set(prompt_groups(load_frame(arena_csv)))) == 991  # 996 distinct exact prompts


def test_valid_sharing_a_prompt_is_reported(tmp_path, small_csv):
    frame = load_frame(small_csv)
    single = frame[frame["prompt"].map(len) == 1].head(10)
    # the same prompts, re-cased and re-punctuated: still the same prompts
    valid = single.assign(id=[f"v{i}" for i in range(len(single))],
                          prompt=[[p[0].upper() + " !"] for p in single["prompt"]])
    path = tmp_path / "valid.csv"
    to_kaggle(pd.concat([valid, frame.tail(50)])).to_csv(path, index=False)
    data = tmp_path / "data.csv"
    to_kaggle(frame.head(46)).to_csv(data, index=False)
    proc = run_cli("train", "--data", data, "--valid", path, "--output", tmp_path / "m", "--model", "gbdt")
    assert f"{len(single)} of {len(single) + 50} rows share a prompt with" in proc.stdout
    scope = json.loads((tmp_path / "m" / "arenapref.json").read_text())["valid_metrics_scope"]
    assert f"{len(single)} of {len(single) + 50} rows share a prompt with the training rows" in scope


def test_extra_rows_with_a_validation_prompt_are_left_out(tmp_path, small_csv):
    from arenapref.config import TrainConfig
    from arenapref.data.split import grouped_split, load_train_valid

    frame = load_frame(small_csv)
    _, valid = grouped_split(frame, 0.25, 3)
    extra = to_kaggle(pd.concat([valid.head(4), frame.head(60)]).assign(id=[f"x{i}" for i in range(64)]))
    path = tmp_path / "extra.csv"
    extra.to_csv(path, index=False)
    logged = []
    cfg = TrainConfig(data=str(small_csv), output=str(tmp_path / "m"), extra=[str(path)], valid_fraction=0.25,
                      seed=3, model="gbdt").validate()
    train, valid_again = load_train_valid(cfg, logged.append)
    kept = train[train["is_extra"]]
    held = set(valid_again["prompt"].map(lambda p: p[0].lower()))
    assert len(kept) < 64 and not kept["prompt"].map(lambda p: p[0].lower()).isin(held).any()
    assert any("leaving out" in line for line in logged)


def test_validation_figures_are_cross_fitted_and_swap_tta_has_its_temperature(tmp_path, arena_csv):
    from arenapref import Judge
    from arenapref.evaluation.calibration import cross_fitted, fit_temperature
    from arenapref.evaluation.metrics import log_loss, softmax

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(400, 3)) * 3, rng.integers(0, 3, 400)
    groups = np.arange(400) // 2
    honest = log_loss(labels, cross_fitted(logits, labels, groups))
    in_sample = log_loss(labels, softmax(logits, fit_temperature(logits, labels)))
    assert honest > in_sample  # pure noise: only the in-sample fit looks better than it is

    out = tmp_path / "gbdt"
    run_cli("train", "--data", arena_csv, "--output", out, "--model", "gbdt", "--gbdt-rounds", 40)
    meta = json.loads((out / "arenapref.json").read_text())
    assert "cross-fitted" in meta["valid_metrics_scope"]
    assert meta["calibration"]["temperature_swap"] == meta["calibration"]["temperature"]
    meta["calibration"]["temperature_swap"] = 2 * meta["calibration"]["temperature"]
    (out / "arenapref.json").write_text(json.dumps(meta))
    judge, frame = Judge.from_pretrained(out), load_frame(arena_csv).head(20)
    plain = judge.predict_logits(frame)[0]
    swapped = judge.predict_logits(frame, tta="swap")[0]  # gbdt is symmetric: only the temperature differs
    np.testing.assert_allclose(softmax(swapped), softmax(plain * 0.5), atol=1e-6)


@pytest.mark.slow
def test_predict_streams_in_chunks_with_the_same_result(tmp_path, gbdt_model, small_csv):
    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", whole)
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", chunked, "--chunk-rows", 7)
    assert whole.read_text() == chunked.read_text() and len(pd.read_csv(whole)) == 96
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    jsonl, parquet = tmp_path / "rows.jsonl", tmp_path / "rows.parquet"
    raw.to_json(jsonl, orient="records", lines=True)
    raw.to_parquet(parquet)
    for path in (jsonl, parquet):
        out = tmp_path / f"{path.suffix[1:]}.csv"
        run_cli("predict", "--model", gbdt_model, "--data", path, "--output", out, "--chunk-rows", 10)
        assert out.read_text() == whole.read_text()
    # a bad row or a repeated id in a later chunk: named by its row in the file, and nothing is written
    for column, value, fragment in (("prompt", "not json", "row 40 column prompt"),
                                    ("id", raw["id"][2], "row 40 column id: id")):
        bad = raw.copy()
        bad.loc[39, column] = value
        bad_path, out = tmp_path / "bad.csv", tmp_path / "bad_out.csv"
        bad.to_csv(bad_path, index=False)
        proc = run_cli("predict", "--model", gbdt_model, "--data", bad_path, "--output", out, "--chunk-rows", 16,
                       check=False)
        assert proc.returncode != 0 and fragment in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists() and not list(tmp_path.glob(".bad_out.csv.*"))


@pytest.mark.slow
def test_model_card_and_report_to(tmp_path, gbdt_model, tiny_csv, tiny_deberta):
    card = (gbdt_model / "README.md").read_text()
    meta = json.loads((gbdt_model / "arenapref.json").read_text())
    assert "library_name: arenapref" in card and "# arenapref gbdt model" in card
    assert f"log loss {meta['valid_metrics']['log_loss']:.4f}" in card and meta["valid_metrics_scope"] in card
    assert f'Judge.from_pretrained("{gbdt_model.name}")' in card and str(gbdt_model.parent) not in card
    out = tmp_path / "tb"
    run_cli("train", "--data", tiny_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--eval-steps", 2, "--report-to", "tensorboard")
    assert list((out / "logs").rglob("events.out.tfevents.*")) and (out / "README.md").is_file()
    assert not (out / "checkpoints").exists()
    for flags, fragment in ((("--model", "gbdt", "--report-to", "tensorboard"), "--report-to does not apply"),
                            (("--model", "dual-tower", "--report-to", "nonsense"), "report-to 'nonsense': expected")):
        proc = run_cli("train", "--data", tiny_csv, "--output", tmp_path / "x", *flags, check=False)
        assert proc.returncode != 0 and fragment in proc.stderr and "Traceback" not in proc.stderr


# int8 activation ranges are per encoder call, so a row's int8 result depends on the rows that share its batch;
# the README states this tolerance (fp32 does not depend on batching at all).
INT8_BATCH_TOLERANCE = 1e-2


def test_int8_batch_dependence_stays_within_the_stated_tolerance(tiny_model, small_csv):
    from arenapref import Judge

    frame = load_frame(small_csv).head(32)
    results = {}
    for quantize in (None, "int8"):
        alone = Judge.from_pretrained(tiny_model, quantize=quantize, max_tokens=1, workers=1).predict_proba(frame)
        batched = Judge.from_pretrained(tiny_model, quantize=quantize, max_tokens=1 << 20).predict_proba(frame)
        results[quantize] = np.abs(alone - batched).max()
    assert results[None] < 1e-5
    assert results["int8"] < INT8_BATCH_TOLERANCE, results


@pytest.mark.parametrize("flag", [("--quantize", "int8"), ("--dtype", "bf16"), ("--workers", "2"),
                                  ("--batch-tokens", "512")])
def test_speed_flags_on_a_gbdt_model_are_refused(tmp_path, gbdt_model, small_csv, flag):
    for command in (("predict", "--output", tmp_path / "p.csv"), ("evaluate",)):
        proc = run_cli(command[0], "--model", gbdt_model, "--data", small_csv, *command[1:], *flag, check=False)
        assert proc.returncode != 0 and f"{flag[0]} applies to neural models" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "p.csv").exists()


def test_joint_families_keep_the_latest_turns_by_default(tiny_deberta):
    from arenapref.config import TrainConfig
    from arenapref.data.tables import normalize
    from arenapref.data.text import Renderer, TextSettings
    from arenapref.models.loading import load_tokenizer

    def side_of(model, **kw):
        return TrainConfig(data="d.csv", output="o", model=model, **kw).validate().truncation_side

    assert side_of("cross-encoder") == side_of("llm") == side_of("hybrid", hybrid_neural="cross-encoder") == "left"
    assert side_of("dual-tower") == side_of("hybrid") == "right"  # its sides drop the oldest turns first already
    assert side_of("cross-encoder", truncation_side="right") == "right"
    long = " ".join(["an old long turn"] * 80)
    frame = normalize(pd.DataFrame({"id": ["0"], "prompt": [[long, "first follow-up", "the latest question"]],
                                    "response_a": [[long, "A's middle", "A's LATEST answer"]],
                                    "response_b": [[long, "B's middle", "B's LATEST answer"]]}))
    renderer = Renderer(load_tokenizer(tiny_deberta),
                        TextSettings(max_length=96, truncation_side=side_of("cross-encoder")))
    ids = renderer.cross_inputs(frame)[0]
    text = renderer.tokenizer.decode(ids)
    assert "LATEST answer" in text.replace("▁", " ") and text.count("LATEST answer") == 2, text


@pytest.mark.slow
def test_mse_rank_checkpoints_are_chosen_by_a_metric_that_exists(tmp_path, small_csv, tiny_deberta):
    out = tmp_path / "mse"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--eval-steps", 3, "--objective", "rank", "--rank-loss", "mse",
            "--no-probe", "--head-lr", 0.05, "--valid-fraction", 0.5)
    meta = json.loads((out / "arenapref.json").read_text())
    log = json.loads((out / "training_log.json").read_text())
    losses = [h["eval_loss"] for h in log["log_history"] if "eval_loss" in h]
    assert meta["fine_tune"]["metric"] == "loss" and log["metric_for_best_model"] == "loss"
    assert len(losses) >= 2 and np.isclose(log["best_metric"], min(losses))
    assert "score link" in meta["valid_metrics_scope"] and "link" in meta
    assert {"temperature", "temperature_swap"} <= set(meta["calibration"])
    # the fitted link's scale reaches the pair path's scores too: one score definition for this objective as well
    from arenapref import Judge

    judge, frame = Judge.from_pretrained(out), load_frame(small_csv).head(6)
    assert meta["link"]["scale"] != 1.0
    np.testing.assert_allclose(judge.predict_frame(to_kaggle(frame), scores=True)["score_a"],
                               judge.score_responses(list(frame["prompt"]), list(frame["response_a"])), atol=1e-5)
