"""Shared fixtures: the real data files (read in place) and tiny random backbones built on the fly, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The token cache of the tests' training runs: one folder per session, not the user's ~/.cache.
os.environ.setdefault("ARENAPREF_CACHE", tempfile.mkdtemp(prefix="arenapref-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; a clone elsewhere (e.g. CI in /tmp) finds it through ARENAPREF_DATA or /work.
_CANDIDATES = [os.environ.get("ARENAPREF_DATA"), ROOT.parent / "shared" / "data", "/work/shared/data"]
DATA_DIR = next((Path(c) for c in _CANDIDATES if c and (Path(c) / "arena_sample.csv").exists()),
                ROOT.parent / "shared" / "data")
ARENA = DATA_DIR / "arena_sample.csv"


def run_cli(*args, check: bool = True, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (as a user would), returning its completed process."""
    proc = subprocess.run([sys.executable, "-m", "arenapref", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"arenapref {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


# Session fixtures that train a neural model (10-20 s each on a quiet 2-core CPU, twice that on a busy one): the first
# test to ask for one pays for the training, so every test that uses one is marked slow and `-m "not slow"` trains no
# neural model. Tests slow on their own (they train one, or run a long CLI pipeline) carry @pytest.mark.slow.
SLOW_FIXTURES = frozenset({"rank_model", "tiny_model", "dual_tower_model", "hybrid_model", "llm_ranker",
                           "dual_tower_ranker"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def arena_csv() -> Path:
    if not ARENA.exists():
        # On a developer's laptop without the data the data tests skip; in CI a missing folder fails the run, so a
        # green CI always means the whole suite ran.
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{ARENA} not found in CI: set ARENAPREF_DATA to the folder holding arena_sample.csv")
        pytest.skip(f"{ARENA} not available")
    return ARENA


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory, arena_csv) -> Path:
    """The first 96 real rows (includes multi-turn rows), in the original Kaggle format."""
    path = tmp_path_factory.mktemp("data") / "small.csv"
    pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(96).to_csv(path, index=False)
    return path


def _train_spm_tokenizer(directory: Path, texts: list[str], vocab_size: int = 800) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(directory / "spm"), vocab_size=vocab_size,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"], minloglevel=2,
        character_coverage=0.9995, num_threads=1,
    )
    # transformers 5: DebertaV2Tokenizer(vocab_file=...) silently yields a 7-token vocab; load from a directory.
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "DebertaV2Tokenizer", "model_max_length": 512, "do_lower_case": False}))


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory, arena_csv) -> Path:
    """A randomly initialised DeBERTa-v2 backbone with relative attention (like v3) and an on-the-fly tokenizer."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model, set_seed

    set_seed(0)
    frame = pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(300)
    texts = [t for col in ("prompt", "response_a", "response_b") for cell in frame[col]
             for t in json.loads(cell) if t]
    spm_dir = tmp_path_factory.mktemp("spm")
    _train_spm_tokenizer(spm_dir, texts)
    tokenizer = AutoTokenizer.from_pretrained(spm_dir)
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=64, max_relative_positions=-1,
        position_biased_input=False, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("tiny_deberta")
    DebertaV2Model(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _word_texts(arena_csv: Path, rows: int = 300) -> list[str]:
    frame = pd.read_csv(arena_csv, dtype=str, keep_default_na=False).head(rows)
    return [t for col in ("prompt", "response_a", "response_b") for cell in frame[col] for t in json.loads(cell) if t]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, arena_csv) -> Path:
    """A randomly initialised 2-layer Llama decoder (hidden 32) with a BPE tokenizer trained on the fly.

    Like Llama itself the tokenizer has bos/eos but no pad token: the llm family must set one.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        set_seed,
    )

    set_seed(0)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_word_texts(arena_csv), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def rank_model(tmp_path_factory, small_csv, tiny_deberta) -> Path:
    """A tiny dual-tower rank-objective model trained through the CLI; serves both ranking paths (per-response
    scores and pairwise Bradley-Terry) and every service / report / API test."""
    out = tmp_path_factory.mktemp("models") / "rank"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--objective", "rank", "--seed", 0)
    return out


