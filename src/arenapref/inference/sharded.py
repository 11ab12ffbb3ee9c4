"""Scoring under `torchrun --nproc_per_node N -m arenapref ...` or `accelerate launch -m arenapref ...`: each process
scores its share of the rows on its own device and one process puts the shares back together in input order.

Both launchers start one process per device and tell it which one it is in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE); `Launch.from_env` reads them. The processes talk through torch.distributed with
the gloo backend (CPU tensors, any device, one node or several): only small messages (where the parts go, each
process's status) travel through it; the predictions travel as part files in a hidden folder beside the output,
which every node must therefore see (a shared file system on several nodes; checked at the start).

Each chunk of rows read from the file is cut into WORLD_SIZE contiguous slices, process r scoring slice r
(`Launch.share`), so a file of a few rows still spreads over every process. A row's answer does not depend on
the rows scored beside it (batches differ, the kernels' sums do not; tests/test_scale_out.py checks the files
byte for byte on a CPU), so the merged output is the one-process output.

Failures: a `DataError` (a bad file, a bad option: every process meets the same one) is said once, by rank 0; any
other exception is said in one line by the process it hit. A process killed outright says nothing, and the launcher
then stops the others with SIGTERM, which `ShardedRun` turns into one line from rank 0. Every way out of a failed
run removes the parts, and the output is only ever renamed into place after every process reported success.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from arenapref.errors import DataError

# A process may wait this long at the end for the slowest one (a long share on a busy machine); a process that
# dies is noticed at once (its connections close), so the limit only ends a run that hangs.
EXCHANGE_TIMEOUT = timedelta(hours=12)


class Stopped(BaseException):
    """The launcher asked this process to stop (SIGTERM): another process of the run failed."""


@dataclass(frozen=True)
class Launch:
    """Which process of a launched group this is."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_env(cls, environ=os.environ) -> Launch | None:
        """The launch this process is part of, or None when it runs alone (no launcher, or WORLD_SIZE 1)."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
            if world <= 1:
                return None
            rank = int(environ["RANK"])
            local_rank = int(environ.get("LOCAL_RANK", rank))
            local_world = int(environ.get("LOCAL_WORLD_SIZE", world))
        except (KeyError, ValueError):
            raise DataError("WORLD_SIZE is set but RANK / LOCAL_RANK are missing or not numbers: start the command "
                            "with torchrun or accelerate launch (or unset WORLD_SIZE)") from None
        return cls(rank, world, local_rank, local_world)

    @property
    def tag(self) -> str:
        return f"rank {self.rank}/{self.world}"

    def share(self, rows: int) -> slice:
        """This process's contiguous slice of `rows` rows (the slices of all processes cover them in order)."""
        return slice(self.rank * rows // self.world, (self.rank + 1) * rows // self.world)

    def device(self) -> str:
        """cuda:LOCAL_RANK on a machine with GPUs, else the CPU."""
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def split_cpu_threads(self) -> int:
        """On a CPU the processes of one machine share its cores: each gets cores / LOCAL_WORLD_SIZE torch threads
        (torchrun sets OMP_NUM_THREADS=1, which would leave cores idle on a machine with more than N)."""
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // self.local_world)
        torch.set_num_threads(threads)
        return threads


def _stop(signum, frame):
    raise Stopped()


def _lost_contact(launch: Launch, exc: Exception) -> DataError:
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return DataError(f"{launch.tag}: lost contact with the other processes of the run ({detail}): one of them "
                     "failed or was killed")


class ShardedRun:
    """The process group of one launched scoring run, the parts folder beside the output (`open_parts`), and the
    one-line failure handling described in the module docstring. Use as a context manager."""

    def __init__(self, launch: Launch):
        self.launch = launch
        self.output: Path | None = None
        self.parts: Path | None = None
        self._previous_handler = None

    @property
    def is_main(self) -> bool:
        return self.launch.rank == 0

    @property
    def part_path(self) -> Path:
        return self.parts / f"part-{self.launch.rank:05d}.jsonl"

    def all_parts(self) -> list[Path]:
        return [self.parts / f"part-{r:05d}.jsonl" for r in range(self.launch.world)]

    def __enter__(self) -> ShardedRun:
        import torch.distributed as dist

        self._previous_handler = signal.signal(signal.SIGTERM, _stop)
        if not dist.is_initialized():
            try:
                dist.init_process_group("gloo", timeout=EXCHANGE_TIMEOUT)
            except Exception as exc:
                self._restore()
                raise _lost_contact(self.launch, exc) from None
        return self

    def open_parts(self, output: Path) -> None:
        """Make the parts folder beside OUTPUT (rank 0) and check that every process sees it."""
        self.output = Path(output)
        folder = [None]
        if self.is_main:
            folder[0] = tempfile.mkdtemp(prefix=f".{self.output.name}.parts.", dir=self.output.parent)
        self._collective("broadcast_object_list", folder, src=0)
        self.parts = Path(folder[0])
        seen = self.gather_all(self.parts.is_dir())
        if not all(seen):
            if self.is_main:
                shutil.rmtree(self.parts, ignore_errors=True)
            blind = ", ".join(str(r) for r, ok in enumerate(seen) if not ok)
            raise DataError(f"{self.output.parent}: rank(s) {blind} cannot see the parts folder rank 0 made there; "
                            "on several nodes the output must go to a folder every node shares")

    def _collective(self, name: str, *args, **kwargs):
        import torch.distributed as dist

        try:
            return getattr(dist, name)(*args, **kwargs)
        except (RuntimeError, ConnectionError) as exc:  # gloo: a peer closed its connection (it died)
            raise _lost_contact(self.launch, exc) from None

    def gather_all(self, value) -> list:
        """`value` of every process, in rank order, on every process."""
        out = [None] * self.launch.world
        self._collective("all_gather_object", out, value)
        return out

    def gather_main(self, value) -> list | None:
        """`value` of every process, in rank order, on rank 0 (None elsewhere)."""
        out = [None] * self.launch.world if self.is_main else None
        self._collective("gather_object", value, out, dst=0)
        return out

    def report(self, scored: int, total: int) -> None:
        """The line each process prints when its share is done (on stderr: stdout may carry JSON)."""
        print(f"{self.launch.tag}: scored {scored} of {total} rows", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def __exit__(self, kind, exc, tb) -> bool:
        import torch.distributed as dist

        try:
            if self.parts is not None:
                if exc is None and self.is_main:
                    shutil.rmtree(self.parts, ignore_errors=True)
                elif exc is not None:  # every process removes what it can: the one that removes last leaves none
                    self.part_path.unlink(missing_ok=True)
                    if self.is_main:
                        shutil.rmtree(self.parts, ignore_errors=True)
            if exc is None:
                # Every process reaches this point before any tears its group down: a process that destroyed its
                # gloo group while a peer was still connected aborted ("terminate called without an active
                # exception", SIGABRT; seen once in CI on 2 processes).
                self._collective("barrier")
                dist.destroy_process_group()
        finally:
            self._restore()
        if exc is None:
            return False
        nothing = f"; nothing written to {self.output}" if self.output is not None else ""
        if isinstance(exc, Stopped):
            if self.is_main:
                raise DataError(f"{self.launch.tag}: stopped by the launcher (SIGTERM), which stops every process "
                                f"when one of them fails{nothing}") from None
            raise SystemExit(143)
        if isinstance(exc, DataError):
            if self.is_main or "lost contact" in str(exc):
                raise DataError(f"{exc}{nothing}") from None
            # Every process meets the same bad file or option: rank 0 says it. A moment's wait lets it do so
            # before the launcher, seeing this process fail, stops the group.
            time.sleep(2)
            raise SystemExit(2)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return False
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise DataError(f"{self.launch.tag} failed: {type(exc).__name__}: {detail}{nothing}") from None


# -- part files: one JSON line per chunk read, {"rows": n, "header": CSV header or "", "text": the rows' text} ------

def write_block(fh, rows: int, text: str, header: str = "") -> None:
    """One chunk's share of a process's part: its rows' output text, as the one-process output would have it."""
    fh.write(json.dumps({"rows": rows, "header": header, "text": text}, ensure_ascii=False) + "\n")


def merge_parts(parts: list[Path], fh, header: bool) -> int:
    """Write the parts' blocks chunk by chunk, rank after rank (input order), into `fh`; with `header` the first
    block's header first (a CSV). Returns the rows written."""
    files = [open(p, encoding="utf-8") for p in parts]
    rows = 0
    try:
        while True:
            lines = [f.readline() for f in files]
            if not any(lines):
                return rows
            if not all(lines):
                raise RuntimeError(f"the parts in {parts[0].parent} cover different numbers of chunks")
            for block in map(json.loads, lines):
                if header and block["header"]:
                    fh.write(block["header"])
                    header = False
                fh.write(block["text"])
                rows += block["rows"]
    finally:
        for f in files:
            f.close()


def run_launched(score, *args):
    """`score(*args)` in a plain process; under torchrun / accelerate launch `score(*args, run)` inside the run's
    ShardedRun (its process group, parts folder and one-line failures)."""
    launch = Launch.from_env()
    if launch is None:
        return score(*args)
    with ShardedRun(launch) as run:
        return score(*args, run)
