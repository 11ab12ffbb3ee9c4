"""Matplotlib helpers shared by the leaderboard chart and the report: headless backend, atomic PNG writes.

matplotlib is imported on the first figure, not with this module: it costs ~0.35 s, which every command line
(`arenapref --help` included) would otherwise pay.
"""

from __future__ import annotations

import functools
from pathlib import Path

from arenapref.data.tables import atomic_path


@functools.cache
def pyplot():
    """matplotlib.pyplot on the headless Agg backend (no screen on servers and CI)."""
    import matplotlib  # lazy: see the module docstring

    matplotlib.use("Agg")  # must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure as PNG through a temporary file and a rename, then close it."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return path
