"""The style-term head at the linear probe, on frozen vectors: how much of its as-voted cost and of its controlled
signal comes from the head's form and how much from the --extra rows' text, in minutes instead of bench/style_control's
hours (no fine-tuning, one encoding pass).

    python bench/style_probe.py [--data-dir ../shared/data] [--folds 5] [--seed 42] [--no-extra]

The hybrid's neural part before fine-tuning: all-MiniLM-L6-v2 dual tower (max length 128, the default), pooled
vectors of arena_sample.csv through the frozen encoder once; per grouped fold (the folds of `arenapref cv`), the
probe exactly as `train` runs it (C and pooled weight by its own grouped CV on the training rows): today's 3-way head
(training/probe.choose_probe), the style-term head (probe.StyleProbe), and the style-term head whose A-vs-B logit
also learns from the decisive rows of arena_extra.csv (their vectors cached across runs: training/neural.
cached_vectors; extra rows sharing a prompt with the held-out fold left out, as `cv` does). Out-of-fold log loss and
A-vs-B accuracy on the decisive rows where the shorter / longer answer won, as voted and controlled (style_control.py's
summary), and each log loss split into its tie part (-log P(tie or not)) and its A-vs-B part (-log P(winner | not a
tie), decisive rows, averaged over all rows). Where the style-term head's as-voted cost comes from: two more factored
heads that read every side feature in their A-vs-B logit (length and markdown unmasked), without a style term and
with one (diagnostics, as voted only). Out of domain: the same heads fitted on every arena_sample.csv row (+ the
extra rows), pairwise accuracy on hh_rlhf_harmless_test.csv and pandalm_human_test.csv (P(chosen) > P(rejected),
ties left out). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from arenapref.config import TrainConfig  # noqa: E402
from arenapref.data.features import feature_stats, head_features, standardize  # noqa: E402
from arenapref.data.split import prompt_groups  # noqa: E402
from arenapref.data.tables import load_frame  # noqa: E402
from arenapref.data.text import Renderer, TextSettings, encode_rows  # noqa: E402
from arenapref.evaluation.metrics import softmax  # noqa: E402
from arenapref.models.families import DUAL_TOWER  # noqa: E402
from arenapref.models.style_term import StyleTerm, decisive_style, fit_style_term, style_ratios  # noqa: E402
from arenapref.training.cv import grouped_folds  # noqa: E402
from arenapref.training.neural import frozen_pooled  # noqa: E402
from arenapref.training.probe import ProbeData, StyleProbe, choose_probe, fit_logistic  # noqa: E402
from style_control import longer_rule, pairwise, summary  # noqa: E402


def without_style_term(probe: StyleProbe, groups: np.ndarray, seed: int):
    """The factored head's probe with no style term (a zero one, never refitted): (params, the zero term)."""
    width = probe.ratios.shape[1]
    zero = StyleTerm(np.zeros(width), np.zeros(width), np.ones(width), 0)
    chosen = probe.choose(groups, zero, seed=seed, log=lambda *a, **k: None)
    rows = np.arange(len(probe.data.labels))
    x, y, offset = probe.direction_rows(chosen["ab"]["scale"], rows, zero.logit(probe.all_ratios()))
    w, _ = fit_logistic(x, y, chosen["ab"]["C"], offset, intercept=False)
    w_tie, b_tie = probe.fit_tie(chosen["tie"]["C"], chosen["tie"]["scale"], rows)
    return probe.head(w, chosen["ab"]["scale"], w_tie, b_tie, chosen["tie"]["scale"]), zero


