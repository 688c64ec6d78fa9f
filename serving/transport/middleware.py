"""The service's own ASGI middleware, outermost first (see serving/service.py for the order).

- :class:`ErrorShield`: an exception that escapes an app becomes the one JSON error shape when no
  response has started, and is swallowed (logged by the app) when the response was complete, so a
  500 never costs the keep-alive connection the next request.
- :class:`HttpMetrics`: request count, latency and in-progress per route *template*
  (``/v1/models/{name}``); every path no route serves shares one label value, ``other``.
- :class:`RouteFallback`: ``GET /v2`` is the v2 root; the router's plain-text 404/405 become the
  JSON error shape; ``/docs.json`` is the service's OpenAPI document (serving/openapi.py).
- :class:`RequestLimits`: 431 for request lines + headers over SERVING_MAX_HEADER_BYTES, 413 for
  bodies over SERVING_MAX_BODY_BYTES (declared or chunked), before they are buffered.
- :class:`ConnectionRecycle`: ``Connection: close`` every Nth response of a keep-alive connection,
  and on every response while the worker drains; counts in-flight requests (for the drain, and to
  answer 503 at once, before reading the body, past SERVING_MAX_IN_FLIGHT).

Error bodies take the shape of the API the path belongs to: ``{"error"}`` under ``/v2``,
``{"error", "type"}`` everywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.routing import compile_path

from contract.errors import (
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    error_body,
    error_message,
    http_status,
)
from serving.core.metrics import STATS_PREFIX

logger = logging.getLogger("serving.http")

Scope = dict[str, Any]
RETRY_AFTER_S = "1"


def error_payload(path: str, exc: BaseException) -> dict[str, str]:
    """The error body for ``path``: the v2 protocol's ``{"error"}`` under /v2, ``{"error", "type"}`` elsewhere."""
    if path == "/v2" or path.startswith("/v2/"):
        return {"error": error_message(exc)}
    return error_body(exc)


async def send_error(scope: Scope, send: Any, exc: BaseException, close: bool = False) -> None:
    """Answer with ``exc``'s status and the error shape of the path's API."""
    status = http_status(exc)
    body = orjson.dumps(error_payload(scope.get("path", ""), exc))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", RETRY_AFTER_S.encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Tracked:
    """A ``send`` wrapper that remembers how far the response got; with ``quiet``, a send to a
    connection the client already closed is dropped (as uvicorn drops those it knows of) instead of
    raising through the app, which would log a fault that is only a client gone."""

    def __init__(self, send: Any, quiet: bool = False) -> None:
        self.send = send
        self.quiet = quiet
        self.started = False
        self.complete = False
        self.client_gone = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        if self.client_gone:
            return
        try:
            await self.send(message)
        except (RuntimeError, OSError) as e:
            if not self.quiet:
                raise
            self.client_gone = True
            logger.debug("the client went away before its answer: %s", e)


