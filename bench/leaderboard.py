"""Leaderboard benchmark: our Bradley-Terry fit and bootstrap against FastChat's original compute_mle_elo, side by
side in one run, on battles simulated from known ratings with a planted length effect; then the real command line
on a Kaggle-format file of the largest size.

    python bench/leaderboard.py [--sizes 100000,1000000,2000000] [--models 150] [--bootstrap 1000]
                                [--reference-rounds 2] [--cli-rows 2000000] [--style-rounds 3] [--workdir DIR]
                                [--runs weights_category]

Simulation: `--models` models with true ratings N(1000, 120^2), battles between uniformly drawn pairs, outcomes
from the Davidson model (about 25% ties) with a planted length effect: P(A beats B) also grows with
(len_a - len_b) / (len_a + len_b), standardised, times `--length-effect` (log-odds per sd), and each model has its
own verbosity unrelated to its quality, so the plain leaderboard is biased toward verbose models and the
style-controlled one is not. Responses are single-turn synthetic texts (a word pool, some markdown) whose lengths
follow the model's verbosity.

Reference (FastChat's original compute_mle_elo, re-implemented faithfully): every battle twice, +-log(10) design
matrix, a tie's two copies one win each way, sklearn LogisticRegression(fit_intercept=False, no penalty, tol=1e-6)
(C=np.inf: sklearn 1.8+ spells penalty=None that way), ratings 400 * coef + 1000; its bootstrap resamples the
battles (DataFrame.sample(frac=1, replace=True)) and refits. The design matrix is dense as in FastChat while it fits
in `--dense-limit-mb`; above that (1M battles x 150 models is 2.4 GB) the same matrix is stored sparse (CSR), which
is faster than dense, so the reference figures at those sizes flatter it.

Ours: arenapref.leaderboard.rate (pairs summed once, Newton on the pairs, the bootstrap as multinomial counts over
the (pair, outcome) cells in warm-started batches). Peak memory: the process's resident set sampled every 5 ms above
the phase's start. The command line: `arenapref leaderboard --data BIG.csv ...` in a subprocess, its wall time and
peak resident memory (wait4), with --bootstrap 1000, with --ci sandwich, with --style-control (sandwich), with
--style-control and `--style-rounds` bootstrap rounds, and with --bootstrap 1000 --weights weight --category topic
(LMArena's pair re-weighting, 1 / max(battles of the pair, 50), and three categories: four boards). The last line
printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from arenapref.ratings.leaderboard import ELO_PER_NATURAL, rate  # noqa: E402
from arenapref.ratings.style import style_counts, style_covariates  # noqa: E402

TOPICS = ("chat", "code", "math")
WORDS = ("the of and to in is it that for on with as are this be by or from at an was can not which you use "
         "model data value time system answer example first result number case code point way step function "
         "important also more each other such these many however because between different through").split()


# -- measuring ---------------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak extra resident memory (MiB) of a phase: RSS sampled every 5 ms, freed heap handed back first."""

    def __init__(self):
        self._libc = ctypes.CDLL("libc.so.6") if platform.system() == "Linux" else None

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def measure(self, fn):
        """(seconds, peak MiB above the start, result)."""
        if self._libc is not None:
            self._libc.malloc_trim(0)
        base = self._rss()
        top = [base]
        done = threading.Event()

        def sample():
            while not done.wait(0.005):
                top[0] = max(top[0], self._rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        start = time.perf_counter()
        try:
            result = fn()
        finally:
            seconds = time.perf_counter() - start
            done.set()
            thread.join()
        return seconds, (max(top[0], self._rss()) - base) / 2**20, result


# A small process between us and the command: a child's peak RSS (ru_maxrss) starts from its parent's size at
# fork, so measured straight from this process (holding the simulation) it would read our size, not its own.
_MEASURE = """import json, resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "maxrss_kib": usage.ru_maxrss,
                                         "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def run_cli_measured(args: list[str]) -> dict:
    """The real command line in a subprocess: wall seconds, its peak resident memory (MiB), exit code, output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    with tempfile.TemporaryDirectory() as scratch:
        usage = Path(scratch) / "usage.json"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _MEASURE, usage, sys.executable, "-m", "arenapref",
                               "leaderboard", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        measured = (json.loads(usage.read_text()) if usage.exists()
                    else {"rc": proc.returncode, "maxrss_kib": 0, "cpu_s": 0.0})
    # CPU seconds beside the wall time: on a shared machine the wall time says as much about the neighbours.
    return {"seconds": round(seconds, 2), "cpu_s": round(measured["cpu_s"], 1),
            "peak_mib": round(measured["maxrss_kib"] / 1024, 1), "rc": measured["rc"], "stdout": proc.stdout,
            "stderr": proc.stderr}


# -- simulation --------------------------------------------------------------------------------------------------
def text_pool(rng: np.random.Generator, size: int, mean_tokens: float) -> list[str]:
    """`size` single-turn responses (JSON-encoded turn lists), lengths log-spread around `mean_tokens`, some with
    markdown (headers, list items, bold) independent of their length."""
    lengths = np.exp(rng.normal(math.log(mean_tokens) - 0.5, 1.0, size)).astype(int) + 1
    vocab = np.array(WORDS)
    texts = []
    for n in lengths:
        words = vocab[rng.integers(0, len(vocab), n)].tolist()
        lines, i = [], 0
        if rng.random() < 0.15:
            lines.append("## " + " ".join(words[:3]))
            i = 3
        while i < len(words):
            chunk = words[i:i + int(rng.integers(5, 15))]
            i += len(chunk)
            line = " ".join(chunk)
            if rng.random() < 0.15:
                line = f"**{chunk[0]}** " + " ".join(chunk[1:])
            lines.append(("- " if rng.random() < 0.2 else "") + line + ".")
        texts.append(json.dumps(["\n".join(lines)]))
    return texts


def simulate(n: int, n_models: int, length_effect: float, nu: float, rng: np.random.Generator, pool_size: int = 4000,
             mean_tokens: float = 40.0) -> dict:
    """Battles with known ratings: model indices a, b, labels (0 A, 1 B, 2 tie), pool indices of the responses."""
    true_elo = 1000 + 120 * rng.standard_normal(n_models)
    verbosity = rng.normal(0, 0.8, n_models)  # log-length offset of each model, unrelated to its rating
    pool = text_pool(rng, pool_size, mean_tokens)
    import pyarrow as pa

    counts = style_counts(pa.array(pool))
    order = np.argsort(counts[:, 0], kind="stable")
    log_len = np.log(counts[order, 0])
    a = rng.integers(0, n_models, n)
    b = (a + rng.integers(1, n_models, n)) % n_models

    def pick(models):
        wanted = np.median(log_len) + verbosity[models] + rng.normal(0, 0.5, len(models))
        return order[np.clip(np.searchsorted(log_len, wanted), 0, pool_size - 1)]

    resp_a, resp_b = pick(a), pick(b)
    length = style_covariates(counts[resp_a, :1], counts[resp_b, :1])[:, 0]
    d = (true_elo[a] - true_elo[b]) / ELO_PER_NATURAL + length_effect * length
    z = np.stack([d / 2, -d / 2, np.full(n, math.log(nu))], axis=1)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 2)
    names = np.array([f"model-{i:03d}" for i in range(n_models)], dtype=object)
    # Per-battle weights as LMArena re-weights pairs (arena-rank's reweighted=True: 1 / max(battles of the pair,
    # 50), scaled to mean 1), and a category column of three values.
    pair = np.minimum(a, b) * n_models + np.maximum(a, b)
    per_pair = np.bincount(pair, minlength=n_models * n_models)[pair]
    weight = 1.0 / np.maximum(per_pair, 50)
    weight /= weight.mean()
    topic = rng.choice(len(TOPICS), n, p=[0.5, 0.3, 0.2])
    return {"a": a, "b": b, "labels": labels, "resp_a": resp_a, "resp_b": resp_b, "pool": pool, "counts": counts,
            "true_elo": true_elo, "names": names, "weight": weight, "topic": topic}


