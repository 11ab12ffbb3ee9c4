"""A model directory records where it came from (files by name and content hash, library versions) and holds no
path of the machine that trained it; the report header names every part's family and backbone."""

from __future__ import annotations

import hashlib
import json
import shutil

from arenapref.evaluation.report import describe
from conftest import run_cli


def strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_gbdt_directory_records_files_by_name_and_hash(small_csv, gbdt_model):
    out = gbdt_model
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["train_config"]["data"] == small_csv.name and "output" not in meta["train_config"]
    (record,) = meta["provenance"]["files"]["data"]
    assert record == {"name": small_csv.name, "sha256": hashlib.sha256(small_csv.read_bytes()).hexdigest(), "rows": 96}
    assert meta["provenance"]["versions"]["lightgbm"] and meta["provenance"]["versions"]["arenapref"]
    machine = {str(out.parent), str(small_csv.parent)}  # the folders it was trained in and from
    assert not [s for s in strings(meta) if s.startswith("/") or any(m in s for m in machine)]
    card = (out / "README.md").read_text()
    assert str(small_csv.parent) not in card


def test_report_header_names_every_part():
    hybrid = {"model_type": "hybrid",
              "parts": {"neural": {"model_type": "dual-tower", "weight": 0.5, "backbone": "all-MiniLM-L6-v2",
                                   "objective": "classify"},
                        "gbdt": {"model_type": "gbdt", "weight": 0.5}}}
    assert describe(hybrid) == "hybrid: dual-tower (backbone all-MiniLM-L6-v2) x 0.5 + gbdt x 0.5"
    assert describe({"model_type": "llm", "objective": "rank", "backbone": "smollm2"}) == "llm (rank, backbone smollm2)"
    assert "?" not in describe({"model_type": "gbdt"})


def test_directories_written_before_provenance_still_load(small_csv, gbdt_model, tmp_path):
    """arenapref.json as it was written before: absolute paths in train_config, no provenance."""
    from arenapref import Judge
    from arenapref.data.tables import load_frame

    out = tmp_path / "gbdt"
    shutil.copytree(gbdt_model, out)  # a copy: this test rewrites arenapref.json
    frame = load_frame(small_csv)
    before = Judge.from_pretrained(out).predict_proba(frame)
    meta_path = out / "arenapref.json"
    meta = json.loads(meta_path.read_text())
    del meta["provenance"]
    meta["train_config"].update(data=str(small_csv), output=str(out), backbone="/venv/site-packages/model")
    meta_path.write_text(json.dumps(meta))
    assert (Judge.from_pretrained(out).predict_proba(frame) == before).all()


def test_a_changed_file_is_refused_unless_told(small_csv, gbdt_model, tmp_path):
    from arenapref import Judge

    out = tmp_path / "gbdt"
    shutil.copytree(gbdt_model, out)  # a copy: this test changes model.txt
    assert set(json.loads((out / "arenapref.json").read_text())["files"]) == {"model.txt"}
    booster = out / "model.txt"
    text = booster.read_text()
    booster.write_text(text.replace("learning_rate: 0.02", "learning_rate: 0.03", 1))  # same size, same shape
    bad = run_cli("predict", "--model", out, "--data", small_csv, "--output", tmp_path / "p.csv", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "model.txt: content differs from the sha256" in bad.stderr and "ARENAPREF_NO_VERIFY=1" in bad.stderr
    run_cli("predict", "--model", out, "--data", small_csv, "--output", tmp_path / "p.csv",
            env={"ARENAPREF_NO_VERIFY": "1"})
    assert Judge.from_pretrained(out, verify=False).predict("hi", "a", "b")
