"""The rich tables the commands print: metrics, pairwise accuracy, position consistency, one comparison and its
diagnostics, cross-validation folds, leaderboards."""

from __future__ import annotations

import math

from rich.table import Table

METRIC_COLUMNS = ("log_loss", "accuracy", "f1_macro", "ece")


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("n", "log_loss", "prior_log_loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"):
        value = metrics[key]
        table.add_row(key, str(value) if isinstance(value, int) else f"{value:.4f}")
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "predicted A", "predicted B", "predicted tie"):
        per_class.add_column(col, justify="right")
    for j, name in enumerate(("model_a", "model_b", "tie")):
        per_class.add_row(name, *(f"{metrics[f'{m}_{name}']:.4f}" for m in ("precision", "recall", "f1")),
                          *(str(v) for v in metrics["confusion"][j]))
    outer = Table.grid(padding=1)
    outer.add_row(table)
    outer.add_row(per_class)
    return outer


def pairwise_table(pairwise: dict) -> Table:
    """RewardBench-style accuracy (and the longer-answer baseline), overall and per subset."""
    how = "score(chosen) > score(rejected)" if pairwise["by"] == "score" else "P(chosen) > P(rejected)"
    table = Table(title=f"pairwise accuracy: {how}",
                  caption="rows with a winner; strictly above (equal counts as wrong, as in RewardBench)")
    for col, justify in (("subset", "left"), ("rows", "right"), ("accuracy", "right"), ("longer wins", "right")):
        table.add_column(col, justify=justify)
    for name, part in [*pairwise.get("subsets", {}).items(), ("all", pairwise)]:
        table.add_row(name, str(part["rows"]), f"{part['accuracy']:.4f}", f"{part['longer_wins']:.4f}")
    return table


def consistency_table(consistency: dict, tta: str) -> Table:
    """evaluation.metrics.position_consistency: top-label flip rate and mean |difference| when A and B trade places."""
    what = "averaged answer vs the averaged answer of the swapped rows" if tta == "swap" else "each order alone"
    table = Table(title=f"position consistency ({consistency['rows']} rows; {what})",
                  caption="A and B exchanged, the answer mapped back: 0 means the order never matters")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("top label flips", f"{consistency['flip_rate']:.4f}")
    table.add_row("mean |P(A) - P(A, swapped)|", f"{consistency['mean_abs_diff']:.4f}")
    for name, value in consistency["per_class"].items():
        table.add_row(f"mean |difference|, {name}", f"{value:.4f}")
    return table