def log_loss_parts(labels: np.ndarray, probs: np.ndarray) -> dict:
    """-log P(label) = -log P(tie or not) - [decisive] log P(winner | not a tie), each averaged over all rows."""
    p = np.clip(probs, 1e-15, 1)
    tie = np.where(labels == 2, np.log(p[:, 2]), np.log1p(-np.minimum(p[:, 2], 1 - 1e-15)))
    decisive = labels < 2
    winner = np.log(p[decisive, labels[decisive]] / (1 - p[decisive, 2]))
    return {"tie_part": round(float(-tie.mean()), 4), "ab_part": round(float(-winner.sum() / len(labels)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-extra", action="store_true")
    opts = parser.parse_args()
    start = time.time()
    quiet = lambda *a, **k: None  # noqa: E731
    frame = load_frame(opts.data_dir / "arena_sample.csv", require_labels=True)
    cfg = TrainConfig(data="-", output="-", model="dual-tower", style_term=True)
    tokenizer = DUAL_TOWER.tokenizer(cfg.backbone)
    model = DUAL_TOWER.build(cfg, tokenizer).eval()
    renderer = Renderer(tokenizer, TextSettings(max_length=cfg.max_length))

    def vectors(rows, cache: bool) -> np.ndarray:
        with torch.no_grad():
            return frozen_pooled(model, encode_rows(renderer, "pair", rows), None, tokenizer.pad_token_id, "cpu",
                                 cache=cache)[0]

    pooled = vectors(frame, False)
    labels, features, ratios = frame["label"].to_numpy(), head_features(frame), style_ratios(frame)
    extra = None
    if not opts.no_extra:
        extra = load_frame(opts.data_dir / "arena_extra.csv", require_labels=True)
        extra = extra[extra["label"].to_numpy() < 2].reset_index(drop=True)
        extra_pooled, extra_features, extra_ratios = vectors(extra, True), head_features(extra), style_ratios(extra)
        extra_groups = prompt_groups(extra)
        print(f"encoded {len(extra)} decisive extra rows, {time.time() - start:.0f}s", file=sys.stderr)
    names = ["today", "factored all features", "factored all features+style_term", "style_term as-voted",
             "style_term controlled"]
    names += [] if extra is None else ["style_term+extra as-voted", "style_term+extra controlled"]
    groups = prompt_groups(frame)

    def heads(train, held_pooled, held_features, held_ratios, keep) -> dict:
        """Every head fitted on the sample rows `train` (+ the extra rows `keep`), its probabilities on held rows."""
        stats = feature_stats(features[train])
        std, held_std = standardize(features[train], *stats), standardize(held_features, *stats)
        data = ProbeData("pair", pooled[train], labels[train], std)
        held_data = data.rows_like(held_pooled, np.zeros(len(held_pooled), dtype=np.int64), held_std)
        n = np.arange(len(held_pooled))
        chosen = choose_probe(data, groups[train], seed=opts.seed, log=quiet)
        W, b = data.fit(chosen["C"], chosen["scale"], np.arange(len(train)))
        out = {"today": softmax(held_data.design(chosen["scale"], n)[0] @ W.T + b)}
        # diagnostics: the factored head with length and markdown unmasked, without and with the style term
        unmasked, held_unmasked = StyleProbe(data, ratios[train]), StyleProbe(held_data, held_ratios)
        unmasked.data.features, held_unmasked.data.features = std, held_std
        params, zero = without_style_term(unmasked, groups[train], opts.seed)
        out["factored all features"] = held_unmasked.predict(params, n, zero.logit(held_ratios))
        alone = fit_style_term(*decisive_style(ratios[train], labels[train]))
        params, term = unmasked.fit(unmasked.choose(groups[train], alone, seed=opts.seed, log=quiet), alone, log=quiet)
        out["factored all features+style_term"] = held_unmasked.predict(params, n, term.logit(held_ratios))
        for name, rows in [("style_term", None)] + ([] if extra is None else [("style_term+extra", keep)]):
            extra_data = None if rows is None else data.rows_like(
                extra_pooled[rows], extra["label"].to_numpy()[rows], standardize(extra_features[rows], *stats))
            probe = StyleProbe(data, ratios[train], extra_data, None if rows is None else extra_ratios[rows])
            extra_labels = np.zeros(0) if rows is None else extra["label"].to_numpy()[rows]
            alone = fit_style_term(*decisive_style(probe.all_ratios(), np.concatenate([labels[train], extra_labels])))
            params, term = probe.fit(probe.choose(groups[train], alone, seed=opts.seed, log=quiet), alone, log=quiet)
            held_probe = StyleProbe(held_data, held_ratios)
            out[f"{name} as-voted"] = held_probe.predict(params, n, term.logit(held_ratios))
            out[f"{name} controlled"] = held_probe.predict(params, n, None)
        return out

    oof = {name: np.zeros((len(frame), 3)) for name in names}
    for k, (train, held) in enumerate(grouped_folds(frame, opts.folds, opts.seed)):
        # as `cv` does: no extra row shares a prompt with a held-out row
        keep = None if extra is None else ~np.isin(extra_groups, groups[held])
        for name, probs in heads(train, pooled[held], features[held], ratios[held], keep).items():
            oof[name][held] = probs
        print(f"fold {k + 1}/{opts.folds} done, {time.time() - start:.0f}s", file=sys.stderr)
    out_of_domain = {}
    everything = np.arange(len(frame))
    for ood_name in ("hh_rlhf_harmless", "pandalm_human"):
        ood = load_frame(opts.data_dir / f"{ood_name}_test.csv", require_labels=True)
        probs = heads(everything, vectors(ood, False), head_features(ood), style_ratios(ood),
                      None if extra is None else np.ones(len(extra), bool))
        out_of_domain[ood_name] = {"longer_rule": longer_rule(ood), **{n: pairwise(ood, p) for n, p in probs.items()}}
        print(f"out of domain: {ood_name} done, {time.time() - start:.0f}s", file=sys.stderr)
    cv = {name: {**summary(frame, probs), **log_loss_parts(labels, probs)} for name, probs in oof.items()}
    for name, row in cv.items():
        ab = {k: row[k]["ab_accuracy"] for k in ("decisive", "shorter_won", "longer_won")}
        print(f"{name:<34} log loss {row['log_loss']:.4f} (tie part {row['tie_part']:.4f}, A-vs-B part "
              f"{row['ab_part']:.4f})  A-vs-B right: decisive {ab['decisive']:.3f}  shorter won "
              f"{ab['shorter_won']:.3f}  longer won {ab['longer_won']:.3f}")
    for name, row in out_of_domain.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(json.dumps({"bench": "style_probe", "folds": opts.folds, "seed": opts.seed, "rows": int(len(frame)),
                      "extra_rows": 0 if extra is None else int(len(extra)),
                      "seconds": round(time.time() - start, 1), "cv": cv, "out_of_domain_pairwise": out_of_domain}))


if __name__ == "__main__":
    main()
