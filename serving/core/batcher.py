"""A micro-batcher over numpy rows: one per model, on the worker's event loop.

A request that finds the model idle runs at once; requests that arrive while a batch
is computing wait and are merged into the next call (up to ``max_batch_size`` rows;
an optional ``queue_delay_s`` waits for more). The queue is bounded: past ``max_queue``
waiting requests, :class:`Overloaded` is raised at once instead of growing latency.
A cancelled request (gRPC deadline, HTTP client gone) leaves the queue before it runs.
Compute runs on one dedicated thread per batcher (ONNX Runtime releases the GIL), so
the event loop keeps parsing requests while a batch computes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from contract.errors import NotReady, Overloaded

RunFn = Callable[[np.ndarray], Sequence[np.ndarray]]
# Seconds of one call's phases: assembling its input, the model's run, handing each request its rows.
Phases = tuple[float, float, float]
# (queue seconds of each request, the call's phases, rows) after every batch; queue depth on every change.
BatchObserver = Callable[[list[float], Phases, int], None]
DepthObserver = Callable[[int], None]


class TracedRequest(Protocol):
    """A request the trace extension samples (serving.core.trace.Trace): told its batch's times."""

    def batched(self, model: str, enqueued: float, started: float, phases: Phases, rows: int) -> None: ...


# The sampled request a submit is for, set by the data plane around its call to the engine (a context
# variable: the engine's signature stays as it is, and an ensemble's member tasks inherit it).
CURRENT_TRACE: ContextVar[TracedRequest | None] = ContextVar("serving_trace", default=None)


@dataclass(eq=False)
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[list[np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)
    trace: TracedRequest | None = None


class Batcher:
    """Merge concurrent requests for one model into batched ``run`` calls."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        max_batch_size: int,
        max_queue: int,
        queue_delay_s: float = 0.0,
        on_batch: BatchObserver | None = None,
        on_depth: DepthObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or queue_delay_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and queue_delay_s >= 0")
        self.name = name
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.queue_delay_s = queue_delay_s
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: deque[_Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._computing = False
        self._closed = False

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being computed)."""
        return len(self._queue)

    async def submit(self, rows: np.ndarray) -> list[np.ndarray]:
        """Every output of ``run`` for ``rows`` (validated, batch axis 0), computed in a shared batch."""
        if self._closed:
            raise NotReady(f"model {self.name} was just unloaded; retry")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"model {self.name} has {len(self._queue)} requests queued (the limit, SERVING_MAX_QUEUE); retry shortly")
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._serve(), name=f"batcher-{self.name}")
        assert self._wake is not None
        item = _Pending(rows, loop.create_future(), trace=CURRENT_TRACE.get())
        self._queue.append(item)
        self._depth_changed()
        self._wake.set()
        try:
            return await item.future
        except asyncio.CancelledError:
            # Still queued: take it out so it never runs. Already in a batch: its row is computed and dropped.
            try:
                self._queue.remove(item)
                self._depth_changed()
            except ValueError:
                pass
            raise

    async def _serve(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if self.queue_delay_s > 0 and self._rows_queued() < self.max_batch_size:
                await asyncio.sleep(self.queue_delay_s)
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            rows = sum(len(p.rows) for p in batch)
            self._computing = True
            try:
                phases = await self._compute(loop, batch)
            finally:
                self._computing = False
            if phases is not None:
                if self._on_batch is not None:
                    self._on_batch([started - p.enqueued for p in batch], phases, rows)
                for p in batch:  # the same timings, for the requests the trace extension sampled
                    if p.trace is not None:
                        p.trace.batched(self.name, p.enqueued, started, phases, rows)

    async def _compute(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> Phases | None:
        """Run one merged call and hand each request its rows (the call's phases; None when it failed);
        if the call fails, run each request alone so that only the request that makes the model fail
        gets the error."""
        started = time.perf_counter()
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        assembled = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self.run, inputs)
        except asyncio.CancelledError:
            for p in batch:
                p.future.cancel()
            raise
        except Exception as e:
            if len(batch) > 1:
                for p in batch:
                    await self._compute(loop, [p])
                return None
            if not batch[0].future.done():
                batch[0].future.set_exception(e)
            return None
        ran = time.perf_counter()
        start = 0
        for p in batch:
            stop = start + len(p.rows)
            if not p.future.done():
                p.future.set_result([o[start:stop] for o in outputs])
            start = stop
        return assembled - started, ran - assembled, time.perf_counter() - ran

    def _rows_queued(self) -> int:
        return sum(len(p.rows) for p in self._queue)

    def _take(self) -> list[_Pending]:
        """Queued requests for the next call: at least one, then as many as fit in ``max_batch_size`` rows."""
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            p = self._queue[0]
            if p.future.done():  # cancelled while queued
                self._queue.popleft()
                continue
            if batch and rows + len(p.rows) > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(p)
            rows += len(p.rows)
        self._depth_changed()
        return batch

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._queue))

    async def drain(self, timeout_s: float) -> None:
        """Finish what is queued and computing (at most ``timeout_s``), then close; new requests are refused."""
        self._closed = True
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._computing) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await self.close()

    async def close(self) -> None:
        """Stop the worker task (waiters get CancelledError) and the compute thread."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for p in self._queue:
            p.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=False)
