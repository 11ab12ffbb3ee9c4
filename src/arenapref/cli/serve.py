"""serve: the HTTP service over one model directory."""

from __future__ import annotations

from pathlib import Path

import typer

from arenapref.api import Judge
from arenapref.cli.common import err_console, quiet_libraries, uses_transformers
from arenapref.cli.options import with_options
from arenapref.config import InferenceOptions
from arenapref.errors import DataError
from arenapref.models.directory import check_model_dir


@with_options(InferenceOptions, into="inference")
def serve(
    model: Path = typer.Option(..., help="Model directory written by `arenapref train`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    batch_wait_ms: float = typer.Option(5.0, help="How long a forward pass waits to gather concurrent requests."),
    max_items: int = typer.Option(256, help="Most comparisons (or ordered rank pairs) in one request; 413 past it."),
    max_body_bytes: int = typer.Option(4_000_000, help="Largest request body in bytes; 413 past it."),
    inference: dict = None,
):
    """HTTP service: POST /v1/compare, POST /v1/rank, GET /v1/model, GET /healthz; docs at /docs."""
    from arenapref import serve as service  # lazy: fastapi costs ~0.3 s, which every other command would pay

    options = InferenceOptions(**inference).validate()
    meta = check_model_dir(model)
    options.check_applies(meta["model_type"], model)
    if not service.port_free(host, port):
        raise DataError(f"{host}:{port} is in use or not an address of this machine; pass another --port or --host")
    quiet_libraries(uses_transformers(meta["model_type"]))
    judge = Judge.from_pretrained(model, **options.load_kwargs())
    err_console.print(f"serving {model} on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    service.run(judge, host, port, batch_wait_ms=batch_wait_ms, max_items=max_items, max_body_bytes=max_body_bytes)
