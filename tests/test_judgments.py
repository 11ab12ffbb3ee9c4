"""A judge you can check row by row: verdicts, `compare`, `predict --format jsonl`, per-row diagnostics, position
consistency in `evaluate`, and identical responses getting P(A) = P(B) in every family.

The Predictor's side of the diagnostics protocol is checked on stand-in backends (one that reports what its
renderer kept, one that does not), so these tests do not depend on any family's renderer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arenapref.api import Judge
from arenapref.cli.compare import conversation, turn_list
from arenapref.data.degenerate import identical_responses, row_warnings
from arenapref.data.swap import average_with_swapped, swap_frame
from arenapref.data.tables import LABELS, load_frame, normalize
from arenapref.errors import DataError
from arenapref.evaluation.metrics import diagnostics_summary, log_loss, position_consistency, softmax, verdicts
from arenapref.inference.hybrid import HybridBackend
from conftest import run_cli


class Biased:
    """Favours the longer response, and response A by 0.3 more; counts its passes."""

    def __init__(self):
        self.calls = []

    def logits(self, frame):
        a = np.array([len(" ".join(t)) for t in frame["response_a"]], dtype=float)
        b = np.array([len(" ".join(t)) for t in frame["response_b"]], dtype=float)
        return np.column_stack([np.log1p(a) + 0.3, np.log1p(b), np.full(len(a), 1.0)])

    def predict_logits(self, frame, progress=None):
        self.calls.append(None)
        return self.logits(frame), None


class Reporting(Biased):
    """`Biased`, speaking the renderer-diagnostics protocol: one dict per row appended to `diagnostics`."""

    reports_diagnostics = True

    @staticmethod
    def rendered(frame) -> list[dict]:
        fields = lambda turns: [{"kept": min(len(t), 8), "tokens": len(t)} for t in turns]
        return [{"truncated": any(len(t) > 8 for t in a + b), "max_length": 32, "tokens": 3 + len("".join(p + a + b)),
                 "fields": {"prompt": fields(p), "response_a": fields(a), "response_b": fields(b)},
                 "rounds_dropped": max(len(p) - 2, 0)}
                for p, a, b in zip(frame["prompt"], frame["response_a"], frame["response_b"])]

    def predict_logits(self, frame, progress=None, diagnostics=None):
        self.calls.append(diagnostics is not None)
        if diagnostics is not None:
            diagnostics.extend(self.rendered(frame))
        return self.logits(frame), None


class Flat:
    def predict_logits(self, frame, progress=None):
        return np.zeros((len(frame), 3)), None


def rows() -> pd.DataFrame:
    """A decisive pair, two same-length answers (where the position bias alone decides), identical responses, an
    empty response B (null and whitespace turns), an empty prompt, and a 3-round conversation."""
    return normalize(pd.DataFrame({
        "id": ["long", "even", "same", "empty_b", "no_prompt", "rounds"],
        "prompt": [["q"], ["q"], ["q"], ["q", "r"], [" "], ["p1", "p2", "p3"]],
        "response_a": [["short"], ["abc"], ["same answer"], ["an answer", "more"], ["x"], ["a1", "a2", "a long third"]],
        "response_b": [["a much longer answer"], ["abd"], [" same answer "], [None, "  "], ["y"], ["b1", "", "b3"]],
    }), "rows()")


# -- degenerate rows ---------------------------------------------------------------------------------------------------
def test_row_warnings_name_empty_prompts_and_empty_or_identical_responses():
    frame = rows()
    assert identical_responses(frame).tolist() == [False, False, True, False, False, False]
    assert row_warnings(frame) == [[], [], ["identical_responses"], ["empty_response_b"], ["empty_prompt"], []]
    both_empty = normalize(pd.DataFrame({"id": ["0"], "prompt": [["q"]], "response_a": [[""]], "response_b": [[None]]}))
    assert row_warnings(both_empty) == [["empty_response_a", "empty_response_b", "identical_responses"]]


def test_identical_responses_get_equal_a_and_b_in_every_answer_and_the_tie_logit_is_the_models():
    frame = rows()
    judge = Judge(Biased(), {"calibration": {"temperature": 2.0, "temperature_swap": 1.5}})
    raw = Biased().logits(frame)
    assert raw[2, 0] != raw[2, 1]  # the stand-in has a position bias: without the rule, A would win
    logits, _ = judge.predict_logits(frame)
    assert logits[2, 0] == logits[2, 1] == (raw[2, 0] + raw[2, 1]) / 4 and logits[2, 2] == raw[2, 2] / 2
    np.testing.assert_array_equal(logits[[0, 1, 3, 4, 5]], raw[[0, 1, 3, 4, 5]] / 2)  # other rows untouched
    for tta in ("none", "swap"):
        result = judge.predict_all(frame, tta=tta, both_orders=True)
        for probs in (result.probs, result.direct, result.mirrored):
            assert probs[2, 0] == probs[2, 1]
    decision = judge.decide("q", "same answer", "same answer")
    assert decision["winner_model_a"] == decision["winner_model_b"]
    assert decision["verdict"] == ("ambiguous" if decision["winner_model_a"] >= decision["winner_tie"] else "tie")


def test_decide_gives_the_verdict_beside_predict_and_ambiguous_on_a_dead_heat():
    judge = Judge(Biased(), {"calibration": {"temperature": 2.0}})
    decision = judge.decide("q", "short", "a much longer answer")
    probs = judge.predict("q", "short", "a much longer answer")
    assert {k: decision[k] for k in LABELS} == probs and decision["verdict"] == "b_wins"
    assert list(decision) == [*LABELS, "verdict"]
    flat = Judge(Flat(), {})
    assert flat.decide("q", "one", "two")["verdict"] == "ambiguous"  # 1/3 each: no outcome is likelier
    swapped = judge.decide("q", "abc", "abd", tta="swap")  # swap TTA cancels the bias: equal lengths, dead heat
    assert swapped["winner_model_a"] == pytest.approx(swapped["winner_model_b"], abs=1e-7)
    assert judge.decide("q", "abc", "abd")["verdict"] == "a_wins"
    frame = judge.predict_frame(rows(), verdict=True)
    assert frame["verdict"].tolist() == verdicts(frame[list(LABELS)].to_numpy())


# -- passes and position consistency -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tta, both, passes", [("none", False, 1), ("swap", False, 2), ("none", True, 2),
                                               ("swap", True, 2)])
def test_both_orders_reuse_the_passes_the_answer_needs(tta, both, passes):
    backend = Biased()
    Judge(backend, {}).predict_all(rows(), tta=tta, both_orders=both)
    assert len(backend.calls) == passes


def test_position_consistency_by_hand():
    direct = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    mirrored = np.array([[0.3, 0.5, 0.2], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    out = position_consistency(direct, mirrored)
    assert out["rows"] == 3 and out["flip_rate"] == pytest.approx(1 / 3)
    assert out["mean_abs_diff"] == pytest.approx(0.2 / 3)
    assert out["per_class"] == pytest.approx({"model_a": 0.2 / 3, "model_b": 0.2 / 3, "tie": 0.0})
    assert position_consistency(direct, direct)["flip_rate"] == 0.0


def test_swap_tta_answers_never_depend_on_the_order():
    judge = Judge(Biased(), {"calibration": {"temperature": 2.0, "temperature_swap": 1.5}})
    one_order = judge.predict_all(rows(), tta="none", both_orders=True).position_consistency()
    assert one_order["flip_rate"] > 0  # "abc" vs "abd": the bias alone picks the side shown first
    averaged = judge.predict_all(rows(), tta="swap", both_orders=True)
    consistency = averaged.position_consistency()
    assert consistency["flip_rate"] == 0.0 and consistency["mean_abs_diff"] < 1e-9
    np.testing.assert_allclose(averaged.probs, judge.predict_proba(rows(), tta="swap"), atol=1e-12)


def test_a_blend_is_asked_part_by_part_with_the_same_numbers_and_two_passes():
    """The hybrid applies TTA inside its parts: both orders and diagnostics come from the parts' own passes, and
    the blended answer is the hybrid backend's own."""
    reporting = Reporting()
    part = Judge(reporting, {"calibration": {"temperature": 1.5, "temperature_swap": 1.2}})
    hybrid = Judge(HybridBackend([(0.4, part), (0.6, Judge(Flat(), {}))], {}), {})
    frame = rows()
    for tta in ("none", "swap"):
        reporting.calls.clear()
        result = hybrid.predict_all(frame, tta=tta, both_orders=True, diagnostics=True)
        assert len(reporting.calls) == 2 and reporting.calls[0] is True
        np.testing.assert_allclose(result.probs, hybrid.predict_proba(frame, tta=tta), atol=1e-12)
        direct, mirrored, _ = part.predict_both_orders(frame)
        np.testing.assert_allclose(result.direct, 0.4 * direct + 0.6 / 3, atol=1e-9)
        np.testing.assert_allclose(result.mirrored, 0.4 * mirrored + 0.6 / 3, atol=1e-9)
        assert [{k: r[k] for k in ("truncated", "fields", "rounds_dropped")} for r in result.diagnostics] == \
            [{k: r[k] for k in ("truncated", "fields", "rounds_dropped")} for r in Reporting.rendered(frame)]
        if tta == "swap":
            assert result.position_consistency()["flip_rate"] == 0.0


