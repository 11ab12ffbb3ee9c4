"""Flags generated from the option dataclasses (config.TrainConfig, config.InferenceOptions): each field is one flag
with its help, default and choices, so an option is declared once, in config.py.

`with_options(cls, into=...)` adds a flag per field of `cls` to a command's signature (typer reads
`__signature__`) and hands the command the flags given on the command line, as one dict `into`: a flag left out
keeps its default in `--help` but is not in the dict, so a YAML value stands unless a flag overrides it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

import typer
from typer.exceptions import TyperException

from arenapref.config import value_type
from arenapref.errors import DataError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


CONTEXT = "options_context"  # the generated parameter typer fills with the click context


def parameters(cls, skip: tuple = ()) -> list[inspect.Parameter]:
    """One `typer.Option` parameter per field of `cls` (except `skip`), with the field's default, help and choices."""
    defaults = cls()
    params = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, default, choices = value_type(cls, f.name), getattr(defaults, f.name), f.metadata["choices"]
        item = Path if f.metadata["path"] else str
        annotation = list[item] if kind is list else item if kind is str else kind
        # A switch that is on by default can be turned off (--no-probe); one that is off is turned on (--bf16).
        decls = [f"{flag(f.name)}/--no-{f.name.replace('_', '-')}" if default else flag(f.name)] if kind is bool else []
        metavar = f"[{'|'.join(choices)}]" if choices else "<path>" if kind is list else None
        info = typer.Option(default, *decls, help=f.metadata["help"], metavar=metavar,
                            show_default=default is not None and default != [])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                        annotation=annotation | None if default is None else annotation))
    return params


def given(cls, ctx, skip: tuple = ()) -> dict:
    """The options of `cls` given on the command line (`ctx`: the command's parsed context), paths as strings."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or ctx.get_parameter_source(f.name).name == "DEFAULT":
            continue
        value = ctx.params[f.name]
        if isinstance(value, (list, tuple)):
            out[f.name] = [str(v) for v in value]
        else:
            out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def with_options(cls, into: str, skip: tuple = ()):
    """Decorator: the command gets a flag per field of `cls` (in place of its parameter `into`, minus `skip`) and
    receives the flags given as the dict `into`."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        at = [p.name for p in own].index(into)
        generated = parameters(cls, skip)
        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def run(**kwargs):
            ctx = kwargs.pop(CONTEXT)
            for p in generated:
                del kwargs[p.name]
            return command(**kwargs, **{into: given(cls, ctx, skip)})

        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        run.__signature__ = signature.replace(parameters=keyword[:at] + generated + keyword[at + 1:] + [context])
        return run

    return decorate


class OneLineErrors(typer.core.TyperCommand):
    """A command whose usage errors (a mistyped value, an unknown flag) are one line, exit 2, like every other user
    error: the many generated flags of train and cv make a boxed usage message hard to read."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except TyperException as exc:
            raise DataError(f"{self.name}: {exc.format_message().rstrip('.')}; see `arenapref {self.name} --help`") \
                from None
