"""The HTTP service over real HTTP: `arenapref serve` in a subprocess on a free loopback port, called with httpx; the
API key, TTA, verdicts and diagnostics also in process with FastAPI's TestClient."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from arenapref.evaluation.metrics import verdicts
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


def without_key() -> dict:
    """This environment, less an API key a developer may have exported."""
    return {k: v for k, v in os.environ.items() if k != "ARENAPREF_API_KEY"}


@contextlib.contextmanager
def serving(model, *flags, env: dict):
    """`arenapref serve` in a subprocess on a free loopback port, until /healthz answers: yields (base URL, process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "arenapref", "serve", "--model", str(model), "--port", str(port),
                             *map(str, flags)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
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
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(rank_model):
    # A generous gathering window makes the micro-batching test deterministic on a busy machine.
    with serving(rank_model, "--batch-wait-ms", 100, "--max-items", MAX_ITEMS, "--max-body-bytes", MAX_BODY,
                 env=without_key()) as (base, _):
        yield base


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


def probs_of(item: dict) -> list[float]:
    return [item[k] for k in LABELS]


def test_compare_single_and_list_match_the_python_api(server, judge):
    single = httpx.post(f"{server}/v1/compare", json=ITEMS[0]).json()
    assert list(single) == [*LABELS, "verdict"] and abs(sum(probs_of(single)) - 1) < 1e-9
    expected = judge.predict(ITEMS[0]["prompt"], ITEMS[0]["response_a"], ITEMS[0]["response_b"])
    assert np.allclose(probs_of(single), list(expected.values()), atol=1e-5)
    assert single["verdict"] == verdicts(np.array([probs_of(single)]))[0]
    many = httpx.post(f"{server}/v1/compare", json=ITEMS).json()
    assert isinstance(many, list) and len(many) == 3
    assert np.allclose(probs_of(many[0]), probs_of(single), atol=1e-5)
    multi = judge.predict(["Hi", "Tell me a joke"], ["Hello!", "No."], ["Hey", ""])
    assert np.allclose(probs_of(many[1]), list(multi.values()), atol=1e-5)


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
        assert np.allclose(probs_of(responses[i].json()), list(expected.values()), atol=1e-5)
    metrics = httpx.get(f"{server}/metrics").text
    assert f"arenapref_forward_passes_total {after['forward_passes']}" in metrics


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": "a", "response_a": "b"}, "response_b: Field required"),
    ({"prompt": ["a", "b"], "response_a": "x", "response_b": ["y", "z"]}, "response_a has 1 turn(s) but prompt has 2"),
    ({"prompt": "a", "response_a": 5, "response_b": "c"},
     "response_a: Value error, expected a string or a non-empty list"),
    ([{"prompt": "a", "response_a": "b", "response_b": "c"}, {"prompt": "a"}], "1.response_a: Field required"),
    ({"prompt": "a", "response_a": "b", "response_b": "c", "typo": 1}, "typo: Extra inputs are not permitted"),
    ({"prompt": "a", "response_a": "b", "response_b": "c", "tta": "mirror"}, "tta: Input should be 'none' or 'swap'"),
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


# -- API key, TTA, verdicts and diagnostics: in process (FastAPI's TestClient runs the lifespan, so the batchers too) --
KEY = "k3y-0123456789abcdef"
PROTECTED = [("GET", "/v1/model", None), ("GET", "/metrics", None), ("POST", "/v1/compare", ITEMS[0]),
             ("POST", "/v1/rank", {"prompt": "p", "responses": ["x", "yy"]})]


def stub_judge(tta: str = "none"):
    """LengthBackend as a Judge, with a calibration whose swap temperature differs (TTA must pick it up)."""
    from arenapref.api import Judge

    return Judge(LengthBackend(), {"model_type": "stub", "labels": LABELS,
                                   "calibration": {"temperature": 2.0, "temperature_swap": 1.5}}, tta=tta)


def client_for(judge, **kwargs):
    from fastapi.testclient import TestClient

    from arenapref.serve import create_app

    return TestClient(create_app(judge, **kwargs))


def frame_of(items: list[dict]) -> pd.DataFrame:
    """Request items as a Kaggle-style frame (JSON-encoded turn lists), for the Python API."""
    turns = lambda value: json.dumps(value if isinstance(value, list) else [value])
    return pd.DataFrame([{"id": str(i), **{k: turns(item[k]) for k in ("prompt", "response_a", "response_b")}}
                         for i, item in enumerate(items)])


def test_api_key_guards_every_route_but_healthz():
    with client_for(stub_judge(), api_key=KEY) as client:
        assert client.get("/healthz").status_code == 200
        for method, path, body in PROTECTED:
            for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"},
                            {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "API key" in response.json()["detail"] and KEY not in response.text
            response = client.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
            assert response.status_code == 200, (path, response.text)
            assert KEY not in response.text
        # The key is checked before the body: a caller without it learns nothing about what the service accepts.
        assert client.post("/v1/compare", json={"prompt": "a"}).status_code == 401
        # The docs stay open (a browser cannot send the header) and describe the scheme, never the key.
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and KEY not in spec.text
        spec = spec.json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert spec["paths"]["/v1/compare"]["post"]["security"] == [{"HTTPBearer": []}]
        assert "security" not in spec["paths"]["/healthz"]["get"]


def test_without_a_key_every_route_is_open():
    with client_for(stub_judge()) as client:
        for method, path, body in PROTECTED:
            assert client.request(method, path, json=body).status_code == 200, path
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@pytest.mark.parametrize("host, key, warned", [
    ("0.0.0.0", None, True), ("::", None, True), ("192.168.1.5", None, True), ("example.org", None, True),
    ("0.0.0.0", KEY, False), ("127.0.0.1", None, False), ("127.0.0.2", None, False), ("::1", None, False),
    ("[::1]", None, False), ("localhost", None, False), ("LOCALHOST", None, False),
])
def test_a_server_others_can_reach_without_a_key_is_warned_about(host, key, warned):
    from arenapref.serve import open_access_warning

    warning = open_access_warning(host, key)
    assert (warning is not None) == warned
    if warned:
        assert "\n" not in warning and host in warning
        assert "ARENAPREF_API_KEY" in warning and "--api-key-file" in warning


def test_the_api_key_comes_from_the_file_or_the_environment(tmp_path):
    from arenapref.cli.serve import read_api_key
    from arenapref.errors import DataError

    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n", encoding="utf-8")
    assert read_api_key(None, {}) is None
    assert read_api_key(None, {"ARENAPREF_API_KEY": f"{KEY}\n"}) == KEY
    assert read_api_key(key_file, {}) == KEY
    assert read_api_key(key_file, {"ARENAPREF_API_KEY": "other"}) == KEY  # the flag wins
    (tmp_path / "empty").write_text(" \n", encoding="utf-8")
    (tmp_path / "spaced").write_text("two words", encoding="utf-8")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for file, environ, fragment in [
        (tmp_path / "empty", {}, "is empty"), (tmp_path / "missing", {}, "cannot read it"),
        (tmp_path, {}, "cannot read it"), (tmp_path / "binary", {}, "not UTF-8"),
        (tmp_path / "spaced", {}, "printable ASCII without spaces"),
        (None, {"ARENAPREF_API_KEY": "  "}, "set but empty"),
        (None, {"ARENAPREF_API_KEY": "caf\u00e9"}, "printable ASCII"),
    ]:
        with pytest.raises(DataError, match=fragment) as caught:
            read_api_key(file, environ)
        assert "\n" not in str(caught.value) and "two words" not in str(caught.value)


@pytest.mark.parametrize("flags, fragment", [
    (("--api-key-file", "{tmp}/empty"), "is empty"),
    (("--api-key-file", "{tmp}/missing"), "cannot read it"),
    (("--tta", "mirror"), "tta 'mirror': expected one of none, swap"),
])
def test_serve_refuses_a_bad_key_file_or_tta_in_one_line(flags, fragment, tmp_path):
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    proc = run_cli("serve", "--model", tmp_path / "no-model", *(f.format(tmp=tmp_path) for f in flags), check=False,
                   timeout=120, env=without_key())
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr, proc.stderr


def test_serve_with_a_key_file_over_http(rank_model, tmp_path):
    """The command line's wiring: the file's key (not the environment's: the flag wins) opens every route, and the
    server's output never shows it."""
    (tmp_path / "key").write_text(KEY + "\n", encoding="utf-8")
    env = {**without_key(), "ARENAPREF_API_KEY": "the-environment-key"}
    with serving(rank_model, "--api-key-file", tmp_path / "key", env=env) as (base, proc):
        assert httpx.get(f"{base}/v1/model").status_code == 401
        assert httpx.get(f"{base}/v1/model", headers={"Authorization": "Bearer the-environment-key"}).status_code == 401
        good = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{base}/v1/model", headers=good).status_code == 200
        assert httpx.post(f"{base}/v1/compare", json=ITEMS[0], headers=good).status_code == 200
    output = proc.stdout.read()
    assert "requests need the API key" in output and KEY not in output and "the-environment-key" not in output


def test_service_tta_returns_the_api_numbers(rank_model, judge):
    """A server started with TTA swap (`serve --tta swap`) answers as the API's predict_proba(frame, tta="swap"); a
    comparison's own "tta" overrides it."""
    from arenapref import Judge

    frame = frame_of(ITEMS)
    expected = {tta: judge.predict_proba(frame, tta=tta) for tta in ("none", "swap")}
    with client_for(Judge.from_pretrained(rank_model, device="cpu", tta="swap")) as client:
        assert client.get("/v1/model").json()["serving"]["tta"] == "swap"
        for tta, items in [("swap", ITEMS), ("none", [{**item, "tta": "none"} for item in ITEMS]),
                           ("swap", [{**item, "tta": "swap"} for item in ITEMS])]:
            got = client.post("/v1/compare", json=items).json()
            assert np.abs(np.array([probs_of(g) for g in got]) - expected[tta]).max() < 1e-9, tta
            assert [g["verdict"] for g in got] == verdicts(expected[tta])


def test_per_request_tta_changes_the_answer_and_the_verdict():
    """The stub favours side A by one logit: on two different responses of equal length TTA swap cancels that
    exactly (ambiguous). (Not identical responses: the Predictor levels those itself, with or without TTA.)"""
    same = {"prompt": "p", "response_a": "four", "response_b": "cinq"}
    longer_b = {"prompt": "p", "response_a": "short", "response_b": "a much, much longer answer than A's"}
    judge = stub_judge()
    with client_for(judge) as client:
        for tta in ("none", "swap"):
            got = client.post("/v1/compare", json=[{**same, "tta": tta}, {**longer_b, "tta": tta}]).json()
            expected = judge.predict_proba(frame_of([same, longer_b]), tta=tta)
            assert np.abs(np.array([probs_of(g) for g in got]) - expected).max() < 1e-9
            assert [g["verdict"] for g in got] == (["a_wins", "b_wins"] if tta == "none" else ["ambiguous", "b_wins"])
        spec = client.get("/openapi.json").json()["components"]["schemas"]
        assert spec["Prediction"]["properties"]["verdict"]["enum"] == ["a_wins", "b_wins", "tie", "ambiguous"]
        assert {"tta", "diagnostics"} <= set(spec["Comparison"]["properties"])


def test_requests_with_different_tta_gathered_into_one_pass_each_get_their_own():
    from arenapref.serve import PairRow, Service

    judge = stub_judge()
    items = [{"prompt": "p", "response_a": "a" * n, "response_b": "b" * 7} for n in (3, 7, 30)]
    rows = [PairRow([i["prompt"]], [i["response_a"]], [i["response_b"]]) for i in items]
    service = Service(judge, batch_wait_ms=200, max_items=64, max_body_bytes=10_000, max_batch_rows=64)

    async def concurrently():
        async with service.lifespan(None):
            return await asyncio.gather(service.pairs.submit([r._replace(tta="swap") for r in rows]),
                                        service.pairs.submit(rows),  # the judge's own: none
                                        service.pairs.submit([rows[0]._replace(tta="none")]))

    swap, default, none = asyncio.run(concurrently())
    assert service.pairs.forward_passes == 1 and service.pairs.items == 7  # gathered together
    expected = {tta: judge.predict_proba(frame_of(items), tta=tta) for tta in ("none", "swap")}
    assert not np.allclose(expected["none"], expected["swap"])  # the stub is position-biased: TTA matters
    assert np.abs(np.array([p for p, _ in swap]) - expected["swap"]).max() < 1e-9
    assert np.abs(np.array([p for p, _ in default]) - expected["none"]).max() < 1e-9
    assert np.abs(none[0][0] - expected["none"][0]).max() < 1e-9
    assert all(notes is None for result in (swap, default, none) for _, notes in result)


def _has_diagnostics() -> bool:
    from arenapref.api import Judge

    return "diagnostics" in inspect.signature(Judge.predict_frame).parameters


@pytest.mark.skipif(not _has_diagnostics(), reason="needs Predictor.predict_frame(..., diagnostics=True) "
                                                   "(branch judgments)")
def test_diagnostics_on_request_match_the_api(rank_model, judge):
    from arenapref.serve import json_ready

    asked = [{**ITEMS[0], "diagnostics": True}, ITEMS[1], {**ITEMS[2], "diagnostics": True, "tta": "swap"}]
    with client_for(judge) as client:
        got = client.post("/v1/compare", json=asked).json()
    assert "diagnostics" not in got[1]
    # The service runs one pass per TTA mode: items 0 and 1 together, item 2 alone; the API gets the same frames.
    for i, items, tta in ((0, ITEMS[:2], "none"), (2, ITEMS[2:], "swap")):
        expected = judge.predict_frame(frame_of(items), tta=tta, diagnostics=True)
        assert got[i]["diagnostics"] == json.loads(json.dumps(json_ready(expected["diagnostics"].iloc[0])))
        assert np.abs(np.array(probs_of(got[i])) - expected[LABELS].to_numpy()[0]).max() < 1e-9
