"""Bad input through the real command line: one line on stderr naming the file (and row / column), exit code 2,
no traceback, nothing written. Valid-but-odd rows are processed, not rejected.

Almost every case fails before torch is imported (about two seconds a case); the model-directory cases use one tiny
model trained once per session (conftest.tiny_model).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arenapref.data.tables import load_frame
from conftest import run_cli

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def assert_clean_error(proc, *fragments: str, not_written: tuple[Path, ...] = ()) -> str:
    """Exit code 2, a single stderr line holding every fragment, no traceback, no output file."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit code {proc.returncode}\nstdout: {proc.stdout[-1500:]}\nstderr: {err[-3000:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{err}"
    assert err.startswith("error: ")
    for fragment in fragments:
        assert str(fragment) in err, f"{fragment!r} not in {err!r}"
    for path in not_written:
        assert not Path(path).exists(), f"{path} was written"
    return err


@pytest.fixture(scope="module")
def rows(tiny_csv) -> pd.DataFrame:
    """Eight real labelled rows in the Kaggle layout, as strings."""
    return pd.read_csv(tiny_csv, dtype=str, keep_default_na=False).head(8)


# -- the data file: each case writes a file and names what the error line must contain -----------------------------

def _csv(rows, path, edit=None):
    frame = rows.copy()
    if edit:
        edit(frame)
    frame.to_csv(path, index=False)


def _set(row, col, value):
    def edit(frame):
        frame.loc[row, col] = value
    return edit


def _labels(row, a, b, tie):
    def edit(frame):
        frame.loc[row, LABELS] = [a, b, tie]
    return edit


def _flat(rows):
    """The rows with no line breaks inside cells, so that a line of the file is a row."""
    return rows.apply(lambda col: col.str.replace("\n", " ").str.replace("\r", " "))


def _bad_utf8(rows, path):
    text = _flat(rows).to_csv(index=False).encode("utf-8")
    lines = text.split(b"\n")
    lines[4] = lines[4].replace(b"[", b"[\xff\xfe", 1)  # latin-1 style bytes on line 5
    path.write_bytes(b"\n".join(lines))


def _jsonl_broken(rows, path):
    lines = [json.dumps(r) for r in rows.to_dict("records")]
    lines[2] = lines[2][:60]  # a line cut short, as a killed writer leaves it
    path.write_text("\n".join(lines) + "\n")


def _jsonl_not_object(rows, path):
    lines = [json.dumps(r) for r in rows.to_dict("records")]
    lines[1] = json.dumps(["not", "an", "object"])
    path.write_text("\n".join(lines) + "\n")


def _ragged(rows, path):
    text = _flat(rows).to_csv(index=False).splitlines()
    text[3] += ",surplus"
    path.write_text("\n".join(text) + "\n")


