"""Peak memory of `arenapref predict` on large synthetic files: streamed in chunks vs the whole file at once.

    python bench/predict_memory.py --rows 100000 1000000

A gbdt model is trained on the real sample (seconds); files of arena-like rows (one turn, 40-400 words per
response) are written to a temporary folder; each `predict` runs in its own process and its peak resident memory
(ru_maxrss) is read when it exits. "whole" is the same command with --chunk-rows as large as the file, which is
what predict did before it streamed. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a model answer is good bad python code list item reason because of and to in it you can "
         "data we use this that with for not but more time first").split()


def synthetic(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,prompt,response_a,response_b\n")
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            texts = [" ".join(rng.choice(WORDS, k)) for k in rng.integers(5, 400, 3 * n)]
            block = pd.DataFrame({"id": np.arange(start, start + n).astype(str),
                                  "prompt": [json.dumps([t]) for t in texts[:n]],
                                  "response_a": [json.dumps([t]) for t in texts[n:2 * n]],
                                  "response_b": [json.dumps([t]) for t in texts[2 * n:]]})
            block.to_csv(fh, index=False, header=False)


def peak_mb(cmd: list[str]) -> tuple[float, float]:
    """Run one command in a fresh process; (its peak RSS in MB, seconds)."""
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "arena_sample.csv"))
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "arenapref"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([*cli, "train", "--data", args.data, "--output", str(tmp / "model"), "--model", "gbdt"],
                       cwd=ROOT, check=True, capture_output=True)
        for rows in args.rows:
            data = tmp / f"rows{rows}.csv"
            synthetic(data, rows)
            size_mb = data.stat().st_size / 2**20
            base = [*cli, "predict", "--model", str(tmp / "model"), "--data", str(data), "--output", str(tmp / "p.csv")]
            streamed, t_streamed = peak_mb([*base, "--chunk-rows", str(args.chunk_rows)])
            whole, t_whole = peak_mb([*base, "--chunk-rows", str(rows)])
            results[rows] = {"file_mb": round(size_mb), "streamed_peak_mb": round(streamed),
                             "whole_peak_mb": round(whole), "whole_over_streamed": round(whole / streamed, 2),
                             "streamed_s": round(t_streamed, 1), "whole_s": round(t_whole, 1)}
            print(f"{rows:>9} rows ({size_mb:.0f} MB): peak {streamed:.0f} MB streamed "
                  f"(--chunk-rows {args.chunk_rows}, {t_streamed:.0f}s) vs {whole:.0f} MB whole file "
                  f"({t_whole:.0f}s): x{whole / streamed:.2f}", flush=True)
            data.unlink()
    print(json.dumps({"chunk_rows": args.chunk_rows, "results": results}))


if __name__ == "__main__":
    main()
