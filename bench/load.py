"""Load test of `arenapref serve` on loopback: concurrent clients, valid and malformed requests, bounded.

    python bench/load.py [--model DIR] [--clients 16] [--requests 400] [--malformed-share 0.25]

Starts `arenapref serve` as a subprocess on a free loopback port, waits for /healthz, warms it up (`--warmup`
requests of the same mix, not measured), then sends
`--requests` requests from `--clients` concurrent keep-alive clients and stops. The mix: single comparisons and lists
of comparisons built from real arena rows (multi-turn, null turns, long texts), best-of-n rankings, and malformed
requests of many kinds (broken JSON, missing or extra fields, wrong types, turn counts that differ, too many items,
an oversized body, a wrong method or path). Checks: no 5xx at all, every malformed request answered 4xx, every
valid one 200 with probabilities that sum to 1, and the server's resident memory flat (it is sampled all along;
"growth" compares the second half of the run with the first). Prints p50 / p99 latency and requests per second,
and, last, one JSON line with every figure. Exit code 1 if a check fails.

Without --model, a model directory is built from the default backbone (all-MiniLM-L6-v2) with an untrained head:
the same computation per request as a trained model of that backbone, which is what a load test measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (ROOT.parent / "shared" / "data" / "arena_sample.csv",
                         Path("/work/shared/data/arena_sample.csv")) if p.exists()), None)
LABELS = ("winner_model_a", "winner_model_b", "winner_tie")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def untrained_model_dir(out: Path, max_length: int) -> Path:
    """The default backbone with a fresh head, saved as a model directory (the cost of a real one, untrained)."""
    from arenapref.config import TrainConfig
    from arenapref.data.text import TextSettings
    from arenapref.models import MODELS
    from arenapref.training.neural import save_model_dir

    cfg = TrainConfig(data="-", output=str(out), max_length=max_length)
    recipe = MODELS[cfg.model].load_recipe()
    tokenizer = recipe.tokenizer(cfg.backbone, cfg)
    model = recipe.build(cfg, tokenizer)
    settings = TextSettings(max_length=cfg.max_length, response_weight=cfg.response_weight,
                            truncation_side=cfg.truncation_side)
    meta = {"format_version": 1, "model_type": cfg.model, "objective": cfg.objective, "rank_loss": cfg.rank_loss,
            "backbone": cfg.backbone, "labels": list(LABELS), "text": settings.to_dict(),
            "calibration": {"temperature": 1.0}, "note": "untrained head, built by bench/load.py"}
    out.mkdir(parents=True, exist_ok=True)
    save_model_dir(out, model, tokenizer, meta)
    return out


# -- the request mix ---------------------------------------------------------------------------------------------

def real_items(n: int, seed: int) -> list[dict]:
    """Comparisons from the real arena sample (turn lists as they are, null turns included)."""
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False).sample(n=n, random_state=seed)
    return [{"prompt": json.loads(r.prompt), "response_a": json.loads(r.response_a),
             "response_b": json.loads(r.response_b)} for r in frame.itertuples()]


def malformed_requests(max_items: int, max_body: int) -> list[tuple[str, str, bytes | None, dict]]:
    """(name, method, path, raw body, headers): each must get a 4xx answer."""
    ok = {"prompt": "Hi", "response_a": "Hello", "response_b": "Hey"}
    js = {"content-type": "application/json"}

    def body(value) -> bytes:
        return json.dumps(value).encode()

    return [
        ("broken json", "POST", "/v1/compare", b'{"prompt": "Hi", "response_a": ', js),
        ("not json at all", "POST", "/v1/compare", b"prompt=Hi&response_a=Hello", js),
        ("empty body", "POST", "/v1/compare", b"", js),
        ("missing field", "POST", "/v1/compare", body({"prompt": "Hi", "response_a": "Hello"}), js),
        ("unknown field", "POST", "/v1/compare", body({**ok, "response_c": "?"}), js),
        ("number as prompt", "POST", "/v1/compare", body({**ok, "prompt": 42}), js),
        ("list of numbers", "POST", "/v1/compare", body({**ok, "response_b": [1, 2]}), js),
        ("turn counts differ", "POST", "/v1/compare", body({**ok, "prompt": ["a", "b"]}), js),
        ("empty turn list", "POST", "/v1/compare", body({**ok, "response_a": []}), js),
        ("a bare string", "POST", "/v1/compare", body("compare these"), js),
        ("too many items", "POST", "/v1/compare", body([ok] * (max_items + 1)), js),
        ("body over the limit", "POST", "/v1/compare", body({**ok, "response_a": "x" * (max_body + 10)}), js),
        ("rank without responses", "POST", "/v1/rank", body({"prompt": "Hi", "responses": []}), js),
        ("rank with objects", "POST", "/v1/rank", body({"prompt": "Hi", "responses": [{"text": "a"}]}), js),
        ("wrong method", "GET", "/v1/compare", None, {}),
        ("unknown path", "POST", "/v1/judge", body(ok), js),
    ]


def plan(n_requests: int, malformed_share: float, items: list[dict], max_items: int, max_body: int, seed: int):
    """A fixed, shuffled list of requests: (kind, name, method, path, body bytes, headers)."""
    rng = random.Random(seed)
    bad = malformed_requests(max_items, max_body)
    js = {"content-type": "application/json"}
    out = []
    for k in range(n_requests):
        if rng.random() < malformed_share:
            name, method, path, body, headers = bad[k % len(bad)]
            out.append(("malformed", name, method, path, body, headers))
            continue
        shape = rng.choice(("one", "one", "list", "rank"))
        if shape == "one":
            payload, path = rng.choice(items), "/v1/compare"
        elif shape == "list":
            payload, path = rng.sample(items, rng.randint(2, 6)), "/v1/compare"
        else:
            base = rng.choice([it for it in items if len(it["prompt"]) == 1])
            others = [it["response_a"] for it in rng.sample(items, 3) if len(it["response_a"]) == 1]
            payload, path = ({"prompt": base["prompt"], "responses": [base["response_a"], base["response_b"], *others]},
                             "/v1/rank")
        body = json.dumps(payload).encode()
        if len(body) > max_body:  # a valid request must fit the server's limit; use a single comparison instead
            shape, path, body = "one", "/v1/compare", json.dumps(items[k % len(items)]).encode()
        out.append(("valid", shape, "POST", path, body, js))
    return out


def answer_ok(shape: str, body) -> bool:
    """A valid request's answer has the documented shape, probabilities summing to 1."""
    def probs_ok(p):
        return isinstance(p, dict) and abs(sum(p[k] for k in LABELS) - 1) < 1e-4 and all(p[k] >= 0 for k in LABELS)

    if shape == "one":
        return probs_ok(body)
    if shape == "list":
        return isinstance(body, list) and all(probs_ok(p) for p in body)
    return (isinstance(body, dict)
            and sorted(r["rank"] for r in body["ranking"]) == list(range(1, len(body["ranking"]) + 1)))


