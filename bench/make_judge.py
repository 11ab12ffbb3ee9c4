"""Rebuild the judge shipped inside the package from its committed recipe (`make judge` runs this).

    python bench/make_judge.py [--name arena-minilm] [--data-dir ../shared/data] [--output DIR]

Trains configs/judge-<name>.yaml on the shared arena files into a temporary folder beside the target, then puts it
in place of src/arenapref/judges/<name> (or --output) in one rename, and prints its size. The same command on the
same data and library versions gives the same predictions (checked: within 1e-6).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_card(directory: Path) -> None:
    """The judge's card beside it: the directory's README.md (written by train), then docs/judge.md (what it was
    trained on, how good it is, what it is bad at, the licence questions). README.md is not hashed
    (models.directory.NOT_HASHED), so rewording the card needs no rebuild."""
    card = directory / "README.md"
    page = (ROOT / "docs" / "judge.md").read_text(encoding="utf-8")
    card.write_text(card.read_text(encoding="utf-8").rstrip() + "\n\n---\n\n" + page, encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="arena-minilm")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--output", default=None, help="default: src/arenapref/judges/<name>")
    args = parser.parse_args(argv)
    config = ROOT / "configs" / f"judge-{args.name}.yaml"
    data = Path(args.data_dir)
    target = Path(args.output) if args.output else ROOT / "src" / "arenapref" / "judges" / args.name
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{args.name}-", dir=target.parent))
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        subprocess.run([sys.executable, "-m", "arenapref", "train", "--config", str(config),
                        "--data", str(data / "arena_sample.csv"), "--extra", str(data / "arena_extra.csv"),
                        "--output", str(scratch / args.name)], check=True, env=env)
        add_card(scratch / args.name)
        old = target.with_name(f".{args.name}-old")
        if target.exists():
            target.rename(old)
        (scratch / args.name).rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    if not args.output:  # the shipped copy: pin its arenapref.json (which holds every other file's sha256)
        catalog_path = target.parent / "catalog.json"
        catalog = json.loads(catalog_path.read_text(encoding="utf-8")) if catalog_path.exists() else {}
        entry = catalog.setdefault(args.name, {})
        entry["meta_sha256"] = hashlib.sha256((target / "arenapref.json").read_bytes()).hexdigest()
        catalog_path.write_text(json.dumps(catalog, indent=2) + "\n", encoding="utf-8")
    print(f"{target}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