# -- diagnostics -------------------------------------------------------------------------------------------------------
def test_diagnostics_carry_the_renderers_rows_and_the_warnings():
    backend = Reporting()
    judge = Judge(backend, {"calibration": {"temperature": 2.0}})
    frame = rows()
    out = judge.predict_frame(frame, diagnostics=True, verdict=True)
    assert backend.calls == [True]  # one pass, the renderer's rows from it
    expected = [{**r, "warnings": w} for r, w in zip(Reporting.rendered(frame), row_warnings(frame))]
    assert out["diagnostics"].tolist() == expected
    assert out["diagnostics"][5]["rounds_dropped"] == 1 and out["diagnostics"][5]["fields"]["response_a"][2] == \
        {"kept": 8, "tokens": 12}
    json.dumps(out["diagnostics"].tolist())  # JSON-serialisable
    # the probabilities do not change when diagnostics are asked for
    np.testing.assert_array_equal(out[list(LABELS)].to_numpy(), judge.predict_frame(frame)[list(LABELS)].to_numpy())


def test_diagnostics_with_swap_tta_give_the_two_orders_disagreement():
    backend = Reporting()
    judge = Judge(backend, {"calibration": {"temperature": 2.0}})
    frame = rows()
    result = judge.predict_all(frame, tta="swap", diagnostics=True)
    assert backend.calls == [True, False]  # the renderer reports the rows as given; the swapped pass is the second
    direct, mirrored, _ = judge.predict_both_orders(frame)
    for i, row in enumerate(result.diagnostics):
        assert [row["swap"][k] for k in LABELS] == pytest.approx(np.abs(direct[i] - mirrored[i]).tolist())
        assert row["swap"]["top_label_flips"] == bool(direct[i].argmax() != mirrored[i].argmax())
    assert result.diagnostics[1]["swap"]["top_label_flips"] and not result.diagnostics[0]["swap"]["top_label_flips"]
    summary = diagnostics_summary(result.diagnostics)
    # one flip: "abc" vs "abd", where only the position bias decides ("x" vs "y" is a tie either way round)
    assert summary == {"rows": 6, "truncated": 4, "dropped": 1, "top_label_flips": 1,
                       "warnings": {"identical_responses": 1, "empty_response_b": 1, "empty_prompt": 1}}