# -- the run -----------------------------------------------------------------------------------------------------

class MemorySampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append((time.perf_counter(), rss_mib(self.pid)))
            except OSError:
                return
            self.stop.wait(self.every)


async def drive(base: str, requests: list, clients: int, timeout: float) -> list[dict]:
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    results = []

    async def client():
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as http:
            while True:
                try:
                    kind, name, method, path, body, headers = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                try:
                    resp = await http.request(method, path, content=body, headers=headers)
                    status, payload = resp.status_code, resp.content
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure, like a 5xx
                    status, payload = 0, str(exc).encode()
                results.append({"kind": kind, "name": name, "status": status, "seconds": time.perf_counter() - start,
                                "body": payload})

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def start_server(model: Path, port: int, max_items: int, max_body: int, log_path: Path):
    log = log_path.open("w")
    # This checkout's code on the path first, not whatever copy is installed in the environment.
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "arenapref", "serve", "--model", str(model), "--port", str(port),
                             "--max-items", str(max_items), "--max-body-bytes", str(max_body)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": python_path})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise SystemExit("server did not answer /healthz within 300 s")
        time.sleep(0.3)


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 1) if seconds else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Model directory (default: the default backbone, untrained head).")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--malformed-share", type=float, default=0.25)
    parser.add_argument("--warmup", type=int, default=100,
                        help="Requests (same mix) before measuring: the allocator reaches its working size first.")
    parser.add_argument("--max-items", type=int, default=64, help="The server's --max-items.")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000, help="The server's --max-body-bytes.")
    parser.add_argument("--max-length", type=int, default=128, help="Token budget of the built model (no --model).")
    parser.add_argument("--timeout", type=float, default=120.0, help="Seconds one request may take.")
    parser.add_argument("--max-growth-mib", type=float, default=50.0,
                        help="Largest allowed RSS growth from the first to the second half of the run.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if DATA is None:
        raise SystemExit("arena_sample.csv not found beside the checkout (../shared/data)")

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or untrained_model_dir(Path(tmp) / "model", args.max_length)
        items = real_items(200, args.seed)
        requests = plan(args.requests, args.malformed_share, items, args.max_items, args.max_body_bytes, args.seed)
        proc, base = start_server(model, free_port(), args.max_items, args.max_body_bytes, Path(tmp) / "server.log")
        sampler = MemorySampler(proc.pid)
        try:
            # Warm-up (first forward passes allocate the buffers a steady state reuses), then the measured run.
            warm = plan(args.warmup, args.malformed_share, items, args.max_items, args.max_body_bytes, args.seed + 1)
            asyncio.run(drive(base, warm, args.clients, args.timeout))
            rss_start = rss_mib(proc.pid)
            sampler.start()
            started = time.perf_counter()
            results = asyncio.run(drive(base, requests, args.clients, args.timeout))
            elapsed = time.perf_counter() - started
            sampler.stop.set()
            sampler.join()
            rss_end = rss_mib(proc.pid)
            server_alive = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    valid = [r for r in results if r["kind"] == "valid"]
    bad = [r for r in results if r["kind"] == "malformed"]
    server_errors = [r for r in results if r["status"] >= 500 or r["status"] == 0]
    bad_not_4xx = [r for r in bad if not 400 <= r["status"] < 500]
    valid_failed = [r for r in valid if r["status"] != 200 or not answer_ok(r["name"], json.loads(r["body"]))]
    mid = started + elapsed / 2
    first = [m for t, m in sampler.samples if t < mid] or [rss_start]
    second = [m for t, m in sampler.samples if t >= mid] or [rss_end]
    growth = float(np.median(second) - np.median(first))
    quarters = [round(float(np.median([m for t, m in sampler.samples
                                       if started + q * elapsed / 4 <= t < started + (q + 1) * elapsed / 4]
                                      or [rss_end])), 1)
                for q in range(4)]
    statuses = {}
    for r in bad:
        statuses.setdefault(r["name"], set()).add(r["status"])

    print(f"{len(results)} requests from {args.clients} clients in {elapsed:.1f} s: {len(valid)} valid, "
          f"{len(bad)} malformed")
    print(f"valid   latency p50 {percentile_ms([r['seconds'] for r in valid], 50)} ms, "
          f"p99 {percentile_ms([r['seconds'] for r in valid], 99)} ms")
    print(f"all     latency p50 {percentile_ms([r['seconds'] for r in results], 50)} ms, "
          f"p99 {percentile_ms([r['seconds'] for r in results], 99)} ms, {len(results) / elapsed:.1f} requests/s")
    print("malformed answers: " + ", ".join(f"{name} {sorted(s)}" for name, s in sorted(statuses.items())))
    print(f"server RSS: {rss_start:.0f} MiB after warm-up, peak {max(m for _, m in sampler.samples):.0f} MiB, "
          f"{rss_end:.0f} MiB at the end; median by quarter {quarters}; second half - first half: {growth:+.1f} MiB")
    checks = {
        "no_5xx": not server_errors,
        "malformed_all_4xx": not bad_not_4xx,
        "valid_all_200": not valid_failed,
        "memory_flat": growth <= args.max_growth_mib,
        "server_alive": server_alive,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    for r in (server_errors + bad_not_4xx + valid_failed)[:5]:
        print(f"  e.g. {r['kind']} {r['name']}: {r['status']} {r['body'][:200]!r}")
    summary = {
        "requests": len(results), "clients": args.clients, "valid": len(valid), "malformed": len(bad),
        "seconds": round(elapsed, 2), "requests_per_second": round(len(results) / elapsed, 2),
        "valid_p50_ms": percentile_ms([r["seconds"] for r in valid], 50),
        "valid_p99_ms": percentile_ms([r["seconds"] for r in valid], 99),
        "p50_ms": percentile_ms([r["seconds"] for r in results], 50),
        "p99_ms": percentile_ms([r["seconds"] for r in results], 99),
        "status_5xx": len(server_errors), "malformed_not_4xx": len(bad_not_4xx), "valid_failed": len(valid_failed),
        "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1),
        "rss_peak_mib": round(max(m for _, m in sampler.samples), 1), "rss_growth_mib": round(growth, 1),
        "rss_quarters_mib": quarters,
        "model": str(args.model) if args.model else "default backbone, untrained head",
        **checks,
    }
    print(json.dumps(summary))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
