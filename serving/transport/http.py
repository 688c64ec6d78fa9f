"""What every HTTP protocol front shares: its app, the data plane it serves, JSON in and out, errors, disconnects.

:func:`protocol_app` makes a FastAPI app whose every error (ours, FastAPI's validation, Starlette's
HTTPExceptions, anything unexpected) is answered in the protocol's error shape with the one status
table of ``contract.errors``. The host (serving/service.py) attaches the worker's data plane with
:func:`attach`; a route gets it with :func:`plane`. Nothing here knows BentoML.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from contract.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    Unimplemented,
    UnsupportedMediaType,
    http_status,
)
from serving.core.dataplane import DataPlane

logger = logging.getLogger("serving.http")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RETRY_AFTER_S = "1"
ErrorShape = Callable[[BaseException], dict[str, str]]


class JSON(Response):
    """orjson-encoded JSON (numpy-aware, several times faster than the stdlib for probability lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(exc: BaseException, shape: ErrorShape, headers: dict[str, str] | None = None) -> Response:
    """``exc`` as its status, in the protocol's error shape (503s with Retry-After); server faults are logged."""
    status = http_status(exc)
    if status >= 500 and not isinstance(exc, (NotReady, Overloaded, Unimplemented)):
        logger.error("request failed", exc_info=exc)
    if status == 503:
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER_S}
    return JSON(shape(exc), status_code=status, headers=headers)


def invalid_request(errors: Any) -> InvalidInput:
    """pydantic's error list (FastAPI's query/form validation or our JSON bodies) as one InvalidInput."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return InvalidInput(f"invalid request: {problems}")


def http_exception_error(exc: HTTPException, method: str, path: str) -> ServingError:
    """Starlette's and FastAPI's own HTTPExceptions (405, multipart and body parsing) as our errors."""
    detail = exc.detail if isinstance(exc.detail, str) else "the request is not acceptable"
    if exc.status_code == 404:
        return NotFound(f"no route {method} {path[:200]}; see /docs.json")
    if exc.status_code == 405:
        return MethodNotAllowed(f"{path[:200]} does not take {method}; see /docs.json")
    if exc.status_code == 413:
        return PayloadTooLarge(detail)
    if 400 <= exc.status_code < 500:
        return InvalidInput(f"the request could not be read: {detail}")
    return ServingError(detail)


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def protocol_app(title: str, description: str, version: str, shape: ErrorShape) -> FastAPI:
    """A FastAPI app whose every error is answered in ``shape``."""
    # FastAPI's native OpenTelemetry (spans, metrics and logs per request) asks the global providers on
    # every request (~50 us): BentoML's middleware already traces requests when SERVING_TRACING is on.
    app = FastAPI(title=title, description=description, version=version, telemetry=NO_TELEMETRY)

    async def serving_error(_: Request, exc: Exception) -> Response:
        return error_response(exc, shape)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(invalid_request(exc.errors()), shape)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        # The router's 405 names the methods the path takes (RFC 9110 requires Allow): keep it.
        allow = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
        return error_response(http_exception_error(exc, request.method, request.url.path), shape, allow or None)

    async def unexpected(_: Request, exc: Exception) -> Response:
        logger.exception("unexpected error", exc_info=exc)
        return error_response(exc, shape)

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    return app


def attach(app: FastAPI, dataplane: DataPlane) -> None:
    """Serve ``app``'s routes from ``dataplane`` (the host calls this once per worker)."""
    app.state.dataplane = dataplane