def battles_frame(sim: dict, n: int) -> pd.DataFrame:
    names = sim["names"]
    categories = pd.CategoricalDtype(sorted(names))
    return pd.DataFrame({"model_a": pd.Categorical(names[sim["a"][:n]], dtype=categories),
                         "model_b": pd.Categorical(names[sim["b"][:n]], dtype=categories)})


def write_kaggle_csv(sim: dict, n: int, path: Path, chunk: int = 200_000) -> None:
    """The first n battles in the Kaggle train layout, written by pyarrow in chunks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pool = pa.array(sim["pool"])
    prompts = pa.array([json.dumps([f"Question {i}: explain {WORDS[i % len(WORDS)]}."]) for i in range(200)])
    names = pa.array(sim["names"].tolist())
    topics = pa.array(list(TOPICS))
    onehot = np.eye(3, dtype=np.int8)
    writer = None
    try:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            labels = onehot[sim["labels"][start:stop]]
            table = pa.table({
                "id": pa.array(np.arange(start, stop).astype(str)),
                "model_a": names.take(pa.array(sim["a"][start:stop])),
                "model_b": names.take(pa.array(sim["b"][start:stop])),
                "prompt": prompts.take(pa.array(np.arange(start, stop) % len(prompts))),
                "response_a": pool.take(pa.array(sim["resp_a"][start:stop])),
                "response_b": pool.take(pa.array(sim["resp_b"][start:stop])),
                "winner_model_a": labels[:, 0], "winner_model_b": labels[:, 1], "winner_tie": labels[:, 2],
                "weight": pa.array(sim["weight"][start:stop]),
                "topic": topics.take(pa.array(sim["topic"][start:stop])),
            })
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


# -- the reference -----------------------------------------------------------------------------------------------
def fastchat_compute_mle_elo(df: pd.DataFrame, SCALE=400, BASE=10, INIT_RATING=1000, sparse_design=False):
    """FastChat's original compute_mle_elo (fastchat/serve/monitor/elo_analysis.py), the design matrix optionally
    stored sparse (same values, same solver)."""
    from sklearn.linear_model import LogisticRegression

    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    # duplicate battles
    df = pd.concat([df, df], ignore_index=True)
    p = len(models.index)
    n = df.shape[0]
    rows = np.arange(n)
    cols_a, cols_b = models[df["model_a"]].to_numpy(), models[df["model_b"]].to_numpy()
    if sparse_design:
        from scipy import sparse

        X = sparse.csr_matrix((np.r_[np.full(n, math.log(BASE)), np.full(n, -math.log(BASE))],
                               (np.r_[rows, rows], np.r_[cols_a, cols_b])), shape=(n, p))
    else:
        X = np.zeros([n, p])
        X[rows, cols_a] = +math.log(BASE)
        X[rows, cols_b] = -math.log(BASE)
    # one A win => two A win
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    # one tie => one A win + one B win
    tie_idx = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie_idx[len(tie_idx) // 2:] = False
    Y[tie_idx] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its ConvergenceWarning at max_iter=100 is part of the original
        lr.fit(X, Y)
    elo_scores = SCALE * lr.coef_[0] + INIT_RATING
    return pd.Series(elo_scores, index=models.index).sort_values(ascending=False)


def fastchat_frame(sim: dict, n: int) -> pd.DataFrame:
    winner = np.array(["model_a", "model_b", "tie"], dtype=object)[sim["labels"][:n]]
    return pd.DataFrame({"model_a": sim["names"][sim["a"][:n]], "model_b": sim["names"][sim["b"][:n]],
                         "winner": winner})


# -- the benchmark -----------------------------------------------------------------------------------------------
def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def compare_size(sim: dict, n: int, opts, memory: PeakMemory) -> dict:
    """Ours and the reference on the first n battles: fit, bootstrap round, memory, largest rating difference."""
    labels = sim["labels"][:n]
    frame = battles_frame(sim, n)
    fit_s, fit_mib, board = memory.measure(lambda: rate(frame, labels, bootstrap=0))
    boot_s, boot_mib, booted = memory.measure(lambda: rate(frame, labels, bootstrap=opts.bootstrap, seed=1))
    ours = board.table.set_index("model")["rating"]

    reference = fastchat_frame(sim, n)
    fastchat_compute_mle_elo(reference.head(1000))  # imports sklearn and warms it up outside the timing
    dense = 2 * n * opts.models * 8 / 2**20 <= opts.dense_limit_mb
    ref_fit_s, ref_mib, ref = memory.measure(lambda: fastchat_compute_mle_elo(reference, sparse_design=not dense))
    rng = np.random.default_rng(2)

    def reference_rounds():
        for _ in range(opts.reference_rounds):
            sample = reference.sample(frac=1.0, replace=True, random_state=rng)
            fastchat_compute_mle_elo(sample, sparse_design=not dense)

    ref_boot_s, ref_boot_mib, _ = memory.measure(reference_rounds)
    ref = ref.reindex(ours.index)
    diff = (ours - ours.mean()) - (ref - ref.mean())
    per_round = max(boot_s - fit_s, 1e-9) / opts.bootstrap
    ref_round = ref_boot_s / opts.reference_rounds
    result = {
        "battles": n, "pairs": int(len(np.unique(sim["a"][:n] * opts.models + sim["b"][:n]))),
        "ours_fit_s": round(fit_s, 4), "ours_round_s": round(per_round, 5),
        "ours_bootstrap_s": round(boot_s, 2), "ours_peak_mib": round(max(fit_mib, boot_mib), 1),
        "reference_design": "dense" if dense else "sparse",
        "reference_fit_s": round(ref_fit_s, 3), "reference_round_s": round(ref_round, 3),
        "reference_peak_mib": round(max(ref_mib, ref_boot_mib), 1),
        "fit_speedup": round(ref_fit_s / fit_s, 1), "round_speedup": round(ref_round / per_round, 1),
        "max_abs_rating_diff": round(float(np.abs(diff).max()), 4),
        "ours_ci_width_median": round(float((booted.table["ci_high"] - booted.table["ci_low"]).median()), 2),
    }
    print(f"{n:>9} battles ({result['pairs']} pairs): fit ours {fit_s:.3f}s "
          f"vs reference ({result['reference_design']}) "
          f"{ref_fit_s:.2f}s = {result['fit_speedup']}x; bootstrap round ours {per_round * 1000:.2f} ms vs "
          f"{ref_round:.2f}s = {result['round_speedup']}x ({opts.bootstrap} rounds {boot_s:.1f}s); peak memory ours "
          f"{result['ours_peak_mib']} MiB, reference {result['reference_peak_mib']} MiB; largest rating difference "
          f"{result['max_abs_rating_diff']:.4f} Elo", flush=True)
    return result


def cli_runs(sim: dict, opts, workdir: Path) -> dict:
    n = opts.cli_rows
    data = workdir / "battles.csv"
    start = time.perf_counter()
    write_kaggle_csv(sim, n, data)
    print(f"wrote {n} battles to {data} ({data.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f}s",
          flush=True)
    runs = {
        "cli_bootstrap": ["--bootstrap", opts.bootstrap],
        "cli_no_intervals": ["--bootstrap", 0],
        "cli_sandwich": ["--ci", "sandwich"],
        "cli_style_sandwich": ["--style-control", "--ci", "sandwich"],
        # weighted battles (bootstrap over (pair, outcome, weight) cells) and a board per category (3 more boards)
        "cli_weights_category": ["--bootstrap", opts.bootstrap, "--weights", "weight", "--category", "topic"],
    }
    if opts.style_rounds > 0:
        runs["cli_style_bootstrap"] = ["--style-control", "--bootstrap", opts.style_rounds]
    if opts.runs:
        wanted = {f"cli_{name}" for name in opts.runs.split(",")} | {"cli_bootstrap", "cli_no_intervals"}
        runs = {name: flags for name, flags in runs.items() if name in wanted}
    results = {"cli_rows": n, "cli_file_mib": round(data.stat().st_size / 2**20, 1)}
    truth = pd.Series(sim["true_elo"], index=sim["names"])
    for name, flags in runs.items():
        out = workdir / name
        run = run_cli_measured(["--data", data, "--output", out, *flags])
        if run["rc"] != 0:
            raise SystemExit(f"{name} failed ({run['rc']}): {run['stderr'][-2000:]}")
        results[name] = {"flags": " ".join(map(str, flags)), "seconds": run["seconds"], "cpu_s": run["cpu_s"],
                         "peak_mib": run["peak_mib"]}
        table = pd.read_csv(out / "leaderboard.csv").set_index("model")
        results[name]["spearman_plain_vs_truth"] = round(spearman(table["rating"], truth[table.index]), 4)
        if "style_rating" in table.columns:
            results[name]["spearman_style_vs_truth"] = round(spearman(table["style_rating"], truth[table.index]), 4)
            summary = json.loads((out / "leaderboard.json").read_text())
            results[name]["length_coef"] = summary["style"]["coefficients"]["votes"]["tokens"]
        print(f"arenapref leaderboard --data battles.csv {results[name]['flags']}: {run['seconds']:.1f}s wall "
              f"({run['cpu_s']:.0f} CPU s), "
              f"{run['peak_mib']:.0f} MiB peak; Spearman with the truth {results[name]['spearman_plain_vs_truth']}"
              + (f" plain, {results[name]['spearman_style_vs_truth']} style controlled"
                 if "spearman_style_vs_truth" in results[name] else ""), flush=True)
    rounds = opts.bootstrap
    results["cli_round_s"] = round((results["cli_bootstrap"]["seconds"] - results["cli_no_intervals"]["seconds"])
                                   / rounds, 5)
    if "cli_style_bootstrap" in results and "cli_style_sandwich" in results:
        results["cli_style_round_s"] = round((results["cli_style_bootstrap"]["seconds"]
                                              - results["cli_style_sandwich"]["seconds"]) / opts.style_rounds, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,2000000", help="battle counts compared in process")
    parser.add_argument("--models", type=int, default=150)
    parser.add_argument("--bootstrap", type=int, default=1000, help="our bootstrap rounds (and the CLI's)")
    parser.add_argument("--reference-rounds", type=int, default=2, help="bootstrap rounds timed for the reference")
    parser.add_argument("--cli-rows", type=int, default=None, help="battles in the CLI's file (default: the largest "
                                                                    "size; 0: skip the CLI runs)")
    parser.add_argument("--style-rounds", type=int, default=3, help="bootstrap rounds of the style-controlled CLI run")
    parser.add_argument("--runs", default="", help="only these CLI runs besides bootstrap and no_intervals (names "
                                                   "without cli_, e.g. weights_category); default: all")
    parser.add_argument("--length-effect", type=float, default=0.4, help="planted log-odds per sd of length")
    parser.add_argument("--dense-limit-mb", type=float, default=1000.0, help="largest dense reference design matrix")
    parser.add_argument("--mean-tokens", type=float, default=40.0, help="typical response length of the pool")
    parser.add_argument("--workdir", type=Path, default=None, help="where the CSV goes (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",") if s]
    opts.cli_rows = max(sizes) if opts.cli_rows is None else opts.cli_rows
    rng = np.random.default_rng(opts.seed)
    start = time.perf_counter()
    sim = simulate(max(sizes + [opts.cli_rows]), opts.models, opts.length_effect, nu=0.75, rng=rng,
                   mean_tokens=opts.mean_tokens)
    ties = float(np.mean(sim["labels"] == 2))
    print(f"simulated {len(sim['labels'])} battles among {opts.models} models ({ties:.1%} ties, planted length effect "
          f"{opts.length_effect} log-odds per sd) in {time.perf_counter() - start:.0f}s on {os.cpu_count()} CPUs",
          flush=True)
    memory = PeakMemory()
    results = {"models": opts.models, "bootstrap": opts.bootstrap, "reference_rounds": opts.reference_rounds,
               "tie_share": round(ties, 4), "length_effect": opts.length_effect, "cpus": os.cpu_count(), "sizes": {}}
    for n in sizes:
        results["sizes"][str(n)] = compare_size(sim, n, opts, memory)
    if opts.cli_rows > 0:
        workdir = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="arenapref-bench-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            results.update(cli_runs(sim, opts, workdir))
        finally:
            if opts.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
