"""leaderboard: Bradley-Terry ratings of the models in a battles file, from votes and / or a judge's predictions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from arenapref.cli.common import console, err_console
from arenapref.cli.tables import leaderboard_table
from arenapref.data.tables import check_output_dir, write_csv_atomic
from arenapref.errors import DataError
from arenapref.ratings.categories import CATEGORIES
from arenapref.ratings.leaderboard import (
    BOTH_BAD,
    CI_METHODS,
    INITIAL,
    _level_name,
    category_masks,
    drop_rare_models,
    load_battles,
    load_predictions,
    write_leaderboards,
)
from arenapref.ratings.per_prompt import COMPONENTS


def leaderboard(
    data: Path = typer.Option(..., help="Battles: model_a, model_b and votes (winner_model_a/_b/_tie, or LMArena's "
                                        "winner: model_a, model_b, tie, tie (bothbad), both_bad)."),
    predictions: Path | None = typer.Option(None, help="A judge's predictions for the same battles (id + 3 "
                                                          "probabilities, as `arenapref predict` writes)."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples of the battles for the intervals "
                                                       "(--ci bootstrap; default 100, 0: no intervals)."),
    ci: str = typer.Option("bootstrap", help="bootstrap (resample the battles) or sandwich (intervals from the one "
                                             "fit's robust covariance, no resampling)."),
    ci_level: float = typer.Option(0.95, help="Coverage of the intervals (0.95: 95%); Rank (UB) uses them."),
    style_control: bool = typer.Option(False, "--style-control", help="Also rate with the responses' length and "
                                       "markdown (headers, lists, bold) taken out; reads response_a/response_b."),
    covariates: str | None = typer.Option(None, help="Numeric columns (COL1,COL2) of the battles file added to the "
                                                        "controlled fit, beside the style features."),
    weights: str | None = typer.Option(None, help="A numeric column of per-battle weights (>= 0), used by the fit "
                                                     "and carried into every bootstrap resample."),
    both_bad: str = typer.Option("tie", help="Both-bad votes (winner both_bad or tie (bothbad)): tie (count them "
                                             "as ties, as LMArena) or drop."),
    category: str | None = typer.Option(None, help="A column of the battles file: one more board per value "
                                                      "(categories/VALUE/) and category_ranks.csv."),
    categories: str | None = typer.Option(None, help=f"Built-in prompt categories, from the prompt text: all, or "
                                                        f"some of {','.join(CATEGORIES)}; a board each."),
    plots: bool = typer.Option(False, "--plots", help="Also write the win-fraction and battle-count matrices "
                                                      "(win_fraction.png, battle_count.png; needs --output)."),
    output: Path | None = typer.Option(None, help="Directory for leaderboard.csv and leaderboard.png."),
    ties: str = typer.Option("half", help="half (a tie is half a win each way, as LMSYS) or davidson."),
    anchor: str | None = typer.Option(None, help="Model fixed at 1000; default: the mean rating is 1000."),
    anchor_model: str | None = typer.Option(None, help="NAME=RATING: that model fixed at that rating (FastChat "
                                                          "pins one this way)."),
    min_battles: int = typer.Option(1, help="Leave out models with fewer battles (and their battles); per category "
                                            "too."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    per_prompt: str | None = typer.Option(None, help="A prompt: the board for it from the per-prompt model (ratings "
                                                        "that depend on the prompt's categories and embedding, "
                                                        "fitted on the battles' prompts); --output also writes the "
                                                        "model (per_prompt.json, for PromptBoard.load / route)."),
    prompt_components: int = typer.Option(COMPONENTS, help="--per-prompt: embedding components among the prompt "
                                                           "features (0: the built-in categories alone)."),
    prompt_ridge: float | None = typer.Option(None, help="--per-prompt: the ridge on the prompt weights; default: "
                                                           "chosen by 5-fold cross-validation grouped by prompt."),
):
    """Bradley-Terry ratings on the Elo scale with intervals and Rank (UB), from votes and/or a judge's
    predictions, optionally style controlled, weighted, anchored, per category, or for one prompt."""
    if per_prompt is not None:
        given = [flag for flag, value in (("--predictions", predictions), ("--style-control", style_control),
                                          ("--covariates", covariates), ("--weights", weights),
                                          ("--category", category), ("--categories", categories), ("--plots", plots),
                                          ("--anchor", anchor), ("--anchor-model", anchor_model),
                                          ("--bootstrap", bootstrap)) if value]
        if given:
            raise DataError(f"--per-prompt rates from the votes alone, with sandwich intervals; drop "
                            f"{', '.join(given)}")
        _per_prompt_board(data, per_prompt, prompt_components, prompt_ridge, output, ties, both_bad, min_battles,
                          ci_level)
        return
    if ties not in ("half", "davidson"):
        raise DataError(f"--ties {ties}: expected half or davidson")
    if ci not in CI_METHODS:
        raise DataError(f"--ci {ci}: expected {' or '.join(CI_METHODS)}")
    if bootstrap is not None and bootstrap < 0:
        raise DataError(f"--bootstrap {bootstrap}: must be 0 or more")
    if ci == "sandwich" and bootstrap:
        raise DataError(f"--ci sandwich takes its intervals from the fit, without resampling; drop --bootstrap "
                        f"{bootstrap} (or use --ci bootstrap)")
    if not 0 < ci_level < 1:
        raise DataError(f"--ci-level {ci_level}: expected a number between 0 and 1 (0.95 for 95% intervals)")
    if both_bad not in BOTH_BAD:
        raise DataError(f"--both-bad {both_bad}: expected {' or '.join(BOTH_BAD)}")
    anchor, anchor_rating = _anchor(anchor, anchor_model)
    covariate_names = _names(covariates, "--covariates")
    builtin = _builtin_categories(categories)
    if category and builtin:
        raise DataError("--category and --categories both given; pick one (a column of your own, or the built-in "
                        "prompt categories)")
    if plots and output is None:
        raise DataError("--plots writes PNG files; give --output DIR too")
    rounds = (100 if bootstrap is None else bootstrap) if ci == "bootstrap" else 0
    if output is not None:
        check_output_dir(output)
    battles = drop_rare_models(load_battles(data, style=style_control, both_bad=both_bad, weights=weights,
                                            covariates=covariate_names, category=category,
                                            prompt_categories=bool(builtin)), min_battles)
    tables = {}
    if "winner" in battles.columns:
        tables["votes"] = battles["winner"].to_numpy()
    if predictions is not None:
        tables["judge"] = load_predictions(predictions, battles["id"])
    if not tables:
        raise DataError(f"{data}: has no votes (winner_model_a/_b/_tie or winner columns) and no --predictions "
                        "were given; nothing to rate")
    masks = category_masks(battles, builtin) if category or builtin else None
    boards_per_source = len(tables) * (2 if style_control or covariate_names else 1)
    total = rounds * boards_per_source * (1 + len(masks or ()))
    with _bootstrap_progress(total) as advance:
        boards, summary = write_leaderboards(battles, tables, output, bootstrap=rounds, ties=ties, anchor=anchor,
                                             seed=seed, ci=ci, style=style_control, progress=advance,
                                             anchor_rating=anchor_rating, ci_level=ci_level, categories=masks,
                                             min_battles=min_battles, plots=plots)
    console.print(leaderboard_table(boards, summary))
    if masks:
        console.print(category_ranks_table(summary))
    if output is not None:
        console.print(f"wrote {', '.join(summary['files'])} to {output}"
                      + (" and a board per category under categories/" if masks else ""))


def _per_prompt_board(data: Path, prompt: str, components: int, ridge: float | None, output: Path | None, ties: str,
                      both_bad: str, min_battles: int, ci_level: float) -> None:
    from arenapref.ratings.per_prompt import fit_prompt_board

    if ties not in ("half", "davidson"):
        raise DataError(f"--ties {ties}: expected half or davidson")
    if components < 0:
        raise DataError(f"--prompt-components {components}: must be 0 or more")
    if ridge is not None and not ridge > 0:
        raise DataError(f"--prompt-ridge {ridge}: must be a number above 0")
    if not prompt.strip():
        raise DataError("--per-prompt: the prompt is empty")
    if output is not None:
        check_output_dir(output)
    battles = drop_rare_models(load_battles(data, both_bad=both_bad, prompt_categories=True,
                                            prompt_text=True), min_battles)
    if "winner" not in battles.columns:
        raise DataError(f"{data}: has no votes (winner_model_a/_b/_tie or winner columns); per-prompt ratings are "
                        "fitted on votes")
    board = fit_prompt_board(battles, components=components, ridge=ridge, ties=ties)
    table = board.board(prompt, level=ci_level)
    console.print(per_prompt_table(table, board, prompt, ci_level))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        board.save(output / "per_prompt.json")
        write_csv_atomic(table, output / "per_prompt_board.csv")
        console.print(f"wrote per_prompt.json, per_prompt_board.csv to {output}")


def per_prompt_table(table, board, prompt: str, level: float) -> Table:
    shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    chosen = "chosen by 5-fold CV grouped by prompt" if board.cv else "given"
    out = Table(title=f"board for the prompt {shown!r}",
                caption=f"{len(board.features.names)} prompt features ({board.features.components} embedding "
                        f"components); ridge {board.ridge:g} ({chosen}); {_level_name(level)} sandwich intervals")
    for column in ("model", "rating", f"{_level_name(level)} interval", "Rank (UB)", "battles"):
        out.add_column(column, justify="left" if column == "model" else "right")
    for row in table.itertuples():
        out.add_row(str(row.model), f"{row.rating:.1f}", f"{row.ci_low:.1f} - {row.ci_high:.1f}", str(row.rank_ub),
                    str(row.battles))
    return out


def _anchor(anchor: str | None, anchor_model: str | None) -> tuple[str | None, float]:
    """(anchor model, its rating) from --anchor MODEL (at 1000) or --anchor-model NAME=RATING."""
    if anchor is not None and anchor_model is not None:
        raise DataError("--anchor and --anchor-model both given; use one (--anchor-model NAME=RATING sets the rating)")
    if anchor_model is None:
        return anchor, INITIAL
    name, sep, value = anchor_model.rpartition("=")
    try:
        rating = float(value)
    except ValueError:
        rating = float("nan")
    if not sep or not name.strip() or rating != rating or abs(rating) == float("inf"):
        raise DataError(f"--anchor-model {anchor_model}: expected NAME=RATING, e.g. gpt-4-0613=1200")
    return name.strip(), rating


def _names(value: str | None, flag: str) -> tuple[str, ...]:
    """COL1,COL2 -> ("COL1", "COL2"), each once."""
    if value is None:
        return ()
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise DataError(f"{flag} {value}: expected column names separated by commas, e.g. COL1,COL2")
    return tuple(dict.fromkeys(names))


def _builtin_categories(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if value.strip() == "all":
        return CATEGORIES
    names = _names(value, "--categories")
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise DataError(f"--categories {value}: unknown {', '.join(unknown)}; expected all or some of "
                        f"{','.join(CATEGORIES)}")
    return names


def category_ranks_table(summary: dict) -> Table:
    """Each model's Rank (UB) overall and per category (LMArena's category view); '-' where it has no rating."""
    ranks = summary["category_ranks"]
    kind = "style-controlled " if ranks["rank"] == "style_rank_ub" else ""
    table = Table(title=f"{kind}Rank (UB) per category ({ranks['source']}; battles rated in brackets)")
    table.add_column("model")
    names = ["overall", *summary["categories"]]
    for name in names:
        battles = summary["battles"] if name == "overall" else summary["categories"][name]["rated_battles"]
        table.add_column(f"{name}\n({battles})", justify="right")
    for model, row in ranks["models"].items():
        table.add_row(model, *("-" if row.get(name) is None else str(row[name]) for name in names))
    skipped = [f"{name} ({entry['skipped']})" for name, entry in summary["categories"].items() if "skipped" in entry]
    if skipped:
        table.caption = "no board: " + "; ".join(skipped)
    return table


class _bootstrap_progress:
    """A rich progress bar on stderr over `total` bootstrap rounds (nothing when there are none); the context
    yields the callback the library calls with each batch of finished rounds."""

    def __init__(self, total: int):
        self.total = total
        self.progress = None

    def __enter__(self):
        if self.total <= 0 or not err_console.is_terminal:  # a log file gets no bar (and no stray blank line)
            return None
        self.progress = Progress(TextColumn("bootstrap"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=err_console, transient=True)
        self.progress.start()
        task = self.progress.add_task("bootstrap", total=self.total)
        return lambda rounds: self.progress.advance(task, rounds)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False
