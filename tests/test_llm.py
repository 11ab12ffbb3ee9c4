"""llm family: a decoder LM as a 3-way classifier with LoRA; padding, the saved directory, the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from arenapref.config import load_config
from arenapref.data.tables import load_frame
from arenapref.data.text import Renderer, TextSettings
from arenapref.errors import DataError
from arenapref.inference.backend import predict_rows
from arenapref.models.llm import LLM, resolve_backbone
from conftest import run_cli


def llm_config(tiny_llama, tmp_path, **overrides):
    values = dict(data="unused.csv", output=str(tmp_path / "out"), model="llm", backbone=str(tiny_llama),
                  lora_r=4, lora_alpha=8, max_length=48)
    values.update(overrides)
    return load_config(None, values)


def test_pad_token_set_and_lora_on_every_linear_layer_with_a_full_head(tiny_llama, tmp_path):
    cfg = llm_config(tiny_llama, tmp_path)
    tokenizer = LLM.tokenizer(cfg.backbone, cfg)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id
    model = LLM.build(cfg, tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    lora_modules = {n.split(".lora_")[0].split(".")[-1] for n in trainable if ".lora_" in n}
    assert lora_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    head = [n for n in trainable if ".lora_" not in n]
    assert head and all(LLM.is_head(n) for n in head)  # the score head, trained in full
    assert not any("score" in n and "lora" in n for n in trainable)
    score = model.base_model.model.score.modules_to_save["default"].weight
    assert score.shape == (3, 32) and 0.01 < float(score.detach().std()) < 0.03


def test_batched_right_padding_matches_one_row_at_a_time(tiny_llama, tmp_path, small_csv):
    cfg = llm_config(tiny_llama, tmp_path)
    tokenizer = LLM.tokenizer(cfg.backbone, cfg)
    model = LLM.build(cfg, tokenizer)
    renderer = Renderer(tokenizer, TextSettings(max_length=48))
    short = pd.DataFrame({"id": ["s1", "s2"], "prompt": [["hi"], ["what is 2+2?"]], "response_a": [["hello"], ["4"]],
                          "response_b": [["hey there, how can I help?"], ["four"]]})
    rows = renderer.cross_inputs(pd.concat([load_frame(small_csv).head(4), short], ignore_index=True))
    assert len({len(r) for r in rows}) > 1, "rows of different lengths are needed to test padding"
    assert all(r[-1] != tokenizer.pad_token_id for r in rows)  # last-token pooling must see a real token
    batched, _ = predict_rows(model, rows, "joint", tokenizer.pad_token_id)
    single = np.concatenate([predict_rows(model, [r], "joint", tokenizer.pad_token_id)[0] for r in rows])
    assert np.allclose(batched, single, atol=1e-5)


def test_lora_model_before_save_equals_loaded_directory(tiny_llama, tmp_path, small_csv):
    from transformers import AutoModelForSequenceClassification

    cfg = llm_config(tiny_llama, tmp_path)
    tokenizer = LLM.tokenizer(cfg.backbone, cfg)
    torch.manual_seed(1)
    model = LLM.build(cfg, tokenizer)
    # Stand in for training: non-zero adapters (B starts at zero) and a changed head.
    with torch.no_grad():
        for _name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    rows = Renderer(tokenizer, TextSettings(max_length=48)).cross_inputs(load_frame(small_csv).head(8))
    before = predict_rows(model, rows, "joint", tokenizer.pad_token_id)[0]
    LLM.for_saving(model).save_pretrained(tmp_path / "saved")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    after = predict_rows(loaded, rows, "joint", tokenizer.pad_token_id)[0]
    assert np.abs(before - after).max() < 1e-5
    assert np.abs(before).max() > 1e-3


def test_backbone_forms(tmp_path):
    assert resolve_backbone("some/dir") == ("some/dir", {})
    gguf = tmp_path / "m.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_backbone(str(gguf)) == (str(tmp_path), {"gguf_file": "m.Q4.gguf"})
    assert resolve_backbone(str(tmp_path), "m.Q4.gguf") == (str(tmp_path), {"gguf_file": "m.Q4.gguf"})
    with pytest.raises(DataError, match="not found"):
        resolve_backbone(str(tmp_path / "missing.gguf"))
    with pytest.raises(DataError, match="--gguf-file"):
        resolve_backbone(str(tmp_path), "other.gguf")


@pytest.mark.slow
def test_cli_llm_end_to_end(tmp_path, small_csv, tiny_llama):
    out = tmp_path / "model"
    run_cli("train", "--data", small_csv, "--output", out, "--model", "llm", "--backbone", tiny_llama,
            "--max-length", 48, "--epochs", 1, "--batch-size", 16, "--eval-steps", 50, "--lora-r", 4,
            "--lora-alpha", 8, "--lora-dropout", 0.0, "--swap-augment", "random", "--lr", "1e-3")
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["model_type"] == "llm" and meta["train_config"]["lora_r"] == 4
    # Merged LoRA: a plain classifier that reloads from this directory alone (no adapter files, no base model).
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert not (out / "adapter_config.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["pad_token_id"] is not None
    # The peft trap: the trained head and adapters are in the directory, not fresh ones.
    from arenapref.api import Judge

    frame = load_frame(small_csv).head(12)
    judge = Judge.from_pretrained(out, device="cpu")
    loaded = judge.backend.predict_logits(frame)[0]
    cfg = llm_config(tiny_llama, tmp_path)
    tokenizer = LLM.tokenizer(cfg.backbone, cfg)
    torch.manual_seed(0)
    fresh = LLM.build(cfg, tokenizer)
    fresh_logits = predict_rows(fresh, judge.backend.renderer.cross_inputs(frame), "joint", tokenizer.pad_token_id)[0]
    assert np.abs(fresh_logits - loaded).max() > 1e-3
    pred = tmp_path / "pred.csv"
    run_cli("predict", "--model", out, "--data", small_csv, "--output", pred)
    probs = pd.read_csv(pred)[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert probs.shape == (96, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-6)
    bad = run_cli("train", "--data", small_csv, "--output", tmp_path / "x", "--model", "llm",
                  "--backbone", tmp_path / "missing.gguf", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "GGUF file not found" in bad.stderr
