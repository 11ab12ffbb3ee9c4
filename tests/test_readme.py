"""The shell blocks of README.md and of every docs page, pasted as written after `make demo`: the cheap commands run.

A sandbox stands in for the checkout after `make demo`: `runs/demo/data/{train,holdout}.csv` from `arenapref split`
and `runs/demo/model` a hybrid model (what `make demo` trains), both on the first rows of the real sample with a
tiny backbone so the test takes minutes, not hours; `../shared/data` holds the first rows of the real files. Each page
(README.md, then the docs pages in the site's navigation order) gets a fresh copy of that sandbox, as a reader who
pastes one page's commands has, and every `arenapref` command of every ```bash block of the page then runs in page
order, as written, except the ones that train or cross-validate a neural model (minutes to hours), start a server, or
need what such a command would have made. A command that already ran on an earlier page on the same inputs, and whose
output no later command of its page reads, is not run twice.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from arenapref.models.directory import shipped_judges
from conftest import DATA_DIR, ROOT, run_cli

NEURAL = ("hybrid", "dual-tower", "cross-encoder", "llm")
# Options whose value is a file or directory the command reads.
INPUTS = ("--model", "--data", "--valid", "--extra", "--predictions", "--fit-on", "--teacher-probs", "--config",
          "--train", "--eval", "--exclude", "--campaign", "--committee", "--check")
README_MAX_BYTES = 12_000
GENERATED_PAGES = {"cli.md"}  # written at build time by docs/hooks/cli_reference.py, from the typer app


def nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav, in order (paths relative to docs/)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    return [page for page in walk(config["nav"]) if page.endswith(".md")]


def documented_pages() -> list[Path]:
    """README.md, then every docs page on disk in navigation order (a generated page has no file, so no blocks)."""
    return [ROOT / "README.md", *(ROOT / "docs" / p for p in nav_pages() if (ROOT / "docs" / p).is_file())]


def shell_commands(path: Path) -> list[list[str]]:
    """Every command line of a page's bash blocks: continuations joined, comments dropped."""
    text = path.read_text(encoding="utf-8")
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
        assert not pending, f"unbalanced quotes in a bash block of {path.name}: {pending[:200]}"
    return commands


def option_values(words: list[str], names) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in names]


def inputs(words: list[str]) -> list[str]:
    """The files and directories a command reads: input options' values and positional CSVs (ensemble's files)."""
    command = words[1] if len(words) > 1 else ""
    read = [words[i + 1] for i, w in enumerate(words[:-1])
            if w in INPUTS and not (command in ("train", "cv") and w == "--model")]
    values = set(option_values(words, [w for w in words if w.startswith("--")]))
    return read + [w for w in words[2:] if w.endswith(".csv") and not w.startswith("-") and w not in values]


def skip_reason(words: list[str], cwd: Path) -> str | None:
    if words[0] != "arenapref":
        return "not an arenapref command"
    command = words[1]
    if command == "serve":
        return "starts a server (tests/test_serve.py covers it)"
    model = next(iter(option_values(words, ("--model",))), "hybrid")
    if command in ("train", "cv") and model in NEURAL:
        return f"trains a {model} model"
    for path in inputs(words):
        if not (cwd / path).exists() and path not in shipped_judges():  # a shipped judge's name is a model
            return f"needs {path}, made by a command skipped above"
    return None


def read_later(output: str, later: list[list[str]]) -> bool:
    """Whether a later command reads `output` or something inside it."""
    out = Path(output)
    return any(Path(p) == out or out in Path(p).parents for words in later for p in inputs(words))


@pytest.fixture(scope="module")
def after_make_demo(tmp_path_factory, arena_csv, tiny_deberta) -> Path:
    """root/repo (the checkout after `make demo`) beside root/shared/data (the first rows of each real file)."""
    root = tmp_path_factory.mktemp("docs")
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
    return root


@pytest.mark.slow
def test_readme_and_docs_commands_run_as_written_after_make_demo(after_make_demo, tmp_path):
    base = after_make_demo / "repo"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ran, skipped, done = [], [], set()
    for n, page in enumerate(documented_pages()):
        commands = shell_commands(page)
        if not any(words[0] == "arenapref" for words in commands):
            continue
        sandbox = tmp_path / f"{n:02d}-{page.stem}" / "repo"
        shutil.copytree(base, sandbox, symlinks=True)
        (sandbox.parent / "shared").symlink_to(after_make_demo / "shared")
        name = page.relative_to(ROOT).as_posix()
        for i, words in enumerate(commands):
            line = " ".join(words)
            reason = skip_reason(words, sandbox)
            if not reason and line in done and all((base / p).exists() for p in inputs(words)) \
                    and not any(read_later(o, commands[i + 1:]) for o in option_values(words, ("--output",))):
                reason = "ran on an earlier page on the same inputs"
            if reason:
                skipped.append((name, line, reason))
                continue
            proc = subprocess.run([sys.executable, "-m", "arenapref", *words[1:]], cwd=sandbox, capture_output=True,
                                  text=True, timeout=600, env=env)
            assert proc.returncode == 0, f"{name}: command failed: {line}\n{proc.stderr[-2000:]}"
            ran.append((name, line))
        done.update(c for p, c in ran if p == name)
    print("\n".join(["ran:", *(f"{p}: {c}" for p, c in ran), "skipped:",
                     *(f"{p}: {c}  ({r})" for p, c, r in skipped)]))
    # The commands a user pastes first all ran: the README's, every one on the demo model, the gbdt ones.
    assert len([c for p, c in ran if p == "README.md"]) >= 2
    demo = [c for p, c in ran if "--model runs/demo/model" in c]
    assert len(demo) >= 8 and any(c.startswith("arenapref train") and "gbdt" in c for p, c in ran)
    assert not [c for p, c, r in skipped if "--model runs/demo/model" in c
                and not r.startswith(("starts a server", "ran on an earlier page"))]
    assert len(ran) >= 15, ran


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (at most {README_MAX_BYTES})"


def test_every_docs_page_is_in_the_navigation():
    nav = nav_pages()
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert not on_disk - set(nav), f"docs pages missing from mkdocs.yml nav: {sorted(on_disk - set(nav))}"
    assert not set(nav) - on_disk - GENERATED_PAGES, f"nav names missing pages: {sorted(set(nav) - on_disk)}"
    assert not on_disk & GENERATED_PAGES, "cli.md is generated by docs/hooks/cli_reference.py; do not write it"