# A tiny but real training run: 2 epochs of 12 steps (48 rows, batch 4), a checkpoint every 4 steps (so the resume
# test can kill it in the middle), random A/B swaps (so resume must replay them too). The reliability tests use it
# for model-directory cases, resume and determinism.
TINY_TRAIN_ARGS = ("--model", "dual-tower", "--max-length", "32", "--batch-size", "4", "--epochs", "2",
                   "--eval-steps", "4", "--seed", "7",
                   "--valid-fraction", "0.25", "--lr", "1e-3", "--warmup-ratio", "0.1", "--swap-augment", "random")


@pytest.fixture(scope="session")
def tiny_csv(small_csv) -> Path:
    """The first 64 real rows."""
    path = small_csv.parent / "tiny.csv"
    pd.read_csv(small_csv, dtype=str, keep_default_na=False).head(64).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_csv, tiny_deberta) -> Path:
    """One tiny model trained through the real CLI once per session."""
    out = tmp_path_factory.mktemp("tiny_model") / "model"
    run_cli("train", "--data", tiny_csv, "--output", out, "--backbone", tiny_deberta, *TINY_TRAIN_ARGS)
    return out


# -- more trained models, each trained once per session and shared by every test that asks for it. A test that changes
# a model directory (or writes into it) works on a copy in its own tmp_path, never on the shared one.

# The end-to-end dual tower's flags; the rank-objective end-to-end runs add theirs to the same ones.
DUAL_TOWER_ARGS = ("--model", "dual-tower", "--max-length", "48", "--epochs", "1", "--batch-size", "8",
                   "--eval-steps", "4", "--seed", "1")


@pytest.fixture(scope="session")
def dual_tower_model(tmp_path_factory, small_csv, tiny_deberta) -> Path:
    """A tiny dual-tower classifier (the default objective) on small_csv, DUAL_TOWER_ARGS."""
    out = tmp_path_factory.mktemp("dual_tower_model") / "classify"
    proc = run_cli("train", "--data", small_csv, "--output", out, "--backbone", tiny_deberta, *DUAL_TOWER_ARGS)
    assert "log_loss" in proc.stdout
    return out


@pytest.fixture(scope="session")
def hybrid_model(tmp_path_factory, small_csv, tiny_deberta) -> Path:
    """A tiny hybrid (probe-only dual tower, weight 0.3, + gbdt) on small_csv's first 72 rows, its last 24 rows as
    --extra, a quarter of the 72 held out for validation."""
    root = tmp_path_factory.mktemp("hybrid_model")
    data = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    data.iloc[:72].to_csv(root / "train.csv", index=False)
    data.iloc[72:].to_csv(root / "extra.csv", index=False)
    out = root / "hybrid"
    run_cli("train", "--data", root / "train.csv", "--extra", root / "extra.csv", "--output", out,
            "--model", "hybrid", "--backbone", tiny_deberta, "--max-length", 32, "--epochs", 0,
            "--hybrid-weight", 0.3, "--valid-fraction", 0.25)
    return out


@pytest.fixture(scope="session")
def gbdt_model(tmp_path_factory, small_csv) -> Path:
    """A 30-round gbdt on small_csv (seconds)."""
    out = tmp_path_factory.mktemp("gbdt_model") / "gbdt"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "gbdt", "--gbdt-rounds", 30)
    return out


@pytest.fixture(scope="session")
def gbdt_holdout_run(tmp_path_factory, arena_csv) -> tuple[Path, subprocess.CompletedProcess]:
    """400 real rows to train, the next 300 to evaluate; a 60-round model (a few seconds). Returns the folder
    (train.csv, eval.csv, model/) and the completed `train` process."""
    root = tmp_path_factory.mktemp("gbdt_holdout")
    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    raw.head(400).to_csv(root / "train.csv", index=False)
    raw.iloc[400:700].to_csv(root / "eval.csv", index=False)
    proc = run_cli("train", "--data", root / "train.csv", "--output", root / "model", "--model", "gbdt",
                   "--gbdt-rounds", "60", "--valid-fraction", "0.25")
    return root, proc