# (name, file name, writer(rows, path), command, fragments the error must hold besides the file path)
DATA_CASES = [
    ("empty file", "data.csv", lambda r, p: p.write_bytes(b""), "predict", ["empty"]),
    ("header only", "data.csv", lambda r, p: p.write_text(",".join(r.columns) + "\n"), "predict", ["no data rows"]),
    ("binary", "data.csv", lambda r, p: p.write_bytes(bytes(range(256)) * 8), "predict", ["binary"]),
    ("html page", "data.csv", lambda r, p: p.write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n"),
     "predict", ["HTML"]),
    ("ragged csv row", "data.csv", _ragged, "predict", ["line 4"]),
    ("missing column", "data.csv", lambda r, p: r.drop(columns=["response_b"]).to_csv(p, index=False), "predict",
     ["response_b"]),
    ("two winners", "data.csv", lambda r, p: _csv(r, p, _labels(2, "1", "1", "0")), "train",
     ["row 3", "winner_model_a", "one-hot"]),
    ("no winner", "data.csv", lambda r, p: _csv(r, p, _labels(2, "0", "0", "0")), "train", ["row 3", "one-hot"]),
    ("non-numeric label", "data.csv", lambda r, p: _csv(r, p, _labels(5, "0", "yes", "0")), "train",
     ["row 6", "column winner_model_b", "'yes'"]),
    ("negative label", "data.csv", lambda r, p: _csv(r, p, _labels(1, "-1", "1", "1")), "evaluate",
     ["row 2", "-1", "one-hot"]),
    ("missing label columns", "data.csv", lambda r, p: r.drop(columns=["winner_tie"]).to_csv(p, index=False),
     "evaluate", ["winner_tie"]),
    ("cell not json", "data.csv", lambda r, p: _csv(r, p, _set(3, "prompt", "What is love?")), "predict",
     ["row 4", "column prompt", "JSON list"]),
    ("cell json but not a list", "data.csv", lambda r, p: _csv(r, p, _set(3, "response_a", '"just text"')),
     "predict", ["row 4", "column response_a", "list"]),
    ("list of numbers", "data.csv", lambda r, p: _csv(r, p, _set(3, "response_a", "[1, 2]")), "predict",
     ["row 4", "column response_a", "int"]),
    ("list of objects", "data.csv", lambda r, p: _csv(r, p, _set(6, "response_b", '[{"text": "hi"}]')), "predict",
     ["row 7", "column response_b", "dict"]),
    ("turn counts differ", "data.csv", lambda r, p: _csv(r, p, _set(3, "response_a", '["one", "two"]')), "predict",
     ["row 4", "turns"]),
    ("no turns", "data.csv", lambda r, p: _csv(r, p, _set(3, ["prompt", "response_a", "response_b"], "[]")),
     "predict", ["row 4", "empty list"]),
    ("duplicated id", "data.csv", lambda r, p: _csv(r, p, _set(4, "id", r.loc[1, "id"])), "predict",
     ["row 5", "column id", "row 2"]),
    ("non-utf8 bytes", "data.csv", _bad_utf8, "predict", ["line 5", "UTF-8"]),
    ("jsonl broken line", "data.jsonl", _jsonl_broken, "predict", ["line 3", "JSON"]),
    ("jsonl line not an object", "data.jsonl", _jsonl_not_object, "predict", ["line 2", "object"]),
    ("parquet wrong schema", "data.parquet",
     lambda r, p: pd.DataFrame({"question": ["a"], "answer": ["b"]}).to_parquet(p), "predict",
     ["missing required column", "prompt"]),
    ("parquet wrong types", "data.parquet",
     lambda r, p: r.assign(prompt=np.arange(len(r))).to_parquet(p), "predict", ["row 1", "column prompt"]),
    ("not parquet", "data.parquet", lambda r, p: p.write_text("id,prompt\n1,[]\n"), "predict", ["Parquet"]),
]


def _command(command, data, model, out_dir):
    """The argument list of `command` reading `data`, and the outputs it must not write."""
    if command == "predict":
        out = out_dir / "pred.csv"
        return ["predict", "--model", model, "--data", data, "--output", out], (out,)
    if command == "evaluate":
        return ["evaluate", "--model", model, "--data", data], ()
    if command == "split":
        out = out_dir / "split"
        return ["split", "--data", data, "--output", out], (out,)
    if command == "train":
        out = out_dir / "model"
        return ["train", "--data", data, "--output", out, "--model", "dual-tower",
                "--backbone", "no-such-backbone"], (out,)
    if command == "report":
        out = out_dir / "report"
        return ["report", "--model", model, "--data", data, "--output", out], (out,)
    if command == "leaderboard":
        out = out_dir / "board"
        return ["leaderboard", "--data", data, "--output", out, "--bootstrap", "0"], (out,)
    if command == "cv":
        out = out_dir / "cv"
        return ["cv", "--data", data, "--output", out, "--folds", "2", "--model", "gbdt"], (out,)
    if command == "select":
        out = out_dir / "picks.csv"
        return ["select", "--model", model, "--data", data, "--output", out, "--count", "3"], (out,)
    if command == "auto-label":
        out = out_dir / "auto.csv"
        return ["auto-label", "--model", model, "--data", data, "--output", out], (out,)
    if command == "serve":  # reads only a model directory; a port nobody uses
        return ["serve", "--model", model, "--port", "1"], ()
    raise ValueError(command)


@pytest.mark.parametrize("name,filename,write,command,fragments", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_file(name, filename, write, command, fragments, rows, tiny_model, tmp_path):
    data = tmp_path / filename
    write(rows, data)
    args, outputs = _command(command, data, tiny_model, tmp_path)
    assert_clean_error(run_cli(*args, check=False), data, *fragments, not_written=outputs)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "split", "report", "leaderboard", "cv",
                                     "select", "auto-label"])
