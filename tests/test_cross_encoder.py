"""Cross-encoder: joint rendering (the "fields" packing of older models: per-field budgets, markers, whole turns;
round packing is tested in test_text.py) and the model end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from arenapref.data.text import Renderer, TextSettings, allocate
from conftest import run_cli


@pytest.fixture(scope="module")
def tokenizer(tiny_deberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_deberta)


def find(ids: list[int], pattern: list[int], start: int = 0) -> list[int]:
    """Start positions of `pattern` in `ids`."""
    return [i for i in range(start, len(ids) - len(pattern) + 1) if ids[i:i + len(pattern)] == pattern]


def split_fields(renderer: Renderer, ids: list[int]) -> list[list[int]]:
    """The token ids of the prompt, response A and response B fields (first markers removed)."""
    starts = [find(ids, m)[0] for m in renderer.field_markers]
    assert starts == sorted(starts), "fields must come in the order prompt, A, B"
    ends = starts[1:] + [len(ids) - len(renderer.suffix)]
    return [ids[s + len(m):e] for s, m, e in zip(starts, renderer.field_markers, ends)]


def frame_of(prompt, a, b) -> pd.DataFrame:
    return pd.DataFrame({"id": ["0"], "prompt": [prompt], "response_a": [a], "response_b": [b]})


LONG = " ".join(["the model answered the question about python code"] * 40)


def test_budgets_respected_and_every_field_present_when_all_is_long(tokenizer):
    settings = TextSettings(max_length=64, joint_packing="fields")
    renderer = Renderer(tokenizer, settings)
    ids = renderer.cross_inputs(frame_of([LONG], [LONG], [LONG]))[0]
    assert len(ids) == 64
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    fields = split_fields(renderer, ids)
    budget = 64 - 2 - sum(len(m) for m in renderer.field_markers)
    assert [len(f) for f in fields] == allocate([10_000] * 3, [0.2, 0.4, 0.4], budget)
    assert abs(len(fields[0]) - 0.2 * budget) <= 1 and abs(len(fields[1]) - 0.4 * budget) <= 1
    # Right truncation keeps the start of each field.
    long_ids = renderer.tokenize([LONG])[0]
    assert fields[1] == long_ids[:len(fields[1])]

    # Configurable shares, and left truncation keeps the end.
    renderer = Renderer(tokenizer, TextSettings(max_length=64, field_weights=(0.5, 0.25, 0.25), truncation_side="left",
                                                 joint_packing="fields"))
    fields = split_fields(renderer, renderer.cross_inputs(frame_of([LONG], [LONG], [LONG]))[0])
    assert abs(len(fields[0]) - 0.5 * budget) <= 1
    assert fields[0] == long_ids[-len(fields[0]):]


def test_short_field_kept_whole_and_its_share_goes_to_the_responses(tokenizer):
    renderer = Renderer(tokenizer, TextSettings(max_length=64, joint_packing="fields"))
    ids = renderer.cross_inputs(frame_of(["hello there"], [LONG], [""]))[0]
    prompt, a, b = split_fields(renderer, ids)
    assert prompt == renderer.tokenize(["hello there"])[0]
    assert b == []  # an empty response keeps its marker
    assert len(ids) == 64 and len(a) == 64 - 2 - sum(len(m) for m in renderer.field_markers) - len(prompt)


def test_multi_turn_keeps_turns_whole_where_possible(tokenizer):
    turns = [LONG, "a short second question", "and a short third one"]
    for side in ("left", "right"):
        renderer = Renderer(tokenizer, TextSettings(max_length=128, truncation_side=side, joint_packing="fields"))
        ids = renderer.cross_inputs(frame_of(turns, ["x"] * 3, ["y"] * 3))[0]
        prompt_marker = renderer.field_markers[0]
        prompt = ids[find(ids, prompt_marker)[0]:find(ids, renderer.field_markers[1])[0]]
        short = renderer.tokenize(turns[1:])
        if side == "left":
            # The latest turns are whole, each after its own marker; the oldest turn is cut at its start.
            assert len(find(prompt, prompt_marker)) == 3
            assert prompt[-len(short[1]):] == short[1]
            assert find(prompt, prompt_marker + short[0] + prompt_marker + short[1])
            long_ids = renderer.tokenize([LONG])[0]
            first = prompt[len(prompt_marker):find(prompt, prompt_marker, 1)[0]]
            assert 0 < len(first) < len(long_ids) and first == long_ids[-len(first):]
        else:
            # The first turn fills the field from its start; later turns do not fit and are dropped.
            assert len(find(prompt, prompt_marker)) == 1
            assert prompt[len(prompt_marker):] == renderer.tokenize([LONG])[0][:len(prompt) - len(prompt_marker)]
        # Responses are short: every turn of them is there, whole, with its marker.
        a_marker = renderer.field_markers[1]
        a_part = ids[find(ids, a_marker)[0]:find(ids, renderer.field_markers[2])[0]]
        assert a_part == (a_marker + renderer.tokenize(["x"])[0]) * 3
        assert len(ids) == 128


def test_head_init_and_save_load_roundtrip(tiny_deberta, tmp_path):
    from arenapref.models.cross_encoder import CrossEncoderModel

    torch.manual_seed(0)
    model = CrossEncoderModel.from_backbone(str(tiny_deberta))
    weight = model.head.weight.detach()
    assert weight.shape == (3, 32)
    assert 0.01 < float(weight.std()) < 0.03 and float(model.head.bias.detach().abs().max()) == 0.0
    ids = torch.randint(5, 700, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    model.eval()
    before = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path)
    loaded = CrossEncoderModel.from_pretrained(tmp_path).eval()
    after = loaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before, after, atol=1e-6)
    # Padding does not change a row's prediction (masked mean pooling).
    short = model(input_ids=ids[1:2, :12], attention_mask=mask[1:2, :12]).logits
    assert torch.allclose(short, before[1:2], atol=1e-5)


@pytest.mark.slow
def test_cli_cross_encoder_end_to_end(tmp_path, small_csv, tiny_deberta):
    out = tmp_path / "model"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "cross-encoder", "--backbone", tiny_deberta,
            "--max-length", 48, "--epochs", 1, "--batch-size", 16, "--eval-steps", 50, "--truncation-side", "left",
            "--field-budget", "0.3,0.35,0.35", "--swap-augment", "full")
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["model_type"] == "cross-encoder"
    assert meta["text"]["field_weights"] == [0.3, 0.35, 0.35] and meta["text"]["truncation_side"] == "left"
    assert meta["text"]["joint_packing"] == "rounds"  # new models pack by rounds
    assert json.loads((out / "config.json").read_text())["model_type"] == "arenapref-cross-encoder"
    assert np.isfinite(meta["valid_metrics"]["log_loss"])
    pred = tmp_path / "pred.csv"
    run_cli("predict", "--model", out, "--data", small_csv, "--output", pred, "--tta", "swap")
    probs = pd.read_csv(pred)
    assert len(probs) == 96
    values = probs[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.allclose(values.sum(axis=1), 1.0, atol=1e-6) and (values > 0).all()
    bad = run_cli("predict", "--model", out, "--data", small_csv, "--output", pred, "--tta", "mirror", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "tta" in bad.stderr


def test_fields_pooling_masks_exactly_each_response(tokenizer, tiny_deberta):
    """"fields" pooling averages response A's tokens and response B's separately (markers included), found by the
    markers' token ids; nothing of the prompt or of the other response leaks into either mask."""
    from arenapref.inference.batching import pad_batch
    from arenapref.models import CrossEncoderModel
    from arenapref.models.families import field_marker_ids

    renderer = Renderer(tokenizer, TextSettings(max_length=96))
    rows = renderer.cross_inputs(pd.DataFrame({"id": ["0", "1"], "prompt": [["Say hi", "Again"], ["Why?"]],
                                               "response_a": [["Hello there", "Hi"], ["Because it rains"]],
                                               "response_b": [["Hey", "Yo friend"], ["No idea"]]}))
    model = CrossEncoderModel.from_backbone(str(tiny_deberta), pooling="fields",
                                            field_marker_ids=field_marker_ids(tokenizer)).eval()
    ids, mask = pad_batch(rows, tokenizer.pad_token_id)
    mask_a, mask_b = model.field_masks(ids, mask)
    for i, row in enumerate(rows):
        a_start, b_start = find(row, renderer.field_markers[1])[0], find(row, renderer.field_markers[2])[0]
        assert mask_a[i].nonzero().flatten().tolist() == list(range(a_start, b_start))
        assert mask_b[i].nonzero().flatten().tolist() == list(range(b_start, len(row)))
    with torch.no_grad():
        pooled = model.encode(ids, mask)
    assert pooled.shape == (2, 64) and model.head.in_features == 64
