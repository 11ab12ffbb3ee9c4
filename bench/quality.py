"""Quality benchmark: train each recipe on --train (+ --extra where the recipe uses it), score it on --eval.

    python bench/quality.py --train TRAIN.csv --eval EVAL.csv [--extra FILE ...] [--budget-minutes 30]

Every recipe runs through the real command line (`arenapref train`, then `arenapref evaluate --json`) in a subprocess
limited to the budget left, cheapest first; a recipe that cannot finish in what is left is reported as over budget.
Two baselines put the numbers in context: the constant label prior of --train and a logistic regression on length
features. Prints a table, then, as the last line, one JSON object:
    {"<recipe>_log_loss": ..., ..., "best": "<recipe>", "best_log_loss": ...}
("best" is chosen among the library's recipes, not the baselines).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.data.tables import load_frame  # noqa: E402
from arenapref.evaluation.metrics import log_loss  # noqa: E402

# name, train flags, uses --extra, rough minutes on 2 idle cores for ~1000 rows (to skip what cannot fit).
RECIPES = [
    ("gbdt", ["--model", "gbdt"], False, 0.5),
    # Factored with the --extra files: ties from --train only, who wins from every decisive row (models/gbdt.py).
    ("gbdt_extra", ["--model", "gbdt"], True, 1),
    # The default of `arenapref train`: the dual tower below and the gbdt, probabilities averaged (models/hybrid.py).
    ("hybrid", ["--model", "hybrid"], False, 4),
    ("hybrid_extra", ["--model", "hybrid"], True, 4),
    # Today's defaults: side features in the head, linear probe, 1 epoch of fine-tuning at 2e-5 (LP-FT).
    ("dual_tower", ["--model", "dual-tower"], False, 4),
    # The same with the --extra files teaching its head's direction model (probe.py).
    ("dual_tower_extra", ["--model", "dual-tower"], True, 4),
    ("cross_encoder", ["--model", "cross-encoder", "--max-length", "256", "--truncation-side", "left"], False, 6),
    # The plain head: N(0, 0.02) linear layer over the pooled vectors only, no probe, 1 epoch.
    ("dual_tower_reference", ["--model", "dual-tower", "--no-head-features", "--no-probe", "--lr", "5e-5",
                              "--head-lr", "1e-3", "--epochs", "1"], False, 4),
    ("llm", ["--model", "llm", "--backbone", "smollm2", "--max-length", "256", "--epochs", "1", "--lr", "2e-4",
             "--batch-size", "4"], False, 110),
]


def length_features(frame) -> np.ndarray:
    """Both responses' log length in characters and their difference: the length baseline's inputs."""
    a = np.log1p([len("\n".join(t)) for t in frame["response_a"]])
    b = np.log1p([len("\n".join(t)) for t in frame["response_b"]])
    return np.column_stack([a, b, a - b])


def baselines(train_path: Path, eval_path: Path, extra: list[Path]) -> dict:
    """Constant prior and logistic regression on length features (both sides' log length and their difference)."""
    from sklearn.linear_model import LogisticRegression

    train, test = load_frame(train_path, require_labels=True), load_frame(eval_path, require_labels=True)
    lengths = length_features
    prior = np.bincount(train["label"], minlength=3) / len(train)
    y = test["label"].to_numpy()
    lr = LogisticRegression(max_iter=1000).fit(lengths(train), train["label"])
    return {"prior": log_loss(y, np.tile(prior, (len(y), 1))),
            "length_lr": log_loss(y, lr.predict_proba(lengths(test)))}


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "arenapref", *map(str, args)], capture_output=True, text=True,
                          timeout=max(timeout, 1), env=env, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--extra", type=Path, action="append", default=[])
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--recipes", default=",".join(r[0] for r in RECIPES), help="comma-separated subset")
    parser.add_argument("--workdir", type=Path, default=None, help="where model directories go (default: temp)")
    opts = parser.parse_args()
    wanted = opts.recipes.split(",")
    unknown = set(wanted) - {r[0] for r in RECIPES}
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(sorted(unknown))}")

    start = time.time()
    deadline = start + 60 * opts.budget_minutes
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="arenapref-quality-"))
    rows, results = [], {}
    base = baselines(opts.train, opts.eval, opts.extra)
    for name, value in base.items():
        rows.append((f"{name} (baseline)", value, None, "ok"))
        results[f"{name}_log_loss"] = value

    for name, flags, uses_extra, minutes in RECIPES:
        if name not in wanted:
            continue
        if uses_extra and not opts.extra:
            rows.append((name, None, None, "skipped: no --extra file given"))
            continue
        left = deadline - time.time()
        if left < 60 * minutes:
            rows.append((name, None, None, f"skipped: needs ~{minutes:g} min, {left / 60:.1f} min left"))
            continue
        out = workdir / name
        extra = [x for path in opts.extra for x in ("--extra", path)] if uses_extra else []
        t0 = time.time()
        try:
            proc = run(["train", "--data", opts.train, "--output", out, *flags, *extra], deadline - time.time())
            if proc.returncode == 0:
                proc = run(["evaluate", "--model", out, "--data", opts.eval, "--json"], deadline - time.time())
        except subprocess.TimeoutExpired:
            rows.append((name, None, time.time() - t0, "over budget"))
            continue
        if proc.returncode != 0:
            rows.append((name, None, time.time() - t0, f"failed: {proc.stderr.strip().splitlines()[-1][:80]}"))
            continue
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
        results[f"{name}_log_loss"] = metrics["log_loss"]
        rows.append((name, metrics["log_loss"], time.time() - t0, f"ok (accuracy {metrics['accuracy']:.3f})"))

    print(f"{'recipe':<24} {'log loss':>9} {'seconds':>8}  status")
    for name, loss, seconds, status in rows:
        loss_s = f"{loss:.4f}" if loss is not None else "-"
        sec_s = f"{seconds:.0f}" if seconds is not None else "-"
        print(f"{name:<24} {loss_s:>9} {sec_s:>8}  {status}")
    print(f"total {time.time() - start:.0f}s of a {opts.budget_minutes:g}-minute budget; models in {workdir}")
    scored = {name: results[f"{name}_log_loss"] for name, *_ in RECIPES if f"{name}_log_loss" in results}
    if scored:
        best = min(scored, key=scored.get)
        results.update(best=best, best_log_loss=scored[best])
    else:
        results.update(best=None, best_log_loss=None)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
