"""Scoring with several processes (torchrun, gloo, on the CPU): the merged file is the one-process file byte for
byte, evaluate's metrics are the one-process metrics, and a process killed mid-run leaves no output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from arenapref.errors import DataError
from arenapref.inference.sharded import Launch, merge_parts, write_block
from conftest import ROOT, run_cli


def torchrun(*args, nproc: int = 2, popen: bool = False, timeout: float = 900):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "arenapref", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_launch_from_env_and_shares():
    assert Launch.from_env({}) is None
    assert Launch.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    launch = Launch.from_env({"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
    assert (launch.rank, launch.world, launch.local_rank, launch.local_world) == (2, 3, 0, 1)
    with pytest.raises(DataError, match="RANK"):
        Launch.from_env({"WORLD_SIZE": "2"})
    for rows in (0, 1, 2, 5, 96):
        covered = [i for r in range(3) for i in range(rows)[Launch(r, 3, r, 3).share(rows)]]
        assert covered == list(range(rows))  # in order, each row once
    # a small chunk still reaches every process
    assert all(len(range(4)[Launch(r, 4, r, 4).share(4)]) == 1 for r in range(4))


def test_merge_parts_interleaves_chunks_in_rank_order(tmp_path):
    blocks = {0: [(1, "a1\n", "h\n"), (0, "", "")], 1: [(2, "b1\nb2\n", "h\n"), (1, "b3\n", "h\n")]}
    parts = []
    for rank, items in blocks.items():
        path = tmp_path / f"part-{rank}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for rows, text, header in items:
                write_block(fh, rows, text, header)
        parts.append(path)
    out = tmp_path / "out.csv"
    with open(out, "w", encoding="utf-8") as fh:
        assert merge_parts(parts, fh, header=True) == 4
    assert out.read_text() == "h\na1\nb1\nb2\nb3\n"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gbdt", "neural"])
def test_two_processes_write_the_one_process_file(family, request, small_csv, tmp_path):
    model = request.getfixturevalue("gbdt_model" if family == "gbdt" else "tiny_model")
    # 96 rows in chunks of 40: three chunks, the last cut unevenly between the two processes
    for fmt in ("csv", "jsonl"):
        extra = ["--format", fmt, "--chunk-rows", 40] + (["--diagnostics"] if fmt == "jsonl" else [])
        alone, launched = tmp_path / f"alone.{fmt}", tmp_path / f"launched.{fmt}"
        run_cli("predict", "--model", model, "--data", small_csv, "--output", alone, *extra)
        proc = torchrun("predict", "--model", model, "--data", small_csv, "--output", launched, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert launched.read_bytes() == alone.read_bytes()
        for rank in (0, 1):
            assert f"rank {rank}/2: scored 48 of 96 rows" in proc.stderr
        assert proc.stdout.count("wrote 96 rows") == 1
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no parts left


@pytest.mark.slow
def test_two_processes_evaluate_like_one(gbdt_model, small_csv):
    alone = json.loads(run_cli("evaluate", "--model", gbdt_model, "--data", small_csv, "--json").stdout)
    proc = torchrun("evaluate", "--model", gbdt_model, "--data", small_csv, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == alone
    assert "rank 1/2: scored 48 of 96 rows" in proc.stderr


@pytest.mark.slow
def test_two_processes_label_like_one(gbdt_model, small_csv, tmp_path):
    run_cli("label", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "alone.jsonl",
            "--both-orders")
    proc = torchrun("label", "--model", gbdt_model, "--data", small_csv, "--output", tmp_path / "launched.jsonl",
                    "--both-orders")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "launched.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()
    assert "rank 0/2: scored 48 of 96 rows" in proc.stderr and proc.stdout.count("kept ") == 1


def rank_pids(parent: int) -> dict[int, int]:
    """RANK -> pid of the worker processes below `parent` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker processes through /proc")
def test_a_killed_process_leaves_no_output(gbdt_model, arena_csv, tmp_path):
    rows = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    many = pd.concat([rows.assign(id=rows["id"] + f"-{k}") for k in range(8)], ignore_index=True)  # 7992 rows
    data, output = tmp_path / "many.csv", tmp_path / "out.csv"
    many.to_csv(data, index=False)
    proc = torchrun("predict", "--model", gbdt_model, "--data", data, "--output", output, "--chunk-rows", 200,
                    popen=True)
    try:
        deadline = time.time() + 600
        part = None
        while time.time() < deadline and proc.poll() is None:  # wait until rank 1 has scored a chunk
            part = next((p for p in tmp_path.glob(".out.csv.parts.*/part-00001.jsonl") if p.stat().st_size), None)
            if part is not None:
                break
            time.sleep(0.2)
        assert part is not None, "rank 1 never wrote a part"
        os.kill(rank_pids(proc.pid)[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.csv"]  # no parts, no temporary output
    ours = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1, stderr[-3000:]
    assert "nothing written to" in ours[0] and ("stopped by the launcher" in ours[0] or "lost contact" in ours[0])
