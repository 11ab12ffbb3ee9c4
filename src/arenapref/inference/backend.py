"""Batched inference: rows sorted by length, batches sized by a token budget, dynamic padding, order restored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from arenapref.data.features import head_features, single_side_features
from arenapref.data.style import STYLE_FEATURES
from arenapref.data.text import Renderer, TextSettings, encode_rows
from arenapref.errors import DataError
from arenapref.inference.batching import (
    call_budget,
    collator_for,
    map_batches,
    pad_batch,
    padded_cost,
    token_budget_batches,
)
from arenapref.models import MODELS
from arenapref.models.style_term import check_style, style_ratios


def model_features(model, frame, style: str = "as-voted") -> np.ndarray | None:
    """The head's inputs besides the text, or None for a head without: the side features (probe.head_features), then
    for a model with a style term the rows' four style differences (models/style_term.style_ratios); with
    style="controlled" those are 0, their value when both answers have the same style, so the term is 0."""
    if not reads_features(model):
        return None
    features = head_features(frame)
    if getattr(model.config, "style_term", False):
        ratios = (style_ratios(frame) if check_style(style) == "as-voted"
                  else np.zeros((len(frame), len(STYLE_FEATURES))))
        features = np.hstack([features, ratios.astype(np.float32)])
    return features


def reads_features(model) -> bool:
    """Whether the model's head reads side features (probe.head_features) beside the pooled vectors."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "side_features", 0) or getattr(config, "shared_features", 0))


def predict_rows(model, rows: list, inputs: str, pad_id: int, max_tokens: int | None = None,
                 device: str | torch.device = "cpu", progress=None, stats: dict | None = None,
                 workers: int | None = None, features: np.ndarray | None = None):
    """Logits (N, 3) and, for rank models, side scores (N, 2), in the input order.

    `features` (N, F): the rows' side features, for a model whose head reads them (`reads_features`).

    `rows` are pairs of sides (inputs="pair") or joint sequences (inputs="joint"). Rows are sorted by length and
    cut into batches by a token budget (`max_tokens` in flight, default by device, shared by the CPU `workers`),
    padded only to their batch's longest member; a dual-tower model goes through `predict_sides` (each side its
    own sequence). `stats` (a dict) receives real_tokens and padded_tokens, the encoder tokens computed.
    """
    model.eval()
    device = torch.device(device)
    budget = call_budget(max_tokens, device, workers, model)
    if inputs == "pair" and hasattr(model, "encode") and hasattr(model, "head_logits"):
        return predict_sides(model, [a for a, _ in rows], [b for _, b in rows], pad_id, budget, device,
                             progress, stats, workers, features)
    n = len(rows)
    real = padded = 0
    collate = collator_for(inputs, pad_id)
    logits = np.zeros((n, 3), dtype=np.float32)
    scores = None

    def forward(batch_idx):
        batch = collate([{"input_ids": rows[i]} for i in batch_idx])
        if features is not None:
            batch["features"] = torch.as_tensor(features[batch_idx], dtype=torch.float32)
        out = model(**{k: v.to(device) for k, v in batch.items()})
        side_scores = getattr(out, "scores", None)
        return (batch_idx, batch["attention_mask"], out.logits.float().cpu().numpy(),
                None if side_scores is None else side_scores.float().cpu().numpy())

    batches = token_budget_batches(padded_cost(inputs, rows), budget)
    for batch_idx, mask, batch_logits, batch_scores in map_batches(forward, batches, device, workers):
        real += int(mask.sum())
        padded += mask.numel()
        logits[batch_idx] = batch_logits
        if batch_scores is not None:
            if scores is None:
                scores = np.zeros((n, 2), dtype=np.float32)
            scores[batch_idx] = batch_scores
        if progress is not None:
            progress(len(batch_idx))
    if stats is not None:
        stats.update(real_tokens=real, padded_tokens=padded)
    return logits, scores


