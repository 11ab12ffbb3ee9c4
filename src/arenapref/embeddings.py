"""Sentence embeddings (mean-pooled, unit length) from a local encoder such as the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=2)
def load_encoder(encoder_dir: str):
    """Tokenizer and encoder, loaded once per process (a model embeds prompt, A and B with the same one)."""
    from transformers import AutoModel, AutoTokenizer

    from .data import DataError

    try:
        return AutoTokenizer.from_pretrained(encoder_dir), AutoModel.from_pretrained(encoder_dir).eval()
    except Exception as exc:
        raise DataError(f"embedding encoder {encoder_dir!r}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                        "pass a local sentence-encoder directory as --backbone") from None


def embed_texts(texts: list[str], encoder_dir: str, max_length: int = 256, batch_size: int = 32) -> np.ndarray:
    """(N, H) unit-length embeddings; texts are sorted by length so each batch pads little."""
    import torch

    from .models.pooling import masked_mean

    tokenizer, model = load_encoder(str(encoder_dir))
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] or " " for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            pooled = torch.nn.functional.normalize(masked_mean(hidden, batch["attention_mask"]), dim=-1)
            out[idx] = pooled.numpy()
    return out
