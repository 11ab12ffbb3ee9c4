"""How often the joint input shows a prompt turn without its answers (or an answer without its prompt), by packing.

    python bench/packing_rounds.py --data ../shared/data/arena_sample.csv --max-length 256

For the multi-turn rows (more than one prompt turn), rendered as the cross-encoder and the llm read them with the
"fields" packing of older models and with round packing (`--joint-packing`), on both truncation sides: rows with a
split round (a turn shown while another turn of its round, not empty, is not shown at all), rows truncated, rounds
dropped, and the share of each field's tokens kept. Everything is read from the renderer's own per-row diagnostics
(data/text.py), so it counts what the model reads. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.data.tables import load_frame  # noqa: E402
from arenapref.data.text import FIELD_NAMES, JOINT_PACKINGS, Renderer, TextSettings  # noqa: E402
from arenapref.models.loading import DEFAULT_BACKBONE, load_tokenizer  # noqa: E402


def split_rounds(record: dict) -> int:
    """Rounds of one row's joint diagnostics in which a turn shows text while another turn of the same round, not
    empty, shows none: a prompt turn without its answers, or an answer without its prompt."""
    fields = [record["fields"][name] for name in FIELD_NAMES]
    split = 0
    for t in range(record["rounds"]):
        turns = [f[t] for f in fields if t < len(f)]
        split += any(x["kept"] > 0 for x in turns) and any(x["kept"] == 0 and x["tokens"] > 0 for x in turns)
    return split


def summarise(records: list[dict]) -> dict:
    kept = {name: sum(t["kept"] for r in records for t in r["fields"][name]) for name in FIELD_NAMES}
    total = {name: sum(t["tokens"] for r in records for t in r["fields"][name]) for name in FIELD_NAMES}
    last = [(r["fields"][name][-1]["kept"], r["fields"][name][-1]["tokens"]) for r in records for name in FIELD_NAMES]
    share = lambda k, n: round(k / n, 4) if n else None  # noqa: E731
    return {
        "rows": len(records),
        "split_rows": sum(split_rounds(r) > 0 for r in records),
        "split_rounds": sum(split_rounds(r) for r in records),
        "truncated_rows": sum(r["truncated"] for r in records),
        "rounds_dropped": sum(r["rounds_dropped"] for r in records),
        "kept_share": {**{name: share(kept[name], total[name]) for name in FIELD_NAMES},
                       "all": share(sum(kept.values()), sum(total.values()))},
        # The vote is mostly about the last exchange: how much of each row's latest turns the model reads.
        "last_round_kept_share": share(sum(k for k, _ in last), sum(n for _, n in last)),
        "mean_tokens": round(sum(r["tokens"] for r in records) / max(len(records), 1), 1),
    }


def packing_report(frame, tokenizer, max_length: int) -> dict:
    """{"fields/left": summary, ...} for every joint packing and truncation side, over the frame's multi-turn rows."""
    multi = frame[[len(p) > 1 for p in frame["prompt"]]].reset_index(drop=True)
    report = {"multi_turn_rows": len(multi), "max_length": max_length}
    for packing in JOINT_PACKINGS[::-1]:  # the old packing first
        for side in ("left", "right"):
            renderer = Renderer(tokenizer, TextSettings(max_length=max_length, truncation_side=side,
                                                        joint_packing=packing))
            records: list[dict] = []
            rows = renderer.cross_inputs(multi, records)
            assert max(map(len, rows), default=0) <= max_length
            report[f"{packing}/{side}"] = summarise(records)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/arena_sample.csv")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--tokenizer", default=DEFAULT_BACKBONE, help="tokenizer name or directory (default MiniLM)")
    args = parser.parse_args()

    report = packing_report(load_frame(args.data), load_tokenizer(args.tokenizer), args.max_length)
    print(f"{report['multi_turn_rows']} multi-turn rows, --max-length {args.max_length}, tokenizer {args.tokenizer}")
    print(f"{'packing/side':<14} {'split rows':>10} {'split rounds':>12} {'truncated':>9} {'dropped':>7} "
          f"{'prompt':>6} {'resp A':>6} {'resp B':>6} {'last':>6} {'tokens':>6}")
    for key, s in report.items():
        if isinstance(s, dict):
            k = {name: str(v) for name, v in s["kept_share"].items()}
            print(f"{key:<14} {s['split_rows']:>10} {s['split_rounds']:>12} {s['truncated_rows']:>9} "
                  f"{s['rounds_dropped']:>7} {k['prompt']:>6} {k['response_a']:>6} {k['response_b']:>6} "
                  f"{str(s['last_round_kept_share']):>6} {s['mean_tokens']:>6}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