class ErrorShield:
    """Exceptions never reach the server: uvicorn closes the connection on any exception that escapes
    the app, even after a complete response (Starlette re-raises after sending its 500), so the next
    request on that keep-alive connection would get no answer at all."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _Tracked(send, quiet=True)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if tracked.complete or tracked.client_gone:
                return  # answered already (the app logged it): keep the connection
            if tracked.started:
                raise  # a half-sent response: only closing the connection tells the client
            if not isinstance(exc, ServingError):
                logger.error("request failed: %s %s", scope.get("method"), scope.get("path", "")[:200], exc_info=exc)
            await send_error(scope, send, exc)


# ---------------------------------------------------------------- metrics

OTHER = "other"


class RouteTemplates:
    """Path -> route template (``/v1/models/abc`` -> ``/v1/models/{name}``), ``other`` for paths no
    route serves, so metric label values are bounded by the routes, not by what clients send."""

    def __init__(self, mounts: Sequence[tuple[str, Any]], exact: Sequence[str], cache_size: int = 4096) -> None:
        self.exact = frozenset(exact)
        self.routes: list[tuple[str, str, Any]] = []  # (mount prefix, template, compiled regex)
        for prefix, app in mounts:
            # A FastAPI app's routers are included lazily (their routes are not in app.routes), so its
            # OpenAPI paths name them; plain routes (Starlette apps, routes left out of the schema) add theirs.
            paths = [path for path in (getattr(route, "path", None) for route in getattr(app, "routes", ())) if path]
            if callable(getattr(app, "openapi", None)):
                paths += list(app.openapi().get("paths", {}))
            for path in dict.fromkeys(paths):
                self.routes.append((prefix, prefix + path, compile_path(path)[0]))
        self.cache_size = cache_size
        self._cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        found = self._cache.get(path)
        if found is None:
            found = self._resolve(path)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[path] = found
        return found

    def _resolve(self, path: str) -> str:
        if path in self.exact:
            return path
        for prefix, template, regex in self.routes:
            if path.startswith(prefix) and regex.match(path[len(prefix) :] or "/"):
                return template
        return OTHER


class HttpMetrics:
    """BentoML's request metrics under the same names and labels (dashboards keep working), with the
    route template as ``endpoint``; also serves ``GET /metrics`` (every worker's samples merged).

    BentoML's own metrics middleware labels by raw path, one series per distinct URL a client
    invents, so the service turns it off and uses this instead."""

    def __init__(self, app: Any, templates: RouteTemplates, service_name: str, buckets: Sequence[float]) -> None:
        self.app = app
        self.templates = templates
        self.service_name = service_name
        self.buckets = tuple(buckets)
        self._families: tuple[Any, Any, Any] | None = None

    def _metrics(self) -> tuple[Any, Any, Any]:
        if self._families is None:  # created in the worker, after BentoML set PROMETHEUS_MULTIPROC_DIR
            import prometheus_client as prom

            labels = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
            self._families = (
                prom.Counter("bentoml_service_request_total", "Total number of requests, per route", labels),
                prom.Histogram(
                    "bentoml_service_request_duration_seconds", "Request duration in seconds, per route", labels, buckets=self.buckets
                ),
                prom.Gauge(
                    "bentoml_service_request_in_progress",
                    "Requests being served now, per route",
                    ["endpoint", "service_name", "service_version", "runner_name"],
                    multiprocess_mode="livesum",
                ),
            )
        return self._families

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/metrics" and scope["method"] in ("GET", "HEAD"):
            return await self._serve_metrics(send)
        endpoint = self.templates(path)
        total, duration, in_progress = self._metrics()
        started = time.perf_counter()
        status = 0

        async def counting(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                labels = (endpoint, self.service_name, "not available", str(status), self.service_name)
                total.labels(*labels).inc()
                duration.labels(*labels).observe(time.perf_counter() - started)
            await send(message)

        with in_progress.labels(endpoint, self.service_name, "not available", self.service_name).track_inprogress():
            await self.app(scope, receive, counting)

    async def _serve_metrics(self, send: Any) -> None:
        self._metrics()
        text = await asyncio.to_thread(_render_metrics)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), (b"content-length", str(len(text)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": text})


class _Published:
    """Every family of ``source`` but the statistics extension's counters (served at /v2/models/stats;
    their per-batch-size series would crowd a scrape)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Any:
        return (family for family in self.source.collect() if not family.name.startswith(STATS_PREFIX))


def _render_metrics() -> bytes:
    import os

    import prometheus_client as prom
    from prometheus_client import multiprocess

    source: Any = multiprocess.MultiProcessCollector(None) if "PROMETHEUS_MULTIPROC_DIR" in os.environ else prom.REGISTRY  # type: ignore[no-untyped-call]
    registry = prom.CollectorRegistry()
    registry.register(_Published(source))
    return prom.generate_latest(registry)


# ---------------------------------------------------------------- routes


