"""MkDocs hook: the CLI reference page (`cli.md`), rendered at build time from the typer app itself.

Nothing is copied by hand: every command, usage line, argument and option comes from `arenapref.cli.app` as click
sees it (the same records `--help` prints), so the page cannot drift from the code. The page is added to the
build as a generated file; no `docs/cli.md` exists on disk.
"""

from __future__ import annotations

import html
import inspect

from mkdocs.structure.files import File

PAGE = "cli.md"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: no HTML, no column breaks, one line."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _help(command) -> str:
    text = inspect.cleandoc(command.help or "")
    # click's "\b" marks a paragraph that must not be rewrapped; in markdown it is just a line to drop
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b")


def _render(command, ctx, path: list[str], out: list[str]) -> None:
    title = " ".join(path)
    if len(path) > 1:  # the root's heading is the page title; commands are sections, subcommands subsections
        out += [f"{'#' * min(len(path), 6)} {title}", ""]
    out += [html.escape(_help(command), quote=False), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    out += ["```text", f"{title} {usage}".rstrip(), "```", ""]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None and getattr(param, "param_type_name", "") == "argument":
            record = (param.human_readable_name, "")
        if record is None or record[0].startswith("--help"):
            continue
        name, text = record
        rows.append(f"| `{' '.join(name.split())}` | {_cell(text)} |")
    if rows:
        out += ["| argument / option | description |", "|---|---|", *rows, ""]
    subcommands = getattr(command, "commands", None)
    if subcommands:
        names = [n for n in command.list_commands(ctx) if not getattr(command.get_command(ctx, n), "hidden", True)]
        out += ["| command | what it does |", "|---|---|"]
        for name in names:  # heading anchors are the words of the heading joined by "-"
            short = _help(command.get_command(ctx, name)).split("\n\n")[0]  # the first paragraph
            out.append(f"| [`{name}`](#{'-'.join([*path, name])}) | {_cell(short)} |")
        out.append("")
        for name in names:
            sub = command.get_command(ctx, name)
            sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
            _render(sub, sub_ctx, [*path, name], out)


def render_cli_reference() -> str:
    import typer.main

    from arenapref.cli import app

    command = typer.main.get_command(app)
    ctx = command.context_class(command, info_name="arenapref")
    out = [
        "# CLI reference",
        "",
        "Generated from the command line itself at every docs build (the same text as `arenapref COMMAND --help`). "
        "Every `train` option can also be set in a YAML file passed with `--config` (same name, `-` or `_`); "
        "flags win over the file.",
        "",
    ]
    _render(command, ctx, ["arenapref"], out)
    return "\n".join(out)


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=render_cli_reference()))
    return files
