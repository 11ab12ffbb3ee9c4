"""Precision of the built-in prompt categories (arenapref.ratings.categories) on hand-checked prompts.

    python bench/category_check.py --show code > prompts.txt     # the 50 prompts to read for one category
    python bench/category_check.py                               # precision from bench/category_labels.csv

Method: for each category, the prompts the rule flags in the arena sample, then in arena_extra.csv when the sample
has fewer than 50, shuffled with a fixed seed; the first 50 are read by a person, who writes one row per prompt in
bench/category_labels.csv (category, id, correct: 1 when the prompt is really in the category, 0 when not, and a note
on the misses). Precision = correct / checked. This measures precision only: prompts the rule misses are not counted
(recall is not measured). multi-turn and long-query are their own definitions (more than one user turn; 500+ tokens)
and are not read. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from arenapref.ratings.categories import CATEGORIES, category_flags  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LABELS = ROOT / "bench" / "category_labels.csv"
PER_CATEGORY = 50
# Categories whose rule is their definition (more than one user turn; 500+ tokens): right by construction, not read.
BY_DEFINITION = ("multi-turn", "long-query")


def flagged_samples(data_dir: Path, seed: int = 1) -> dict[str, pd.DataFrame]:
    """{category: up to 50 flagged rows (id, prompt, source)}, the sample's first, then the extra file's."""
    out: dict[str, list] = {name: [] for name in CATEGORIES}
    for source in ("arena_sample.csv", "arena_extra.csv"):
        frame = pd.read_csv(data_dir / source, usecols=["id", "prompt"])
        flags = category_flags(pa.array(frame["prompt"].astype(str).tolist()))
        rng = np.random.default_rng(seed)
        for name in CATEGORIES:
            have = sum(len(part) for part in out[name])
            if have >= PER_CATEGORY:
                continue
            rows = frame[flags[name]].iloc[rng.permutation(int(flags[name].sum()))]
            out[name].append(rows.head(PER_CATEGORY - have).assign(source=source))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", choices=CATEGORIES, help="print the prompts to hand-check for one category")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--chars", type=int, default=400, help="characters of each prompt shown")
    opts = parser.parse_args()
    samples = flagged_samples(opts.data_dir)
    if opts.show:
        for row in samples[opts.show].itertuples():
            turns = json.loads(row.prompt)
            text = " || ".join(t or "" for t in turns).replace("\n", " ")
            print(f"{row.id}\t{text[:opts.chars]}")
        return
    labels = pd.read_csv(LABELS, dtype={"id": str})
    result = {}
    for name in CATEGORIES:
        if name in BY_DEFINITION:
            result[name] = {"checked": 0, "precision": 1.0, "by_definition": True}
            print(f"{name:17s} by definition")
            continue
        ids = set(samples[name]["id"].astype(str))
        mine = labels[(labels["category"] == name) & labels["id"].isin(ids)]
        if len(mine) < len(ids):
            raise SystemExit(f"{LABELS}: {len(ids) - len(mine)} of the {name} prompts have no label; "
                             f"read them with --show {name}")
        result[name] = {"checked": int(len(mine)), "correct": int(mine["correct"].sum()),
                        "precision": round(float(mine["correct"].mean()), 2),
                        "from_extra": int((samples[name]["source"] == "arena_extra.csv").sum())}
        print(f"{name:17s} {result[name]['correct']}/{result[name]['checked']} = {result[name]['precision']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