def test_a_model_without_a_renderer_reports_no_token_counts():
    judge = Judge(Biased(), {})  # its predict_logits takes no diagnostics argument: none is passed
    out = judge.decide(" ", "x", "x", diagnostics=True)
    assert out["diagnostics"] == {"truncated": False, "warnings": ["empty_prompt", "identical_responses"]}


# -- compare -----------------------------------------------------------------------------------------------------------
def test_compare_reads_repeated_flags_and_json_lists_alike():
    assert turn_list(["hi"]) == ["hi"]
    assert turn_list(["p1", "p2"]) == ["p1", "p2"]
    assert turn_list(['["p1", null, "p3"]']) == ["p1", "", "p3"]
    assert turn_list(["[1, 2]", "42", "null", "[x"]) == ["[1, 2]", "42", "null", "[x"]  # not lists of strings
    assert turn_list(['["[\\"x\\"]"]']) == ['["x"]']  # a turn that is itself a list: wrap it in one
    assert conversation(["p1", "p2"], ['["a1", "a2"]'], ["b1", "b2"]) == (["p1", "p2"], ["a1", "a2"], ["b1", "b2"])
    with pytest.raises(DataError, match="--prompt gives 2 turn"):
        conversation(["p1", "p2"], ["a1"], ["b1", "b2"])
    with pytest.raises(DataError, match="at least one"):
        conversation(["[]"], ["[]"], ["[]"])


