"""A/B swap (training augmentation and test-time averaging) and distillation from teacher probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from arenapref.config import load_config
from arenapref.data.swap import average_with_swapped, swap_frame
from arenapref.data.tables import load_frame
from arenapref.errors import DataError
from arenapref.evaluation.metrics import softmax
from arenapref.inference.batching import PairCollator, SequenceCollator
from arenapref.training.dataset import FlattenCollator, PreferenceDataset
from arenapref.training.distill import read_teacher_probs, soft_targets


def test_swap_frame_exchanges_responses_and_maps_labels():
    frame = pd.DataFrame({"id": list("abcd"), "prompt": [["p"]] * 4, "response_a": [["A"]] * 4,
                          "response_b": [["B"]] * 4, "label": [0, 1, 2, -1], "model_a": ["ma"] * 4,
                          "model_b": ["mb"] * 4})
    swapped = swap_frame(frame)
    assert swapped["response_a"].tolist() == [["B"]] * 4 and swapped["response_b"].tolist() == [["A"]] * 4
    assert swapped["model_a"].tolist() == ["mb"] * 4 and swapped["label"].tolist() == [1, 0, 2, -1]
    assert frame["label"].tolist() == [0, 1, 2, -1]  # the input is not modified
    pd.testing.assert_frame_equal(swap_frame(swapped), frame)


def pair_dataset(swap: str, n: int = 4) -> PreferenceDataset:
    inputs = [([i, 100], [i, 200, 201]) for i in range(n)]  # side A has 2 tokens, side B 3
    swapped = [(b, a) for a, b in inputs]
    labels = np.array([0, 1, 2, 0][:n])
    soft = np.array([[0.7, 0.2, 0.1]] * n, dtype=np.float32)
    return PreferenceDataset(inputs, labels, soft, swapped, swap, seed=0)


def test_random_swap_flips_about_half_the_draws_with_labels_mapped():
    ds = pair_dataset("random")
    flips = []
    for epoch in range(200):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            row = ds[i]
            # the coin depends on (seed, epoch, row) only: a resumed run flips the same ones
            assert ds[i]["labels"] == row["labels"]
            flipped = len(row["input_ids"][0]) == 3
            flips.append(flipped)
            expected = {0: 1, 1: 0, 2: 2}[int(ds.labels[i])] if flipped else int(ds.labels[i])
            assert row["labels"] == expected
            assert np.allclose(row["soft_labels"], [0.2, 0.7, 0.1] if flipped else [0.7, 0.2, 0.1])
    assert 0.45 < np.mean(flips) < 0.55
    assert pair_dataset("none")[0]["input_ids"] == ([0, 100], [0, 200, 201])


def test_full_swap_puts_each_row_and_its_swap_in_the_same_batch():
    ds = pair_dataset("full")
    batches = list(DataLoader(ds, batch_size=2, shuffle=True, collate_fn=FlattenCollator(PairCollator(0))))
    assert len(batches) == 2
    for batch in batches:
        ids, labels = batch["input_ids"], batch["labels"]
        assert ids.shape == (4, 2, 3)  # 2 rows + their 2 swaps
        for k in (0, 2):
            assert torch.equal(ids[k, 0], ids[k + 1, 1]) and torch.equal(ids[k, 1], ids[k + 1, 0])
            assert {0: 1, 1: 0, 2: 2}[int(labels[k])] == int(labels[k + 1])
        assert torch.allclose(batch["soft_labels"][1], torch.tensor([0.2, 0.7, 0.1]))
    # Joint sequences: the swap is a separate rendering, still next to its row.
    joint = PreferenceDataset([[1, 2, 3], [4, 5]], np.array([0, 2]), swapped=[[1, 3, 2], [5, 4]], swap="full")
    batch = FlattenCollator(SequenceCollator(0))([joint[0], joint[1]])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 3, 2], [4, 5, 0], [5, 4, 0]]
    assert batch["labels"].tolist() == [0, 1, 2, 2]


def test_average_with_swapped_maps_classes_back():
    logits = np.log(np.array([[0.6, 0.3, 0.1]]))
    swapped = np.log(np.array([[0.2, 0.5, 0.3]]))  # the swapped row: its "A" is the original B
    probs = softmax(average_with_swapped(logits, swapped))
    assert np.allclose(probs, [[0.55, 0.25, 0.2]], atol=1e-6)


@pytest.fixture(scope="module")
def judges(tiny_deberta):
    """Untrained (random head) judges of two families: TTA must work without any training."""
    from transformers import AutoTokenizer

    from arenapref.api import Judge
    from arenapref.inference.backend import NeuralBackend
    from arenapref.models.cross_encoder import CrossEncoderModel
    from arenapref.models.dual_tower import DualTowerModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_deberta)
    meta = {"text": {"max_length": 48}}
    torch.manual_seed(0)
    cross = CrossEncoderModel.from_backbone(str(tiny_deberta))
    dual = DualTowerModel.from_backbone(str(tiny_deberta))
    with torch.no_grad():  # a head big enough that the position of A and B matters visibly
        cross.head.weight.mul_(50)
        dual.head.weight.mul_(50)
    return {"cross-encoder": Judge(NeuralBackend(cross, tokenizer, meta, inputs="joint"), meta),
            "dual-tower": Judge(NeuralBackend(dual, tokenizer, meta, inputs="pair"), meta)}


@pytest.mark.parametrize("family", ["cross-encoder", "dual-tower"])
def test_swap_tta_gives_equal_a_and_b_on_a_symmetric_input(judges, family):
    judge = judges[family]
    frame = pd.DataFrame({"id": ["s", "t"], "prompt": [["what is python?"], ["hi"]],
                          "response_a": [["a programming language"], ["hello, how are you?"]],
                          "response_b": [["a programming language"], ["hey"]], "label": [-1, -1]})
    raw = judge.backend.predict_logits(frame)[0]
    assert abs(raw[0, 0] - raw[0, 1]) > 1e-4  # the model itself reads the position of a response
    plain = judge.predict_proba(frame)
    assert plain[0, 0] == plain[0, 1]  # identical responses: the Predictor levels A and B, TTA or not
    assert abs(plain[1, 0] - plain[1, 1]) > 1e-4
    tta = judge.predict_proba(frame, tta="swap")
    assert abs(tta[0, 0] - tta[0, 1]) < 1e-6
    assert np.allclose(tta.sum(1), 1.0)
    # TTA is itself swap-equivariant: swapping the input swaps A and B of the answer.
    swapped = judge.predict_proba(swap_frame(frame), tta="swap")
    assert np.allclose(swapped[:, [1, 0, 2]], tta, atol=1e-6)
    # The Judge-wide option does the same as the per-call one.
    judge.tta = "swap"
    try:
        assert np.allclose(judge.predict_proba(frame), tta)
    finally:
        judge.tta = "none"


class PositionBiasedBackend:
    """A stand-in model: the longer response wins, and side A gets +0.7 logit wherever it stands."""

    def predict_logits(self, frame, progress=None):
        diff = np.array([len(" ".join(a)) - len(" ".join(b)) for a, b in zip(frame["response_a"], frame["response_b"])])
        return np.stack([diff / 10 + 0.7, -diff / 10, np.zeros(len(diff))], axis=1), None


@pytest.mark.parametrize("tta", ["none", "swap"])
def test_both_orders_give_the_usual_answer_with_its_own_temperature(tta):
    from arenapref.api import Judge

    frame = pd.DataFrame({"id": ["s", "t"], "prompt": [["q"], ["hi"]], "response_a": [["short"], ["hello there"]],
                          "response_b": [["a longer answer"], ["hey"]]})
    judge = Judge(PositionBiasedBackend(), {"calibration": {"temperature": 2.0, "temperature_swap": 1.5}}, tta=tta)
    direct, mirrored, usual = judge.predict_both_orders(frame)
    np.testing.assert_allclose(usual, judge.predict_proba(frame), atol=1e-12)
    assert np.abs(direct - mirrored).max() > 0.05  # the +0.7 for side A shows when the sides are exchanged


# -- distillation ---------------------------------------------------------------------------------------------

def write_teacher(path, ids, probs):
    pd.DataFrame({"id": ids, "winner_model_a": probs[:, 0], "winner_model_b": probs[:, 1],
                  "winner_tie": probs[:, 2]}).to_csv(path, index=False)


def test_teacher_file_is_read_in_training_order_with_one_line_errors(tmp_path):
    path = tmp_path / "teacher.csv"
    write_teacher(path, ["a", "b", "c"], np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]))
    probs = read_teacher_probs(path, ["c", "a"])
    assert np.allclose(probs, [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2]])
    assert np.allclose(soft_targets(probs, np.array([0, 2]), 0.25),
                       [[0.25 / 3 + 0.75, 0.25 / 3, 0.25 / 3], [0.125, 0.075, 0.05 + 0.75]])
    cases = {
        "no teacher probabilities for training id 'zz' and 1 more": (["a", "b", "c"], None, ["a", "zz", "yy"]),
        "row 2 column winner_tie: 'x' is not a probability": (["a", "b", "c"], {"winner_tie": ["0.2", "x", "0.4"]},
                                                              ["a"]),
        "row 1: probabilities sum to 1.8000": (["a", "b", "c"], {"winner_tie": [1.0, 0.8, 1 / 3]}, ["a"]),
        "duplicated id 'a'": (["a", "a", "c"], None, ["a"]),
    }
    base = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]])
    for message, (ids, override, wanted) in cases.items():
        write_teacher(path, ids, base)
        if override:
            table = pd.read_csv(path, dtype=str)
            for col, values in override.items():
                table[col] = values
            table.to_csv(path, index=False)
        with pytest.raises(DataError, match=message.replace("(", r"\(")) as err:
            read_teacher_probs(path, wanted)
        assert "\n" not in str(err.value)
    pd.DataFrame({"id": ["a"], "winner_model_a": [1.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column"):
        read_teacher_probs(path, ["a"])


def kl(teacher: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.sum(teacher * (np.log(teacher) - np.log(probs)), axis=1)))


@pytest.mark.parametrize("family", ["cross-encoder", "llm"])
def test_distillation_with_alpha_1_moves_the_model_toward_the_teacher(family, tmp_path, small_csv, tiny_deberta,
                                                                     tiny_llama):
    """The teacher says "tie" far more often than the labels do (30%); alpha=1 must follow the teacher."""
    from arenapref.api import Judge
    from arenapref.training import train

    frame = load_frame(small_csv)
    rng = np.random.default_rng(0)
    teacher = rng.dirichlet([1.0, 1.0, 6.0], size=len(frame))
    teacher_path = tmp_path / "teacher.csv"
    write_teacher(teacher_path, frame["id"], teacher)
    backbone = tiny_llama if family == "llm" else tiny_deberta
    family_options = dict(lora_r=4) if family == "llm" else dict(head_features=False, probe=False)
    cfg = load_config(None, dict(data=str(small_csv), output=str(tmp_path / "model"), model=family,
                                 backbone=str(backbone), max_length=32, batch_size=16, eval_steps=1000, lr=1e-3,
                                 head_lr=0.05, seed=0, epochs=3, teacher_probs=str(teacher_path),
                                 distill_alpha=1.0, **family_options))
    # Before: the model as training starts (same seed, so the same head initialisation). The probe (fitted on hard
    # labels) and side features are off: this measures what the soft-label loss alone teaches.
    from transformers import set_seed

    from arenapref.data.text import Renderer, TextSettings, encode_rows
    from arenapref.inference.backend import predict_rows
    from arenapref.models import MODELS

    recipe = MODELS[family].load_recipe()
    tokenizer = recipe.tokenizer(cfg.backbone, cfg)
    set_seed(0)
    untrained = recipe.build(cfg, tokenizer)
    rows = encode_rows(Renderer(tokenizer, TextSettings(max_length=32)), recipe.inputs, frame)
    before = softmax(predict_rows(untrained, rows, recipe.inputs, tokenizer.pad_token_id)[0])

    train(cfg, log=lambda *_: None)
    judge = Judge.from_pretrained(tmp_path / "model", device="cpu")
    after = softmax(judge.backend.predict_logits(frame)[0])  # raw model output, no temperature
    assert kl(teacher, after) < 0.6 * kl(teacher, before), (kl(teacher, before), kl(teacher, after))
    assert after[:, 2].mean() > 0.5 > before[:, 2].mean()


def test_recipe_options_are_validated_with_one_line_errors():
    base = dict(data="d.csv", output="out")
    cfg = load_config(None, {**base, "model": "cross-encoder", "field_budget": "1, 2, 2", "swap_augment": "full"})
    assert cfg.field_weights == (1.0, 2.0, 2.0) and cfg.field_budget == "1,2,2"
    assert load_config(None, {**base, "field_budget": [0.2, 0.4, 0.4]}).field_budget == "0.2,0.4,0.4"  # YAML list
    bad = {
        "field-budget": {"field_budget": "0.5,0.5"},
        "swap-augment 'both'": {"swap_augment": "both"},
        "distill-alpha 1.5": {"teacher_probs": "t.csv", "distill_alpha": 1.5},
        "LoRA settings": {"model": "llm", "lora_r": 0},
        "only the dual-tower and the llm": {"model": "cross-encoder", "objective": "rank"},
        "pooling 'max'": {"model": "cross-encoder", "pooling": "max"},
    }
    for message, values in bad.items():
        with pytest.raises(DataError, match=message) as err:
            load_config(None, {**base, **values})
        assert "\n" not in str(err.value)
