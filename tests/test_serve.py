"""The HTTP service over real HTTP: `arenapref serve` in a subprocess on a free loopback port, called with httpx."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from conftest import ROOT, run_cli

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]
ITEMS = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "It is 4, because two and two make four."},
    {"prompt": ["Hi", "Tell me a joke"], "response_a": ["Hello!", "No."], "response_b": ["Hey", None]},
    {"prompt": "Name a colour", "response_a": "", "response_b": "Blue"},
]
MAX_ITEMS, MAX_BODY = 40, 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(rank_model):
    port = free_port()
    # A generous gathering window makes the micro-batching test deterministic on a busy machine.
    proc = subprocess.Popen([sys.executable, "-m", "arenapref", "serve", "--model", str(rank_model), "--port",
                             str(port), "--batch-wait-ms", "100", "--max-items", str(MAX_ITEMS), "--max-body-bytes",
                             str(MAX_BODY)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise AssertionError("server did not answer /healthz within 240 s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def judge(rank_model):
    from arenapref import Judge

    return Judge.from_pretrained(rank_model, device="cpu")


def test_health_model_card_and_docs(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    card = httpx.get(f"{server}/v1/model").json()
    assert card["model_type"] == "dual-tower" and card["objective"] == "rank" and card["ranking"] == "scores"
    assert card["labels"] == LABELS
    assert card["backbone"].endswith("tiny_deberta") or "tiny_deberta" in card["backbone"]
    assert 0 < card["valid_metrics"]["log_loss"] < 5 and card["valid_metrics"]["n"] > 0
    assert card["serving"]["max_items"] == MAX_ITEMS
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/v1/compare", "/v1/rank", "/v1/model", "/healthz"} <= set(spec["paths"])
    docs = httpx.get(f"{server}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_compare_single_and_list_match_the_python_api(server, judge):
    single = httpx.post(f"{server}/v1/compare", json=ITEMS[0]).json()
    assert list(single) == LABELS and abs(sum(single.values()) - 1) < 1e-9
    expected = judge.predict(ITEMS[0]["prompt"], ITEMS[0]["response_a"], ITEMS[0]["response_b"])
    assert np.allclose(list(single.values()), list(expected.values()), atol=1e-5)
    many = httpx.post(f"{server}/v1/compare", json=ITEMS).json()
    assert isinstance(many, list) and len(many) == 3
    assert np.allclose(list(many[0].values()), list(single.values()), atol=1e-5)
    multi = judge.predict(["Hi", "Tell me a joke"], ["Hello!", "No."], ["Hey", ""])
    assert np.allclose(list(many[1].values()), list(multi.values()), atol=1e-5)


def test_rank_matches_the_python_api(server, judge):
    responses = ["Paris.", "London", "The capital of France is Paris.", "I don't know."]
    body = httpx.post(f"{server}/v1/rank", json={"prompt": "Capital of France?", "responses": responses}).json()
    expected = judge.rank("Capital of France?", responses)
    assert body["method"] == "scores"
    assert [r["index"] for r in body["ranking"]] == [r["index"] for r in expected]
    assert np.allclose([r["score"] for r in body["ranking"]], [r["score"] for r in expected], atol=1e-5)


def test_concurrent_requests_share_forward_passes(server, judge):
    before = httpx.get(f"{server}/v1/model").json()["serving"]
    prompts = [f"Question number {i}: what is {i} + {i}?" for i in range(16)]

    async def fire():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(f"{server}/v1/compare", json={
                "prompt": p, "response_a": str(2 * i), "response_b": f"It is {2 * i}."})
                for i, p in enumerate(prompts)))

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    after = httpx.get(f"{server}/v1/model").json()["serving"]
    assert after["requests"] - before["requests"] == 16
    assert after["rows"] - before["rows"] == 16
    passes = after["forward_passes"] - before["forward_passes"]
    assert 1 <= passes < 16, f"{passes} forward passes for 16 concurrent requests: no micro-batching"
    # Batching must not change answers: each response equals the single-row prediction.
    for i in (0, 7, 15):
        expected = judge.predict(prompts[i], str(2 * i), f"It is {2 * i}.")
        assert np.allclose(list(responses[i].json().values()), list(expected.values()), atol=1e-5)
    metrics = httpx.get(f"{server}/metrics").text
    assert f"arenapref_forward_passes_total {after['forward_passes']}" in metrics


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": "a", "response_a": "b"}, "response_b: Field required"),
    ({"prompt": ["a", "b"], "response_a": "x", "response_b": ["y", "z"]}, "response_a has 1 turn(s) but prompt has 2"),
    ({"prompt": "a", "response_a": 5, "response_b": "c"},
     "response_a: Value error, expected a string or a non-empty list"),
    ([{"prompt": "a", "response_a": "b", "response_b": "c"}, {"prompt": "a"}], "1.response_a: Field required"),
    ({"prompt": "a", "response_a": "b", "response_b": "c", "typo": 1}, "typo: Extra inputs are not permitted"),
    ("just a string", "Input should be a valid dictionary"),
])
def test_malformed_bodies_get_422_with_a_clear_message(server, body, fragment):
    response = httpx.post(f"{server}/v1/compare", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["detail"], response.json()["detail"]


def test_not_json_and_bad_rank_bodies_get_422(server):
    response = httpx.post(f"{server}/v1/compare", content=b'{"prompt": ', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["detail"]
    response = httpx.post(f"{server}/v1/rank", json={"prompt": "a", "responses": []})
    assert response.status_code == 422 and "responses" in response.json()["detail"]


def test_oversized_requests_get_413(server):
    too_many = httpx.post(f"{server}/v1/compare", json=[ITEMS[0]] * (MAX_ITEMS + 1))
    assert too_many.status_code == 413 and f"limit is {MAX_ITEMS}" in too_many.json()["detail"]
    too_many_responses = httpx.post(f"{server}/v1/rank", json={"prompt": "a", "responses": ["x"] * 10})
    assert too_many_responses.status_code == 413  # 10 x 9 ordered pairs > 40
    big = {"prompt": "a", "response_a": "x" * MAX_BODY, "response_b": "y"}
    assert httpx.post(f"{server}/v1/compare", json=big).status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while reading
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 4096):
            yield payload[start:start + 4096]

    chunked = httpx.post(f"{server}/v1/compare", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "bytes" in chunked.json()["detail"]
    assert httpx.get(f"{server}/healthz").status_code == 200  # still serving


def test_serve_on_a_busy_port_is_a_one_line_error(rank_model):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run_cli("serve", "--model", rank_model, "--port", port, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port} is in use" in proc.stderr


class LengthBackend:
    """A stand-in pairwise model (no per-response score): the longer response wins, side A gets +1 logit."""

    def predict_logits(self, frame, progress=None):
        diff = np.array([len(" ".join(a)) - len(" ".join(b)) for a, b in zip(frame["response_a"], frame["response_b"])])
        return np.stack([diff / 20 + 1.0, -diff / 20, np.zeros(len(diff))], axis=1), None


def test_pairwise_rank_over_http_for_a_model_without_side_scores():
    """The /v1/rank path of classify / cross-encoder / llm / gbdt models, served by uvicorn in a thread."""
    import threading

    import uvicorn

    from arenapref.api import Judge
    from arenapref.serve import create_app

    judge = Judge(LengthBackend(), {"model_type": "stub", "labels": LABELS})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(judge), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        responses = ["a" * 30, "a" * 5, "a" * 50, "a" * 12]
        body = httpx.post(f"http://127.0.0.1:{port}/v1/rank", json={"prompt": "p", "responses": responses}).json()
        assert body["method"] == "pairwise"
        assert [r["index"] for r in body["ranking"]] == [2, 0, 3, 1]
        expected = judge.rank("p", responses)
        assert np.allclose([r["score"] for r in body["ranking"]], [r["score"] for r in expected], atol=1e-9)
        card = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        assert card["ranking"] == "pairwise" and card["serving"]["rows"] == 12  # 4 x 3 ordered pairs
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_mmap_threshold_is_pinned_where_glibc_allows_it():
    """The server pins glibc's mmap threshold (its RSS otherwise creeps up under load: bench/load.py)."""
    import platform

    from arenapref.serve import fix_mmap_threshold

    assert fix_mmap_threshold() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