def compare_json(model, *args) -> dict:
    proc = run_cli("compare", "--model", model, *args, "--json")
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROMPT, ANSWER_A, ANSWER_B = "What is 2+2?", "4", "It is 4, because two pairs make four."


def test_compare_equals_the_api_on_a_gbdt(gbdt_model):
    judge = Judge.from_pretrained(gbdt_model)
    out = compare_json(gbdt_model, "--prompt", PROMPT, "--a", ANSWER_A, "--b", ANSWER_B)
    assert out == judge.decide(PROMPT, ANSWER_A, ANSWER_B)
    turns = (["Hi", "And 2+2?"], ["Hello!", "4"], ["Hey", "Five"])
    repeated = compare_json(gbdt_model, *[x for p, a, b in zip(*turns) for x in ("--prompt", p, "--a", a, "--b", b)])
    listed = compare_json(gbdt_model, *[x for flag, t in zip(("--prompt", "--a", "--b"), turns)
                                        for x in (flag, json.dumps(t))])
    assert repeated == listed == judge.decide(*turns)
    swap = compare_json(gbdt_model, "--prompt", PROMPT, "--a", ANSWER_A, "--b", ANSWER_B, "--tta", "swap",
                        "--diagnostics")
    assert {k: swap[k] for k in LABELS} == Judge.from_pretrained(gbdt_model, tta="swap").predict(PROMPT, ANSWER_A,
                                                                                                  ANSWER_B)
    assert swap["diagnostics"]["truncated"] is False and "swap" in swap["diagnostics"]
    table = run_cli("compare", "--model", gbdt_model, "--prompt", PROMPT, "--a", ANSWER_A, "--b", ANSWER_B,
                    "--diagnostics").stdout
    assert "verdict: " + out["verdict"] in table and "warnings" in table


