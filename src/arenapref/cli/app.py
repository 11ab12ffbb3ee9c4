"""The `arenapref` command line: one typer app, its commands from one module per group (thin: parse, call the
library, print). User errors are one line, exit code 2."""

from __future__ import annotations

import sys

import typer

from arenapref.cli import compare, export, judges, labeling, predict, ratings, report, serve, train
from arenapref.cli.common import err_console, round_rows
from arenapref.cli.options import OneLineErrors
from arenapref.errors import DataError

__all__ = ["app", "main", "round_rows"]  # round_rows: its old import path

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict which of two chatbot responses a human prefers (A wins / B wins / tie).")

# In the order `arenapref --help` lists them.
app.command(cls=OneLineErrors)(train.train)
app.command(cls=OneLineErrors)(train.cv)
app.command()(predict.ensemble)
app.command()(predict.evaluate)
app.command()(predict.predict)
app.command()(compare.compare)
app.command()(train.split)
app.command()(labeling.label)
app.command()(export.export)
app.command()(serve.serve)
app.command()(ratings.leaderboard)
app.command()(labeling.select)
app.command("auto-label")(labeling.auto_label)
app.command()(report.report)
app.command()(judges.models)


def main() -> None:
    try:
        app()
    except DataError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:  # not about a file: a bug or a system fault, keep the traceback
            raise
        # A file the user named or a disk that filled up: one line, not a traceback.
        err_console.print(f"error: {exc.filename}: {exc.strerror or exc}", markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
