"""Throughput of `arenapref predict` with one process and with N processes under torchrun, side by side.

    python bench/scale_out.py --data ../shared/data/arena_sample.csv [--model arena-minilm] [--rows 999]
                              [--nproc 2] [--rounds 2]

The same file, model and flags for both; the rounds alternate (1 process, N processes, 1, N, ...) so a load that
changes during the run weighs on both alike, and each setting's best round is kept. Wall time of the whole command
(start-up, model loading, scoring, writing; torchrun's too): what a user waits for. Checks the two outputs are the
same bytes. On a CPU the N processes share the machine's cores (each gets cores / N torch threads), so the ratio
says what splitting the cores between processes buys over one process's threads; on N GPUs each process has its
own. Last line one JSON object.
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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="arena-minilm", help="model directory or shipped judge name")
    parser.add_argument("--rows", type=int, default=999)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", action="store_true",
                        help="also `predict --engine ray` on a local Ray instance started by the command (ray[data] "
                             "installed)")
    opts = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)  # one process uses every core; torchrun's processes split them
    with tempfile.TemporaryDirectory(prefix="scale-out-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "rows.csv"
        pd.read_csv(opts.data, dtype=str, keep_default_na=False).head(opts.rows).to_csv(data, index=False)
        rows = len(pd.read_csv(data, dtype=str, keep_default_na=False))
        args = ["-m", "arenapref", "predict", "--model", opts.model, "--data", str(data)]
        one = [sys.executable, *args, "--output", str(tmp / "one.csv")]
        many = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(opts.nproc),
                *args, "--output", str(tmp / "many.csv")]
        on_ray = [sys.executable, *args, "--output", str(tmp / "ray.parquet"), "--engine", "ray"]
        times: dict[str, list[float]] = {"one": [], "many": []} | ({"ray": []} if opts.ray else {})
        for r in range(opts.rounds):
            times["one"].append(run(one, env))
            times["many"].append(run(many, env))
            if opts.ray:
                (tmp / "ray.parquet").unlink(missing_ok=True)
                times["ray"].append(run(on_ray, env))
            print(f"round {r + 1}/{opts.rounds}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
                  flush=True)
        same = (tmp / "one.csv").read_bytes() == (tmp / "many.csv").read_bytes()
        if opts.ray:  # Parquet holds the unrounded probabilities, the CSV 6 decimals
            ray_out, csv_out = pd.read_parquet(tmp / "ray.parquet"), pd.read_csv(tmp / "one.csv", dtype={"id": str})
            ray_agrees = ray_out["id"].tolist() == csv_out["id"].tolist() and bool(
                (ray_out.iloc[:, 1:].to_numpy() - csv_out.iloc[:, 1:4].to_numpy()).__abs__().max() < 2e-6)
    best = {k: min(v) for k, v in times.items()}
    result = {"model": opts.model, "rows": rows, "nproc": opts.nproc, "cores": len(os.sched_getaffinity(0)),
              "pairs_per_s_1_process": rows / best["one"], f"pairs_per_s_{opts.nproc}_processes": rows / best["many"],
              "speedup": best["one"] / best["many"], "seconds": times, "identical_output": same}
    if opts.ray:
        result["pairs_per_s_ray"] = rows / best["ray"]
        result["ray_agrees"] = ray_agrees  # same ids in order, probabilities within the CSV's rounding
        print(f"Ray Data (--engine ray, a local instance): {rows / best['ray']:.1f} pairs/s")
    print(f"1 process: {rows / best['one']:.1f} pairs/s; {opts.nproc} processes: {rows / best['many']:.1f} pairs/s "
          f"({best['one'] / best['many']:.2f}x); outputs identical: {same}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