@torch.inference_mode()
def predict_sides(model, side_a: list[list[int]], side_b: list[list[int]], pad_id: int, max_tokens: int,
                  device: torch.device, progress=None, stats: dict | None = None, workers: int | None = None,
                  features: np.ndarray | None = None):
    """Dual tower: the towers share one encoder, so the 2N sides of all rows are encoded as independent
    sequences, sorted by their own length and batched by the token budget of one call, `max_tokens` (a short side
    never pays for its long partner's padding). Pooled vectors go back to row order and the head scores each
    row's pair. `progress(k)` advances in rows (a side counts 0.5)."""
    n = len(side_a)
    progress_rows = None if progress is None else (lambda k: progress(k / 2))
    pooled = pooled_sequences(model, list(side_a) + list(side_b), pad_id, max_tokens, device, progress_rows,
                              stats, workers)
    logits = np.zeros((n, 3), dtype=np.float32)
    scores = None
    if n == 0:
        return logits, scores
    pairs = pooled.view(2, n, -1).transpose(0, 1)  # (N, 2, H): side A and side B of each row
    for start in range(0, n, 4096):
        feats = None if features is None else torch.as_tensor(features[start:start + 4096])
        row_logits, row_scores = model.head_logits(pairs[start:start + 4096], feats)
        logits[start:start + 4096] = row_logits.float().cpu().numpy()
        if row_scores is not None:
            if scores is None:
                scores = np.zeros((n, 2), dtype=np.float32)
            scores[start:start + 4096] = row_scores.float().cpu().numpy()
    return logits, scores


@torch.inference_mode()
def pooled_sequences(model, sequences: list[list[int]], pad_id: int, max_tokens: int,
                     device: str | torch.device = "cpu", progress=None, stats: dict | None = None,
                     workers: int | None = None) -> torch.Tensor:
    """`model.encode` of every sequence (N, H), in the input order: sorted by length, batched by the token budget
    of one call, on the CPU workers. `progress(k)` advances in sequences."""
    device = torch.device(device)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    real = padded = 0
    pooled = None

    def encode(idx):
        ids, mask = pad_batch([sequences[i] for i in idx], pad_id)
        return idx, ids.numel(), model.encode(ids.to(device), mask.to(device))

    for idx, numel, out in map_batches(encode, token_budget_batches(lengths, max_tokens), device, workers):
        if pooled is None:
            pooled = torch.empty((len(sequences), out.shape[-1]), dtype=out.dtype, device=out.device)
        pooled[torch.as_tensor(idx, device=out.device)] = out
        real += int(lengths[idx].sum())
        padded += numel
        if progress is not None:
            progress(len(idx))
    if stats is not None:
        stats.update(real_tokens=real, padded_tokens=padded)
    return pooled


