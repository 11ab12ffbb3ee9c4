"""HTTP service over a Judge (FastAPI): compare pairs, rank candidates, describe the model.

The model is loaded once. Concurrent requests are micro-batched: each request puts its rows on a queue, a worker
gathers whatever arrives within a few milliseconds (and everything that queued while the previous forward pass ran)
and runs one forward pass for all of them in a thread, so the event loop keeps accepting requests meanwhile.
/v1/rank runs Judge.rank's code (best_of_n.rank_responses) in a worker thread, its forward passes queued the same way.
Requests are bounded in bytes and items (413 past the limits); malformed bodies get 422 with a readable message.

With an API key (`create_app(..., api_key=KEY)`), every route but /healthz answers 401 without the header
`Authorization: Bearer KEY`. /docs and /openapi.json stay open: they describe the API, not the model's answers, a
browser opening /docs cannot send the header, and its Authorize button (the HTTPBearer scheme) sends the key for the
calls made from the page. The key lives in one closure: nothing logs, reports or documents it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

from arenapref import __version__
from arenapref.data.swap import TTA_MODES
from arenapref.data.tables import LABELS, normalize
from arenapref.errors import DataError
from arenapref.evaluation.metrics import VERDICTS, verdicts
from arenapref.models.style_term import STYLE_MODES
from arenapref.ratings.best_of_n import rank_method, rank_responses

log = logging.getLogger("arenapref.serve")


# -- request and response bodies -------------------------------------------------------------------------------------
def _turn_list(value) -> list[str]:
    """A string is one turn; a list holds one string per turn (null -> "")."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(v is None or isinstance(v, str) for v in value):
        return [v or "" for v in value]
    raise ValueError("expected a string or a non-empty list of strings (one per turn)")


Turns = Annotated[list[str], BeforeValidator(_turn_list), WithJsonSchema({"anyOf": [
    {"type": "string"}, {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "minItems": 1}],
    "description": "one turn as a string, or a list of turns"})]


