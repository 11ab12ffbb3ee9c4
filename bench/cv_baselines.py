"""The baselines of `arenapref cv`, on the very folds it uses: constant prior and length logistic regression.

    python bench/cv_baselines.py --data ../shared/data/arena_sample.csv [--folds 5] [--seed 42]

Same folds as `arenapref cv --data FILE --folds K` with its default --seed (crossval.grouped_folds), so a recipe's
out-of-fold log loss and these are measured on the same rows. Prints the out-of-fold log loss, accuracy and the
length slices (shorter_won / longer_won) of each baseline; last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from arenapref.data.tables import load_frame  # noqa: E402
from arenapref.evaluation.metrics import frame_length_slices, log_loss  # noqa: E402
from arenapref.training.cv import grouped_folds  # noqa: E402
from quality import length_features  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    opts = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    frame = load_frame(opts.data, require_labels=True)
    y = frame["label"].to_numpy()
    x = length_features(frame)
    oof = {"prior": np.zeros((len(frame), 3)), "length_lr": np.zeros((len(frame), 3))}
    for train, held in grouped_folds(frame, opts.folds, opts.seed):
        oof["prior"][held] = np.bincount(y[train], minlength=3) / len(train)
        oof["length_lr"][held] = LogisticRegression(max_iter=1000).fit(x[train], y[train]).predict_proba(x[held])
    results = {}
    for name, probs in oof.items():
        slices = frame_length_slices(frame, probs)
        results[name] = {"log_loss": log_loss(y, probs), "accuracy": float((probs.argmax(1) == y).mean()), **slices}
        print(f"{name:<10} out-of-fold log loss {results[name]['log_loss']:.4f}  accuracy "
              f"{results[name]['accuracy']:.3f}  shorter_won accuracy {slices['shorter_won']['accuracy']:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
