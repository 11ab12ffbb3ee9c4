"""serve: the HTTP service over one model directory."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from arenapref.api import Judge, check_tta
from arenapref.cli.common import JUDGE_HELP, checked_model, err_console, quiet_libraries, uses_transformers
from arenapref.cli.options import with_options
from arenapref.cli.predict import TTA
from arenapref.config import InferenceOptions
from arenapref.errors import DataError

KEY_VARIABLE = "ARENAPREF_API_KEY"


def read_api_key(file: Path | None, environ=os.environ) -> str | None:
    """The API key from `file` (the flag wins) or the environment variable, stripped; None when neither is given.
    A key that is given but empty or unreadable is an error, never a silent server without a key."""
    if file is not None:
        where = f"--api-key-file {file}"
        try:
            key = Path(file).read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise DataError(f"{where}: not UTF-8 text; write the key as text (e.g. `openssl rand -hex 32`)") from None
        except OSError as exc:
            raise DataError(f"{where}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        if not key:
            raise DataError(f"{where} is empty; write the key in it (e.g. `openssl rand -hex 32 > {file}`)")
    elif KEY_VARIABLE in environ:
        where, key = KEY_VARIABLE, environ[KEY_VARIABLE].strip()
        if not key:
            raise DataError(f"{KEY_VARIABLE} is set but empty; give it a key or unset it to serve without one")
    else:
        return None
    if not (key.isascii() and key.isprintable() and " " not in key):
        raise DataError(f"the API key in {where} must be printable ASCII without spaces (an HTTP header carries it), "
                        "e.g. `openssl rand -hex 32`")
    return key


@with_options(InferenceOptions, into="inference")
def serve(
    model: Path | None = typer.Option(None, help=JUDGE_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key_file: Path | None = typer.Option(
        None, help=f"File holding the API key (default: the {KEY_VARIABLE} environment variable). With a key, "
                   "every endpoint but /healthz needs the header 'Authorization: Bearer KEY'."),
    tta: str = TTA,
    batch_wait_ms: float = typer.Option(5.0, help="How long a forward pass waits to gather concurrent requests."),
    max_items: int = typer.Option(256, help="Most comparisons (or ordered rank pairs) in one request; 413 past it."),
    max_body_bytes: int = typer.Option(4_000_000, help="Largest request body in bytes; 413 past it."),
    inference: dict = None,
):
    """HTTP service: POST /v1/compare, POST /v1/rank, GET /v1/model, GET /healthz; docs at /docs."""
    from arenapref import serve as service  # lazy: fastapi costs ~0.3 s, which every other command would pay

    options = InferenceOptions(**inference).validate()
    check_tta(tta)
    options.check_tta(tta)
    api_key = read_api_key(api_key_file)
    model, meta = checked_model(model, options)
    if not service.port_free(host, port):
        raise DataError(f"{host}:{port} is in use or not an address of this machine; pass another --port or --host")
    warning = service.open_access_warning(host, api_key)
    if warning:
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)
    quiet_libraries(uses_transformers(meta["model_type"]))
    judge = Judge.from_pretrained(model, tta=tta, **options.load_kwargs())
    err_console.print(f"serving {model} on http://{host}:{port} (docs: http://{host}:{port}/docs)"
                      + ("; requests need the API key" if api_key else ""), markup=False, highlight=False,
                      soft_wrap=True)
    service.run(judge, host, port, api_key=api_key, batch_wait_ms=batch_wait_ms, max_items=max_items,
                max_body_bytes=max_body_bytes)
