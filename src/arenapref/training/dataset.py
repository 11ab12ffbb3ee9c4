"""The training Dataset of the neural families: pre-tokenised rows, labels, soft labels, side features, and the
A/B swap augmentation (`--swap-augment`, data/swap.py)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from arenapref.data.features import swap_features
from arenapref.data.swap import SWAP_CLASSES, SWAP_MODES


class PreferenceDataset(Dataset):
    """Pre-tokenised rows (a pair of sides or one joint sequence), labels, optional soft labels, optional side
    features (probe.head_features; their swap is computed), and the rows' swapped rendering for `--swap-augment`.

    random: every time a row is drawn (so once per epoch) it is swapped with probability 0.5. The coin is a function
            of (seed, epoch, row), not a running generator, so a run resumed mid-epoch (which skips batches without
            drawing them) flips the same coins as an uninterrupted one. `SwapEpochCallback` sets the epoch in
            every process (under torchrun the Trainer's own set_epoch reaches the sampler, not this dataset).
    full:   an item is the row *and* its swap; `FlattenCollator` puts both in the same batch, so every optimizer
            step sees both orders (a batch of --batch-size items holds 2 x batch-size rows).
    """

    def __init__(self, inputs: list, labels: np.ndarray, soft_labels: np.ndarray | None = None,
                 swapped: list | None = None, swap: str = "none", seed: int = 0,
                 features: np.ndarray | None = None):
        if swap not in SWAP_MODES:
            raise ValueError(f"swap {swap!r}: expected one of {SWAP_MODES}")
        if swap != "none" and swapped is None:
            raise ValueError("swap augmentation needs the swapped inputs")
        self.inputs, self.swapped, self.swap = inputs, swapped, swap
        self.labels = np.asarray(labels)
        self.soft_labels = None if soft_labels is None else np.asarray(soft_labels, dtype=np.float32)
        self.seed, self.epoch = seed, 0
        self.features = None if features is None else np.asarray(features, dtype=np.float32)
        if self.features is not None and swap != "none":
            self.swapped_features = swap_features(self.features)

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def coin(self, i: int) -> bool:
        return bool(np.random.default_rng((self.seed, self.epoch, i)).random() < 0.5)

    def coins_digest(self) -> str:
        """A short fingerprint of this epoch's coins (logged, so a run shows that each epoch swaps other rows)."""
        import hashlib

        coins = np.packbits([self.coin(i) for i in range(len(self))]).tobytes()
        return hashlib.sha256(coins).hexdigest()[:8]

    def row(self, i: int, swapped: bool) -> dict:
        label = int(self.labels[i])
        item = {"input_ids": self.swapped[i] if swapped else self.inputs[i],
                "labels": int(SWAP_CLASSES[label]) if swapped else label}
        if self.soft_labels is not None:
            soft = self.soft_labels[i]
            item["soft_labels"] = soft[SWAP_CLASSES] if swapped else soft
        if self.features is not None:
            item["features"] = self.swapped_features[i] if swapped else self.features[i]
        return item

    def __getitem__(self, i: int) -> dict:
        if self.swap == "full":
            return {"rows": [self.row(i, False), self.row(i, True)]}
        return self.row(i, self.swap == "random" and self.coin(i))


class FlattenCollator:
    """Expands `full` swap items (a row and its swap) into separate rows, then pads with the inner collator."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, items: list[dict]) -> dict:
        return self.inner([row for item in items for row in item.get("rows", [item])])
