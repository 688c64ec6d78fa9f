"""The closed loop every Python load driver runs, and what it measures.

``len(senders)`` clients each send their next request as soon as the last one is answered. The first
``warmup_s`` are sent but not counted; an answer counts when it *completes* inside the measured window
(``duration_s`` long), so slow answers (seconds, for the Keras baseline) still count in the window they
finish in and throughput is not biased against long requests. A transport (:mod:`.http`, :mod:`.grpc`)
gives one ``send`` coroutine per client, which makes one request and says how it went; the clock, the
window, the tallies and the client's own CPU time are kept here, once, and nothing else runs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

BACKOFF_S = 0.05  # after a request that got no answer at all: a refused or reset connection is not spun on


class Failure(NamedTuple):
    """What a failed request came back with (a ``send`` returns None when it succeeded)."""

    code: str  # tallied per code: "HTTP 503", "UNAVAILABLE", "TimeoutError"
    detail: str  # the first failure's is reported
    backoff: bool = True  # no answer at all: wait BACKOFF_S before the next request


Sender = Callable[[], Awaitable[Failure | None]]


@dataclass
class Result:
    """One closed-loop run: throughput, latency and the client's own CPU use."""

    concurrency: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    client_cpu_s: float
    client_cpu_cores: float  # CPU seconds per wall second over the measured window
    first_error: str | None = None
    error_codes: dict[str, int] = field(default_factory=dict)  # failures in the window, by code


@dataclass
class Outcome:
    """One request of a probe's load, kept whole (the probes judge requests by when they started)."""

    started: float  # time.monotonic(), or h2load's clock
    seconds: float
    status: int  # 0: no answer
    kind: str = ""  # for status 0: refused | lost | timeout


@dataclass
class Tally:
    """A load's outcomes judged as the drain probes judge them: an accepted request is answered or lost."""

    answered: list[Outcome]  # 200
    lost: list[Outcome]  # no answer after the request was sent (reset, closed, timed out)
    errors: list[Outcome]  # any other status
    refused: list[Outcome]  # no connection: never accepted

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Tally:
        return cls(
            [o for o in outcomes if o.status == 200],
            [o for o in outcomes if o.status == 0 and o.kind in ("lost", "timeout")],
            [o for o in outcomes if o.status not in (0, 200)],
            [o for o in outcomes if o.kind == "refused"],
        )


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), -(-len(sorted_values) * q // 100)))
    return float(sorted_values[int(rank) - 1])


async def closed_loop(
    senders: Sequence[Sender],
    warmup_s: float,
    duration_s: float,
    *,
    announce: bool = False,
    stop: asyncio.Event | None = None,
) -> Result:
    """Run one client per sender until the window closes (or ``stop`` is set); ``announce`` prints
    ``{"event": "window_start"}`` / ``{"event": "window_end"}`` lines at the window's edges."""
    window_start = time.perf_counter() + warmup_s
    window_end = window_start + duration_s
    latencies: list[float] = []
    errors = 0
    codes: dict[str, int] = {}
    first_error: list[str] = []
    cpu: dict[str, float] = {}

    async def client(send: Sender) -> None:
        nonlocal errors
        while True:
            started = time.perf_counter()
            if started >= window_end or (stop is not None and stop.is_set()):
                return
            failure = await send()
            done = time.perf_counter()
            if failure is None:
                if window_start <= done <= window_end:
                    latencies.append(done - started)
                continue
            if window_start <= done <= window_end:
                errors += 1
                codes[failure.code] = codes.get(failure.code, 0) + 1
            if not first_error:
                first_error.append(failure.detail)
            if failure.backoff:
                await asyncio.sleep(BACKOFF_S)

    async def until(deadline: float) -> None:
        delay = max(0.0, deadline - time.perf_counter())
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def mark() -> None:
        # The window's edges go to stdout at once, so a parent can scrape server metrics at the same moments.
        await until(window_start)
        cpu["start"] = time.process_time()
        if announce:
            print(json.dumps({"event": "window_start"}), flush=True)
        await until(window_end)
        cpu["end"] = time.process_time()
        if announce:
            print(json.dumps({"event": "window_end"}), flush=True)

    await asyncio.gather(mark(), *(client(send) for send in senders))
    ms = sorted(v * 1000.0 for v in latencies)
    used = cpu.get("end", time.process_time()) - cpu.get("start", 0.0)
    return Result(
        concurrency=len(senders),
        seconds=duration_s,
        requests=len(ms),
        errors=errors,
        rps=len(ms) / duration_s,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else None,
        client_cpu_s=used,
        client_cpu_cores=used / duration_s,
        first_error=first_error[0] if first_error else None,
        error_codes=codes,
    )
