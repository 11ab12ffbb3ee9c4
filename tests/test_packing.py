"""Joint packing on the real sample: round packing never splits a round, the "fields" packing of older models is
byte for byte what it was, and the per-row diagnostics are exactly what the renderer fed the model."""

from __future__ import annotations

import importlib.util
import json

import pytest

from arenapref.data.tables import load_frame
from arenapref.data.text import FIELD_NAMES, Renderer, TextSettings, allocate, clip, encode_rows
from conftest import ROOT


@pytest.fixture(scope="module")
def minilm():
    from arenapref.models.loading import DEFAULT_BACKBONE, load_tokenizer

    return load_tokenizer(DEFAULT_BACKBONE)


@pytest.fixture(scope="module")
def arena(arena_csv):
    return load_frame(arena_csv)


@pytest.fixture(scope="module")
def multi_turn(arena):
    return arena[[len(p) > 1 for p in arena["prompt"]]].reset_index(drop=True)


def bench_module():
    spec = importlib.util.spec_from_file_location("packing_rounds", ROOT / "bench" / "packing_rounds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def old_joint(r: Renderer, prompt, resp_a, resp_b) -> list[int]:
    """Renderer.joint as it was before round packing (commit c49bc99), the reference "fields" must match."""
    s = r.settings

    def field(turns, marker, budget):
        left = s.truncation_side == "left"
        order = list(reversed(turns)) if left else list(turns)
        kept, used = [], 0
        for k, turn in enumerate(order):
            room = budget - used - len(marker)
            if k > 0 and room <= 0:
                break
            piece = clip(turn, max(room, 0), s.truncation_side)
            kept.append(marker + piece)
            used += len(marker) + len(piece)
            if len(piece) < len(turn):
                break
        if left:
            kept.reverse()
        return [t for piece in kept for t in piece]

    fields = (prompt, resp_a, resp_b)
    budget = s.max_length - len(r.prefix) - len(r.suffix) - sum(len(m) for m in r.field_markers)
    costs = [sum(len(t) for t in turns) + len(m) * max(len(turns) - 1, 0) for turns, m in zip(fields, r.field_markers)]
    alloc = allocate(costs, list(s.field_weights), budget)
    ids = list(r.prefix)
    for turns, marker, extra in zip(fields, r.field_markers, alloc):
        ids += field(turns, marker, len(marker) + extra)
    return ids + r.suffix


def tokenized(r: Renderer, frame):
    return zip(*(r.tokenize_turn_lists(frame[c]) for c in FIELD_NAMES))


@pytest.mark.parametrize("side", ["left", "right"])
def test_settings_saved_without_the_key_pack_exactly_as_before(minilm, multi_turn, arena, side):
    saved = {"max_length": 128, "response_weight": 2.0, "truncation_side": side, "user_marker": "User:",
             "assistant_marker": "Assistant:", "field_weights": [0.2, 0.4, 0.4],
             "field_markers": ["Prompt:", "Response A:", "Response B:"]}  # an arenapref.json "text" block of before
    r = Renderer(minilm, TextSettings.from_dict(saved))
    frame = arena.head(200) if side == "right" else multi_turn
    rows = encode_rows(r, "joint", frame)
    assert rows == [old_joint(r, *turns) for turns in tokenized(r, frame)]
    assert rows != encode_rows(Renderer(minilm, TextSettings.from_dict({**saved, "joint_packing": "rounds"})),
                               "joint", frame)


def kept_ids(r: Renderer, turn: list[int], kept: int) -> list[int]:
    return clip(turn, kept, r.settings.truncation_side)


def occurs(ids: list[int], piece: list[int]) -> bool:
    n = len(piece)
    return n == 0 or any(ids[i:i + n] == piece for i in range(len(ids) - n + 1))


@pytest.mark.parametrize("packing,side", [("rounds", "left"), ("rounds", "right"), ("fields", "left")])
def test_joint_diagnostics_are_what_the_renderer_kept(minilm, arena, packing, side):
    r = Renderer(minilm, TextSettings(max_length=192, truncation_side=side, joint_packing=packing))
    records: list = []
    rows = encode_rows(r, "joint", arena, records)
    assert rows == encode_rows(r, "joint", arena)  # asking for diagnostics changes nothing
    assert len(records) == len(rows) == len(arena)
    json.dumps(records)
    for ids, record, turns in zip(rows, records, tokenized(r, arena)):
        assert record["tokens"] == len(ids) <= 192 and record["packing"] == packing
        fields = [record["fields"][name] for name in FIELD_NAMES]
        kept = sum(t["kept"] for f in fields for t in f)
        assert kept + sum(record["overhead"].values()) == len(ids)
        assert r.ellipsis[0] in ids or record["overhead"]["ellipsis"] == 0
        cut = False
        for field, field_turns in zip(fields, turns):
            assert [t["tokens"] for t in field] == [len(t) for t in field_turns]
            for report, turn in zip(field, field_turns):
                assert 0 <= report["kept"] <= report["tokens"]
                cut |= report["kept"] < report["tokens"]
                assert occurs(ids, kept_ids(r, turn, report["kept"]))  # the kept part is in the sequence
        assert record["truncated"] == (cut or record["rounds_dropped"] > 0)
        if packing == "rounds":
            assert bench_module().split_rounds(record) == 0
            # a round is shown whole but for the earliest shown one; every earlier round is dropped
            shown = [any(f[t]["kept"] for f in fields) or all(f[t]["tokens"] == 0 for f in fields)
                     for t in range(record["rounds"])]
            assert shown == [False] * record["rounds_dropped"] + [True] * (record["rounds"] - record["rounds_dropped"])
            for t in range(record["rounds_dropped"] + 1, record["rounds"]):
                assert all(f[t]["kept"] == f[t]["tokens"] for f in fields)


def test_pair_diagnostics_and_unchanged_dual_tower_sides(minilm, arena):
    r = Renderer(minilm, TextSettings(max_length=96))
    records: list = []
    rows = encode_rows(r, "pair", arena, records)
    assert rows == encode_rows(r, "pair", arena)
    for (a, b), record, (prompt, resp_a, resp_b) in zip(rows, records, tokenized(r, arena)):
        assert record["tokens"] == len(a) + len(b) and record["sides"]["a"]["tokens"] == len(a)
        sides = record["sides"]
        kept = (sum(sides["a"]["prompt"]) + sum(sides["b"]["prompt"])
                + sum(t["kept"] for name in ("response_a", "response_b") for t in record["fields"][name]))
        assert kept + sum(record["overhead"].values()) == len(a) + len(b)
        assert [t["kept"] for t in record["fields"]["prompt"]] == list(map(min, sides["a"]["prompt"],
                                                                          sides["b"]["prompt"]))
        for side_ids, side_prompt, name, responses in ((a, sides["a"]["prompt"], "response_a", resp_a),
                                                       (b, sides["b"]["prompt"], "response_b", resp_b)):
            for turn, k in zip(prompt, side_prompt):
                assert occurs(side_ids, kept_ids(r, turn, k))
            for turn, report in zip(responses, record["fields"][name]):
                assert occurs(side_ids, kept_ids(r, turn, report["kept"]))
        cut = any(t["kept"] < t["tokens"] for f in record["fields"].values() for t in f)
        assert record["truncated"] == (cut or any(record["turns_dropped"].values())
                                       or any(k < len(t) for s in sides.values() for t, k in zip(prompt, s["prompt"])))


def test_token_cache_key_tells_the_packings_apart(minilm, arena):
    from arenapref.data.token_cache import cache_key

    frame = arena.head(5)
    key = lambda packing, inputs="joint": cache_key(Renderer(minilm, TextSettings(joint_packing=packing)),  # noqa: E731
                                                    inputs, frame)
    assert key("rounds") != key("fields")
    assert key("rounds", "pair") == key("fields", "pair")  # the dual tower's sides do not depend on it


def test_bench_counts_split_rounds_of_the_old_packing_only(minilm, multi_turn):
    report = bench_module().packing_report(multi_turn.head(24), minilm, 128)
    assert report["multi_turn_rows"] == 24
    for side in ("left", "right"):
        assert report[f"rounds/{side}"]["split_rows"] == 0
        assert report[f"fields/{side}"]["split_rows"] > 0
        assert 0 < report[f"rounds/{side}"]["kept_share"]["all"] <= 1
    # keeping the latest rounds whole reads more of the last exchange than right-truncating each field
    assert report["rounds/right"]["last_round_kept_share"] > report["fields/right"]["last_round_kept_share"]


def test_backend_of_an_old_model_packs_by_fields_and_reports(arena, tiny_deberta):
    """A model directory whose "text" block lacks joint_packing predicts with the old packing."""
    from transformers import AutoTokenizer

    from arenapref.inference.backend import NeuralBackend, predict_rows
    from arenapref.models import CrossEncoderModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_deberta)
    model = CrossEncoderModel.from_backbone(str(tiny_deberta))
    text = TextSettings(max_length=48, truncation_side="left").to_dict()
    del text["joint_packing"]
    backend = NeuralBackend(model, tokenizer, {"text": text}, inputs="joint")
    assert backend.reports_diagnostics and backend.renderer.settings.joint_packing == "fields"
    frame = arena.head(6)
    records: list = []
    logits, _ = backend.predict_logits(frame, diagnostics=records)
    assert [r["packing"] for r in records] == ["fields"] * 6
    old_rows = [old_joint(backend.renderer, *turns) for turns in tokenized(backend.renderer, frame)]
    reference, _ = predict_rows(backend.model, old_rows, "joint", tokenizer.pad_token_id)
    assert (logits == reference).all()


def test_hybrid_reports_its_neural_part_once_with_swap_tta(hybrid_model, arena):
    from arenapref.inference.predictor import Predictor

    judge = Predictor.from_pretrained(hybrid_model)
    frame = arena.head(5)
    records: list = []
    with_report = judge.predict_logits(frame, tta="swap", diagnostics=records)[0]
    assert len(records) == 5 and {r["inputs"] for r in records} == {"pair"}  # the hybrid's neural part: dual tower
    assert (with_report == judge.predict_logits(frame, tta="swap")[0]).all()
    gbdt = judge.backend.parts[1][1]
    extra: list = []
    gbdt.predict_logits(frame, diagnostics=extra)  # a family without a report ignores the list
    assert extra == []