class RouteFallback:
    """For what no mounted app routes: ``GET /v2`` is the v2 root, the router's plain-text 404 and
    405 become the JSON error shape, and ``GET /docs.json`` answers ``openapi()``'s document."""

    def __init__(self, app: Any, aliases: dict[str, str], openapi: Callable[[], dict[str, Any]] | None = None) -> None:
        self.app = app
        self.aliases = aliases
        self.openapi = openapi
        self._document: bytes | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.openapi is not None and scope["path"] == "/docs.json" and scope["method"] in ("GET", "HEAD"):
            if self._document is None:
                self._document = orjson.dumps(self.openapi())
            body = self._document
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        alias = self.aliases.get(scope["path"])
        if alias is not None:
            scope = {**scope, "path": alias, "raw_path": alias.encode()}
        replaced = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (404, 405):
                headers = dict(message.get("headers") or ())
                if headers.get(b"content-type", b"").startswith(b"text/plain"):
                    replaced = True
                    path = scope["path"][:200]
                    if message["status"] == 404:
                        error: ServingError = NotFound(f"no route {scope['method']} {path}; see /docs.json")
                    else:
                        error = MethodNotAllowed(f"{path} does not take {scope['method']}; see /docs.json")
                    body = orjson.dumps(error_payload(scope["path"], error))
                    extra = [(k, v) for k, v in message.get("headers") or () if k.lower() == b"allow"]
                    await send(
                        {
                            **message,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            if not replaced:
                await send(message)

        await self.app(scope, receive, sending)


# ---------------------------------------------------------------- limits


class RequestLimits:
    """431 for a request line + headers over ``max_header_bytes``; 413 for a body over ``max_body_bytes``
    (by Content-Length before anything is read, or counted as a chunked body arrives). A refused body is
    left unread, so its answer carries ``Connection: close``."""

    def __init__(self, app: Any, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.max_header_bytes:
            error = HeadersTooLarge(
                f"request line and headers of {size} bytes are over the {self.max_header_bytes}-byte limit (SERVING_MAX_HEADER_BYTES)"
            )
            return await send_error(scope, send, error, close=True)
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(scope, send, self._error(int(declared)), close=True)
        received = 0
        exceeded = False

        async def counted() -> dict[str, Any]:
            nonlocal received, exceeded
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise self._error(received)
            return message

        async def closing(message: dict[str, Any]) -> None:
            if exceeded and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await tracked(message)

        tracked = _Tracked(send)
        try:
            await self.app(scope, counted, closing)
        except PayloadTooLarge as e:  # an app without its own error handler (BentoML's routes)
            if not exceeded or tracked.started:
                raise
            await send_error(scope, send, e, close=True)

    def _error(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body of {size} bytes is over the {self.max_bytes}-byte limit (SERVING_MAX_BODY_BYTES)")


# ---------------------------------------------------------------- connections and drain


class Drain:
    """This worker's drain state, shared by the service (which sets ``draining``) and
    :class:`ConnectionRecycle` (which counts the HTTP requests in flight)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.last_start = 0.0  # time.monotonic() of the newest request

    def quiet_for(self) -> float:
        """Seconds since the last request started, 0 while one is in flight."""
        return 0.0 if self.in_flight else time.monotonic() - self.last_start


DRAIN = Drain()


class ConnectionRecycle:
    """``Connection: close`` on every Nth response of a keep-alive connection, and on every response
    while the worker drains.

    Workers share one listening socket and the kernel hands a burst of new connections to whichever
    worker accepts first, so long-lived keep-alive clients can pile onto one worker (and stay on the
    survivor when a worker dies). Closing each connection after ``every`` requests makes clients
    reconnect, and a reconnect lands on a worker that is waiting in ``accept``: load evens out within
    seconds, at the cost of one loopback/LAN handshake per ``every`` requests. While draining, closing
    after each answer moves clients to other replicas and leaves no idle connection to cut.
    """

    def __init__(
        self,
        app: Any,
        every: int,
        drain: Drain | None = None,
        remember: int = 8192,
        max_in_flight: int = 0,
        exempt: Sequence[str] = ("/livez", "/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.every = every
        self.drain = drain or DRAIN
        self.remember = remember
        self.max_in_flight = max_in_flight
        self.exempt = frozenset(exempt)
        self._served: OrderedDict[Any, int] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if self.max_in_flight and drain.in_flight >= self.max_in_flight and scope["path"] not in self.exempt:
            # Refused before the body is read or parsed: under overload the refusals stay cheap, so they stay fast.
            declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
            unread_body = not declared.isdigit() or int(declared) > 65536
            error = Overloaded(f"this worker holds {drain.in_flight} requests (SERVING_MAX_IN_FLIGHT); retry shortly")
            return await send_error(scope, send, error, close=unread_body)
        drain.in_flight += 1
        drain.last_start = time.monotonic()
        try:
            if drain.draining or self._due(scope):
                await self.app(scope, receive, _closing(send))
            else:
                await self.app(scope, receive, send)
        finally:
            drain.in_flight -= 1
            drain.last_start = time.monotonic()

    def _due(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not self.every or client is None:
            return False
        key = tuple(client)
        count = self._served.pop(key, 0) + 1
        if count < self.every:
            self._served[key] = count  # most recent last; the oldest entries are forgotten first
            if len(self._served) > self.remember:
                self._served.popitem(last=False)
            return False
        return True


def _closing(send: Any) -> Any:
    async def closing(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return closing
