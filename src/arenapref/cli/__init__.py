"""The `arenapref` command line (typer)."""

from arenapref.cli.app import app, main

__all__ = ["app", "main"]