def predict_pairs(model, side_a: list[list[int]], side_b: list[list[int]], pad_id: int,
                  max_tokens: int | None = None, device: str | torch.device = "cpu", progress=None,
                  stats: dict | None = None, workers: int | None = None, features: np.ndarray | None = None):
    """Dual-tower shortcut of `predict_rows`."""
    return predict_rows(model, list(zip(side_a, side_b)), "pair", pad_id, max_tokens, device, progress, stats,
                        workers, features)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def quantize_int8(model):
    """Dynamic int8 quantization of the encoder's Linear layers (CPU): int8 weights per output channel, activations
    quantized per call (see `Int8Linear` for their 7 or 8 bits). A head outside `model.encoder` stays in fp32.

    Every Linear is quantized, the feed-forward down-projections too: their GELU inputs carry outliers (MiniLM on
    arena text: max about 24 against a mean of 0.15) that flatten everything else on torch's default 7 bits, but
    on 8 bits they hold up. MiniLM, 14 arena sides of 512 tokens, relative error of the pooled vectors / speed
    over fp32 on one thread: down-projections in fp32 0.121 / 1.12-1.29x; every Linear on 7 bits 0.184 / 1.38x;
    7 or 8 bits by `Int8Linear`'s rule 0.138 / 1.35x. bench/speed.py reports the log-loss change. Uses torch.ao's
    eager-mode API (deprecated in favour of torchao, still shipped with torch).
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    target = getattr(model, "encoder", model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(target, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         mapping={torch.nn.Linear: Int8Linear}, inplace=True)
    return model


class Int8Linear(DynamicInt8Linear):
    """torch's dynamic int8 Linear, with the activations on 8 bits when they are one-sided, else 7.

    On x86 torch quantizes activations to 7 bits (`reduce_range`): AVX2 without VNNI multiplies u8 activation
    codes by s8 weights and adds adjacent pairs in 16 bits, which clip when both codes and both weights are large.
    Two-sided activations (after a layer norm: zero point near code 128) reach large codes all the time, and on 8
    bits a random tiny model clips visibly. One-sided ones (min >= -max / 8, as after a GELU: zero point <= 28)
    need two adjacent activations above about 45% of the call's maximum for a clip, while their 7-bit codes would
    put a typical value within a step or two of zero whenever an outlier sets the range. The check costs one
    min/max pass over the input.
    """

    def forward(self, x):
        low, high = torch.aminmax(x)
        one_sided = bool(low >= -high / 8)
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=not one_sided).to(x.dtype)


def prepare_for_inference(model, device: str | torch.device, dtype: str = "fp32", quantize: str | None = None):
    """Move/cast/quantize a model for prediction, with one-line errors for combinations that cannot work."""
    device = torch.device(device)
    if dtype not in DTYPES:
        raise DataError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if quantize not in (None, "none", "int8"):
        raise DataError(f"quantize {quantize!r}: expected none or int8")
    if quantize == "int8":
        if device.type != "cpu":
            raise DataError("--quantize int8 is CPU dynamic quantization; on a GPU use --dtype bf16 or fp16 instead")
        if dtype != "fp32":
            raise DataError("--quantize int8 works on the fp32 model; drop --dtype or use --dtype fp32")
        return quantize_int8(model.eval())
    if dtype == "fp16" and device.type == "cpu":
        raise DataError("--dtype fp16 needs a GPU; on a CPU use fp32, bf16 or --quantize int8")
    return model.to(device=device, dtype=DTYPES[dtype]).eval()


def score_sides(model, sides: list[list[int]], pad_id: int, max_tokens: int | None = None,
                device: str | torch.device = "cpu", workers: int | None = None,
                features: np.ndarray | None = None) -> np.ndarray:
    """Rank models: one score per single side (prompt + one response), in the input order; `features` (n, S):
    the sides' own features (probe.single_side_features) for a model whose head reads them."""
    model.eval()
    device = torch.device(device)
    lengths = np.array([len(side) for side in sides], dtype=np.int64)
    scores = np.zeros(len(sides), dtype=np.float32)

    def score(batch_idx):
        ids, mask = pad_batch([sides[i] for i in batch_idx], pad_id)
        feats = None if features is None else torch.as_tensor(features[batch_idx], device=device)
        return batch_idx, model.side_scores(ids.to(device), mask.to(device), feats).float().cpu().numpy()

    batches = token_budget_batches(lengths, call_budget(max_tokens, device, workers, model))
    for batch_idx, batch_scores in map_batches(score, batches, device, workers):
        scores[batch_idx] = batch_scores
    return scores