def style_table(coefficients: list[dict], style: str) -> Table:
    """A style-term model's coefficients (models/style_term.py) with their intervals, and whether they were used."""
    used = "left out (--style controlled)" if style == "controlled" else "used (--style as-voted)"
    table = Table(title=f"style term: log-odds of A winning per standard deviation; {used}",
                  caption="covariate: (f_a - f_b) / (f_a + f_b), standardised, as the leaderboard's style control")
    parts = any("part" in row for row in coefficients)  # a hybrid: one style term per part
    for col, justify in (("part", "left"),) * parts + (("feature", "left"), ("coef", "right"), ("se", "right"),
                                                       ("95% interval", "right")):
        table.add_column(col, justify=justify)
    for row in coefficients:
        table.add_row(*([row["part"]] if parts else []), row["feature"], f"{row['coef']:+.4f}", f"{row['se']:.4f}",
                      f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    return table


def diagnostics_summary_table(summary: dict) -> Table:
    """evaluation.metrics.diagnostics_summary: how many rows were cut, lost rounds, or carry each warning."""
    table = Table(title=f"diagnostics ({summary['rows']} rows)")
    table.add_column("rows with")
    table.add_column("count", justify="right")
    table.add_row("text cut to fit the model", str(summary["truncated"]))
    table.add_row("earlier rounds or turns left out", str(summary["dropped"]))
    for name, count in summary["warnings"].items():
        table.add_row(name.replace("_", " "), str(count))
    if "top_label_flips" in summary:
        table.add_row("top label flipping with the order", str(summary["top_label_flips"]))
    return table


def decision_table(decision: dict, title: str) -> Table:
    """One comparison (`Judge.decide`): the three probabilities, the verdict as the caption."""
    table = Table(title=title, caption=f"verdict: {decision['verdict']}")
    table.add_column("outcome")
    table.add_column("probability", justify="right")
    for key, name in (("winner_model_a", "A wins"), ("winner_model_b", "B wins"), ("winner_tie", "tie")):
        table.add_row(name, f"{decision[key]:.4f}")
    return table


def row_diagnostics_table(row: dict) -> Table:
    """One row's diagnostics (`predict_all(..., diagnostics=True)`): tokens kept / original per field and turn when
    the model reports them, what was dropped or cut, warnings, and the two orders' disagreement under swap TTA."""
    table = Table(title="diagnostics")
    table.add_column("item")
    table.add_column("value")
    for field, turns in (row.get("fields") or {}).items():
        table.add_row(f"{field} tokens kept", ", ".join(f"{t.get('kept')}/{t.get('tokens')}" for t in turns))
    for key in ("packing", "tokens", "max_length", "rounds", "rounds_dropped", "turns_dropped", "truncated"):
        if key in row:
            value = row[key]
            text = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            table.add_row(key.replace("_", " "), text)
    table.add_row("warnings", ", ".join(row.get("warnings", ())) or "none")
    if "swap" in row:
        swap = row["swap"]
        diffs = ", ".join(f"{key.removeprefix('winner_')} {value:.4f}" for key, value in swap.items()
                          if key.startswith("winner_"))
        table.add_row("|given - swapped| per class", diffs)
        table.add_row("top label flips with the order", "yes" if swap["top_label_flips"] else "no")
    return table


def cv_table(result: dict, title: str) -> Table:
    """One row per fold and the mean ± std over the folds."""
    table = Table(title=title)
    table.add_column("fold", justify="right")
    for key in ("rows", *METRIC_COLUMNS):
        table.add_column(key, justify="right")
    for m in result["per_fold"]:
        table.add_row(str(m["fold"] + 1), str(m["rows"]), *(f"{m[k]:.4f}" for k in METRIC_COLUMNS))
    summary = result["summary"]
    table.add_row("mean ± std", str(result["rows"]),
                  *(f"{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in METRIC_COLUMNS))
    return table


def leaderboard_table(boards: dict, summary: dict) -> Table:
    """Rating, standard error, interval and Rank (UB) per source (and style controlled), best first."""
    names = list(boards)
    tables = {name: board.table for name, board in boards.items()}
    first = tables[names[0]]
    styled = "style" in summary
    level = f"{100 * summary.get('ci_level', 0.95):g}%"
    controlled = "style ctl" if summary.get("style_control") else "cov. ctl"
    where = f"{summary['category']}: " if "category" in summary else ""
    table = Table(title=f"{where}Bradley-Terry ratings, Elo scale ({summary['battles']} battles, ties: "
                        f"{summary['ties']}, {level} intervals: {summary['ci']})")
    table.add_column("model")
    for name in names:
        table.add_column(f"{name} rating", justify="right")
        table.add_column("SE", justify="right")
        table.add_column(f"{level} CI", justify="right", no_wrap=True)
        table.add_column("Rank (UB)", justify="right")
        if styled:
            table.add_column(f"{name} {controlled}", justify="right")
            table.add_column("SE", justify="right")
            table.add_column(f"{level} CI", justify="right", no_wrap=True)
            table.add_column("Rank (UB)", justify="right")
            table.add_column("rank (change)", justify="right")
    table.add_column("battles", justify="right")
    indexed = {name: board.set_index("model") for name, board in tables.items()}

    def interval(low, high):
        return "-" if math.isnan(low) else f"[{low:.0f}, {high:.0f}]"

    def error(se):
        return "-" if math.isnan(se) else f"{se:.1f}"

    for _, row in first.iterrows():
        cells = []
        for name in names:
            r = indexed[name].loc[row["model"]]
            cells += [f"{r['rating']:.0f}", error(r["se"]), interval(r["ci_low"], r["ci_high"]),
                      str(int(r["rank_ub"]))]
            if styled:
                cells += [f"{r['style_rating']:.0f}", error(r["style_se"]),
                          interval(r["style_ci_low"], r["style_ci_high"]), str(int(r["style_rank_ub"])),
                          f"{int(r['style_rank'])} ({int(r['rank'] - r['style_rank']):+d})"]
        table.add_row(row["model"], *cells, str(row["battles"]))
    captions = []
    if "spearman" in summary:
        captions.append(f"rank correlation, votes vs judge: Spearman {summary['spearman']:.3f}, "
                        f"Kendall {summary['kendall']:.3f} ({summary['models']} models)")
    if "both_bad" in summary:
        captions.append(f"both-bad votes: {summary['both_bad']['battles']} "
                        f"{'counted as ties' if summary['both_bad']['counted_as'] == 'tie' else 'left out'}")
    if styled:
        for name, board in boards.items():
            coefs = ", ".join(f"{c.feature} {c.coef:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
                              if not math.isnan(c.ci_low) else f"{c.feature} {c.coef:+.3f}"
                              for c in board.style.itertuples())
            captions.append(f"{'style' if summary.get('style_control') else 'covariate'} coefficients ({name}, "
                            f"log-odds per sd): {coefs}")
    if styled:
        what = "length and markdown" + (" and " if summary.get("covariates") else "") if summary.get(
            "style_control") else ""
        captions.append(f"{controlled}: the {'style-' if summary.get('style_control') else 'covariate-'}controlled "
                        f"rating ({what}{', '.join(summary.get('covariates', []))} taken out)")
    captions.append("Rank (UB): 1 + the number of models whose interval lies wholly above this model's")
    table.caption = "\n".join(captions)
    return table