def test_compare_errors_are_one_line(gbdt_model):
    bad = run_cli("compare", "--model", gbdt_model, "--prompt", "p1", "--prompt", "p2", "--a", "a", "--b", "b",
                  check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--prompt gives 2 turn(s)" in bad.stderr
    bad = run_cli("compare", "--model", gbdt_model, "--prompt", "p", "--a", "a", "--b", "b", "--tta", "both",
                  check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "tta" in bad.stderr


def test_compare_with_swap_tta_is_the_average_of_both_orders_on_a_neural_model(dual_tower_model):
    judge = Judge.from_pretrained(dual_tower_model)
    plain = compare_json(dual_tower_model, "--prompt", PROMPT, "--a", ANSWER_A, "--b", ANSWER_B)
    assert {k: plain[k] for k in LABELS} == pytest.approx(judge.predict(PROMPT, ANSWER_A, ANSWER_B), abs=1e-9)
    out = compare_json(dual_tower_model, "--prompt", PROMPT, "--a", ANSWER_A, "--b", ANSWER_B, "--tta", "swap")
    frame = normalize(pd.DataFrame({"id": ["0"], "prompt": [[PROMPT]], "response_a": [[ANSWER_A]],
                                    "response_b": [[ANSWER_B]]}))
    given, swapped = judge.backend.predict_logits(frame)[0], judge.backend.predict_logits(swap_frame(frame))[0]
    averaged = softmax(np.asarray(average_with_swapped(given, swapped), np.float64) / judge.temperatures["swap"])[0]
    assert [out[k] for k in LABELS] == pytest.approx(averaged.tolist(), abs=1e-6)
    assert {k: out[k] for k in LABELS} == pytest.approx(
        Judge.from_pretrained(dual_tower_model, tta="swap").predict(PROMPT, ANSWER_A, ANSWER_B), abs=1e-9)


# -- predict --format jsonl --------------------------------------------------------------------------------------------
def test_predict_jsonl_loads_with_pandas_and_datasets_and_equals_the_csv(gbdt_model, small_csv, tmp_path):
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "sub.csv")
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "rows.jsonl",
            "--diagnostics", "--chunk-rows", 40)
    csv = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    rows_ = pd.read_json(tmp_path / "rows.jsonl", lines=True, dtype={"id": str})
    assert rows_.columns.tolist() == ["id", *LABELS, "verdict", "diagnostics"]
    assert rows_["id"].tolist() == csv["id"].tolist()
    np.testing.assert_allclose(rows_[list(LABELS)].to_numpy(), csv[list(LABELS)].to_numpy(), rtol=0, atol=1e-12)
    assert set(rows_["verdict"]) <= {"a_wins", "b_wins", "tie", "ambiguous"}
    assert rows_["verdict"].tolist() == verdicts(Judge.from_pretrained(gbdt_model).predict_proba(load_frame(small_csv)))
    assert all(d["truncated"] is False and isinstance(d["warnings"], list) for d in rows_["diagnostics"])

    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(tmp_path / "rows.jsonl"), split="train",
                           cache_dir=str(tmp_path / "hf-cache"))
    assert dataset.num_rows == len(csv)
    np.testing.assert_allclose(np.array([dataset[k] for k in LABELS]).T, csv[list(LABELS)].to_numpy(), rtol=0,
                               atol=1e-12)
    # without --diagnostics: no diagnostics key; the format follows the file name unless --format says otherwise
    run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "plain.txt",
            "--format", "jsonl")
    first = json.loads((tmp_path / "plain.txt").read_text().splitlines()[0])
    assert list(first) == ["id", *LABELS, "verdict"]


def test_predict_diagnostics_need_jsonl(gbdt_model, small_csv, tmp_path):
    for extra in (("--diagnostics",), ("--format", "parquet")):
        bad = run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "sub.csv", *extra,
                      check=False)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert not (tmp_path / "sub.csv").exists()


# -- evaluate: position consistency ------------------------------------------------------------------------------------
def test_evaluate_reports_position_consistency_and_swap_tta_makes_it_zero(gbdt_model, small_csv):
    plain = json.loads(run_cli("evaluate", "--model", gbdt_model, "--data", small_csv, "--json",
                               "--diagnostics").stdout.strip().splitlines()[-1])
    direct, mirrored, _ = Judge.from_pretrained(gbdt_model).predict_both_orders(load_frame(small_csv))
    assert_same_consistency(plain["position_consistency"], position_consistency(direct, mirrored), 1e-12)
    assert plain["diagnostics"]["rows"] == 96 and plain["diagnostics"]["truncated"] == 0
    swap = json.loads(run_cli("evaluate", "--model", gbdt_model, "--data", small_csv, "--json", "--tta",
                              "swap").stdout.strip().splitlines()[-1])
    assert swap["position_consistency"]["flip_rate"] == 0.0
    assert swap["position_consistency"]["mean_abs_diff"] < 1e-9
    table = run_cli("evaluate", "--model", gbdt_model, "--data", small_csv, "--diagnostics").stdout
    assert "position consistency" in table and "top label flips" in table and "diagnostics" in table


def assert_same_consistency(got: dict, expected: dict, tol: float):
    assert got["rows"] == expected["rows"]
    for key in ("flip_rate", "mean_abs_diff"):
        assert got[key] == pytest.approx(expected[key], abs=tol), key
    assert got["per_class"] == pytest.approx(expected["per_class"], abs=tol)


