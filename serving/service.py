"""The BentoML service: launcher, packaging and lifecycle of one engine per worker, with its fronts.

Each worker builds one :class:`~serving.engine.Engine` (loads and warms every model before it
accepts connections), mounts the HTTP front (``/v1``) and the demo page (``/demo``) and, on start-up, runs the TF-Serving gRPC
front on the same event loop. BentoML keeps ``/livez``, ``/readyz`` and ``/metrics``. On SIGTERM
the worker turns unready, stops accepting on both protocols and finishes what it accepted,
bounded by SERVING_DRAIN_TIMEOUT_S.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Any

import bentoml

from . import plot_routes, vae_routes
from .demo_front import demo
from .engine import Engine
from .http_front import BodyLimit, ConnectionRecycle, RouteFallback, api
from .v2_http import api as v2_api
from .settings import Settings, unknown_env_names

logger = logging.getLogger("serving.service")

# Read once at start-up: BentoML needs the worker count and ports when the class is defined.
SETTINGS = Settings.from_env()

# /v1 beyond classify and generate: encode, reconstruct, interpolate, plots (their own modules, the same app).
api.include_router(vae_routes.router)
api.include_router(plot_routes.router)


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
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class DigitsService:
    """Serves every stored model (or SERVING_MODELS) from ONNX Runtime over HTTP and gRPC."""

    def __init__(self) -> None:
        logging.getLogger("serving").setLevel(SETTINGS.log_level)
        for name in unknown_env_names():
            logger.warning("%s is set but is not a setting (a typo?); `python -m serving.settings` lists them", name)
        # Served from a built Bento: exactly the model versions it was built with, not the store's newest.
        bento = DigitsService.bento
        pinned = [str(m.tag) for m in bento.info.all_models] if bento is not None else []
        self.engine = Engine.from_store(SETTINGS, pinned)
        self.grpc: Any = None  # the GrpcFront, when SERVING_GRPC_PORT is not 0
        self._grpc_stopped: asyncio.Task[None] | None = None
        # Load before this worker accepts connections: workers share one socket and each has its own
        # engine, so a worker still loading must not be the one that answers /readyz (or a request).
        try:
            self.engine.load()
        except Exception:
            logger.exception("loading models failed; the service stays unready")

    def __is_ready__(self) -> bool:
        return self.engine.ready

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """Start the gRPC front and the model lifecycle (hot reload) on this worker's loop, and hear
        SIGTERM before the HTTP server drains."""
        if self.engine.lifecycle is not None:
            self.engine.lifecycle.start()
        if SETTINGS.grpc_port:
            from .grpc_front import GrpcFront

            self.grpc = GrpcFront(self.engine)
            await self.grpc.start()
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(self._begin_drain)
            if callable(previous):
                previous(signum, frame)  # uvicorn's own: stop accepting HTTP, finish in-flight requests

        signal.signal(signal.SIGTERM, on_sigterm)
        # Everything loaded so far lives as long as the worker: keep the collector from re-scanning it.
        # A full collection over BentoML's, FastAPI's and ORT's start-up objects takes tens of ms and
        # was the p99 of single-image requests under load.
        gc.collect()
        gc.freeze()
        # Per-request objects die young; a larger first generation collects them less often, so fewer
        # survive into the older generations whose collections were the tail (p99 25 -> 13 ms at 32 connections).
        gc.set_threshold(SETTINGS.gc_gen0_threshold, *gc.get_threshold()[1:])

    def _begin_drain(self) -> None:
        if self.engine.draining:
            return
        self.engine.draining = True
        logger.info("SIGTERM: unready; draining in-flight requests (up to %.0fs)", SETTINGS.drain_timeout_s)
        if self.grpc is not None:
            self._grpc_stopped = asyncio.ensure_future(self.grpc.stop(SETTINGS.drain_timeout_s))

    @bentoml.on_shutdown
    async def stop_fronts(self) -> None:
        """After HTTP has drained: let gRPC finish too, then stop the batchers."""
        self._begin_drain()
        if self._grpc_stopped is not None:
            await self._grpc_stopped
        await self.engine.close()


DigitsService.add_asgi_middleware(RouteFallback, aliases={"/v2": "/v2/"})
DigitsService.add_asgi_middleware(BodyLimit, max_bytes=SETTINGS.max_body_bytes)
DigitsService.add_asgi_middleware(ConnectionRecycle, every=SETTINGS.requests_per_connection)
