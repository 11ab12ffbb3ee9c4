"""The README's shell blocks, pasted as written after `make demo`: the cheap commands run and must succeed.

A sandbox stands in for the checkout after `make demo`: `runs/demo/data/{train,holdout}.csv` from `arenapref split`
and `runs/demo/model` a hybrid model (what `make demo` trains), both on the first rows of the real sample with a
tiny backbone so the test takes a minute; `../shared/data` holds the first rows of the real files. Every `arenapref`
command of every ```bash block then runs in README order, as written, except the ones that train or
cross-validate a neural model (minutes to hours), start a server, or need what such a command would have made.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA_DIR, ROOT, run_cli

NEURAL = ("hybrid", "dual-tower", "cross-encoder", "llm")
# Options whose value is a file or directory the command reads.
INPUTS = ("--model", "--data", "--valid", "--extra", "--predictions", "--fit-on", "--teacher-probs", "--config",
          "--train", "--eval", "--exclude", "--campaign")


def readme_commands() -> list[list[str]]:
    """Every command line of the README's bash blocks: continuations joined, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        pending = ""
        for line in block.splitlines():
            pending += line + "\n"
            try:  # a quoted argument may span lines (the curl examples' JSON bodies)
                words = shlex.split(pending, comments=True)
            except ValueError:
                continue
            pending = ""
            if words:
                commands.append(words)
        assert not pending, f"unbalanced quotes in a README block: {pending[:200]}"
    return commands


def skip_reason(words: list[str], cwd: Path) -> str | None:
    if words[0] != "arenapref":
        return "not an arenapref command"
    command = words[1]
    if command == "serve":
        return "starts a server (tests/test_serve.py covers it)"
    model = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--model"), "hybrid")
    if command in ("train", "cv") and model in NEURAL:
        return f"trains a {model} model"
    for i, word in enumerate(words[:-1]):
        if word in INPUTS and not (command in ("train", "cv") and word == "--model"):
            if not (cwd / words[i + 1]).exists():
                return f"needs {words[i + 1]}, made by a command skipped above"
    for word in words[2:]:  # positional inputs (ensemble's prediction files)
        if word.endswith(".csv") and not word.startswith("-") and not (cwd / word).exists():
            if word not in [words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")]:
                return f"needs {word}, made by a command skipped above"
    return None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, arena_csv, tiny_deberta) -> Path:
    root = tmp_path_factory.mktemp("readme")
    repo, shared = root / "repo", root / "shared" / "data"
    repo.mkdir()
    shared.mkdir(parents=True)
    for name in ("configs", "bench"):
        (repo / name).symlink_to(ROOT / name)
    # The first rows of each real file: the commands as written, at a size a test can afford.
    for path in DATA_DIR.glob("*.csv"):
        pd.read_csv(path, dtype=str, keep_default_na=False).head(240).to_csv(shared / path.name, index=False)
    sample = shared / "arena_sample.csv"
    run_cli("split", "--data", sample, "--output", repo / "runs/demo/data", "--holdout-fraction", "0.2")
    run_cli("train", "--data", repo / "runs/demo/data/train.csv", "--output", repo / "runs/demo/model",
            "--backbone", tiny_deberta, "--max-length", 32, "--gbdt-rounds", 30)
    return repo


def test_readme_commands_run_as_written_after_make_demo(sandbox):
    ran, skipped = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for words in readme_commands():
        reason = skip_reason(words, sandbox)
        if reason:
            skipped.append((" ".join(words), reason))
            continue
        proc = subprocess.run([sys.executable, "-m", "arenapref", *words[1:]], cwd=sandbox, capture_output=True,
                              text=True, timeout=600, env=env)
        assert proc.returncode == 0, f"README command failed: {' '.join(words)}\n{proc.stderr[-2000:]}"
        ran.append(" ".join(words))
    print("\n".join(["ran:", *ran, "skipped:", *(f"{c}  ({r})" for c, r in skipped)]))
    # The commands a user pastes first all ran: every evaluate / predict / report on the demo model, the gbdt ones.
    demo = [c for c in ran if "runs/demo/model" in c]
    assert len(demo) >= 8 and any(c.startswith("arenapref train") and "gbdt" in c for c in ran)
    assert not [c for c, r in skipped if "runs/demo/model" in c and "server" not in r]
    assert len(ran) >= 15, ran