class NeuralBackend:
    """A transformers model directory (weights + tokenizer): renders rows into token ids, returns raw logits."""

    def __init__(self, model, tokenizer, meta: dict, device: str | torch.device = "cpu", inputs: str = "pair",
                 dtype: str = "fp32", quantize: str | None = None, max_tokens: int | None = None,
                 workers: int | None = None):
        self.model = prepare_for_inference(model, device, dtype, quantize)
        self.tokenizer = tokenizer
        self.meta = meta
        self.device = torch.device(device)
        self.inputs = inputs  # "pair" (dual tower) or "joint" (cross-encoder, llm)
        try:
            self.settings = TextSettings.from_dict(meta.get("text", {}))
        except ValueError as exc:
            raise DataError(f"arenapref.json text settings: {exc}; retrain or restore the model directory") from None
        self.renderer = Renderer(tokenizer, self.settings)
        self.max_tokens = max_tokens
        self.workers = workers

    @classmethod
    def load(cls, path, meta: dict, recipe, device: str | torch.device = "cpu", verify: bool = True,
             **options) -> NeuralBackend:
        """`recipe`: the family's recipe (models/families.py), which checks and loads the weights.
        `options`: dtype ("fp32" | "bf16" | "fp16"), quantize (None | "int8"), max_tokens (in flight), workers."""
        path = Path(path)
        model = recipe.load(path, meta, verify)
        try:
            tokenizer = recipe.tokenizer(path)
        except DataError as exc:
            raise DataError(f"{path}: tokenizer files missing or corrupt ({str(exc)[:160]})") from None
        return cls(model, tokenizer, meta, device, recipe.inputs, **options)

    # predict_logits(..., diagnostics=[]) reports what the renderer kept of each row (data/text.py).
    reports_diagnostics = True

    @property
    def has_style_term(self) -> bool:
        """Whether the head adds a style term that `style="controlled"` can leave out (models/style_term.py)."""
        return bool(getattr(getattr(self.model, "config", None), "style_term", False))

    def predict_logits(self, frame, progress=None, diagnostics: list | None = None, style: str = "as-voted"):
        """Uncalibrated logits (N, 3) and side scores (N, 2) or None, for a normalised frame. `diagnostics` (a
        list) receives one dict per row from the rendering that made the model's inputs (`encode_rows`). `style`:
        "controlled" leaves a style-term model's style term out."""
        return predict_rows(self.model, encode_rows(self.renderer, self.inputs, frame, diagnostics), self.inputs,
                            self.tokenizer.pad_token_id or 0, self.max_tokens, self.device, progress,
                            workers=self.workers, features=model_features(self.model, frame, style))

    @property
    def scores_sides(self) -> bool:
        """Rank-objective models score one response without a partner (ranking n responses costs n passes)."""
        objective = getattr(self.model, "objective", None) or getattr(self.model.config, "objective", None)
        return self.inputs == "pair" and hasattr(self.model, "side_scores") and objective == "rank"

    def score_responses(self, prompts: list[list[str]], responses: list[list[str]]) -> np.ndarray:
        """Uncalibrated score of each (prompt turns, response turns), rendered exactly like one side of a pair."""
        prompt_ids = self.renderer.tokenize_turn_lists(prompts)
        response_ids = self.renderer.tokenize_turn_lists(responses)
        sides = [self.renderer.side(p, r) for p, r in zip(prompt_ids, response_ids)]
        features = None
        if reads_features(self.model):
            features = single_side_features(prompts, responses)
        return score_sides(self.model, sides, self.tokenizer.pad_token_id or 0, self.max_tokens, self.device,
                           self.workers, features)


def load_neural(path, meta: dict, device: str | None = None, dtype: str = "fp32", quantize: str | None = None,
                max_tokens: int | None = None, workers: int | None = None, verify: bool = True) -> NeuralBackend:
    """A saved neural model ready to predict (the registry's loader of every neural family); its files were
    verified by `check_model_dir` already."""
    quantize = None if quantize in (None, "none") else quantize
    # Dynamic int8 quantization is a CPU feature: it picks the CPU unless a device is asked for.
    device = device or ("cuda" if torch.cuda.is_available() and quantize is None else "cpu")
    recipe = MODELS[meta["model_type"]].load_recipe(meta.get("objective"))
    return NeuralBackend.load(path, meta, recipe, device, verify, dtype=dtype, quantize=quantize,
                              max_tokens=max_tokens, workers=workers)
