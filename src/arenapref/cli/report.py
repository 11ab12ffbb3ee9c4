"""report: an HTML report on a model and labelled rows, and / or a selection campaign's learning curves."""

from __future__ import annotations

from pathlib import Path

import typer

from arenapref.api import Judge
from arenapref.cli.common import console, quiet_libraries
from arenapref.data.tables import check_output_dir, load_frame
from arenapref.errors import DataError
from arenapref.evaluation.report import load_campaign, write_report
from arenapref.models.directory import check_model_dir
from arenapref.ratings.report import boards_section


def report(
    output: Path = typer.Option(..., help="Directory for index.html and its PNG figures."),
    model: Path | None = typer.Option(None, help="Model directory written by `arenapref train`."),
    data: Path | None = typer.Option(None, help="Labelled file to analyse (with --model)."),
    campaign: Path | None = typer.Option(None, help="Output directory of `python bench/active.py --output`: "
                                                       "adds its learning curves and labels saved per strategy."),
    worst: int = typer.Option(20, help="How many worst-predicted rows to list."),
):
    """An HTML report: metrics, reliability before/after calibration, confusion matrix, log loss by length and
    turns, position bias, worst-predicted rows, leaderboards from the votes and from the judge (when the rows name
    model_a / model_b); and / or a selection campaign's learning curves."""
    if (model is None) != (data is None):
        raise DataError("report: --model and --data go together (a model and the labelled rows to judge it on)")
    if model is None and campaign is None:
        raise DataError("report: nothing to report; pass --model and --data, and / or --campaign DIR")
    if model is not None:
        check_model_dir(model)
    check_output_dir(output)
    frame = load_frame(data, require_labels=True) if data is not None else None
    curves = load_campaign(campaign) if campaign is not None else None
    judge = None
    if model is not None:
        quiet_libraries()
        judge = Judge.from_pretrained(model)
    path = write_report(judge, frame, output, model_name=str(model or ""), data_name=str(data or ""), worst=worst,
                        campaign=curves, more=boards_section)
    console.print(f"wrote {path}")
