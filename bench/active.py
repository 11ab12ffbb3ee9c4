"""Active-learning benchmark: a simulated annotation campaign per selection strategy, on real labelled battles.

    python bench/active.py [--data ../shared/data/arena_sample.csv] [--seeds 5] [--output runs/active]

A fixed prompt-grouped held-out part (--heldout-fraction, split seed --split-seed) is set aside once; the rest is
the pool, whose labels sit in an Oracle (arenapref.campaign) that reveals only the ids a strategy asks for. Each
campaign starts from --seed-size random pool rows, then repeats "train the gbdt family (as `arenapref train
--model gbdt` does), choose --batch-size rows, reveal their labels" up to --budget labels, scoring every round on the
held-out part. Every strategy runs with the same seeds (seed s: the same seed set and gbdt seed for every
strategy). Prints the learning curves (mean over seeds), the labels each strategy needs to reach random's final
log loss (interpolated on the mean curves), an auto-label check on the held-out part, and, as the last line, one
JSON object with `labels_saved_vs_random` per strategy. --output writes campaign.json and learning_curves.png
(`arenapref report --campaign DIR` puts them in a report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.data.split import grouped_split
from arenapref.data.tables import load_frame, write_text_atomic  # noqa: E402
from arenapref.evaluation.metrics import log_loss  # noqa: E402
from arenapref.labeling.campaign import (  # noqa: E402
    GBDTLearner,
    Oracle,
    run_campaign,
    strip_labels,
    summarize_campaigns,
)
from arenapref.labeling.strategies import STRATEGIES, confident_rows  # noqa: E402

DEFAULT_STRATEGIES = "random,entropy,margin,swap-disagreement,committee,entropy+diverse"
MAX_ERRORS = (0.25, 0.3, 0.35, 0.4)


def parse_strategies(text: str) -> list[tuple[str, str, bool]]:
    """'entropy+diverse' -> (name, base strategy, diverse)."""
    out = []
    for name in text.split(","):
        base, _, modifier = name.partition("+")
        if base not in STRATEGIES or modifier not in ("", "diverse"):
            raise SystemExit(f"unknown strategy {name!r}: use {', '.join(STRATEGIES)}, optionally with +diverse")
        out.append((name, base, modifier == "diverse"))
    if "random" not in [n for n, _, _ in out]:
        raise SystemExit("the strategies must include random (the baseline)")
    return out


def auto_label_check(learner, pool, labels, heldout, heldout_labels, seeds) -> list[dict]:
    """Auto-labelling the held-out part with a gbdt trained on the whole labelled pool: at each --max-error, how
    many rows are picked, their expected error (mean 1 - max probability) and their realised error."""
    rows = []
    probs = [learner.fit(pool, labels, seed).predict_proba(heldout) for seed in seeds]
    for max_error in MAX_ERRORS:
        picked, expected, realised = [], [], []
        for p in probs:
            idx, exp_err, _ = confident_rows(p, max_error)
            picked.append(len(idx))
            if len(idx):
                expected.append(exp_err)
                realised.append(float((p[idx].argmax(1) != heldout_labels[idx]).mean()))
        rows.append({"max_error": max_error, "rows": float(np.mean(picked)),
                     "share": float(np.mean(picked)) / len(heldout),
                     "expected_error": float(np.mean(expected)) if expected else None,
                     "realised_error": float(np.mean(realised)) if realised else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "arena_sample.csv")
    parser.add_argument("--heldout-fraction", type=float, default=0.3)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed-size", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--budget", type=int, default=400, help="labels at the end of each campaign")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                        help=f"comma-separated; each one of {', '.join(STRATEGIES)}, optionally +diverse")
    parser.add_argument("--committee", type=int, default=4, help="committee members (grouped folds of the labels)")
    parser.add_argument("--calibration", default="oof", choices=("oof", "train"),
                        help="oof: temperature from out-of-fold predictions every round (default); train: as "
                             "`arenapref train` (a validation part, no temperature below 334 labels)")
    parser.add_argument("--output", type=Path, default=None, help="directory for campaign.json and learning_curves.png")
    opts = parser.parse_args()
    strategies = parse_strategies(opts.strategies)
    if opts.output is not None:
        opts.output.mkdir(parents=True, exist_ok=True)

    start = time.time()
    frame = load_frame(opts.data, require_labels=True)
    pool_part, heldout = grouped_split(frame, opts.heldout_fraction, opts.split_seed)
    heldout_labels = heldout["label"].to_numpy()
    pool = strip_labels(pool_part)
    learner = GBDTLearner(committee=opts.committee, calibration=opts.calibration)
    learner.features(pool), learner.features(heldout)  # computed once, shared by every campaign
    features = lambda rows: _matrix(learner, rows)  # the diversity space: the cached gbdt features
    seeds = list(range(opts.seeds))
    print(f"{len(pool)} pool rows, {len(heldout)} held-out rows (prompt-grouped, split seed {opts.split_seed}); "
          f"seed set {opts.seed_size}, batches of {opts.batch_size}, up to {opts.budget} labels, {len(seeds)} seeds",
          file=sys.stderr)

    runs, seconds = {}, {}
    truth = pool_part.set_index("id")["label"]
    tie_share = {name: [] for name, _, _ in strategies}
    for name, base, diverse in strategies:
        t0 = time.time()
        runs[name] = []
        for seed in seeds:
            oracle = Oracle(pool_part["id"], pool_part["label"])
            rounds = run_campaign(pool, oracle, heldout, heldout_labels, learner, base, opts.seed_size,
                                  opts.batch_size, opts.budget, seed=seed, diverse=diverse, features=features)
            assert len(oracle.asked) == rounds[-1]["labels"]  # the oracle revealed exactly the labels used
            runs[name].append([{k: r[k] for k in ("labels", "log_loss", "accuracy")} for r in rounds])
            # After the campaign, not inside it: what kind of battles the strategy asked for (share of ties).
            chosen = oracle.asked[opts.seed_size:]
            tie_share[name].append(float((truth.loc[chosen] == 2).mean()) if chosen else float("nan"))
        seconds[name] = round(time.time() - t0, 1)
        print(f"{name}: final log loss {np.mean([s[-1]['log_loss'] for s in runs[name]]):.4f} ({seconds[name]}s)",
              file=sys.stderr)

    summary = summarize_campaigns(runs)
    for name in summary["strategies"]:
        summary["strategies"][name]["acquired_tie_share"] = float(np.nanmean(tie_share[name]))
    prior = np.bincount(pool_part["label"], minlength=3) / len(pool_part)
    prior_loss = log_loss(heldout_labels, np.tile(prior, (len(heldout), 1)))
    full = [log_loss(heldout_labels, learner.fit(pool, pool_part["label"].to_numpy(), s).predict_proba(heldout))
            for s in seeds]
    auto = auto_label_check(learner, pool, pool_part["label"].to_numpy(), heldout, heldout_labels, seeds)
    campaign = {
        "kind": "arenapref-active-campaign", "version": 1, "family": "gbdt", "data": str(opts.data),
        "pool_rows": len(pool), "heldout_rows": len(heldout), "heldout_fraction": opts.heldout_fraction,
        "split_seed": opts.split_seed, "seed_size": opts.seed_size, "batch_size": opts.batch_size,
        "budget": opts.budget, "seeds": seeds, "committee": opts.committee, "calibration": opts.calibration,
        **summary,
        "pool_tie_share": float((pool_part["label"] == 2).mean()), "prior_log_loss": prior_loss,
        "full_pool_log_loss": float(np.mean(full)), "auto_label": auto,
        "seconds_per_strategy": seconds, "seconds": round(time.time() - start, 1),
    }

    labels = summary["strategies"]["random"]["labels"]
    names = list(summary["strategies"])
    print("held-out log loss by labels used (mean over seeds)")
    print(f"{'labels':>7} " + " ".join(f"{n[:17]:>17}" for n in names))
    for i, n_labels in enumerate(labels):
        print(f"{n_labels:>7} " + " ".join(f"{summary['strategies'][n]['log_loss_mean'][i]:>17.4f}" for n in names))
    print(f"target: random's final log loss {summary['target_log_loss']:.4f} at {summary['target_labels']} labels; "
          f"constant prior {prior_loss:.4f}; all {len(pool)} pool labels {np.mean(full):.4f}")
    print(f"{'strategy':<18} {'final':>7} {'labels to target':>16} {'saved':>6} {'final - random':>16} "
          f"{'rounds - random':>16} {'ties asked':>10}")
    pm = lambda mean, se: f"{mean:+.4f}" + ("" if se is None else f"±{se:.4f}")
    for n in names:
        need, saved, curve = summary["labels_needed"][n], summary["labels_saved_vs_random"][n], summary["strategies"][n]
        vs = curve["vs_random"]
        print(f"{n:<18} {curve['final_log_loss']:>7.4f} {'not reached' if need is None else f'{need:.0f}':>16} "
              f"{'-' if saved is None else f'{saved:g}':>6} {pm(vs['final_mean'], vs['final_se']):>16} "
              f"{pm(vs['rounds_mean'], vs['rounds_se']):>16} {curve['acquired_tie_share']:>10.1%}")
    print(f"(final / rounds - random: paired by seed, mean ± s.e.; rounds = mean over the rounds after the seed set; "
          f"ties asked: share of ties among the labels a strategy chose, pool {campaign['pool_tie_share']:.1%})")
    print("labels saved against random's mean log loss at each of its budgets (- : not reached within the budget)")
    print(f"{'budget':>7} {'random':>8} " + " ".join(f"{n[:17]:>17}" for n in names if n != "random"))
    for b, row in summary["labels_saved_at"].items():
        value = summary["strategies"]["random"]["log_loss_mean"][labels.index(int(b))]
        print(f"{b:>7} {value:>8.4f} " + " ".join(f"{'-' if row[n] is None else f'{row[n]:+g}':>17}"
                                                for n in names if n != "random"))
    print(f"auto-label check on the held-out part ({len(heldout)} rows), gbdt trained on all {len(pool)} pool labels:")
    for row in auto:
        exp = "-" if row["expected_error"] is None else f"{row['expected_error']:.3f}"
        real = "-" if row["realised_error"] is None else f"{row['realised_error']:.3f}"
        print(f"  --max-error {row['max_error']:.2f}: {row['rows']:.1f} rows ({row['share']:.1%}), expected error "
              f"{exp}, realised {real}")
    print(f"total {campaign['seconds']:.0f}s")
    if opts.output is not None:
        from arenapref.evaluation.report import learning_curve_figure

        write_text_atomic(json.dumps(campaign, indent=2), opts.output / "campaign.json")
        learning_curve_figure(campaign, opts.output / "learning_curves.png")
        print(f"wrote {opts.output / 'campaign.json'} and {opts.output / 'learning_curves.png'}")
    print(json.dumps({"labels_saved_vs_random": summary["labels_saved_vs_random"],
                      "labels_needed": {k: None if v is None else round(v, 1)
                                        for k, v in summary["labels_needed"].items()},
                      "labels_saved_at": summary["labels_saved_at"],
                      "target_log_loss": round(summary["target_log_loss"], 4),
                      "target_labels": summary["target_labels"],
                      "final_log_loss": {n: round(summary["strategies"][n]["final_log_loss"], 4) for n in names},
                      "final_vs_random": {n: [round(summary["strategies"][n]["vs_random"]["final_mean"], 4),
                                              None if summary["strategies"][n]["vs_random"]["final_se"] is None else
                                              round(summary["strategies"][n]["vs_random"]["final_se"], 4)]
                                          for n in names},
                      "full_pool_log_loss": round(float(np.mean(full)), 4), "seeds": len(seeds),
                      "seconds": campaign["seconds"]}))


def _matrix(learner, rows):
    from arenapref.data.features import feature_matrix

    return feature_matrix(learner.features(rows))


if __name__ == "__main__":
    main()
