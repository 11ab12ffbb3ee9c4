"""The cascade's trade-off: out-of-fold log loss against neural compute, for --neural-fraction and --tta-fraction.

    python bench/cascade.py --data ../shared/data/arena_sample.csv [--folds 5] [--seed 42]

Grouped K-fold CV (training.cv.grouped_folds, the folds of `arenapref cv`): each fold trains one hybrid (gbdt + a
probe-only dual tower over the installed all-MiniLM-L6-v2, --epochs 0, no --extra: minutes, not hours, on two
cores), calibrated on a validation part of its own training rows, and scores its held-out rows at every
--neural-fraction (the gbdt part answers every row, the least certain go through the neural part) and, with
--tta swap, every --tta-fraction, all from the same fold model. Reports per fraction: the out-of-fold log loss,
the share of rows the neural part read (its compute: a dual tower's cost is per row), the share of the hybrid's
gain over its gbdt part kept, and the scoring time relative to the full hybrid on the same folds. Last line one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.api import Judge  # noqa: E402
from arenapref.config import TrainConfig  # noqa: E402
from arenapref.data.tables import load_frame, to_kaggle, write_csv_atomic  # noqa: E402
from arenapref.evaluation.metrics import least_certain, log_loss  # noqa: E402
from arenapref.training import train  # noqa: E402
from arenapref.training.cv import grouped_folds  # noqa: E402

FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--by", default="entropy", choices=("entropy", "margin"))
    opts = parser.parse_args()

    frame = load_frame(opts.data, require_labels=True)
    labels = frame["label"].to_numpy()
    n = len(frame)
    neural = {f: np.zeros((n, 3)) for f in FRACTIONS}
    tta = {f: np.zeros((n, 3)) for f in FRACTIONS}
    neural_rows = dict.fromkeys(FRACTIONS, 0)
    seconds = {("neural", f): 0.0 for f in FRACTIONS} | {("tta", f): 0.0 for f in FRACTIONS}
    swapped_rows = dict.fromkeys(FRACTIONS, 0)
    work = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
    start = time.time()
    try:
        for k, (train_idx, held_idx) in enumerate(grouped_folds(frame, opts.folds, opts.seed)):
            fold = work / f"fold-{k}"
            fold.mkdir()
            write_csv_atomic(to_kaggle(frame.iloc[train_idx]), fold / "train.csv")
            cfg = TrainConfig(data=str(fold / "train.csv"), output=str(fold / "model"), model="hybrid", epochs=0,
                              backbone_weights="reference", seed=opts.seed).validate()
            train(cfg, log=lambda *a, **kw: None)
            held = frame.iloc[held_idx].reset_index(drop=True)
            judge = Judge.from_pretrained(fold / "model")
            gbdt = judge.backend.parts[judge.backend.cheap_part][1].predict_proba(held)
            for f in FRACTIONS:
                judge.set_cascade(neural_fraction=f, cascade_by=opts.by)
                t0 = time.perf_counter()
                neural[f][held_idx] = judge.predict_proba(held)
                seconds[("neural", f)] += time.perf_counter() - t0
                neural_rows[f] += len(least_certain(gbdt, f, opts.by))
            for f in FRACTIONS:
                judge.set_cascade(tta_fraction=f, cascade_by=opts.by)
                t0 = time.perf_counter()
                tta[f][held_idx] = judge.predict_proba(held, tta="swap")
                seconds[("tta", f)] += time.perf_counter() - t0
                swapped_rows[f] += int(np.ceil(f * len(held) - 1e-9))
            print(f"fold {k + 1}/{opts.folds}: {len(held)} held-out rows, hybrid log loss "
                  f"{log_loss(labels[held_idx], neural[1.0][held_idx]):.4f}, gbdt part "
                  f"{log_loss(labels[held_idx], neural[0.0][held_idx]):.4f} ({time.time() - start:.0f} s)",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    gbdt_loss, hybrid_loss = log_loss(labels, neural[0.0]), log_loss(labels, neural[1.0])
    result = {"data": str(opts.data), "rows": n, "folds": opts.folds, "seed": opts.seed, "by": opts.by,
              "gbdt_log_loss": gbdt_loss, "hybrid_log_loss": hybrid_loss, "neural_fraction": {}, "tta_fraction": {},
              "seconds": round(time.time() - start, 1)}
    print(f"{'--neural-fraction':>18} {'log loss':>9} {'neural rows':>12} {'gain kept':>10} {'time vs 1':>10}")
    for f in FRACTIONS:
        loss = log_loss(labels, neural[f])
        gain = (gbdt_loss - loss) / (gbdt_loss - hybrid_loss) if gbdt_loss != hybrid_loss else float("nan")
        ratio = seconds[("neural", f)] / seconds[("neural", 1.0)]
        result["neural_fraction"][str(f)] = {"log_loss": loss, "neural_rows": neural_rows[f] / n,
                                             "gain_kept": gain, "time_vs_full": ratio}
        print(f"{f:>18g} {loss:>9.4f} {neural_rows[f] / n:>12.3f} {gain:>10.2f} {ratio:>10.2f}")
    swap_loss = log_loss(labels, tta[1.0])
    print(f"{'--tta-fraction':>18} {'log loss':>9} {'swapped rows':>12} {'':>10} {'time vs 1':>10}  (--tta swap; "
          f"no TTA: {hybrid_loss:.4f})")
    for f in FRACTIONS:
        loss = log_loss(labels, tta[f])
        ratio = seconds[("tta", f)] / seconds[("tta", 1.0)]
        result["tta_fraction"][str(f)] = {"log_loss": loss, "swapped_rows": swapped_rows[f] / n,
                                          "time_vs_full": ratio}
        print(f"{f:>18g} {loss:>9.4f} {swapped_rows[f] / n:>12.3f} {'':>10} {ratio:>10.2f}")
    result["swap_log_loss"] = swap_loss
    print(json.dumps(result))


if __name__ == "__main__":
    main()
