"""HTTP/1.1 load from raw keep-alive requests over asyncio streams: the benchmark's closed loop, the probes' loops.

Requests are built once before the clock starts and answers are read with plain asyncio streams (no HTTP
library on the hot path), so the client spends as little of the shared CPU as possible; it reports its
own CPU time so the bench can show how much it took from the server.

    python -m loadtests.drivers.http --url http://127.0.0.1:3000 --kind classify --model lstm -c 32

prints a JSON line when the measured window opens and closes, then the result as one JSON line; from
Python, :func:`run_http` runs that in its own process and :func:`closed_loop` in this one. The
reliability probes keep every request's :class:`~.core.Outcome` instead: :class:`Pool` (keep-alive
connections), :func:`closed_loop_outcomes` and the open-loop :func:`paced`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from . import core, process
from .core import Failure, Outcome, Result

KINDS = ("classify", "bulk", "manifold")


def build_request(method: str, host: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    """Raw HTTP/1.1 keep-alive request bytes."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive", "Accept: */*"]
    if body or method == "POST":
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def requests_for(
    kind: str, url: str, model: str | None, data_dir: str | None, pool: int = 256, bulk_rows: int = 1024, manifold_n: int = 30
) -> list[bytes]:
    """Pre-encoded requests of one kind, from real MNIST test images."""
    from .. import workload

    parts = urlsplit(url)
    host = parts.netloc
    if kind == "manifold":
        query = f"?n={manifold_n}" + (f"&model={model}" if model else "")
        return [build_request("GET", host, f"/v1/generate/manifold{query}")]
    images = workload.mnist_test_images(data_dir, limit=max(pool, bulk_rows))
    if kind == "classify":
        return [
            build_request("POST", host, "/v1/classify", workload.classify_body(workload.images_json(img), model)) for img in images[:pool]
        ]
    if kind == "bulk":
        query = f"?model={model}" if model else ""
        return [
            build_request("POST", host, f"/v1/classify/batch{query}", workload.npy_body(images[:bulk_rows]), "application/octet-stream")
        ]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """Read one response; ``(status, body bytes, server wants to close)``."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if not chunked:
        if length:
            await reader.readexactly(length)
        return status, length, close
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, total, close
        await reader.readexactly(size + 2)
        total += size


# ---------------------------------------------------------------- the benchmark's closed loop


class Connection:
    """One client of the closed loop: a keep-alive connection sending ``requests`` round-robin from ``start``,
    reconnecting when the server closes it or a request gets no answer."""

    __slots__ = ("host", "port", "requests", "i", "timeout_s", "reader", "writer")

    def __init__(self, host: str, port: int, requests: Sequence[bytes], start: int, timeout_s: float) -> None:
        self.host, self.port, self.requests, self.i, self.timeout_s = host, port, requests, start, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> Failure | None:
        request = self.requests[self.i % len(self.requests)]
        self.i += 1
        reader, writer = self.reader, self.writer
        try:
            if reader is None or writer is None:
                reader, writer = self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            writer.write(request)
            status, _, close = await asyncio.wait_for(read_response(reader), self.timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            self.close()
            return Failure(type(e).__name__, f"{type(e).__name__}: {e}")
        if close:
            self.close()
        return None if status == 200 else Failure(f"HTTP {status}", f"HTTP {status}", backoff=False)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def closed_loop(
    url: str,
    requests: Sequence[bytes],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    timeout_s: float = 30.0,
    announce: bool = False,
) -> Result:
    """``concurrency`` connections sending ``requests`` round-robin; answers that complete in the window count."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    clients = [Connection(host, port, requests, random.Random(k).randrange(len(requests)), timeout_s) for k in range(concurrency)]
    try:
        return await core.closed_loop([c.send for c in clients], warmup_s, duration_s, announce=announce)
    finally:
        for c in clients:
            c.close()


