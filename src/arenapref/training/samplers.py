"""Length-aware batching for training on the Hugging Face Trainer.

A training batch costs rows x its longest side (dynamic padding, inference/batching.py PairCollator), so rows of similar
length should meet in the same batch. The Trainer's own `group_by_length` reads one length per item from
`item["input_ids"]`; our pair items hold two sides, so the lengths are passed explicitly to transformers'
LengthGroupedSampler (random mega-batches, each sorted by length) through `LengthGroupedTrainer._get_train_sampler`.
Works for any dataset with `inputs` (training/dataset.py PreferenceDataset: pairs of sides or joint sequences).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import (
    LengthGroupedSampler,
    get_length_grouped_indices,
)


def pair_length_keys(side_a: list, side_b: list) -> list[int]:
    """Sort key per row: its longer side first, its shorter side to break ties.

    The model encodes a batch's sides in sub-batches trimmed to their own length (models/packing.py), so rows whose
    long sides match and whose short sides also match pad least. About 30% of arena rows hit the 512 cap on
    their long side; the secondary key keeps their short sides together too.
    """
    return [max(len(a), len(b)) * 1_000_000 + min(len(a), len(b)) for a, b in zip(side_a, side_b)]


def row_length_keys(rows: list) -> list[int]:
    """Length keys of pre-tokenised rows: pair_length_keys for (side A, side B) pairs, the length of a joint row."""
    if rows and isinstance(rows[0], tuple) and len(rows[0]) == 2 and isinstance(rows[0][0], (list, tuple)):
        return pair_length_keys([a for a, _ in rows], [b for _, b in rows])
    return [len(r) for r in rows]


def dataset_length_keys(dataset) -> list[int] | None:
    keys = getattr(dataset, "length_keys", None)
    if keys is None and getattr(dataset, "inputs", None) is not None:
        keys = row_length_keys(dataset.inputs)
    return keys


class PairLengthSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler with explicit keys, a per-epoch seed (so a resumed run sees the same
    order) and a settable mega-batch size (HF's default shrinks it on small datasets)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int = 0, mega_batch_mult: int | None = None):
        super().__init__(batch_size, lengths=list(lengths))
        self.seed, self.epoch, self.mega_batch_mult = seed, 0, mega_batch_mult

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, self.mega_batch_mult, generator))


class LongestFirstSampler(Sampler):
    """Evaluation order: longest rows first, so each eval batch pads little. Predictions and labels are gathered in
    the same order, so metrics are unaffected; use predict_pairs when you need predictions in row order."""

    def __init__(self, lengths: list[int]):
        self.order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


class LengthGroupedTrainer(Trainer):
    """The HF Trainer with length-grouped training batches and longest-first evaluation batches for datasets of
    pre-tokenised rows (`inputs` or `length_keys`); other datasets get the Trainer's default samplers."""

    def __init__(self, *args, group_by_length: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        keys = dataset_length_keys(dataset)
        if not self.group_by_length or keys is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return PairLengthSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, keys, seed)

    def _get_eval_sampler(self, eval_dataset):
        keys = dataset_length_keys(eval_dataset)
        if keys is None or self.args.world_size > 1:
            return super()._get_eval_sampler(eval_dataset)
        return LongestFirstSampler(keys)
