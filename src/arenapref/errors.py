"""User-facing errors: one line saying what is wrong, where (file / row / column) and what to do; the CLI
prints it and exits with status 2."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with a user's input: the message is one line saying what, where and what to do."""
