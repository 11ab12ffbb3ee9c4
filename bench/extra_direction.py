"""Does the neural head's direction model (probe.py) gain from reading the extra rows' text, not just their features?

    python bench/extra_direction.py --data ../shared/data/arena_sample.csv --extra ../shared/data/arena_extra.csv

On the folds of `arenapref cv --data DATA --folds 5` (default --seed 42), with the frozen default backbone (dual
tower rendering, pooled vectors of every side of DATA and EXTRA encoded once): the probe's 3-way fit on each fold's
training rows (C and pooled weight by grouped CV, as in training) under a direction model fitted on the decisive
rows of the fold's training rows and of EXTRA (extra rows sharing a prompt with the fold left out), whose inputs
are the side-feature differences (what `train` does) or those plus the pooled-vector differences at weight
--pooled-weight. No calibration, no fine-tuning: both variants alike. Prints out-of-fold log loss and the
shorter-won slice of each; last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.data.features import feature_stats, head_features, standardize
from arenapref.data.split import prompt_groups, prompt_key  # noqa: E402
from arenapref.data.tables import load_frame
from arenapref.evaluation.metrics import frame_length_slices, log_loss, softmax  # noqa: E402
from arenapref.training.cv import grouped_folds  # noqa: E402
from arenapref.training.probe import (
    ProbeData,
    choose_direction,
    choose_probe,
    direction_offset,
    direction_refits,
    side_difference,
)


def pooled_sides(frame, backbone: str | None) -> np.ndarray:
    """(N, 2, H) frozen pooled vectors of the dual tower's two sides (default backbone and text settings)."""
    import torch

    from arenapref.config import TrainConfig
    from arenapref.data.text import Renderer, TextSettings
    from arenapref.inference.backend import pooled_sequences
    from arenapref.models import MODELS

    cfg = TrainConfig(data="-", output="-", model="dual-tower", **({"backbone": backbone} if backbone else {}))
    recipe = MODELS["dual-tower"].load_recipe("classify")
    tokenizer = recipe.tokenizer(cfg.backbone, cfg)
    renderer = Renderer(tokenizer, TextSettings(max_length=cfg.max_length, response_weight=cfg.response_weight,
                                                truncation_side=cfg.truncation_side))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = recipe.build(cfg, tokenizer).to(device).eval()
    a, b = renderer.dual_tower_inputs(frame)
    with torch.inference_mode():
        pooled = pooled_sequences(model, list(a) + list(b), tokenizer.pad_token_id, 16384, device).float().cpu().numpy()
    return pooled.reshape(2, len(frame), -1).transpose(1, 0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--extra", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pooled-weight", type=float, default=0.1)
    parser.add_argument("--backbone", default=None, help="default: the training default")
    opts = parser.parse_args()
    data, extra = load_frame(opts.data, require_labels=True), load_frame(opts.extra, require_labels=True)
    start = time.time()
    pooled, pooled_extra = pooled_sides(data, opts.backbone), pooled_sides(extra, opts.backbone)
    print(f"encoded {len(data)} + {len(extra)} rows in {time.time() - start:.0f}s", file=sys.stderr)
    y, y_extra = data["label"].to_numpy(), extra["label"].to_numpy()
    feats, feats_extra = head_features(data), head_features(extra)
    keys, keys_extra = data["prompt"].map(prompt_key).to_numpy(), extra["prompt"].map(prompt_key).to_numpy()
    groups = prompt_groups(data)
    variants = {"features": None, "features+pooled": opts.pooled_weight}
    oof = {name: np.zeros((len(data), 3)) for name in variants}
    for train, held in grouped_folds(data, opts.folds, opts.seed):
        mean, std = feature_stats(feats[train])
        f, f_extra = standardize(feats, mean, std), standardize(feats_extra, mean, std)
        flat = pooled[train].reshape(-1, pooled.shape[-1])
        spread = np.where(flat.std(0) > 1e-8, flat.std(0), 1.0)
        keep = (y_extra < 2) & ~np.isin(keys_extra, keys[held])
        own = np.flatnonzero(y[train] < 2)  # positions in `train`: the direction model's refits in the probe's CV
        source = np.concatenate([own, np.full(int(keep.sum()), -1)])
        for name, weight in variants.items():
            def design(p, ff):
                d = side_difference(ff)
                return d if weight is None else np.hstack([d, weight * ((p[:, 0] - p[:, 1]) / spread)])
            D = np.vstack([design(pooled[train][own], f[train][own]), design(pooled_extra[keep], f_extra[keep])])
            a_wins = np.concatenate([y[train][own] == 0, y_extra[keep] == 0]).astype(float)
            direction_groups = prompt_groups(pd.concat([data.iloc[train[own]], extra[keep]], ignore_index=True))
            fitted = choose_direction(D, a_wins, direction_groups, seed=opts.seed, log=lambda *a: None)
            inputs = design(pooled, f)
            offset = direction_offset(inputs, fitted["weights"])
            probe = ProbeData("pair", pooled[train], y[train], f[train])
            probe.offset = offset[train]  # the direction model's logits under the 3-way fit (as training does)
            refits = direction_refits(inputs[train], D, a_wins, source, fitted["C"])
            chosen = choose_probe(probe, groups[train], seed=opts.seed, log=lambda *a: None, offset_for=refits)
            W, b = probe.fit(chosen["C"], chosen["scale"], np.arange(len(train)))
            z = chosen["scale"] * (pooled[held] - probe.mean) / probe.std
            oof[name][held] = softmax(np.hstack([z[:, 0], z[:, 1], f[held]]) @ W.T + b + offset[held])
    results = {}
    for name, probs in oof.items():
        short = frame_length_slices(data, probs)["shorter_won"]
        results[name] = {"log_loss": log_loss(y, probs), "shorter_won_log_loss": short["log_loss"]}
        print(f"{name:<16} out-of-fold log loss {results[name]['log_loss']:.4f}  "
              f"shorter won {short['log_loss']:.4f} ({short['rows']} rows)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
