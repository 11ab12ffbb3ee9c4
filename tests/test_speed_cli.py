"""Tokenise once (a cache keyed by text settings, tokenizer and rows), and the speed flags of the real CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arenapref.data.tables import load_frame
from arenapref.data.text import Renderer, TextSettings
from arenapref.data.token_cache import cached_encode_rows
from conftest import run_cli

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models on a shared machine: threads only wait for each other
LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cached(renderer, frame, directory):
    return cached_encode_rows(renderer, "pair", frame, directory)


class CountingRenderer(Renderer):
    calls = 0

    def dual_tower_inputs(self, frame):
        CountingRenderer.calls += 1
        return super().dual_tower_inputs(frame)


def test_token_cache_hits_and_is_invalidated_by_settings_data_and_corruption(tmp_path, small_csv, tiny_deberta):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_deberta)
    frame = load_frame(small_csv).head(20)
    renderer = CountingRenderer(tokenizer, TextSettings(max_length=32))
    first = cached(renderer, frame, tmp_path)
    second = cached(renderer, frame, tmp_path)
    assert (first[1], second[1]) == (False, True) and CountingRenderer.calls == 1
    assert first[0] == second[0]  # identical token ids from the cache
    # Different text settings: a different entry, tokenised anew, with different ids.
    longer = CountingRenderer(tokenizer, TextSettings(max_length=48))
    third = cached(longer, frame, tmp_path)
    assert third[1] is False and CountingRenderer.calls == 2 and third[0] != first[0]
    assert cached(CountingRenderer(tokenizer, TextSettings(max_length=32, truncation_side="left")),
                  frame, tmp_path)[1] is False
    # Different rows (one edited response): a miss.
    edited = frame.copy()
    edited.at[0, "response_a"] = ["something else entirely"]
    assert cached(renderer, edited, tmp_path)[1] is False
    assert len(list(tmp_path.glob("pair-*.npz"))) == 4 and not list(tmp_path.glob(".tmp-*"))
    # A damaged entry is ignored and rewritten.
    for path in tmp_path.glob("pair-*.npz"):
        path.write_bytes(b"truncated")
    again = cached(renderer, frame, tmp_path)
    assert again[1] is False and again[0] == first[0]
    assert cached(renderer, frame, tmp_path)[1] is True


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, small_csv, tiny_deberta):
    """Trained twice into the same directory: the second run must reuse the first run's tokens."""
    out = tmp_path_factory.mktemp("speed") / "model"
    args = ["train", "--data", small_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--batch-size", 8, "--eval-steps", 20, "--head-lr", 0.05]
    env = {**ONE_THREAD, "ARENAPREF_CACHE": str(out.parent / "cache")}  # a cache no other test has filled
    first = run_cli(*args, env=env)
    second = run_cli(*args, "--gradient-checkpointing", env=env)
    return out, first.stdout, second.stdout


@pytest.mark.slow
def test_second_training_run_reads_tokens_from_the_cache(tiny_model_dir):
    out, first, second = tiny_model_dir
    assert first.count("token cache hit") == 0 and first.count("tokenised") == 2  # train and validation rows
    assert second.count("token cache hit") == 2 and "tokenised" not in second
    assert len(list((out.parent / "cache" / "tokens").glob("pair-*.npz"))) == 2
    # the model directory holds what loading needs and the training curve, not the run's leftovers
    assert (out / "arenapref.json").is_file() and (out / "training_log.json").is_file()
    assert not (out / "checkpoints").exists() and not (out / "token_cache").exists()


def test_predict_int8_through_the_cli_and_bf16_through_the_api(tiny_model_dir, small_csv, tmp_path):
    from arenapref.api import Judge
    from arenapref.data.tables import read_table

    out = tiny_model_dir[0]
    path = tmp_path / "int8.csv"
    run_cli("predict", "--model", out, "--data", small_csv, "--output", path, "--quantize", "int8", env=ONE_THREAD)
    int8 = pd.read_csv(path)
    source = read_table(small_csv)
    assert int8["id"].astype(str).tolist() == source["id"].tolist()
    np.testing.assert_allclose(int8[LABELS].sum(axis=1), 1.0, atol=2e-6)
    fp32 = Judge.from_pretrained(out, device="cpu", workers=1).predict_frame(source)[LABELS].to_numpy()
    # Two encoder calls at once, in many small batches: the same fp32 numbers.
    two = Judge.from_pretrained(out, device="cpu", workers=2, max_tokens=128).predict_frame(source)
    np.testing.assert_allclose(two[LABELS].to_numpy(), fp32, atol=1e-6)
    bf16 = Judge.from_pretrained(out, device="cpu", dtype="bf16").predict_frame(source)[LABELS].to_numpy()
    assert fp32.std(axis=0).max() > 1e-3  # the model is not constant, so the comparisons below mean something
    for name, probs in (("int8", int8[LABELS].to_numpy()), ("bf16", bf16)):
        diff = np.abs(probs - fp32).max()
        assert 0 < diff < 0.05, (name, diff)


@pytest.mark.parametrize("flags, message", [
    (["--quantize", "int4"], "--quantize 'int4': expected none or int8"),
    (["--quantize", "int8", "--dtype", "bf16"], "--quantize int8 quantizes the fp32 model"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
])
def test_bad_speed_flags_are_one_line_errors(tmp_path, small_csv, flags, message):
    out = tmp_path / "p.csv"
    proc = run_cli("predict", "--model", tmp_path, "--data", small_csv, "--output", out, *flags, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
