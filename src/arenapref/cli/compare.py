"""compare: one question to a trained model from the command line, no file needed.

Turns come as repeated flags (`--prompt p1 --a a1 --b b1 --prompt p2 --a a2 --b b2`) or as JSON lists
(`--prompt '["p1", "p2"]'`): every value is one turn, except a value that parses as a JSON list of strings (nulls
allowed, read as ""), whose items are turns. A turn whose text is itself such a list is written as a one-item list
holding it (`--a '["[\"x\"]"]'`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from arenapref.api import Judge, check_tta
from arenapref.cli.common import JUDGE_HELP, checked_model, console, quiet_libraries, uses_transformers
from arenapref.cli.options import with_options
from arenapref.cli.predict import DIAGNOSTICS, TTA
from arenapref.cli.tables import decision_table, row_diagnostics_table
from arenapref.config import InferenceOptions
from arenapref.errors import DataError

TURNS = ("a turn; repeat the flag once per turn, or pass a JSON list of strings (one per turn)")


def turn_list(values: list[str]) -> list[str]:
    """The turns of one flag's values: a value that parses as a JSON list of strings (or nulls) gives its items,
    any other value is one turn as written."""
    turns = []
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(item is None or isinstance(item, str) for item in parsed):
            turns += ["" if item is None else item for item in parsed]
        else:
            turns.append(value)
    return turns


def conversation(prompt: list[str], a: list[str], b: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The three turn lists, checked: at least one turn, the same number in each."""
    turns = turn_list(prompt), turn_list(a), turn_list(b)
    counts = [len(t) for t in turns]
    if len(set(counts)) != 1 or not counts[0]:
        raise DataError(f"--prompt gives {counts[0]} turn(s), --a {counts[1]}, --b {counts[2]}: give each the same "
                        "number of turns, at least one (repeat a flag once per turn, or pass a JSON list)")
    return turns


@with_options(InferenceOptions, into="inference")
def compare(
    model: Path | None = typer.Option(None, help=JUDGE_HELP),
    prompt: list[str] = typer.Option(..., "--prompt", help=f"What the user said: {TURNS}."),
    a: list[str] = typer.Option(..., "--a", help=f"Response A: {TURNS}."),
    b: list[str] = typer.Option(..., "--b", help=f"Response B: {TURNS}."),
    tta: str = TTA,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (probabilities, verdict, diagnostics) "
                                                       "instead of a table."),
    diagnostics: bool = DIAGNOSTICS,
    inference: dict = None,
):
    """Judge one conversation: P(A wins), P(B wins), P(tie) and the verdict (a_wins, b_wins, tie, or ambiguous
    where A and B are equally likely and no less likely than a tie)."""
    options = InferenceOptions(**inference).validate()
    turns = conversation(prompt, a, b)
    check_tta(tta)
    options.check_tta(tta)
    model, meta = checked_model(model, options)
    quiet_libraries(uses_transformers(meta["model_type"]))
    judge = Judge.from_pretrained(model, **options.load_kwargs())
    decision = judge.decide(*turns, tta=tta, diagnostics=diagnostics)
    if as_json:
        print(json.dumps(decision, ensure_ascii=False))
        return
    notes = [n for n, on in (("swap TTA", tta == "swap"), ("style controlled", options.style == "controlled")) if on]
    console.print(decision_table(decision, f"{model}" + (f" ({', '.join(notes)})" if notes else "")))
    if diagnostics:
        console.print(row_diagnostics_table(decision["diagnostics"]))