def test_every_data_command_reports_missing_file_and_bad_row(command, rows, tiny_model, tmp_path):
    missing = tmp_path / "nowhere" / "data.csv"
    args, outputs = _command(command, missing, tiny_model, tmp_path)
    assert_clean_error(run_cli(*args, check=False), missing, "not found", not_written=outputs)

    bad = tmp_path / "bad.csv"
    if command == "leaderboard":  # a leaderboard reads the models and the votes, not the texts
        _csv(rows, bad, _labels(5, "1", "1", "0"))
        where = ("row 6", "winner_model_a")
    else:
        _csv(rows, bad, _set(5, "response_b", "not json"))
        where = ("row 6", "column response_b")
    args, outputs = _command(command, bad, tiny_model, tmp_path)
    assert_clean_error(run_cli(*args, check=False), bad, *where, not_written=outputs)


def test_directory_given_as_data(tiny_model, tmp_path):
    out = tmp_path / "pred.csv"
    proc = run_cli("predict", "--model", tiny_model, "--data", tmp_path, "--output", out, check=False)
    assert_clean_error(proc, tmp_path, "directory", not_written=(out,))


def test_train_validation_file_is_checked_too(rows, tiny_csv, tmp_path):
    valid = tmp_path / "valid.csv"
    _csv(rows, valid, _labels(0, "1", "0", "1"))
    out = tmp_path / "model"
    proc = run_cli("train", "--data", tiny_csv, "--valid", valid, "--output", out, check=False)
    assert_clean_error(proc, valid, "row 1", "one-hot", not_written=(out,))


# -- the model directory -----------------------------------------------------------------------------------------

def _copy_model(tiny_model, tmp_path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("checkpoints"))
    return model


def _truncate_weights(model):
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size * 2 // 3])


def _scramble_weights(model):
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:64] = os.urandom(64)  # the header: as a disk error or a half-finished download leaves it
    weights.write_bytes(bytes(data))


def _unfinished(model):
    (model / "arenapref.json").unlink()
    (model / "checkpoints").mkdir()


def _bad_meta(model):
    (model / "arenapref.json").write_text('{"model_type": "dual-tower", ')