class Comparison(BaseModel):
    """One conversation: the prompt turns and two candidate responses (a string is a single turn)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "What is 2+2?", "response_a": "4", "response_b": "2+2 is 4."},
        {"prompt": "What is 2+2?", "response_a": "4", "response_b": "2+2 is 4.", "tta": "swap", "diagnostics": True}]})
    prompt: Turns
    response_a: Turns
    response_b: Turns
    tta: Literal[TTA_MODES] | None = Field(None, description="swap: also judge the pair with A and B exchanged and "
                                                             "average both orders; default: the server's --tta")
    diagnostics: bool = Field(False, description="add a diagnostics object: what the model saw of the pair")
    style: Literal[STYLE_MODES] | None = Field(None, description="controlled: judge with the model's style term "
                                                                 "(length and markdown) taken out, for models "
                                                                 "trained with --style-term; default: the server's "
                                                                 "--style")

    @model_validator(mode="after")
    def _same_turn_count(self):
        n = len(self.prompt)
        for name in ("response_a", "response_b"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} turn(s) but prompt has {n}; "
                                 "give one response turn per prompt turn")
        return self


# One comparison or a list of them; the discriminator picks the branch by the JSON type, so a bad body gets the
# errors of the shape it was meant to have, not those of both.
CompareBody = Annotated[
    Annotated[Comparison, Tag("one")] | Annotated[list[Comparison], Tag("list")],
    Discriminator(lambda value: "list" if isinstance(value, list) else "one"),
]


class Probabilities(BaseModel):
    winner_model_a: float
    winner_model_b: float
    winner_tie: float


class Prediction(Probabilities):
    verdict: Literal[VERDICTS] = Field(description="the likeliest outcome; ambiguous where P(A wins) = P(B wins) "
                                                   "within 1e-9 and a tie is no likelier")
    diagnostics: dict[str, Any] | None = Field(None, description="only when the comparison asked for it: tokens "
                                                                 "kept per field and turn, cuts, warnings")


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "What is 2+2?", "responses": ["5", "4", "2+2 is 4."]}]})
    prompt: Turns
    responses: list[Turns] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_turn_count(self):
        for i, turns in enumerate(self.responses):
            if len(turns) != len(self.prompt):
                raise ValueError(f"responses[{i}] has {len(turns)} turn(s) but prompt has {len(self.prompt)}")
        return self


class RankedResponse(BaseModel):
    rank: int
    index: int
    score: float


class RankResult(BaseModel):
    method: str = Field(description="scores: one score per response (rank models); pairwise: Bradley-Terry "
                                    "over all ordered pairs, ties as half wins")
    ranking: list[RankedResponse]


# -- micro-batching and limits ---------------------------------------------------------------------------------------
class PairRow(NamedTuple):
    """One comparison on the pairs queue, with the settings its request asked for (tta None: the judge's own)."""

    prompt: list[str]
    response_a: list[str]
    response_b: list[str]
    tta: str | None = None
    diagnostics: bool = False
    style: str | None = None


class TooLarge(Exception):
    def __init__(self, detail: str):
        self.detail = detail


class MicroBatcher:
    """Runs `run(items) -> results` (one result per item) over the items of all requests queued together."""

    def __init__(self, run: Callable[[list], list], wait_ms: float, max_items: int):
        self.run, self.wait, self.max_items = run, wait_ms / 1000, max_items
        self.executor: ThreadPoolExecutor | None = None
        self.queue: asyncio.Queue | None = None
        self.forward_passes = 0
        self.items = 0

    async def submit(self, items: list) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((items, future))
        return await future

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            deadline = loop.time() + self.wait
            while size < self.max_items:
                try:
                    job = self.queue.get_nowait() if not self.queue.empty() else \
                        await asyncio.wait_for(self.queue.get(), max(deadline - loop.time(), 0))
                except (asyncio.TimeoutError, TimeoutError):
                    break
                jobs.append(job)
                size += len(job[0])
            items = [item for job_items, _ in jobs for item in job_items]
            try:
                results = await loop.run_in_executor(self.executor, self.run, items)
            except Exception as exc:  # one bad batch fails its requests, not the worker
                log.exception("forward pass failed")
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.forward_passes += 1
            self.items += len(items)
            start = 0
            for job_items, future in jobs:
                if not future.done():  # a client that went away has a cancelled future
                    future.set_result(results[start:start + len(job_items)])
                start += len(job_items)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, checked on Content-Length and while reading."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse(status_code=413, content={
            "detail": f"request body over {self.max_bytes} bytes; send fewer or shorter items per request"})
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:  # chunked uploads have no Content-Length: count as we read
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _readable(errors: list[dict]) -> str:
    """Pydantic errors -> one line such as "prompt: Field required; responses.1: Input should be a valid string"."""
    parts = []
    for err in errors:
        if err.get("type") == "json_invalid":
            parts.append(f"body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')} at character "
                         f"{err['loc'][-1]})")
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "one", "list")) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts[:5]) + (f" (and {len(parts) - 5} more)" if len(parts) > 5 else "")


# -- what the routes share -------------------------------------------------------------------------------------------
class Service:
    """The judge, its two micro-batchers (pairs of responses to compare, single responses to score), the limits and
    the counters: everything the routes share, kept in `app.state.service`."""

    def __init__(self, judge, batch_wait_ms: float, max_items: int, max_body_bytes: int, max_batch_rows: int):
        self.judge = judge
        self.pairs = MicroBatcher(self.predict_rows, batch_wait_ms, max_batch_rows)
        self.sides = MicroBatcher(self.score_rows, batch_wait_ms, max_batch_rows)
        self.batch_wait_ms, self.max_items, self.max_body_bytes = batch_wait_ms, max_items, max_body_bytes
        self.max_rank = max(2, int((1 + (1 + 4 * max_items) ** 0.5) / 2))  # n(n-1) ordered pairs within max_items
        self.requests = 0

    def predict_rows(self, rows: list[PairRow]) -> list[tuple[np.ndarray, dict | None]]:
        """(probabilities, diagnostics or None) per row. One gathered batch can hold requests with different
        settings: each (TTA mode, style) gets its own pass, so every row is answered as its request asked."""
        out: list = [None] * len(rows)
        by_tta: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            by_tta.setdefault((row.tta or self.judge.tta, row.style or self.judge.style), []).append(i)
        for (tta, style), index in by_tta.items():
            group = [rows[i] for i in index]
            raw = pd.DataFrame({"id": [str(i) for i in range(len(group))], "prompt": [r.prompt for r in group],
                                "response_a": [r.response_a for r in group],
                                "response_b": [r.response_b for r in group]})
            frame = normalize(raw, "request")
            if any(r.diagnostics for r in group):  # diagnostics come from the same pass, no second tokenisation
                result = self.judge.predict_frame(frame, tta=tta, diagnostics=True, style=style)
                probs, notes = result[list(LABELS)].to_numpy(np.float64), list(result["diagnostics"])
            else:
                probs, notes = self.judge.predict_proba(frame, tta=tta, style=style), [None] * len(group)
            for i, row, p, note in zip(index, group, probs, notes):
                out[i] = (p, json_ready(note) if row.diagnostics else None)
        return out

    def score_rows(self, rows: list[tuple]) -> list:
        return list(self.judge.score_responses([r[0] for r in rows], [r[1] for r in rows]))

    @asynccontextmanager
    async def lifespan(self, app):
        # One forward-pass thread shared by both batchers: passes run one at a time (they share the model and the
        # cores; each pass spreads its batches over the CPU encoder workers itself).
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arenapref-forward")
        workers = []
        for batcher in (self.pairs, self.sides):
            batcher.queue, batcher.executor = asyncio.Queue(), executor
            workers.append(asyncio.create_task(batcher.worker()))
        yield
        for task in workers:
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict:
        return {"forward_passes": self.pairs.forward_passes + self.sides.forward_passes,
                "rows": self.pairs.items + self.sides.items, "requests": self.requests,
                "batch_wait_ms": self.batch_wait_ms, "max_items": self.max_items, "max_body_bytes": self.max_body_bytes,
                "tta": self.judge.tta, "style": self.judge.style}