def run_http(
    url: str,
    kind: str,
    model: str | None,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    data_dir: str,
    cpus: set[int] | None = None,
    on_window: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`main` in its own process (pinned to ``cpus``); its result dict. ``on_window(start|end)`` is
    called when its measured window opens and closes."""
    args = ["--url", url, "--kind", kind, "-c", str(concurrency), "--warmup", str(warmup_s), "--duration", str(duration_s)]
    args += ["--data-dir", data_dir, *(["--model", model] if model else [])]
    return process.run_driver("loadtests.drivers.http", args, label=f"http {kind} c={concurrency}", cpus=cpus, on_window=on_window)


# ---------------------------------------------------------------- the probes' loops: every request's outcome


class Pool:
    """Keep-alive connections for the probes' loads (one per client in a closed loop, shared in a paced one)."""

    # A pooled connection idle longer than this is dropped: the server closes idle ones after
    # SERVING_KEEPALIVE_TIMEOUT_S, and a request written into that close is nobody's loss.
    MAX_IDLE_S = 2.0

    def __init__(self, port: int, connect_timeout: float = 5.0) -> None:
        self.port = port
        self.connect_timeout = connect_timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < self.MAX_IDLE_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def send(self, request: bytes, timeout: float = 30.0) -> Outcome:
        started = time.monotonic()
        conn = self._take()
        if conn is None:
            try:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), self.connect_timeout)
            except (TimeoutError, OSError):
                return Outcome(started, time.monotonic() - started, 0, "refused")
        reader, writer = conn
        try:
            writer.write(request)
            status, _, close = await asyncio.wait_for(read_response(reader), timeout)
        except TimeoutError:
            writer.close()
            return Outcome(started, time.monotonic() - started, 0, "timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return Outcome(started, time.monotonic() - started, 0, "lost")
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return Outcome(started, time.monotonic() - started, status)

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def closed_loop_outcomes(
    port: int, requests: Sequence[bytes], connections: int, seconds: float, stop: asyncio.Event | None = None
) -> list[Outcome]:
    """``connections`` clients sending back to back on keep-alive for ``seconds`` (or until ``stop``):
    every request's outcome, in the order they ended."""
    outcomes: list[Outcome] = []
    pools = [Pool(port) for _ in range(connections)]

    def sender(k: int) -> core.Sender:
        pool, i = pools[k], k

        async def send() -> Failure | None:
            nonlocal i
            outcome = await pool.send(requests[i % len(requests)])
            i += 1
            outcomes.append(outcome)
            if outcome.status == 200:
                return None
            what = str(outcome.status or outcome.kind)
            return Failure(what, what, backoff=outcome.status == 0)

        return send

    try:
        await core.closed_loop([sender(k) for k in range(connections)], 0.0, seconds, stop=stop)
    finally:
        for pool in pools:
            pool.close()
    return outcomes


@dataclass(frozen=True)
class PacedClient:
    """How the Python paced sender itself kept up: its latencies are the server's only while it did."""

    sends: int
    late_p99_ms: float  # how far behind its schedule a request went out, p99
    late_max_ms: float
    gc_pauses: int  # the sender's own collections during the run
    gc_max_ms: float  # the longest: every request in flight, and every send due, waits for it
    cpu_cores: float

    def kept_pace(self, late_ms: float = 10.0, pause_ms: float = 20.0) -> bool:
        return self.late_p99_ms <= late_ms and self.gc_max_ms <= pause_ms


# Outcome.kind as a small code, so a paced run keeps its records in untracked arrays (see paced)
KIND_CODES = ("", "refused", "lost", "timeout", "client-saturated")


async def paced(
    port: int, requests: Sequence[bytes], rate: float, seconds: float, max_connections: int = 256
) -> tuple[list[Outcome], PacedClient]:
    """Open loop: one request every 1/rate s whatever the answers do (up to ``max_connections`` at once).

    A long run must not slow the sender down: each request's record goes into flat arrays (not an
    object the collector scans) and everything allocated before the clock starts is frozen out of the
    collector, so the sender's collections stay short for the whole run. Kept as an ``Outcome`` per
    request instead, a 3-minute run at 1,900/s held 340,000 tracked objects and every full collection
    scanned them all (37 ms early in a 10-minute run on a 2-core box, 185 ms late in it), stalling
    every request in flight and every send due: that soak's p99 climbed from 39 to 293 ms while its
    p50 stayed flat. The :class:`PacedClient` says whether it kept pace."""
    n = int(rate * seconds)
    started, took, late = array("d"), array("d"), array("d")
    status, kind = array("h"), array("b")
    pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - gc_started[0])

    def record(o: Outcome, behind: float) -> None:
        started.append(o.started)
        took.append(o.seconds)
        status.append(o.status)
        kind.append(KIND_CODES.index(o.kind) if o.kind in KIND_CODES else 2)
        late.append(behind)

    pool = Pool(port)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int, behind: float) -> None:
        record(await pool.send(requests[i % len(requests)], timeout=15), behind)

    gc.collect()
    gc.freeze()
    gc.callbacks.append(on_gc)
    cpu0 = time.process_time()
    start = time.monotonic()
    try:
        for i in range(n):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = max(0.0, time.monotonic() - due)
            if len(in_flight) >= max_connections:
                record(Outcome(time.monotonic(), 0.0, -1, "client-saturated"), behind)
                continue
            task = asyncio.ensure_future(one(i, behind))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
    finally:
        cpu = time.process_time() - cpu0
        wall = max(1e-9, time.monotonic() - start)
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
        pool.close()
    ordered = sorted(late)
    client = PacedClient(
        sends=len(late),
        late_p99_ms=(core.percentile(ordered, 99) or 0.0) * 1000.0,
        late_max_ms=(ordered[-1] if ordered else 0.0) * 1000.0,
        gc_pauses=len(pauses),
        gc_max_ms=max(pauses, default=0.0) * 1000.0,
        cpu_cores=cpu / wall,
    )
    outcomes = [Outcome(started[i], took[i], status[i], KIND_CODES[kind[i]]) for i in range(len(started))]
    return outcomes, client


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.drivers.http", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--kind", choices=KINDS, default="classify")
    parser.add_argument("--model", help="public model name (classify/bulk: a classifier; manifold: a generator)")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not counted")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--data-dir", help="MNIST IDX folder")
    parser.add_argument("--bulk-rows", type=int, default=1024)
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256 or not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        print("http driver: concurrency must be 1..256, duration (0, 600] s, warmup [0, 60] s", file=sys.stderr)
        return 2
    requests = requests_for(args.kind, args.url, args.model, args.data_dir, bulk_rows=args.bulk_rows)
    result = asyncio.run(closed_loop(args.url, requests, args.concurrency, args.warmup, args.duration, announce=True))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
