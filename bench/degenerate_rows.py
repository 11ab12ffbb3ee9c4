"""What do arena votes say on degenerate rows: identical responses, and a fully empty response against a non-empty one?

    python bench/degenerate_rows.py ../shared/data/arena_sample.csv ../shared/data/arena_extra.csv

Per file: rows whose two responses are the same text (data.degenerate.identical_responses) and their votes; rows
where exactly one side's response is fully blank (every turn empty, whitespace or JSON null) and who won; rows
where both are blank; and, for comparison, rows where exactly one side has some blank turn (a multi-turn answer
with a gap). Last line: one JSON object with every count.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.data.degenerate import blank, empty_responses, identical_responses  # noqa: E402
from arenapref.data.tables import load_frame  # noqa: E402

OUTCOMES = ("a_won", "b_won", "tie")


def votes(labels: np.ndarray) -> dict:
    return dict(zip(OUTCOMES, np.bincount(labels, minlength=3).tolist()))


def one_sided(labels: np.ndarray, side_a: np.ndarray, side_b: np.ndarray) -> dict:
    """Rows where exactly one side has the property: how often that side won, the other side won, or a tie."""
    rows = side_a ^ side_b
    flagged_won = (side_a & (labels == 0)) | (side_b & (labels == 1))
    other_won = (side_a & (labels == 1)) | (side_b & (labels == 0))
    return {"rows": int(rows.sum()), "other_side_won": int(other_won[rows].sum()),
            "this_side_won": int(flagged_won[rows].sum()), "tie": int((labels[rows] == 2).sum())}


def count(path: str) -> dict:
    frame = load_frame(path, require_labels=True)
    labels = frame["label"].to_numpy()
    empty_a, empty_b = empty_responses(frame)
    gap = lambda column: np.array([any(blank([t]) for t in turns) for turns in frame[column]])
    same = identical_responses(frame)
    return {"rows": len(frame),
            "identical": {"rows": int(same.sum()), **votes(labels[same])},
            "one_side_empty": one_sided(labels, empty_a, empty_b),
            "both_empty": {"rows": int((empty_a & empty_b).sum()), **votes(labels[empty_a & empty_b])},
            "one_side_has_a_blank_turn": one_sided(labels, gap("response_a"), gap("response_b"))}


def main(paths: list[str]) -> None:
    out = {}
    for path in paths:
        out[Path(path).name] = counts = count(path)
        print(f"{path}: {counts['rows']} rows")
        for key in ("identical", "one_side_empty", "both_empty", "one_side_has_a_blank_turn"):
            print(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in counts[key].items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:] or [str(ROOT.parent / "shared" / "data" / "arena_sample.csv")])
