"""The report's leaderboard section: the battles of a labelled file rated from the human votes and from the judge's
predictions side by side (ratings with intervals, the win-fraction and battle-count matrices, rank correlation)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.ratings.leaderboard import common_models_mask, write_leaderboards

REPORT_MIN_BATTLES = 5  # a model's battles in the file before it is rated
SHOWN = 20


def boards_section(frame: pd.DataFrame, probs: np.ndarray, output: Path, min_battles: int = REPORT_MIN_BATTLES
                   ) -> str:
    """HTML of the section, its files under output/leaderboard/; "" when the rows name no models."""
    if not {"model_a", "model_b"} <= set(frame.columns):
        return ""
    battles = frame[["id", "model_a", "model_b"]].astype(str).assign(winner=frame["label"].to_numpy())
    keep = (battles["model_a"] != battles["model_b"]).to_numpy() & common_models_mask(battles, min_battles)
    if len(set(battles["model_a"][keep]) | set(battles["model_b"][keep])) < 2:
        return (f"<h2>Leaderboards</h2><p class=\"note\">Fewer than two models have {min_battles} or more battles "
                "in this file: no board.</p>\n")
    battles = battles[keep].reset_index(drop=True)
    folder = Path(output) / "leaderboard"
    boards, summary = write_leaderboards(battles, {"votes": battles["winner"].to_numpy(), "judge": probs[keep]},
                                         folder, ci="sandwich", bootstrap=0, plots=True)
    votes, judge = boards["votes"].table, boards["judge"].table.set_index("model")
    rows = "".join(
        f"<tr><td>{html.escape(str(r.model))}</td><td>{r.rating:.0f} ({r.ci_low:.0f}&ndash;{r.ci_high:.0f})</td>"
        f"<td>{r.rank_ub}</td><td>{judge.at[r.model, 'rating']:.0f}</td><td>{judge.at[r.model, 'rank_ub']}</td>"
        f"<td>{r.battles}</td></tr>" for r in votes.head(SHOWN).itertuples())
    images = "".join(f'<img src="leaderboard/{name}" alt="{name}">' for name in summary["files"]
                     if name.endswith(".png"))
    return f"""<h2>Leaderboards</h2>
<p>The file's battles between models with {min_battles}+ battles ({summary['battles']} battles, {summary['models']}
models), rated by Bradley-Terry (Elo scale, ties half a win, 95% sandwich intervals) from the human votes and
from the judge's predicted probabilities as soft votes. Rank correlation of the two boards: Spearman
<b>{summary['spearman']:.3f}</b>, Kendall {summary['kendall']:.3f}. Files: <code>leaderboard/</code>
({html.escape(', '.join(summary['files']))}).</p>
<table><tr><th>model</th><th>votes: rating (interval)</th><th>Rank (UB)</th><th>judge: rating</th>
<th>Rank (UB)</th><th>battles</th></tr>{rows}</table>
<div class="figures">{images}</div>
"""