def json_ready(value):
    """numpy numbers and arrays as Python numbers and lists, NaN and infinities as None: what JSON can carry."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


class QueuedJudge:
    """The judge as `rank_responses` (Judge.rank) sees it, its forward passes queued on the service's micro-batchers
    so that they share passes with concurrent requests. Called from a worker thread, never on the event loop."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop):
        self.service, self.loop = service, loop
        self.scores_sides = service.judge.scores_sides

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        rows = [PairRow(*row) for row in zip(frame["prompt"], frame["response_a"], frame["response_b"])]
        return np.asarray([probs for probs, _ in self._wait(self.service.pairs.submit(rows))]).reshape(-1, 3)

    def score_responses(self, prompts: list, responses: list) -> np.ndarray:
        return np.asarray(self._wait(self.service.sides.submit(list(zip(prompts, responses)))))

    def _wait(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


# -- access ----------------------------------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="The server's API key (ARENAPREF_API_KEY or --api-key-file).")


def key_check(api_key: str):
    """The dependency that guards every route but /healthz: 401 unless `Authorization: Bearer <api_key>`."""
    expected = api_key.encode()

    async def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        if credentials is None:
            raise HTTPException(401, "no API key: send the header 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), expected):  # constant time
            raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return authorized


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: only this machine can connect."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_access_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server that other machines can reach with no key, else None."""
    if api_key or is_loopback(host):
        return None
    return (f"warning: listening on {host} without an API key: anyone who reaches this port can use the model; "
            "set ARENAPREF_API_KEY or pass --api-key-file")


# -- routes ----------------------------------------------------------------------------------------------------------
public = APIRouter()  # never behind the key: load balancers and orchestrators probe it
routes = APIRouter()


def model_card(judge) -> dict:
    """What GET /v1/model reports from arenapref.json."""
    meta = judge.meta
    return {
        "model_type": meta.get("model_type"),
        "backbone": meta.get("backbone"),
        "objective": meta.get("objective"),
        "labels": meta.get("labels", list(LABELS)),
        "ranking": rank_method("auto", judge.scores_sides),
        "text": meta.get("text"),
        "calibration": meta.get("calibration"),
        "valid_metrics": meta.get("valid_metrics"),
        "valid_metrics_scope": meta.get("valid_metrics_scope"),  # what those figures are out of sample for
        "train_rows": meta.get("train_rows"),
        "valid_rows": meta.get("valid_rows"),
        "arenapref_version": __version__,
    }


@public.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@routes.get("/v1/model")
async def model_info(request: Request) -> dict:
    service = request.app.state.service
    return {**model_card(service.judge), "serving": service.stats()}


@routes.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> str:
    stats = request.app.state.service.stats()
    return "".join(f"arenapref_{name}_total {stats[name]}\n" for name in ("requests", "forward_passes", "rows"))


@routes.post("/v1/compare", response_model=Prediction | list[Prediction], response_model_exclude_none=True)
async def compare(body: Annotated[CompareBody, Body()], request: Request):
    """P(A wins), P(B wins), P(tie) and the verdict for one comparison, or for each of a list of them; each
    comparison may ask for swap TTA and for diagnostics."""
    service = request.app.state.service
    items = body if isinstance(body, list) else [body]
    if len(items) > service.max_items:
        raise TooLarge(f"{len(items)} comparisons in one request; the limit is {service.max_items} (split the list)")
    service.requests += 1
    if not items:
        return []
    if any(c.style == "controlled" for c in items):
        service.judge.checked_style("controlled")  # a model without a style term: one clear 422, before queueing
    results = await service.pairs.submit([PairRow(c.prompt, c.response_a, c.response_b, c.tta, c.diagnostics,
                                                  c.style) for c in items])
    probs = np.array([p for p, _ in results]).reshape(-1, 3)
    out = []
    for p, verdict, (_, notes) in zip(probs, verdicts(probs), results):
        out.append({**dict(zip(LABELS, map(float, p))), "verdict": verdict,
                    **({"diagnostics": notes} if notes is not None else {})})
    return out if isinstance(body, list) else out[0]


@routes.post("/v1/rank", response_model=RankResult)
async def rank(body: RankRequest, request: Request):
    """Candidate responses to one prompt, best first, with scores."""
    service = request.app.state.service
    n = len(body.responses)
    if n > service.max_rank:
        raise TooLarge(f"{n} responses in one request; the limit is {service.max_rank}")
    service.requests += 1
    loop = asyncio.get_running_loop()
    ranking = await loop.run_in_executor(None, rank_responses, QueuedJudge(service, loop), body.prompt,
                                         body.responses)
    return {"method": rank_method("auto", service.judge.scores_sides),
            "ranking": [{k: r[k] for k in ("rank", "index", "score")} for r in ranking]}


async def invalid_body(request: Request, exc: RequestValidationError):
    return JSONResponse(status_code=422, content={"detail": _readable(exc.errors()),
                                                  "errors": jsonable_encoder(exc.errors(), exclude={"input"})})


async def too_large(request: Request, exc: TooLarge):
    return JSONResponse(status_code=413, content={"detail": exc.detail})


async def bad_data(request: Request, exc: DataError):
    return JSONResponse(status_code=422, content={"detail": str(exc)})


def create_app(judge, batch_wait_ms: float = 5.0, max_items: int = 256, max_body_bytes: int = 4_000_000,
               max_batch_rows: int = 512, api_key: str | None = None) -> FastAPI:
    """The FastAPI app over an already loaded Judge (its `tta` is the default of /v1/compare and /v1/rank's). With
    `api_key`, every route but /healthz needs `Authorization: Bearer <api_key>`."""
    service = Service(judge, batch_wait_ms, max_items, max_body_bytes, max_batch_rows)
    app = FastAPI(title="arenapref judge", version=__version__, lifespan=service.lifespan,
                  description="Which of two chatbot responses would a human prefer? Probabilities for A wins, "
                              "B wins, tie; best-of-n ranking.")
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(TooLarge, too_large)
    app.add_exception_handler(DataError, bad_data)
    app.include_router(public)
    app.include_router(routes, dependencies=[Depends(key_check(api_key))] if api_key else None)
    return app


# -- running the server ----------------------------------------------------------------------------------------------
def fix_mmap_threshold(size: int = 128 * 1024) -> bool:
    """Pin glibc's mmap threshold (M_MMAP_THRESHOLD) so blocks of `size` bytes and more always get their own mapping.

    By default glibc raises the threshold each time a large mapped block is freed (up to 32 MiB), after which
    blocks of that size come from the heap instead. A server handling bodies and activations of every size from
    bytes to megabytes then fragments its heap and its resident memory creeps up for thousands of requests (measured
    with bench/load.py: +150 MiB over 1200 requests with the default MiniLM model, still rising). Pinning the
    threshold keeps large blocks out of the heap, so freeing them returns the memory at once. A no-op (False)
    without glibc.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3
    return bool(mallopt(m_mmap_threshold, size))


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run(judge, host: str, port: int, api_key: str | None = None, **limits) -> None:
    import uvicorn

    fix_mmap_threshold()
    uvicorn.run(create_app(judge, api_key=api_key, **limits), host=host, port=port, log_level="info",
                access_log=False)

