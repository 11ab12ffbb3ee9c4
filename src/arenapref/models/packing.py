"""Split a batch of sequences into sub-batches that waste little compute on padding.

The encoder's cost grows with rows x padded length, so sequences of very different lengths should not share a
padded tensor. Sorted longest first, the sequences are cut into at most `max_chunks` contiguous runs; each run is
padded only to its own first (longest) member. The cut points minimise the padded token count exactly (a small
dynamic programme: n is a training batch's side count, a few dozen).
"""

from __future__ import annotations


def plan_chunks(sorted_lengths: list[int], max_chunks: int) -> list[tuple[int, int]]:
    """[start, end) runs over lengths sorted in descending order, minimising sum(run size x run's first length)."""
    n = len(sorted_lengths)
    if n == 0:
        return []
    max_chunks = max(1, min(max_chunks, n))
    inf = float("inf")
    # cost[c][j]: least padded tokens covering the first j sequences with c runs; cut[c][j]: where the last run starts.
    cost = [[inf] * (n + 1) for _ in range(max_chunks + 1)]
    cut = [[0] * (n + 1) for _ in range(max_chunks + 1)]
    cost[0][0] = 0
    for c in range(1, max_chunks + 1):
        for j in range(1, n + 1):
            for i in range(c - 1, j):
                value = cost[c - 1][i] + (j - i) * sorted_lengths[i]
                if value < cost[c][j]:
                    cost[c][j], cut[c][j] = value, i
    best = min(range(1, max_chunks + 1), key=lambda c: (cost[c][n], c))
    runs, end = [], n
    for c in range(best, 0, -1):
        start = cut[c][end]
        runs.append((start, end))
        end = start
    return runs[::-1]


def padded_tokens(sorted_lengths: list[int], runs: list[tuple[int, int]]) -> int:
    return sum((end - start) * sorted_lengths[start] for start, end in runs)
