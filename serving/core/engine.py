"""The serving engine: one per worker process, what the data plane runs requests on.

It owns the registry of ONNX Runtime sessions, one :class:`~serving.core.batcher.Batcher`
per served model version (requests from every front share its batches), the direct path for
requests that already are batches (bulk ``.npy``, the manifold), the per-model metrics and the
PNG cache (manifolds and plots). A :class:`~serving.core.lifecycle.Lifecycle` decides which versions
are served and adds and retires them while it serves. The data plane checks every request and hands
the engine float32 rows that match the model's signature; it gets numpy arrays back. An ensemble has no
batcher of its own: its rows go through each member's batcher (one batch each, concurrently) and
the answer combines theirs (each calibrated, weighted by its confidence).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from contract import images
from contract.errors import NotReady, ServingError
from serving.settings import Settings

from . import plots, versions
from .batcher import Batcher
from .kinds import Decoder
from .metrics import EngineMetrics
from .registry import Registry
from .runtime import EnsembleRuntime, ModelRuntime

logger = logging.getLogger("serving.engine")

DEFAULT_MANIFOLD = (30, 2.0, (0, 1), None)


class PNGCache:
    """A small thread-safe LRU of rendered PNGs (manifolds are pure functions of model version and grid)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class Engine:
    """Model runtimes + batchers + direct path + metrics + caches of one worker."""

    def __init__(self, settings: Settings, registry: Registry | None = None, metrics: EngineMetrics | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else Registry([], settings.default_classifier)
        self.metrics = metrics
        self.manifolds = PNGCache(settings.manifold_cache)
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.started = time.monotonic()
        self.warm = False
        self.draining = False  # set on SIGTERM: every protocol reports unready while in-flight requests finish

    # ------------------------------------------------------------ lifecycle

    def load(self, registry: Registry | None = None) -> None:
        """Load and warm every model version to serve (``registry``, else the one given at construction),
        make its batcher, render the default manifolds; then ready."""
        if registry is not None:
            self.registry = registry
        self.registry.load_all()
        for rt in self.registry.served():
            if isinstance(rt, EnsembleRuntime):
                continue  # its members' batchers serve it
            self.batchers[rt.key] = self._batcher(rt)
            if rt.kind is Decoder:
                self.render_manifold(rt, *DEFAULT_MANIFOLD)
        self.warm = True
        logger.info("ready: %d model versions in %.1fs", len(self.batchers), time.monotonic() - self.started)

    @property
    def ready(self) -> bool:
        """Every model loaded and warm, and not draining: what /readyz, v2 and gRPC health report."""
        return self.warm and self.registry.ready and not self.draining

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.batchers.values()))

    async def add(self, rt: ModelRuntime) -> None:
        """Start routing requests to a loaded and warmed version (its default manifold rendered first)."""
        if rt.kind is Decoder:
            await asyncio.to_thread(self.render_manifold, rt, *DEFAULT_MANIFOLD)
        if not isinstance(rt, EnsembleRuntime):  # an ensemble runs on its members' batchers
            self.batchers[rt.key] = self._batcher(rt)
        self.registry.add(rt)

    async def retire(self, rt: ModelRuntime, grace_s: float) -> None:
        """Stop routing to ``rt`` now; after ``grace_s`` (for requests that already chose it) finish its
        queue and unload it, which frees its memory."""
        self.registry.remove(rt)
        await asyncio.sleep(grace_s)
        batcher = self.batchers.pop(rt.key, None)
        if batcher is not None:
            await batcher.drain(self.settings.drain_timeout_s)
        rt.unload()
        logger.info("unloaded %s version %d", rt.store_name, rt.version_number)

    def _batcher(self, rt: ModelRuntime) -> Batcher:
        metrics, name, version = self.metrics, rt.store_name, str(rt.version_number)
        return Batcher(
            name,
            rt.predict_all,
            max_batch_size=self.settings.max_batch_size,
            max_queue=self.settings.max_queue,
            queue_delay_s=self.settings.queue_delay_ms / 1000.0,
            on_batch=(lambda queued, computed, rows: metrics.observe_batch(name, version, queued, computed, rows)) if metrics else None,
            on_depth=(lambda depth: metrics.set_depth(name, version, depth)) if metrics else None,
        )

    def observe_request(self, rt: ModelRuntime, ok: bool, seconds: float) -> None:
        """One request for ``rt`` answered (``ok``) or failed after ``seconds`` (the statistics extension)."""
        if self.metrics is not None:
            self.metrics.observe_request(rt.store_name, str(rt.version_number), ok, seconds)

    # ------------------------------------------------------------ inference

    async def infer(self, rt: ModelRuntime, rows: np.ndarray) -> list[np.ndarray]:
        """Every output of ``rt`` for validated float32 rows, computed in a batch shared with other requests."""
        if isinstance(rt, EnsembleRuntime):
            return [(await self.infer_members(rt, rows))[0]]
        batcher = self.batchers.get(rt.key)
        if batcher is None:
            raise NotReady(f"model {rt.store_name} version {rt.version_number} was just unloaded; retry")
        return await batcher.submit(rows)

    async def infer_members(self, rt: EnsembleRuntime, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ensemble's probabilities and ``{member public name: its probabilities}``.

        Every member at once, each through its own batcher (so one batch per member)."""
        tasks = [asyncio.ensure_future(self.infer(member, rows)) for member in rt.members]
        try:
            outputs = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one member refused (e.g. its queue is full): the others' rows are not needed
                task.cancel()
            raise
        members = {member.public_name: out[0] for member, out in zip(rt.members, outputs)}
        return rt.combine(list(members.values())), members

    async def infer_direct(self, rt: ModelRuntime, rows: np.ndarray) -> np.ndarray:
        """First output for a request that already is a batch (bulk, manifold): bounded chunks, off the event loop."""
        return await asyncio.to_thread(self.predict_direct, rt, rows)

    async def infer_direct_members(self, rt: EnsembleRuntime, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`infer_members` for a request that already is a batch (bulk): each member on the direct path."""
        members = {m.public_name: await self.infer_direct(m, rows) for m in rt.members}
        return rt.combine(list(members.values())), members

    def predict_direct(self, rt: ModelRuntime, rows: np.ndarray) -> np.ndarray:
        if isinstance(rt, EnsembleRuntime):
            return rt.combine([self.predict_direct(member, rows) for member in rt.members])
        chunk = rt.kind.chunk_rows
        return np.concatenate([self._run(rt, rows[i : i + chunk])[0] for i in range(0, len(rows), chunk)])

    def _run(self, rt: ModelRuntime, rows: np.ndarray) -> list[np.ndarray]:
        started = time.perf_counter()
        outputs = rt.predict_all(rows)
        if self.metrics is not None:
            self.metrics.observe_batch(rt.store_name, str(rt.version_number), [], (0.0, time.perf_counter() - started, 0.0), len(rows))
        return outputs

    # ------------------------------------------------------------ manifold

    async def manifold(
        self,
        rt: ModelRuntime,
        n: int,
        scale: float,
        dims: tuple[int, ...],
        fixed: tuple[float, ...] | None,
        axes: bool = False,
    ) -> tuple[bytes, bool]:
        """The n x n latent-grid PNG (with ``axes``: framed, labelled, with tick values) and whether it was cached."""
        png = self.manifolds.get((rt.store_name, rt.version, (n, scale, dims, fixed, axes)))
        if png is not None:
            return png, True
        return await asyncio.to_thread(self.render_manifold, rt, n, scale, dims, fixed, axes), False

    def render_manifold(
        self,
        rt: ModelRuntime,
        n: int,
        scale: float,
        dims: tuple[int, ...],
        fixed: tuple[float, ...] | None,
        axes: bool = False,
    ) -> bytes:
        """Decode the grid in one batched call, tile it (and draw its axes), remember it in the LRU."""
        x, y = dims  # the two varied latent dims
        z = images.latent_grid(n, scale, rt.signature["latent_dim"], dims=(x, y), fixed=fixed)
        mosaic = images.tile(self.predict_direct(rt, z), ncols=n)
        if axes:
            png = plots.manifold(mosaic, n, scale, dims, z[0], f"{rt.public_name}: decoded latent grid")
        else:
            png = images.to_png(mosaic)
        self.manifolds.put((rt.store_name, rt.version, (n, scale, dims, fixed, axes)), png)
        return png

    async def plot(self, rt: ModelRuntime, key: Hashable, draw: Callable[[], bytes]) -> bytes:
        """A PNG drawn from what training recorded for ``rt``: drawn once off the event loop, then cached."""
        cache_key = (rt.store_name, rt.version, "plot", key)
        png = self.manifolds.get(cache_key)
        if png is None:
            png = await asyncio.to_thread(draw)
            self.manifolds.put(cache_key, png)
        return png

    # ------------------------------------------------------------ description

    def describe_models(self) -> list[dict[str, Any]]:
        """Every served version: its description, whether unversioned requests go to it (``current``),
        whether it is its task's default model, and the labels that name it."""
        current = {rt.key for rt in self.registry.runtimes.values()}
        out = []
        for rt in self.registry.served():
            labels = self.registry.labels.get(rt.store_name, {})
            out.append(
                {
                    **rt.describe(),
                    "current": rt.key in current,
                    "default": self.is_default(rt),
                    "labels": sorted(label for label, v in labels.items() if versions.matches(rt, [v])),
                }
            )
        return out

    def is_default(self, rt: ModelRuntime) -> bool:
        """Whether requests that name no model of ``rt``'s task go to ``rt`` (never an encoder's)."""
        if not rt.kind.has_default or self.registry.runtimes.get(rt.store_name) is not rt:
            return False
        try:
            return self.registry.default_name(rt.task) == rt.public_name
        except ServingError:
            return False
