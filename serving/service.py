"""The BentoML service: launcher, packaging and lifecycle of one engine per worker, with its fronts.

Each worker builds one :class:`~serving.engine.Engine` (loads and warms every model before it
accepts connections), mounts the HTTP front (``/v1``), the v2 front (``/v2``) and the demo page
(``/demo``) and, on start-up, runs the gRPC front and the model lifecycle on the same event loop.
BentoML keeps ``/livez`` and ``/readyz``; ``/metrics``, ``/docs.json`` and the API page at ``/`` and
``/docs`` are the service's own (serving/transport/middleware.py, serving/transport/openapi.py,
serving/protocols/docs_page.py).

On SIGTERM a worker drains without losing a request:

1. at once: unready (``/readyz`` and v2 ready 503, gRPC health NOT_SERVING) and every HTTP answer
   carries ``Connection: close``, so keep-alive clients move elsewhere;
2. for SERVING_DRAIN_DELAY_S it keeps accepting and answering (Kubernetes removes the pod from its
   endpoints meanwhile);
3. then it stops accepting: the HTTP listener drops new handshakes and the worker accepts what the
   kernel already queued (serving/drain.py); gRPC sends GOAWAY and finishes its calls;
4. once no HTTP request is in flight and none started for a moment, uvicorn shuts down (nothing
   left to cut), bounded by SERVING_DRAIN_TIMEOUT_S; then the batchers stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import time
from typing import Any

import bentoml

from .core.dataplane import DataPlane
from .core.engine import Engine
from .core.lifecycle import Lifecycle
from .core.metrics import LATENCY_BUCKETS, engine_metrics
from .protocols import grpc_services
from .protocols.demo import demo
from .protocols.docs_page import DocsPage, pages
from .protocols.oip.rest import api as v2_api
from .protocols.v1.app import api
from .settings import Settings, unknown_env_names
from .transport import drain, http, openapi
from .transport.compression import Compression
from .transport.middleware import DRAIN, ConnectionRecycle, ErrorShield, HttpMetrics, RequestLimits, RouteFallback, RouteTemplates
from .transport.restricted import Restricted, RestrictedApis

logger = logging.getLogger("serving.service")

# Read once at start-up: BentoML needs the worker count and ports when the class is defined.
SETTINGS = Settings.from_env()


def _tls(settings: Settings) -> dict[str, Any]:
    """BentoML's (uvicorn's) HTTPS settings from SERVING_TLS_*; {} for plain HTTP."""
    if not settings.tls_cert:
        return {}
    config: dict[str, Any] = {"enabled": True, "certfile": settings.tls_cert, "keyfile": settings.tls_key}
    if settings.tls_client_ca:
        config.update(ca_certs=settings.tls_client_ca, cert_reqs=ssl.CERT_REQUIRED)
    return config


@bentoml.asgi_app(demo, path="/demo")
@bentoml.asgi_app(api, path="/v1")
@bentoml.asgi_app(v2_api, path="/v2")
@bentoml.service(
    name="digits",
    workers=SETTINGS.workers,
    # BentoML's TimeoutMiddleware leaves one timer (and a future) per request pending for this long
    # (bentoml 1.4.39 never cancels it): at thousands of requests/s a 60 s default held ~10 MB and
    # slowed every collection. The bound is on time to the first response byte.
    traffic={"timeout": SETTINGS.request_timeout_s},
    # With no exporter configured the spans are discarded: excluding every URL skips building them.
    tracing={} if SETTINGS.tracing else {"excluded_urls": ".*"},
    http={"host": SETTINGS.host, "port": SETTINGS.http_port},
    ssl=_tls(SETTINGS),
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML labels its request metrics with the raw path: one series (and ~70 KB per worker) for
    # every URL a client invents. HttpMetrics keeps its names with route templates instead.
    metrics={"enabled": False},
)
class DigitsService:
    """Serves every stored model (or SERVING_MODELS) from ONNX Runtime over HTTP and gRPC."""

    def __init__(self) -> None:
        logging.getLogger("serving").setLevel(SETTINGS.log_level)
        for name in unknown_env_names():
            logger.warning("%s is set but is not a setting (a typo?); `python -m serving.settings` lists them", name)
        # Served from a built Bento: exactly the model versions it was built with, not the store's newest.
        bento = DigitsService.bento  # type: ignore[attr-defined]  # set by @bentoml.service
        pinned = [str(m.tag) for m in bento.info.all_models] if bento is not None else []
        # Over SERVING_MODELS, else ``pinned``, else what the version policies select from the store,
        # kept up to date by the lifecycle.
        self.engine = Engine(SETTINGS, metrics=engine_metrics())
        self.lifecycle = Lifecycle(self.engine, SETTINGS, pinned)
        self.dataplane = DataPlane(self.engine, self.lifecycle)
        for app in (api, v2_api):
            http.attach(app, self.dataplane)
        self.grpc: Any = None  # the GrpcServer, when SERVING_GRPC_PORT is not 0
        self._grpc_stopped: asyncio.Task[None] | None = None
        self._drained: asyncio.Task[None] | None = None
        # Load before this worker accepts connections: workers share one socket and each has its own
        # engine, so a worker still loading must not be the one that answers /readyz (or a request).
        try:
            self.engine.load(self.lifecycle.initial_registry())
        except Exception:
            logger.exception("loading models failed; the service stays unready")

    def __is_ready__(self) -> bool:
        return self.engine.ready

    @bentoml.on_startup  # type: ignore[untyped-decorator]  # bentoml's hook decorators are untyped
    async def start_grpc(self) -> None:
        """Start the gRPC front and the model lifecycle (hot reload) on this worker's loop, and hear
        SIGTERM before the HTTP server does."""
        self.lifecycle.start()
        if SETTINGS.grpc_port:
            from .transport.grpc import GrpcServer

            self.grpc = GrpcServer(SETTINGS, *grpc_services(self.dataplane))
            await self.grpc.start(self.engine.ready)
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(self._begin_drain, previous)

        signal.signal(signal.SIGTERM, on_sigterm)
        # Everything loaded so far lives as long as the worker: keep the collector from re-scanning it.
        # A full collection over BentoML's, FastAPI's and ORT's start-up objects takes tens of ms and
        # was the p99 of single-image requests under load.
        gc.collect()
        gc.freeze()
        # Per-request objects die young; a larger first generation collects them less often, so fewer
        # survive into the older generations whose collections were the tail (p99 25 -> 13 ms at 32 connections).
        gc.set_threshold(SETTINGS.gc_gen0_threshold, *gc.get_threshold()[1:])

    def _begin_drain(self, then: Any = None) -> None:
        if self.engine.draining:
            return
        self.engine.draining = True
        DRAIN.draining = True
        logger.info(
            "SIGTERM: unready; answering for %.1fs more, then draining (up to %.0fs)", SETTINGS.drain_delay_s, SETTINGS.drain_timeout_s
        )
        if self.grpc is not None:
            asyncio.ensure_future(self.grpc.set_serving(False))
        self._drained = asyncio.ensure_future(self._drain(then))

    async def _drain(self, then: Any) -> None:
        """Steps 2-4 of the module's drain; ``then`` is uvicorn's SIGTERM handler."""
        await asyncio.sleep(SETTINGS.drain_delay_s)
        deadline = time.monotonic() + SETTINGS.drain_timeout_s
        if self.grpc is not None:
            self._grpc_stopped = asyncio.ensure_future(self.grpc.stop(SETTINGS.drain_timeout_s))
        listeners = drain.listening_sockets(SETTINGS.http_port)
        try:
            for sock in listeners:
                drain.refuse_new_connections(sock)
            # Accept (and answer) whatever the kernel queued before the filter: closing the listener
            # would reset those connections.
            while time.monotonic() < deadline and any(drain.accept_queue_length(sock) for sock in listeners):
                await asyncio.sleep(0.02)
        finally:
            for sock in listeners:
                sock.close()
        # A connection accepted just now sends its request within milliseconds; every answer closes
        # its connection, so once nothing is in flight or starting, no open connection has a request.
        while time.monotonic() < deadline and DRAIN.quiet_for() < QUIET_S:
            await asyncio.sleep(0.02)
        logger.info("drained: HTTP stops (%d in flight)", DRAIN.in_flight)
        if callable(then):
            then(signal.SIGTERM, None)  # uvicorn's own: close the server, finish in-flight, run on_shutdown
        else:  # no server handler to hand over to: terminate the default way
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    async def stop_fronts(self) -> None:
        """After HTTP has drained: let gRPC finish too, then stop the batchers."""
        if self._grpc_stopped is None and self.grpc is not None:
            self._grpc_stopped = asyncio.ensure_future(self.grpc.stop(SETTINGS.drain_timeout_s))
        self.engine.draining = True
        if self._grpc_stopped is not None:
            await self._grpc_stopped
        await self.lifecycle.stop()
        await self.engine.close()


# After the last request started, how long the drain waits for a request on a just-accepted connection.
QUIET_S = 0.25


def _openapi() -> dict[str, Any]:
    return openapi.document([("/v1", api), ("/v2", v2_api)], api.title, api.description or "", api.version)


# The API page at / and /docs (in place of BentoML's, which loads scripts from outside hosts).
docs = pages(api.title)

# Outermost first. (@bentoml.service made the class a bentoml Service; the type checker still sees the class.)
_service: Any = DigitsService
_service.add_asgi_middleware(ErrorShield)
_service.add_asgi_middleware(
    HttpMetrics,
    templates=RouteTemplates(
        [("/v1", api), ("/v2", v2_api), ("/demo", demo), ("", docs)],
        exact=["/v2", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json"],
    ),
    service_name="digits",
    buckets=LATENCY_BUCKETS,
)
_service.add_asgi_middleware(RouteFallback, aliases={"/v2": "/v2/"}, openapi=_openapi)
_service.add_asgi_middleware(RestrictedApis, restricted=Restricted.parse(SETTINGS.restricted_api))
_service.add_asgi_middleware(RequestLimits, max_body_bytes=SETTINGS.max_body_bytes, max_header_bytes=SETTINGS.max_header_bytes)
_service.add_asgi_middleware(Compression, max_body_bytes=SETTINGS.max_body_bytes)
_service.add_asgi_middleware(ConnectionRecycle, every=SETTINGS.requests_per_connection, max_in_flight=SETTINGS.max_in_flight)
_service.add_asgi_middleware(DocsPage, pages=docs)
