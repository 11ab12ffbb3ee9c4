"""leaderboard: Bradley-Terry ratings of the models in a battles file, from votes and / or a judge's predictions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from arenapref.cli.common import console, err_console
from arenapref.cli.tables import leaderboard_table
from arenapref.data.tables import check_output_dir
from arenapref.errors import DataError
from arenapref.ratings.leaderboard import (
    CI_METHODS,
    drop_rare_models,
    load_battles,
    load_predictions,
    write_leaderboards,
)


def leaderboard(
    data: Path = typer.Option(..., help="Battles: model_a, model_b and votes (winner_model_a/_b/_tie or winner)."),
    predictions: Path | None = typer.Option(None, help="A judge's predictions for the same battles (id + 3 "
                                                          "probabilities, as `arenapref predict` writes)."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples of the battles for the 95% intervals "
                                                       "(--ci bootstrap; default 100, 0: no intervals)."),
    ci: str = typer.Option("bootstrap", help="bootstrap (resample the battles) or sandwich (intervals from the one "
                                             "fit's robust covariance, no resampling)."),
    style_control: bool = typer.Option(False, "--style-control", help="Also rate with the responses' length and "
                                       "markdown (headers, lists, bold) taken out; reads response_a/response_b."),
    output: Path | None = typer.Option(None, help="Directory for leaderboard.csv and leaderboard.png."),
    ties: str = typer.Option("half", help="half (a tie is half a win each way, as LMSYS) or davidson."),
    anchor: str | None = typer.Option(None, help="Model fixed at 1000; default: the mean rating is 1000."),
    min_battles: int = typer.Option(1, help="Leave out models with fewer battles (and their battles)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
):
    """Bradley-Terry ratings on the Elo scale with 95% intervals, from votes and/or a judge's predictions,
    optionally style controlled."""
    if ties not in ("half", "davidson"):
        raise DataError(f"--ties {ties}: expected half or davidson")
    if ci not in CI_METHODS:
        raise DataError(f"--ci {ci}: expected {' or '.join(CI_METHODS)}")
    if bootstrap is not None and bootstrap < 0:
        raise DataError(f"--bootstrap {bootstrap}: must be 0 or more")
    if ci == "sandwich" and bootstrap:
        raise DataError(f"--ci sandwich takes its intervals from the fit, without resampling; drop --bootstrap "
                        f"{bootstrap} (or use --ci bootstrap)")
    rounds = (100 if bootstrap is None else bootstrap) if ci == "bootstrap" else 0
    if output is not None:
        check_output_dir(output)
    battles = drop_rare_models(load_battles(data, style=style_control), min_battles)
    tables = {}
    if "winner" in battles.columns:
        tables["votes"] = battles["winner"].to_numpy()
    if predictions is not None:
        tables["judge"] = load_predictions(predictions, battles["id"])
    if not tables:
        raise DataError(f"{data}: has no votes (winner_model_a/_b/_tie or winner columns) and no --predictions "
                        "were given; nothing to rate")
    total = rounds * len(tables) * (2 if style_control else 1)
    with _bootstrap_progress(total) as advance:
        boards, summary = write_leaderboards(battles, tables, output, bootstrap=rounds, ties=ties, anchor=anchor,
                                             seed=seed, ci=ci, style=style_control, progress=advance)
    console.print(leaderboard_table(boards, summary))
    if output is not None:
        console.print(f"wrote {', '.join(summary['files'])} to {output}")


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
