"""Matplotlib helpers shared by the leaderboard chart and the report: headless backend, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI; must precede pyplot's import

import matplotlib.pyplot as plt  # noqa: E402

from arenapref.data.tables import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure as PNG through a temporary file and a rename, then close it."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path
