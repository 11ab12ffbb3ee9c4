"""Batched inference: rows sorted by length, batches sized by a token budget, dynamic padding, collators, and
the CPU worker threads that run encoder calls side by side."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear


def is_int8(model) -> bool:
    """Whether `quantize_int8` has been applied to the model."""
    return any(isinstance(module, DynamicInt8Linear) for module in model.modules())


def pad_batch(sequences: list, pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to `length` (default: the longest): input_ids and attention_mask, (n, L)."""
    length = length or max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids, mask


def add_row_arrays(batch: dict, rows: list[dict]) -> dict:
    """Soft labels and side features of the rows, when they carry them, as float32 tensors."""
    for key in ("soft_labels", "features"):
        if key in rows[0]:
            batch[key] = torch.tensor(np.array([row[key] for row in rows]), dtype=torch.float32)
    return batch


class PairCollator:
    """Pads the two sides of every row to the longest side in the batch: input_ids (B, 2, L).

    `pad_to` pads every batch to a fixed length instead (a fixed-shape pipeline, which bench/speed.py compares against).
    """

    def __init__(self, pad_id: int, pad_to: int | None = None):
        self.pad_id = pad_id
        self.pad_to = pad_to

    def __call__(self, rows: list[dict]) -> dict:
        sides = [side for row in rows for side in row["input_ids"]]
        ids, mask = pad_batch(sides, self.pad_id, self.pad_to)
        batch = {"input_ids": ids.view(len(rows), 2, -1), "attention_mask": mask.view(len(rows), 2, -1)}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        return add_row_arrays(batch, rows)


class SequenceCollator:
    """Pads one joint sequence per row (cross-encoder, llm) on the right: input_ids (B, L)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        length = max(len(row["input_ids"]) for row in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row["input_ids"])] = torch.as_tensor(row["input_ids"], dtype=torch.long)
            mask[i, : len(row["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        return add_row_arrays(batch, rows)


def collator_for(inputs: str, pad_id: int):
    """The collator of a family's input kind: "pair" -> (B, 2, L), "joint" -> (B, L)."""
    return PairCollator(pad_id) if inputs == "pair" else SequenceCollator(pad_id)


def padded_cost(inputs: str, rows: list) -> np.ndarray:
    """Tokens a row occupies in a batch: both sides of a pair share one padded length."""
    if inputs == "pair":
        return np.array([2 * max(len(a), len(b)) for a, b in rows], dtype=np.int64)
    return np.array([len(r) for r in rows], dtype=np.int64)


def token_budget_batches(lengths: np.ndarray, max_tokens: int, max_rows: int = 256,
                         batch_cost: int | None = None) -> list[np.ndarray]:
    """Indices sorted longest first, cut into batches whose padded size (rows x longest) stays in budget.

    The cut points minimise padded tokens + `batch_cost` per batch (default max_tokens / 64: a token-equivalent
    of a call's fixed cost) by dynamic programming over the sorted lengths. Filling every batch to the budget
    instead would, on a few hundred sides, put a 512-token head over sides half as long. Every index appears in
    exactly one batch; a sequence longer than the budget gets a batch of its own.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    heads = np.maximum(lengths[order], 1)
    n = len(heads)
    cost = max_tokens // 64 if batch_cost is None else batch_cost
    best = np.full(n + 1, np.inf)  # best[j]: least cost of the first j sorted sequences
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)  # cut[j]: where the last batch of that best split starts
    for i in range(n):
        size = int(min(max(max_tokens // heads[i], 1), max_rows, n - i))
        candidate = best[i] + heads[i] * np.arange(1, size + 1) + cost
        window, cuts = best[i + 1:i + size + 1], cut[i + 1:i + size + 1]
        better = candidate < window
        window[better] = candidate[better]
        cuts[better] = i
    batches, end = [], n
    while end > 0:
        batches.append(order[cut[end]:end])
        end = cut[end]
    return batches[::-1]


# Tokens in flight per device (split between the CPU workers). On a CPU larger batches buy nothing and cost
# memory (attention is rows x L^2); a GPU wants more rows per call. A dynamically quantized int8 model is faster
# with smaller calls still (its activations are quantized per call): MiniLM, 2 workers, 56 x 290 tokens in calls
# of 14 / 7 / 4 rows: 1.44x / 1.60x / 1.41x over fp32 in one call of 28 rows (int8 with fp32 down-projections).
DEFAULT_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}
INT8_BATCH_TOKENS = 4096


# -- CPU workers ---------------------------------------------------------------------------------------------------
# On a CPU, encoder calls run on two worker threads at once, each with half the intra-op threads. One call on all
# cores leaves them idle in its serial stretches (Python between ops, layer norms, small element-wise kernels,
# the join at the end of each parallel GEMM); two independent calls fill each other's gaps. MiniLM on 2 cores,
# 28 x 290 tokens: 1.22x in fp32, 1.53x over one-call fp32 with int8 (bench/speed.py measures it end to end).
# Results do not depend on the scheduling: every batch is computed whole by one worker.

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools_after_fork() -> None:
    """A forked child inherits the pools but not their threads: work sent there would wait forever."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def default_workers(device: str | torch.device) -> int:
    """Encoder calls in flight: 2 on a CPU with at least 2 intra-op threads, else 1 (GPUs queue their own work)."""
    return 2 if torch.device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1


def resolve_workers(device: str | torch.device, workers: int | None) -> int:
    """`workers` as asked (at least 1), or the device's default."""
    return default_workers(device) if workers is None else max(1, int(workers))


def _worker_pool(workers: int, threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of `workers` threads with `threads` intra-op threads each, made once and reused (a new
    thread per call would also mean a new OpenMP team per call)."""
    with _POOLS_LOCK:
        pool = _POOLS.get((workers, threads))
        if pool is None:
            caller = torch.get_num_threads()
            started = threading.Barrier(workers + 1)

            def init():
                torch.get_num_threads()  # settle this thread's lazy OpenMP set-up first, then pin it
                torch.set_num_threads(threads)
                started.wait()

            pool = ThreadPoolExecutor(workers, thread_name_prefix="arenapref-encode", initializer=init)
            for _ in range(workers):  # start every thread now, so none initialises after the restore below
                pool.submit(int)
            started.wait()
            torch.set_num_threads(caller)  # set_num_threads also sets the default of threads made later
            _POOLS[(workers, threads)] = pool
    return pool


def map_batches(fn, batches: list, device: str | torch.device, workers: int | None = None):
    """`fn(batch)` for every batch, in inference mode, yielded in batch order; on `workers` threads (default
    `default_workers`), each with an equal share of the intra-op threads."""
    workers = resolve_workers(device, workers)

    def run(batch):
        with torch.inference_mode():
            return fn(batch)

    if workers == 1 or len(batches) < 2:
        yield from map(run, batches)
        return
    pool = _worker_pool(workers, max(1, torch.get_num_threads() // workers))
    futures = [pool.submit(run, batch) for batch in batches]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def call_budget(max_tokens: int | None, device: str | torch.device, workers: int | None = None,
                model=None) -> int:
    """Token budget of one encoder call: `max_tokens` (default by device, and smaller for an int8 `model`)
    shared by the workers."""
    device = torch.device(device)
    workers = resolve_workers(device, workers)
    if max_tokens is None:
        int8 = device.type == "cpu" and model is not None and is_int8(model)
        max_tokens = INT8_BATCH_TOKENS if int8 else DEFAULT_BATCH_TOKENS.get(device.type, 16384)
    return max(1, max_tokens // workers)
