"""Fast paths must be exact: every row scored once, in input order, with the same numbers as full padding.

Batching, chunked encoding, length-grouped sampling and the token cache are checked on tiny random models; no
timings are asserted here (bench/speed.py measures speed).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from transformers import BertConfig

from arenapref.inference.backend import predict_pairs, predict_rows
from arenapref.inference.batching import PairCollator, map_batches, token_budget_batches
from arenapref.models.dual_tower import DualTowerConfig, DualTowerModel
from arenapref.models.packing import padded_tokens, plan_chunks
from arenapref.training.samplers import (
    LongestFirstSampler,
    PairLengthSampler,
    pair_length_keys,
    row_length_keys,
)

PAD = 0


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are all small ops: with other jobs on the machine, OpenMP threads mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(objective: str = "classify", seed: int = 0) -> DualTowerModel:
    torch.manual_seed(seed)
    encoder = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128, pad_token_id=PAD).to_dict()
    model = DualTowerModel(DualTowerConfig(encoder=encoder, objective=objective)).eval()
    # A large head makes the probabilities react to the pooled vectors (the default N(0, 0.02) head is near uniform).
    torch.nn.init.normal_(model.head.weight, std=1.0)
    return model


def random_sides(n: int, seed: int = 1, low: int = 2, high: int = 100) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    make = lambda: [rng.integers(1, 120, size=int(rng.integers(low, high))).tolist() for _ in range(n)]  # noqa: E731
    return make(), make()


def padded_reference(model, side_a, side_b, pad_to: int) -> np.ndarray:
    """The reference pipeline: every side padded to `pad_to`, rows in input order, one (B, 2, L) pass each."""
    model.side_chunks = 1
    try:
        batch = PairCollator(PAD, pad_to=pad_to)([{"input_ids": pair} for pair in zip(side_a, side_b)])
        with torch.no_grad():
            return model(**batch).logits.numpy()
    finally:
        model.side_chunks = DualTowerModel.side_chunks


# -- inference batching --------------------------------------------------------------------------------------------

def test_token_budget_batches_cover_every_index_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 600, size=500)
    lengths[7] = 5000  # longer than the budget on its own
    batches = token_budget_batches(lengths, max_tokens=2048, max_rows=64)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for batch in batches:
        padded = len(batch) * lengths[batch].max()
        assert padded <= 2048 or len(batch) == 1
        assert len(batch) <= 64
    # Longest first, and sorted within and across batches: the padding per batch is small.
    assert (np.diff(lengths[flat]) <= 0).all()
    assert lengths[batches[0][0]] == 5000 and len(batches[0]) == 1


def test_token_budget_cuts_minimise_padding_plus_batch_cost():
    lengths = np.random.default_rng(1).integers(1, 512, size=9)

    def objective(batches):
        return sum(len(b) * lengths[b].max() + 64 for b in batches)

    batches = token_budget_batches(lengths, max_tokens=1024, batch_cost=64)
    order = np.argsort(-lengths, kind="stable")
    best = min(  # brute force over every way to cut the sorted order into budget-respecting runs
        objective([order[a:b] for a, b in zip((0, *cuts), (*cuts, 9))])
        for k in range(9) for cuts in itertools.combinations(range(1, 9), k)
        if all((b - a) * lengths[order[a]] <= 1024 or b - a == 1 for a, b in zip((0, *cuts), (*cuts, 9))))
    assert objective(batches) == best
    # Greedy filling to the budget pads more on this kind of mix: one long side over many short ones.
    mixed = np.array([512] * 9 + [260] * 7)
    padded = sum(len(b) * mixed[b].max() for b in token_budget_batches(mixed, max_tokens=8192))
    assert padded == mixed.sum()


@pytest.mark.parametrize("objective,workers", [("classify", 1), ("rank", 1), ("classify", 2), ("rank", 2)])
def test_predict_pairs_equals_full_padding_and_restores_order(objective, workers):
    model = tiny_model(objective)
    side_a, side_b = random_sides(40)
    stats = {}
    # A small budget forces many batches, each mixing A and B sides of different rows.
    logits, scores = predict_pairs(model, side_a, side_b, PAD, max_tokens=300, stats=stats, workers=workers)
    reference = padded_reference(model, side_a, side_b, pad_to=128)
    assert np.abs(logits - reference).max() < 1e-5
    assert (objective == "rank") == (scores is not None)
    # The probabilities are not trivially uniform, so the comparison above means something.
    assert np.abs(reference).max() > 0.5
    real = sum(map(len, side_a + side_b))
    assert stats["real_tokens"] == real and real <= stats["padded_tokens"] < 1.2 * real
    # Shuffling the rows shuffles the output the same way.
    perm = np.random.default_rng(3).permutation(40)
    shuffled, _ = predict_pairs(model, [side_a[i] for i in perm], [side_b[i] for i in perm], PAD, max_tokens=300,
                                workers=workers)
    assert np.abs(shuffled - logits[perm]).max() < 1e-5


def test_map_batches_keeps_batch_order_and_gives_each_worker_its_share_of_threads():
    import threading
    import time

    torch.set_num_threads(2)

    def work(batch):
        time.sleep(0.02 * (5 - batch))  # early batches finish last
        return batch, torch.get_num_threads(), torch.is_inference_mode_enabled(), threading.current_thread().name

    results = list(map_batches(work, list(range(6)), "cpu", workers=2))
    assert [r[0] for r in results] == list(range(6))
    assert all(threads == 1 and inference for _, threads, inference, _ in results)
    assert len({name for *_, name in results}) == 2  # both workers took batches
    assert torch.get_num_threads() == 2  # the caller keeps its threads
    with pytest.raises(ZeroDivisionError):
        list(map_batches(lambda batch: 1 / batch, [3, 2, 1, 0, 5], "cpu", workers=2))
    # One worker runs in the caller's thread, in inference mode too.
    assert list(map_batches(lambda b: (b, torch.is_inference_mode_enabled()), [1, 2], "cpu", workers=1)) == \
        [(1, True), (2, True)]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_map_batches_works_in_a_forked_child():
    import os
    import signal

    list(map_batches(lambda batch: batch, [1, 2, 3], "cpu", workers=2))  # the pool exists in the parent
    pid = os.fork()
    if pid == 0:  # child: the inherited pool has no threads; a fresh one must be made
        signal.alarm(20)
        ok = list(map_batches(lambda batch: batch * 2, [1, 2, 3], "cpu", workers=2)) == [2, 4, 6]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_joint_predictions_do_not_depend_on_workers():
    from arenapref.models.cross_encoder import CrossEncoderConfig, CrossEncoderModel

    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256, pad_token_id=PAD).to_dict()
    model = CrossEncoderModel(CrossEncoderConfig(encoder=encoder)).eval()
    torch.nn.init.normal_(model.head.weight, std=1.0)
    side_a, side_b = random_sides(30)
    rows = [a + b for a, b in zip(side_a, side_b)]
    one, _ = predict_rows(model, rows, "joint", PAD, max_tokens=600, workers=1)
    two, _ = predict_rows(model, rows, "joint", PAD, max_tokens=600, workers=2)
    assert np.abs(one - two).max() < 1e-5 and np.abs(one).max() > 0.5


def test_predict_pairs_handles_empty_input_and_progress_counts_rows():
    model = tiny_model()
    logits, scores = predict_pairs(model, [], [], PAD)
    assert logits.shape == (0, 3) and scores is None
    side_a, side_b = random_sides(9)
    seen = []
    predict_pairs(model, side_a, side_b, PAD, max_tokens=200, progress=seen.append)
    assert sum(seen) == 9


# -- training forward: sides in length-sorted sub-batches -----------------------------------------------------------

def test_plan_chunks_is_optimal_and_covers_everything():
    rng = np.random.default_rng(0)
    for _ in range(30):
        lengths = sorted(rng.integers(1, 512, size=int(rng.integers(1, 9))).tolist(), reverse=True)
        runs = plan_chunks(lengths, 3)
        assert runs[0][0] == 0 and runs[-1][1] == len(lengths) and len(runs) <= 3
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
        # Brute force over every way to cut into at most 3 runs.
        best = min(padded_tokens(lengths, list(zip((0, *cuts), (*cuts, len(lengths)))))
                   for k in range(0, 3) for cuts in itertools.combinations(range(1, len(lengths)), k))
        assert padded_tokens(lengths, runs) == best


def test_chunked_forward_matches_single_pass_values_and_gradients():
    side_a, side_b = random_sides(8, seed=5, low=3, high=120)
    batch = PairCollator(PAD)([{"input_ids": pair, "labels": i % 3} for i, pair in enumerate(zip(side_a, side_b))])
    results = {}
    for chunks in (1, 3):
        model = tiny_model(seed=0)
        model.side_chunks = chunks
        out = model(**batch)
        out.loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[chunks] = (out.logits.detach(), grad)
    assert torch.allclose(results[1][0], results[3][0], atol=1e-5)
    assert torch.allclose(results[1][1], results[3][1], atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    side_a, side_b = random_sides(4, seed=6)
    batch = PairCollator(PAD)([{"input_ids": pair, "labels": i % 3} for i, pair in enumerate(zip(side_a, side_b))])
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(seed=0).train()
        if checkpointing:  # the call TrainingArguments(gradient_checkpointing=True) makes
            model.activation_checkpointing_enable()
            assert model.encoder.is_gradient_checkpointing
        model(**batch).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# -- length-grouped training batches --------------------------------------------------------------------------------

def test_length_grouped_sampler_is_a_permutation_that_groups_lengths():
    side_a, side_b = random_sides(400, seed=7, high=500)
    keys = pair_length_keys(side_a, side_b)
    longer = np.maximum([len(s) for s in side_a], [len(s) for s in side_b])
    sampler = PairLengthSampler(8, keys, seed=11)
    order = list(sampler)
    assert sorted(order) == list(range(400))

    def mean_padding(indices):  # padded minus real long-side tokens, per batch of 8
        batches = [longer[indices[i:i + 8]] for i in range(0, len(indices), 8)]
        return np.mean([b.max() * len(b) - b.sum() for b in batches])

    random_order = np.random.default_rng(0).permutation(400)
    assert mean_padding(order) < 0.2 * mean_padding(random_order)
    # Same epoch, same order (a resumed run replays it); the next epoch reshuffles.
    assert list(PairLengthSampler(8, keys, seed=11)) == order
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(400)) and second != order


def test_training_trainer_uses_the_length_samplers(tmp_path):
    from transformers import TrainingArguments

    from arenapref.training.dataset import PreferenceDataset
    from arenapref.training.trainer import PreferenceTrainer

    side_a, side_b = random_sides(32, seed=8)
    dataset = PreferenceDataset(list(zip(side_a, side_b)), np.zeros(32, dtype=int))
    keys = pair_length_keys(side_a, side_b)
    assert row_length_keys(dataset.inputs) == keys
    assert row_length_keys([[1, 2, 3], [4]]) == [3, 1]  # joint rows (cross-encoder, llm): their length
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[],
                             use_cpu=True, seed=5)
    trainer = PreferenceTrainer(model=tiny_model(), args=args, train_dataset=dataset, eval_dataset=dataset,
                                data_collator=PairCollator(PAD))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, PairLengthSampler) and sampler.seed == 5 and sampler.batch_size == 4
    assert sampler.lengths == keys
    eval_sampler = trainer._get_eval_sampler(dataset)
    assert isinstance(eval_sampler, LongestFirstSampler)
    assert [keys[i] for i in eval_sampler] == sorted(keys, reverse=True)
    trainer.group_by_length = False
    assert not isinstance(trainer._get_train_sampler(), PairLengthSampler)


def test_int8_quantizes_every_encoder_linear_and_stays_close():
    from arenapref.inference.backend import Int8Linear, quantize_int8
    from arenapref.inference.batching import is_int8

    model = tiny_model()
    side_a, side_b = random_sides(12, seed=9)
    fp32 = predict_pairs(model, side_a, side_b, PAD)[0]
    quantized = quantize_int8(tiny_model())
    assert is_int8(quantized) and not is_int8(model)
    layer = quantized.encoder.encoder.layer[0]
    for linear in (layer.attention.self.query, layer.intermediate.dense, layer.output.dense):
        assert type(linear) is Int8Linear
    assert type(quantized.head) is torch.nn.Linear
    int8 = predict_pairs(quantized, side_a, side_b, PAD)[0]
    assert 0 < np.abs(int8 - fp32).max() < 0.1


def test_int8_linear_takes_8_bits_on_one_sided_inputs_and_7_on_two_sided_ones():
    from arenapref.inference.backend import quantize_int8

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64)
    quantized = quantize_int8(torch.nn.Sequential(linear))[0]
    packed = quantized._packed_params._packed_params
    gelu = torch.nn.functional.gelu(torch.randn(512, 256))
    gelu[:, 7] *= 40  # an outlier channel, as after the GELU of a trained transformer
    with torch.inference_mode():
        for x, eight_bits in ((gelu, True), (torch.randn(512, 256) * 3, False)):
            exact = linear(x)
            ours = quantized(x)
            on_7 = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)
            on_8 = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False)
            assert torch.equal(ours, on_8 if eight_bits else on_7)
            if eight_bits:  # the outlier sets the range: 8 bits keep about twice the resolution
                assert (on_8 - exact).abs().mean() < 0.7 * (on_7 - exact).abs().mean()
