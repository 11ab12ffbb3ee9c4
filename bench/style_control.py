"""Judgments with style taken out: models with a style term (`train --style-term`), as voted and controlled, beside
today's models, the constant prior, the length rule and the style term alone.

    python bench/style_control.py [--data-dir ../shared/data] [--folds 5] [--seed 42] [--no-extra]
                                  [--models gbdt,hybrid]

Families: `gbdt`, and `hybrid` (the default recipe), whose neural part is read on its own as well: a dual tower
(MiniLM, linear probe then one epoch) trained exactly as `train --model dual-tower` would with the same settings, so
one hybrid run per fold gives both rows (its gbdt part is the gbdt of the gbdt rows).

Grouped K-fold CV on arena_sample.csv, the folds of `arenapref cv` (training/cv.grouped_folds, prompt groups,
seed 42): each fold trains through `training.train` (the recipe's own validation part, calibration and refit) and
predicts its held-out rows through `Predictor`, with `style="as-voted"` and `style="controlled"`. Per recipe:
out-of-fold log loss and 3-way accuracy; on the decisive rows where the shorter answer won and where the longer won
(lengths in characters, as `evaluate` counts them) the share where the judge gives the winner the higher P (A vs B:
a coin is 0.5) and the 3-way accuracy. Out of domain (trained on all of arena_sample.csv, never on these files):
pairwise accuracy on hh_rlhf_harmless_test.csv and pandalm_human_test.csv (P(chosen) > P(rejected); ties left out),
with the longer-answer rule beside it. With extra (default; --no-extra skips it): the same recipes trained with
`--extra arena_extra.csv` (its decisive rows teach who wins: the gbdt's direction booster, today's neural direction
model, a style-term head's A-vs-B logit through the frozen encoder, cached after the first fold; ties still from the
sample; extra rows sharing a prompt with a held-out fold left out, as `cv` does). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.config import TrainConfig  # noqa: E402
from arenapref.data.tables import load_frame, to_kaggle, write_csv_atomic  # noqa: E402
from arenapref.evaluation.metrics import frame_length_slices, log_loss, response_lengths  # noqa: E402
from arenapref.inference.predictor import Predictor  # noqa: E402
from arenapref.models.gbdt import factored  # noqa: E402
from arenapref.models.style_term import decisive_style, fit_style_term, style_ratios  # noqa: E402
from arenapref.training import train  # noqa: E402
from arenapref.training.cv import grouped_folds  # noqa: E402

RECIPES = {"today": {}, "style_term": {"style_term": True}}
# Family trained -> the models read from its directory (name -> sub-directory).
READERS = {"gbdt": {"gbdt": ""}, "hybrid": {"hybrid": "", "dual-tower": "neural"}}


def decisive_slices(frame, probs: np.ndarray) -> dict:
    """A-vs-B accuracy (winner's P above the loser's) on the decisive rows, all and per length slice."""
    labels = frame["label"].to_numpy()
    length_a, length_b = response_lengths(frame)
    decisive = labels < 2
    winner_first = probs[np.arange(len(labels)), np.clip(labels, 0, 1)] > probs[np.arange(len(labels)),
                                                                               1 - np.clip(labels, 0, 1)]
    shorter = np.where(labels == 0, length_a < length_b, length_b < length_a) & decisive
    longer = np.where(labels == 0, length_a > length_b, length_b > length_a) & decisive
    out = {}
    for name, rows in (("decisive", decisive), ("shorter_won", shorter), ("longer_won", longer)):
        out[name] = {"rows": int(rows.sum()), "ab_accuracy": round(float(winner_first[rows].mean()), 4)}
    three_way = frame_length_slices(frame, probs)
    for name in ("shorter_won", "longer_won"):
        out[name]["accuracy_3way"] = round(three_way[name]["accuracy"], 4)
    return out


def summary(frame, probs: np.ndarray) -> dict:
    labels = frame["label"].to_numpy()
    return {"log_loss": round(log_loss(labels, probs), 4),
            "accuracy": round(float((probs.argmax(1) == labels).mean()), 4), **decisive_slices(frame, probs)}


def pairwise(frame, probs: np.ndarray) -> float:
    labels = frame["label"].to_numpy()
    rows = labels < 2
    chosen = labels[rows]
    p = probs[rows]
    return round(float((p[np.arange(len(chosen)), chosen] > p[np.arange(len(chosen)), 1 - chosen]).mean()), 4)


def longer_rule(frame) -> float:
    labels = frame["label"].to_numpy()
    length_a, length_b = response_lengths(frame)
    rows = labels < 2
    longer_is_a = length_a > length_b
    correct = np.where(labels == 0, longer_is_a, length_b > length_a)
    return round(float(correct[rows].mean()), 4)


def style_alone_probs(train_frame, held_frame) -> np.ndarray:
    """The style term alone (the leaderboard's style model, as a judge): P(A) vs P(B) from sigmoid(x . beta) fitted
    on the training rows' decisive battles; ties get the training tie rate."""
    labels = train_frame["label"].to_numpy()
    term = fit_style_term(*decisive_style(style_ratios(train_frame), labels))
    a = 1 / (1 + np.exp(-term.logit(style_ratios(held_frame))))
    return factored(np.full(len(a), (labels == 2).mean()), a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-extra", action="store_true")
    parser.add_argument("--models", default="gbdt,hybrid", help="comma-separated: gbdt, hybrid")
    opts = parser.parse_args()
    start = time.time()
    sample = opts.data_dir / "arena_sample.csv"
    extra = opts.data_dir / "arena_extra.csv"
    frame = load_frame(sample, require_labels=True)
    labels = frame["label"].to_numpy()
    ood = {name: load_frame(opts.data_dir / f"{name}_test.csv", require_labels=True)
           for name in ("hh_rlhf_harmless", "pandalm_human")}
    families = [f.strip() for f in opts.models.split(",") if f.strip()]
    runs = [(family, suffix, files) for family in families
            for suffix, files in [("", [])] + ([] if opts.no_extra else [("+extra", [str(extra)])])]
    quiet = lambda *a, **k: None  # noqa: E731
    oof: dict = {}
    baselines = {"prior": np.zeros((len(frame), 3)), "style_alone": np.zeros((len(frame), 3))}

    def judges(directory: Path, family: str, recipe: str, suffix: str):
        for reader, sub in READERS[family].items():
            judge = Predictor.from_pretrained(directory / sub if sub else directory)
            for style in ("as-voted", "controlled") if judge.has_style_term else ("as-voted",):
                yield f"{reader} {recipe}{suffix}", style, judge

    with tempfile.TemporaryDirectory(prefix="style-bench-") as tmp:
        tmp = Path(tmp)
        for k, (train_idx, held_idx) in enumerate(grouped_folds(frame, opts.folds, opts.seed)):
            train_frame = frame.iloc[train_idx].reset_index(drop=True)
            held = frame.iloc[held_idx].reset_index(drop=True)
            write_csv_atomic(to_kaggle(train_frame), tmp / f"train-{k}.csv")
            write_csv_atomic(to_kaggle(held), tmp / f"held-{k}.csv")
            baselines["prior"][held_idx] = np.bincount(labels[train_idx], minlength=3) / len(train_idx)
            baselines["style_alone"][held_idx] = style_alone_probs(train_frame, held)
            for family, suffix, extra_files in runs:
                for recipe, changes in RECIPES.items():
                    cfg = TrainConfig(data=str(tmp / f"train-{k}.csv"),
                                      output=str(tmp / f"m-{k}-{family}-{recipe}{suffix}"), model=family,
                                      seed=opts.seed, extra=extra_files,
                                      extra_exclude=[str(tmp / f"held-{k}.csv")] if extra_files else [],
                                      **changes).validate()
                    train(cfg, quiet)
                    for name, style, judge in judges(Path(cfg.output), family, recipe, suffix):
                        slot = oof.setdefault(name, {}).setdefault(style, np.zeros((len(frame), 3)))
                        slot[held_idx] = judge.predict_proba(held, style=style)
            print(f"fold {k + 1}/{opts.folds} done, {time.time() - start:.0f}s", file=sys.stderr)
        # Out of domain: trained on every arena_sample row (+ extra), scored on the two other files.
        out_of_domain = {name: {"longer_rule": longer_rule(f)} for name, f in ood.items()}
        for family, suffix, extra_files in runs:
            for recipe, changes in RECIPES.items():
                cfg = TrainConfig(data=str(sample), output=str(tmp / f"full-{family}-{recipe}{suffix}"),
                                  model=family, seed=opts.seed, extra=extra_files, **changes).validate()
                train(cfg, quiet)
                for name, style, judge in judges(Path(cfg.output), family, recipe, suffix):
                    for ood_name, f in ood.items():
                        out_of_domain[ood_name][f"{name} {style}"] = pairwise(f, judge.predict_proba(f, style=style))
            print(f"out of domain: {family}{suffix} done, {time.time() - start:.0f}s", file=sys.stderr)
    cv = {name: summary(frame, probs) for name, probs in baselines.items()}
    cv["longer_rule"] = {"decisive_ab_accuracy": longer_rule(frame)}
    for name, by_style in oof.items():
        for style, probs in by_style.items():
            cv[f"{name} {style}"] = summary(frame, probs)
    for name in oof:
        if " style_term" in name:
            row, today = cv[f"{name} as-voted"], cv[f"{name.replace(' style_term', ' today')} as-voted"]
            row["log_loss_minus_today"] = round(row["log_loss"] - today["log_loss"], 4)
    for name, row in cv.items():
        if "log_loss" in row:
            ab = {k: row[k]["ab_accuracy"] for k in ("decisive", "shorter_won", "longer_won")}
            print(f"{name:<40} log loss {row['log_loss']:.4f}  A-vs-B right: decisive {ab['decisive']:.3f}  "
                  f"shorter won {ab['shorter_won']:.3f}  longer won {ab['longer_won']:.3f}")
    for name, row in out_of_domain.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(json.dumps({"bench": "style_control", "data": str(sample), "folds": opts.folds, "seed": opts.seed,
                      "models": opts.models, "rows": int(len(frame)), "seconds": round(time.time() - start, 1),
                      "cv": cv,
                      "out_of_domain_pairwise": out_of_domain}))


if __name__ == "__main__":
    main()
