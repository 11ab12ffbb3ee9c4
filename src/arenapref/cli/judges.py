"""models: the judges shipped inside the package, used by name wherever a model directory is."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from arenapref.cli.common import console
from arenapref.models.directory import DEFAULT_JUDGE, judge_catalog


def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object per judge instead of a table.")):
    """List the judges shipped inside the package: `--model NAME` (or Judge.from_pretrained(NAME)) loads one
    without training; compare, predict and serve use the default one when no --model is given."""
    rows = judge_catalog()
    if as_json:
        for row in rows:
            console.print_json(json.dumps(row))
        return
    table = Table(title="shipped judges (--model NAME)")
    for column in ("name", "size", "model", "for", "measured"):
        table.add_column(column, overflow="fold")
    for row in rows:
        figures = row.get("figures", {})
        measured = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
        name = row["name"] + (" (default)" if row["name"] == DEFAULT_JUDGE else "")
        table.add_row(name, f"{row['bytes'] / 1e6:.1f} MB", f"{row['model_type']}, {row['backbone']}",
                      row.get("for", ""), measured)
    console.print(table)