MODEL_CASES = [
    ("missing", lambda m: shutil.rmtree(m), ["not found"], "model"),
    ("empty", lambda m: [shutil.rmtree(m), m.mkdir()], ["empty"], "model"),
    ("a file", lambda m: [shutil.rmtree(m), m.write_text("x")], ["is a file"], "model"),
    ("unfinished training", _unfinished, ["unfinished", "--resume"], "model"),
    ("truncated weights", _truncate_weights, ["truncated"], "model/model.safetensors"),
    ("corrupt weights", _scramble_weights, ["corrupt"], "model/model.safetensors"),
    ("corrupt arenapref.json", _bad_meta, ["corrupt"], "model/arenapref.json"),
]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("name,damage,fragments,named", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_directory(name, damage, fragments, named, command, tiny_model, tiny_csv, tmp_path):
    model = _copy_model(tiny_model, tmp_path)
    damage(model)
    args, outputs = _command(command, tiny_csv, model, tmp_path)
    assert_clean_error(run_cli(*args, check=False), tmp_path / named, *fragments, not_written=outputs)


@pytest.mark.parametrize("command", ["serve", "report", "select", "auto-label"])
@pytest.mark.parametrize("name,damage,fragments,named",
                         [c for c in MODEL_CASES if c[0] in ("missing", "unfinished training", "truncated weights")],
                         ids=["missing", "unfinished training", "truncated weights"])
def test_bad_model_directory_for_serve_and_report(name, damage, fragments, named, command, tiny_model, tiny_csv,
                                                  tmp_path):
    model = _copy_model(tiny_model, tmp_path)
    damage(model)
    args, outputs = _command(command, tiny_csv, model, tmp_path)
    assert_clean_error(run_cli(*args, check=False, timeout=120), tmp_path / named, *fragments, not_written=outputs)


def _predictions(rows, path, edit=None):
    frame = pd.DataFrame({"id": rows["id"], "winner_model_a": "0.5", "winner_model_b": "0.3", "winner_tie": "0.2"})
    if edit:
        edit(frame)
    frame.to_csv(path, index=False)
    return path


def test_ensemble_bad_prediction_files(rows, tmp_path):
    good = _predictions(rows, tmp_path / "good.csv")
    out = tmp_path / "blend.csv"
    missing = tmp_path / "nowhere.csv"
    assert_clean_error(run_cli("ensemble", good, missing, "--output", out, check=False), missing, "not found",
                       not_written=(out,))
    bad = _predictions(rows, tmp_path / "bad.csv", _set(3, "winner_tie", "lots"))
    assert_clean_error(run_cli("ensemble", good, bad, "--output", out, check=False), bad, "row 4",
                       "column winner_tie", not_written=(out,))
    folder = tmp_path / "no_such_folder" / "blend.csv"
    assert_clean_error(run_cli("ensemble", good, good, "--output", folder, check=False), folder, "does not exist",
                       not_written=(folder,))


def test_leaderboard_predictions_that_do_not_match(rows, tmp_path):
    battles = tmp_path / "battles.csv"
    rows.to_csv(battles, index=False)
    pred = tmp_path / "pred.csv"
    pd.DataFrame({"id": rows["id"].iloc[:5], "winner_model_a": 0.5, "winner_model_b": 0.3, "winner_tie": 0.2}
                 ).to_csv(pred, index=False)
    out = tmp_path / "board"
    proc = run_cli("leaderboard", "--data", battles, "--predictions", pred, "--output", out, "--bootstrap", "0",
                   check=False)
    assert_clean_error(proc, pred, repr(str(rows["id"].iloc[5])), "missing", not_written=(out,))


def test_config_of_another_model_type(tiny_model, tiny_csv, tiny_deberta, tmp_path):
    """A config.json from a plain encoder (say, copied over by mistake): caught when the model loads, still clean."""
    model = _copy_model(tiny_model, tmp_path)
    shutil.copy(tiny_deberta / "config.json", model / "config.json")
    args, outputs = _command("predict", tiny_csv, model, tmp_path)
    # arenapref.json's sha256 of config.json catches it first; loading it anyway, the model type check does.
    assert_clean_error(run_cli(*args, check=False), model / "config.json", "content differs", not_written=outputs)
    assert_clean_error(run_cli(*args, check=False, env={"ARENAPREF_NO_VERIFY": "1"}), model / "config.json",
                       "deberta-v2", not_written=outputs)


def test_unknown_model_type_in_meta(tiny_model, tiny_csv, tmp_path):
    model = _copy_model(tiny_model, tmp_path)
    meta = json.loads((model / "arenapref.json").read_text())
    (model / "arenapref.json").write_text(json.dumps({**meta, "model_type": "telepathy"}))
    args, outputs = _command("evaluate", tiny_csv, model, tmp_path)
    assert_clean_error(run_cli(*args, check=False), model / "arenapref.json", "telepathy", not_written=outputs)


# -- the output path ---------------------------------------------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder this process cannot write to (root ignores permission bits, so use sysfs there)."""
    if os.geteuid() == 0:
        yield Path("/sys")
        return
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def test_predict_output_folder_missing(tiny_model, tiny_csv, tmp_path):
    out = tmp_path / "no_such_folder" / "pred.csv"
    proc = run_cli("predict", "--model", tiny_model, "--data", tiny_csv, "--output", out, check=False)
    assert_clean_error(proc, out, "does not exist", not_written=(out, out.parent))


def test_predict_output_folder_not_writable(tiny_model, tiny_csv, read_only_dir):
    out = read_only_dir / "pred.csv"
    proc = run_cli("predict", "--model", tiny_model, "--data", tiny_csv, "--output", out, check=False)
    assert_clean_error(proc, out, "not writable", not_written=(out,))


def test_predict_output_is_a_directory(tiny_model, tiny_csv, tmp_path):
    proc = run_cli("predict", "--model", tiny_model, "--data", tiny_csv, "--output", tmp_path, check=False)
    assert_clean_error(proc, tmp_path, "is a directory")


@pytest.mark.parametrize("command", ["train", "split", "report", "leaderboard", "cv"])
def test_output_directory_not_writable(command, tiny_csv, tiny_model, read_only_dir, tmp_path):
    out = read_only_dir / "out"
    args = {"train": ["train", "--data", tiny_csv, "--output", out],
            "cv": ["cv", "--data", tiny_csv, "--output", out, "--model", "gbdt"],
            "split": ["split", "--data", tiny_csv, "--output", out],
            "report": ["report", "--model", tiny_model, "--data", tiny_csv, "--output", out],
            "leaderboard": ["leaderboard", "--data", tiny_csv, "--output", out, "--bootstrap", "0"]}[command]
    assert_clean_error(run_cli(*args, check=False), out, "not writable", not_written=(out,))


def test_train_output_below_a_file(tiny_csv, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / "model"
    proc = run_cli("train", "--data", tiny_csv, "--output", out, check=False)
    assert_clean_error(proc, out, "is a file")


# -- valid but odd rows: processed, not rejected ----------------------------------------------------------------

LONG = "word " * 5000  # far beyond --max-length 32
ODD_ROWS = {
    "null turns": (["Hi", None], ["Hello", None], [None, "Bye"]),
    "empty responses": (["Say nothing"], [""], [""]),
    "identical responses": (["2+2?"], ["4"], ["4"]),
    "one side far longer than max length": (["Tell me a story"], [LONG], ["Once."]),
    "emoji": (["Rate this 🍕🔥"], ["10/10 😋👍🏽"], ["👎"]),
    "right-to-left text": (["ما هو الحب؟"], ["מה זה אהבה? Love is ❤"], ["الحب هو..."]),
    "text with windows line endings": (["line one\r\nline two"], ["a\r\nb"], ["c"]),
    "unknown extra column": (["extra?"], ["yes"], ["no"]),
}


@pytest.fixture(scope="module")
def odd_file(tmp_path_factory) -> Path:
    """All odd rows in one CSV saved with a UTF-8 BOM and Windows (CRLF) line endings, plus an unknown column."""
    records = []
    for i, (name, (prompt, a, b)) in enumerate(ODD_ROWS.items()):
        records.append({"id": name, "prompt": json.dumps(prompt, ensure_ascii=False),
                        "response_a": json.dumps(a, ensure_ascii=False),
                        "response_b": json.dumps(b, ensure_ascii=False),
                        "winner_model_a": int(i % 3 == 0), "winner_model_b": int(i % 3 == 1),
                        "winner_tie": int(i % 3 == 2), "annotator_mood": "curious"})
    path = tmp_path_factory.mktemp("odd") / "odd.csv"
    text = pd.DataFrame(records).to_csv(index=False, lineterminator="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def odd_predictions(odd_file, tiny_model) -> pd.DataFrame:
    out = odd_file.parent / "pred.csv"
    run_cli("predict", "--model", tiny_model, "--data", odd_file, "--output", out)
    return pd.read_csv(out, dtype={"id": str})


@pytest.fixture(scope="module")
def odd_jsonl_split(odd_file) -> Path:
    """The same rows as JSONL, again with a BOM and CRLF, through `split` (no model needed)."""
    frame = pd.read_csv(odd_file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    path = odd_file.parent / "odd.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in frame.to_dict("records")]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    out = odd_file.parent / "split"
    run_cli("split", "--data", path, "--output", out, "--holdout-fraction", "0.25")
    return out


@pytest.mark.parametrize("name", list(ODD_ROWS))
def test_odd_row_is_processed(name, odd_file, odd_predictions, odd_jsonl_split):
    prompt, a, b = ODD_ROWS[name]
    # predict kept the row, in place, with a proper probability triple
    assert list(odd_predictions["id"]) == list(ODD_ROWS)
    probs = odd_predictions.set_index("id").loc[name, LABELS].to_numpy(dtype=float)
    assert np.all(probs > 0) and probs.sum() == pytest.approx(1.0, abs=2e-6)
    # the text arrives exactly as written: null -> "", no BOM in the first header, CRLF only where it is content
    frame = load_frame(odd_file, require_labels=True).set_index("id")
    clean = lambda turns: [t if t is not None else "" for t in turns]  # noqa: E731
    assert frame.loc[name, "prompt"] == clean(prompt)
    assert frame.loc[name, "response_a"] == clean(a) and frame.loc[name, "response_b"] == clean(b)
    # and the JSONL copy survives `split` with the same text
    both = pd.concat([load_frame(odd_jsonl_split / "train.csv"), load_frame(odd_jsonl_split / "holdout.csv")])
    assert both.set_index("id").loc[name, "response_a"] == clean(a)


def test_odd_rows_evaluate(odd_file, tiny_model):
    proc = run_cli("evaluate", "--model", tiny_model, "--data", odd_file, "--json")
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["n"] == len(ODD_ROWS) and np.isfinite(metrics["log_loss"])
