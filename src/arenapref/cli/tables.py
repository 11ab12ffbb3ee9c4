"""The rich tables the commands print: metrics, pairwise accuracy, cross-validation folds, leaderboards."""

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
