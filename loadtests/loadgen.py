"""A lean closed-loop HTTP/1.1 load generator for the benchmark (run in its own process).

C connections each send pre-encoded requests back to back over keep-alive and time
every answer. Requests are built once before the clock starts and answers are read
with plain asyncio streams (no HTTP library on the hot path), so the client spends
as little of the shared CPU as possible; it reports its own CPU time so the bench
can show how much it took from the server.

``python -m loadtests.loadgen --url http://127.0.0.1:3000 --kind classify --model lstm -c 32``
prints a JSON line when the measured window opens and closes, then the result as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

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
    from . import workload

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


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), -(-len(sorted_values) * q // 100)))
    return float(sorted_values[int(rank) - 1])


async def run_closed_loop(
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
    latencies: list[float] = []
    errors = 0
    first_error: list[str] = []
    loop_start = time.perf_counter()
    window_start = loop_start + warmup_s
    window_end = window_start + duration_s
    cpu_marks: dict[str, float] = {}

    async def client(k: int) -> None:
        nonlocal errors
        i = random.Random(k).randrange(len(requests))
        reader = writer = None
        while True:
            now = time.perf_counter()
            if now >= window_end:
                break
            request = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                status, _, close = await asyncio.wait_for(read_response(reader), timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                status, close = 0, True
                if not first_error:
                    first_error.append(f"{type(e).__name__}: {e}")
            done = time.perf_counter()
            # Count by completion time: a closed loop's slow answers (seconds, for the baseline) still count
            # in the window they finish in, so throughput is not biased against long requests.
            if window_start <= done <= window_end:
                if status == 200:
                    latencies.append(done - started)
                else:
                    errors += 1
                    if not first_error:
                        first_error.append(f"HTTP {status}")
            if close and writer is not None:
                writer.close()
                reader = writer = None
            if status == 0:
                await asyncio.sleep(0.05)  # a refused or reset connection: do not spin
        if writer is not None:
            writer.close()

    async def mark_cpu() -> None:
        # The window's edges go to stdout at once, so a parent can scrape server metrics at the same moments.
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu_marks["start"] = time.process_time()
        if announce:
            print(json.dumps({"event": "window_start"}), flush=True)
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        cpu_marks["end"] = time.process_time()
        if announce:
            print(json.dumps({"event": "window_end"}), flush=True)

    await asyncio.gather(mark_cpu(), *(client(k) for k in range(concurrency)))
    latencies.sort()
    ms = [v * 1000.0 for v in latencies]
    cpu = cpu_marks.get("end", time.process_time()) - cpu_marks.get("start", 0.0)
    return Result(
        concurrency=concurrency,
        seconds=duration_s,
        requests=len(ms),
        errors=errors,
        rps=len(ms) / duration_s,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else None,
        client_cpu_s=cpu,
        client_cpu_cores=cpu / duration_s,
        first_error=first_error[0] if first_error else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.loadgen", description=__doc__.splitlines()[0])
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
        print("loadgen: concurrency must be 1..256, duration (0, 600] s, warmup [0, 60] s", file=sys.stderr)
        return 2
    requests = requests_for(args.kind, args.url, args.model, args.data_dir, bulk_rows=args.bulk_rows)
    result = asyncio.run(run_closed_loop(args.url, requests, args.concurrency, args.warmup, args.duration, announce=True))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