def test_evaluate_on_a_neural_model_measures_both_orders_and_none_differ_with_swap_tta(dual_tower_model, small_csv):
    frame = load_frame(small_csv)
    plain = json.loads(run_cli("evaluate", "--model", dual_tower_model, "--data", small_csv,
                               "--json").stdout.strip().splitlines()[-1])
    judge = Judge.from_pretrained(dual_tower_model)
    direct, mirrored, usual = judge.predict_both_orders(frame)
    assert_same_consistency(plain["position_consistency"], position_consistency(direct, mirrored), 1e-6)
    assert plain["position_consistency"]["mean_abs_diff"] > 0  # a single-order model: the order matters a little
    assert plain["log_loss"] == pytest.approx(log_loss(frame["label"].to_numpy(), usual), abs=1e-6)
    swap = json.loads(run_cli("evaluate", "--model", dual_tower_model, "--data", small_csv, "--json", "--tta",
                              "swap").stdout.strip().splitlines()[-1])
    assert swap["position_consistency"]["flip_rate"] == 0.0


# -- identical responses in every family -------------------------------------------------------------------------------
def identical_rows(small_csv) -> pd.DataFrame:
    """Real prompts of the first rows, response B set to response A (one multi-turn row among them)."""
    frame = load_frame(small_csv).head(24)
    return frame.assign(response_b=frame["response_a"])


def assert_a_equals_b(judge, frame):
    for tta in ("none", "swap"):
        probs = judge.predict_proba(frame, tta=tta)
        np.testing.assert_array_equal(probs[:, 0], probs[:, 1])
        assert set(verdicts(probs)) <= {"ambiguous", "tie"}
    direct, mirrored, _ = judge.predict_both_orders(frame)
    np.testing.assert_array_equal(direct[:, 0], direct[:, 1])
    np.testing.assert_array_equal(mirrored[:, 0], mirrored[:, 1])


def test_identical_responses_gbdt(gbdt_model, small_csv):
    assert_a_equals_b(Judge.from_pretrained(gbdt_model), identical_rows(small_csv))


def test_identical_responses_cross_encoder(tiny_deberta, small_csv):
    """An untrained cross-encoder (random head) reads "Response A: x ... Response B: x" asymmetrically."""
    import torch
    from transformers import AutoTokenizer

    from arenapref.inference.backend import NeuralBackend
    from arenapref.models.cross_encoder import CrossEncoderModel

    torch.manual_seed(0)
    model = CrossEncoderModel.from_backbone(str(tiny_deberta))
    backend = NeuralBackend(model, AutoTokenizer.from_pretrained(tiny_deberta), {"text": {"max_length": 48}},
                            inputs="joint")
    frame = identical_rows(small_csv)
    raw = backend.predict_logits(frame)[0]
    assert np.abs(raw[:, 0] - raw[:, 1]).max() > 1e-6  # without the rule A and B would differ
    judge = Judge(backend, {"calibration": {"temperature": 1.3}})
    assert_a_equals_b(judge, frame)
    # the real renderer's report arrives whole in the row diagnostics, beside the warnings and the swap figures
    records = []
    backend.predict_logits(frame, diagnostics=records)
    result = judge.predict_all(frame, tta="swap", diagnostics=True)
    assert [{k: v for k, v in r.items() if k not in ("warnings", "swap")} for r in result.diagnostics] == records
    assert all(r["warnings"] == ["identical_responses"] and not r["swap"]["top_label_flips"]
               for r in result.diagnostics)


def test_identical_responses_dual_tower(dual_tower_model, small_csv):
    assert_a_equals_b(Judge.from_pretrained(dual_tower_model), identical_rows(small_csv))


def test_identical_responses_llm(llm_ranker, small_csv):
    assert_a_equals_b(Judge.from_pretrained(llm_ranker), identical_rows(small_csv))


def test_identical_responses_hybrid(hybrid_model, small_csv):
    judge = Judge.from_pretrained(hybrid_model)
    frame = identical_rows(small_csv)
    assert_a_equals_b(judge, frame)
    result = judge.predict_all(frame, tta="swap", both_orders=True, diagnostics=True)
    assert all("identical_responses" in row["warnings"] for row in result.diagnostics)
    np.testing.assert_allclose(result.probs, judge.predict_proba(frame, tta="swap"), atol=1e-12)