@pytest.fixture(scope="session")
def gbdt_seed_models(tmp_path_factory, arena_csv) -> Path:
    """Two gbdt models (gbdt0/, gbdt1/: seeds 0 and 1, default rounds) trained on 300 real rows (train.csv), and a
    pool of 120 other rows: pool.csv unlabelled, pool_labelled.csv with its labels."""
    from arenapref.data.tables import LABELS

    root = tmp_path_factory.mktemp("gbdt_seeds")
    rows = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    rows.head(300).to_csv(root / "train.csv", index=False)
    rows.iloc[300:420].drop(columns=list(LABELS)).to_csv(root / "pool.csv", index=False)
    rows.iloc[300:420].to_csv(root / "pool_labelled.csv", index=False)
    for seed in (0, 1):
        run_cli("train", "--data", root / "train.csv", "--output", root / f"gbdt{seed}", "--model", "gbdt",
                "--seed", seed)
    return root


# -- preference pairs in TRL's formats, and the models trained on them

def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def chosen_and_rejected(frame: pd.DataFrame) -> pd.DataFrame:
    """Decisive Kaggle rows (normalised) as (prompt turns, chosen turns, rejected turns)."""
    rows = frame[frame["label"] < 2]
    won_a = rows["label"] == 0
    return pd.DataFrame({"prompt": rows["prompt"].to_list(),
                         "chosen": np.where(won_a, rows["response_a"], rows["response_b"]).tolist(),
                         "rejected": np.where(won_a, rows["response_b"], rows["response_a"]).tolist(),
                         "id": rows["id"].to_list()})


@pytest.fixture(scope="session")
def trl_pairs(tmp_path_factory, arena_csv) -> dict:
    """The decisive rows among the first 300 real arena rows in TRL's formats: one-turn rows as strings (CSV),
    every row as conversations (JSONL, implicit prompt); a `subset` column with two values."""
    from arenapref.data.tables import load_frame

    root = tmp_path_factory.mktemp("pairs")
    frame = load_frame(arena_csv).head(300)
    pairs = chosen_and_rejected(frame)
    pairs["subset"] = np.where(np.arange(len(pairs)) % 3 == 0, "hard", "easy")
    single = pairs[pairs["prompt"].map(len) == 1]
    strings = pd.DataFrame({"prompt": single["prompt"].str[0], "chosen": single["chosen"].str[0],
                            "rejected": single["rejected"].str[0], "subset": single["subset"]})
    strings.to_csv(root / "pairs.csv", index=False)

    def messages(prompt, response):
        return [m for p, r in zip(prompt, response, strict=False) for m in (user(p), bot(r))]

    with (root / "pairs.jsonl").open("w") as fh:
        for _, row in pairs.iterrows():
            fh.write(json.dumps({"chosen": messages(row["prompt"], row["chosen"]),
                                 "rejected": messages(row["prompt"], row["rejected"]),
                                 "subset": row["subset"]}) + "\n")
    return {"root": root, "csv": root / "pairs.csv", "jsonl": root / "pairs.jsonl", "strings": strings,
            "turns": pairs}


@pytest.fixture(scope="session")
def gbdt_pairs_model(trl_pairs) -> Path:
    """A 40-round gbdt on the string pairs (CSV)."""
    out = trl_pairs["root"] / "gbdt"
    run_cli("train", "--data", trl_pairs["csv"], "--output", out, "--model", "gbdt", "--gbdt-rounds", 40)
    return out


@pytest.fixture(scope="session")
def llm_ranker(tmp_path_factory, trl_pairs, tiny_llama) -> Path:
    """A tiny LoRA llm with the rank objective on the conversation pairs (JSONL)."""
    out = tmp_path_factory.mktemp("llm_rank") / "model"
    run_cli("train", "--data", trl_pairs["jsonl"], "--output", out, "--model", "llm", "--objective", "rank",
            "--backbone", tiny_llama, "--max-length", 48, "--epochs", 1, "--batch-size", 16, "--eval-steps", 4,
            "--lora-r", 4, "--lora-alpha", 8, "--lora-dropout", 0.0, "--lr", "1e-3", "--seed", 0)
    return out


@pytest.fixture(scope="session")
def dual_tower_ranker(tmp_path_factory, trl_pairs, tiny_deberta) -> Path:
    """A dual-tower ranker without side features (the exportable one) on the string pairs: the linear probe only,
    seconds on a CPU."""
    out = tmp_path_factory.mktemp("dt_rank") / "model"
    run_cli("train", "--data", trl_pairs["csv"], "--output", out, "--model", "dual-tower", "--objective", "rank",
            "--no-head-features", "--backbone", tiny_deberta, "--max-length", 32, "--epochs", 0, "--seed", 0)
    return out