def plane(request: Request) -> DataPlane:
    """The data plane of the app serving ``request``."""
    found = getattr(request.app.state, "dataplane", None)
    if found is None:
        raise NotReady("service is starting")
    assert isinstance(found, DataPlane)
    return found


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, cancelling it (and so taking it out of its batcher's queue) if the client goes away."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise NotReady("the client disconnected")
    return task.result()


JSON_TYPE, NPY_TYPE, MULTIPART_TYPE = "application/json", "application/octet-stream", "multipart/form-data"
# What clients send when they do not say what a body is: nothing (Triton's clients), curl's default for
# -d/--data-binary, and a browser's fetch() default for a string body. Then the body's own bytes decide.
UNSAID_TYPES = frozenset({"", "application/x-www-form-urlencoded", "text/plain"})
TYPE_ALIASES = {"application/x-npy": NPY_TYPE}
NPY_MAGIC = b"\x93NUMPY"


def body_type(request: Request, takes: Sequence[str], body: bytes = b"") -> str:
    """Which of the media types a route ``takes`` its ``body`` is: the one Content-Type rule of every
    route with a body (docs/CONTRACTS.md, "Content types").

    A Content-Type naming a type the route takes decides (``application/x-npy`` is ``.npy`` too; any
    ``+json`` type is JSON). One that says nothing (:data:`UNSAID_TYPES`) lets the body decide: a
    ``.npy`` by its magic bytes, else JSON where the route takes it, else the route's one binary type.
    Any other type is refused with 415, naming the types the route takes: no body is guessed at
    against what its client declared. A multipart body must be declared (its boundary is in the type).
    """
    raw = request.headers.get("content-type", "")
    declared = raw.partition(";")[0].strip().lower()
    declared = JSON_TYPE if declared.endswith("+json") else TYPE_ALIASES.get(declared, declared)
    if declared in takes:
        return declared
    if declared in UNSAID_TYPES:
        if NPY_TYPE in takes and (body.startswith(NPY_MAGIC) or JSON_TYPE not in takes):
            return NPY_TYPE
        if JSON_TYPE in takes:
            return JSON_TYPE
    said = f"Content-Type {raw.strip()[:100]!r}" if raw.strip() else "a body without a Content-Type"
    send = ", ".join(takes[:-1]) + " or " + takes[-1] if len(takes) > 1 else takes[0]
    raise UnsupportedMediaType(f"{said} is not accepted by {request.method} {request.url.path[:200]}; send {send}")


async def read_json(request: Request, model: type[M], counts: tuple[int, int, str] | None = None) -> M:
    """A route's JSON body as ``model`` (see :func:`body_type` and :func:`parse_json`)."""
    body = await request.body()
    body_type(request, (JSON_TYPE,), body)
    return parse_json(body, model, counts)


# Bodies up to this many times what the row limit allows are parsed, so that a few rows too many get
# the data plane's row message (the same on every protocol); larger ones are refused unparsed.
JSON_OVERSIZE = 2


def check_json_counts(body: bytes, max_values: int, max_arrays: int, rows: str) -> None:
    """Refuse, before parsing, a JSON body with more arrays or values than any request within the
    row limits can hold: parsing ten million tiny arrays costs seconds and hundreds of MB before a
    row check could refuse them. Counts ``[`` and ``,`` bytes (an upper bound; strings may hold some)."""
    arrays = body.count(b"[")
    if arrays > max_arrays:
        raise PayloadTooLarge(f"the JSON body holds {arrays} arrays; at most {max_arrays} fit {rows}")
    values = body.count(b",") + 1
    if values > max_values:
        raise PayloadTooLarge(f"the JSON body holds about {values} values; at most {max_values} fit {rows}")


def parse_json(body: bytes, model: type[M], counts: tuple[int, int, str] | None = None) -> M:
    """``body`` as ``model``: orjson (3-4x the stdlib's speed on pixel arrays), then pydantic for the fields.
    ``counts``: (most values, most arrays, what that allows) checked before parsing."""
    if counts is not None:
        check_json_counts(body, *counts)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses NaN/Infinity, which the stdlib reads: parse again so validation can say
        # "non-finite value at index ...", rather than "not JSON", about such a body.
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise InvalidInput(f"the body is not valid JSON ({str(e)[:200]}); send a JSON object") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request(e.errors()) from None
