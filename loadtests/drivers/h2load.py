"""Load from ``h2load`` (nghttp2, C): closed-loop gRPC calls, and paced HTTP/1.1 for the reliability probes.

A gRPC unary call is an HTTP/2 POST of a length-prefixed message with ``content-type: application/grpc``,
so h2load can drive it at a few percent of a core, as wrk drives HTTP/1.1 (the Python gRPC driver in
:mod:`loadtests.drivers.grpc` spends ~0.3 cores at 3,000 calls/s on a 2-core box, which would tilt the
gRPC / HTTP ratio). h2load judges only the HTTP status, so :func:`run_h2grpc` first makes one call with
a real gRPC client and checks its answer, and reports non-OK ``grpc-status`` trailers it cannot see as
a caveat. :func:`paced` sends HTTP/1.1 at a fixed rate (the overload and soak probes), falling back to
the Python sender when h2load is missing. Latencies come from h2load's per-request log.

    python -m loadtests.drivers.h2load --target 127.0.0.1:8500 --model mnist-lstm -c 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .core import Outcome, percentile
from .grpc import METHOD, check_response, load_image, predict_request_bytes
from .process import run_timed


class H2loadNotFound(RuntimeError):
    """``h2load`` is not installed (Debian: ``apt-get install nghttp2-client``)."""


def h2load_path() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise H2loadNotFound("h2load is not installed: apt-get install nghttp2-client")
    return path


def grpc_frame(message: bytes) -> bytes:
    """The gRPC wire frame of one uncompressed message: flag byte 0, 4-byte big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def log_records(log_text: str) -> Iterator[tuple[int, int, int]]:
    """``(start µs, status, duration µs)`` per request of h2load's ``--log-file``; a status below 0: no answer."""
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].lstrip("-").isdigit() and parts[2].isdigit():
            yield int(parts[0]), int(parts[1]), int(parts[2])


def latencies_ms(log_text: str) -> list[float]:
    """Request times in ms from h2load's ``--log-file``, 2xx only."""
    return [duration / 1000.0 for _, status, duration in log_records(log_text) if 200 <= status < 300]


def parse_summary(stdout: str) -> dict[str, int]:
    """Counts from h2load's ``requests:`` and ``status codes:`` lines."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        line = line.strip()
        for prefix in ("requests:", "status codes:"):
            if line.startswith(prefix):
                for part in line[len(prefix) :].split(","):
                    words = part.split()
                    if len(words) >= 2 and words[0].isdigit():
                        counts[words[1]] = int(words[0])
    return counts


# ---------------------------------------------------------------- gRPC, closed loop


def probe(
    target: str,
    request: bytes,
    timeout: float = 30.0,
    method: str = METHOD,
    check: Callable[[bytes], dict[str, list[int]]] = check_response,
) -> dict[str, list[int]]:
    """One real gRPC call with the benchmark's request; raises if it is not answered OK."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(method)(request, timeout=timeout)
    return check(raw)


def run_h2grpc(
    target: str,
    request: bytes,
    connections: int = 32,
    streams: int = 1,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    *,
    cpus: set[int] | None = None,
    method: str = METHOD,
    check: Callable[[bytes], dict[str, list[int]]] = check_response,
) -> dict[str, Any]:
    """``connections`` x ``streams`` calls in flight for ``duration_s`` after ``warmup_s``; rps, p50/p99, errors.

    ``method`` and ``check``: TF Serving's ``Predict`` by default; the v2 ``ModelInfer`` with
    :data:`~loadtests.drivers.grpc.INFER_METHOD` and :func:`~loadtests.drivers.grpc.check_infer_response`."""
    if not 1 <= connections <= 1000 or not 1 <= streams <= 100 or not 0 < duration_s <= 600 or not 0 <= warmup_s <= 60:
        raise ValueError("connections 1..1000, streams 1..100, duration_s (0, 600], warmup_s [0, 60]")
    exe = h2load_path()
    probe(target, request, method=method, check=check)
    url = f"http://{target}{method}"
    with tempfile.TemporaryDirectory(prefix="h2grpc-") as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "requests.log"
        body.write_bytes(grpc_frame(request))
        cmd = [
            exe,
            "-c",
            str(connections),
            "-m",
            str(streams),
            "-t",
            "1",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-D",
            str(max(1, round(duration_s))),
            "--warm-up-time",
            f"{max(0.0, warmup_s):g}s",
            "--log-file",
            str(log),
            url,
        ]
        code, out, cpu = run_timed(cmd, cpus, duration_s + warmup_s + 60)
        times = sorted(latencies_ms(log.read_text(errors="replace")))
    if code != 0:
        raise RuntimeError(f"h2load exited with {code}: {' '.join(cmd)}\n{out[-2000:]}")
    counts = parse_summary(out)
    seconds = max(1, round(duration_s))
    errors = counts.get("failed", 0) + counts.get("errored", 0) + counts.get("timeout", 0)
    return {
        "rps": len(times) / seconds,
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "requests": len(times),
        "errors": errors,
        "non2xx": sum(counts.get(k, 0) for k in ("3xx", "4xx", "5xx")),
        "connections": connections,
        "streams": streams,
        "concurrency": connections * streams,
        "client_cpu_cores": cpu / (seconds + warmup_s),
        "target": target,
        "client": "h2load (gRPC framing; answers checked once with a gRPC client)",
    }


# ---------------------------------------------------------------- HTTP/1.1, paced


def paced(
    url: str, path: str, body: bytes, rate: float, seconds: float, clients: int, streams: int = 4
) -> tuple[list[Outcome], dict[str, int]]:
    """Paced HTTP/1.1 load from h2load (C: little client CPU, so latencies are the server's): ``clients``
    keep-alive connections, each sending ``rate / clients`` requests per second for ``seconds``.
    Every request's start, status and time come from h2load's ``--log-file``; status 0 = no answer.

    h2load does not reconnect a client whose connection the server closes, and the server closes
    every connection after SERVING_REQUESTS_PER_CONNECTION answers, so a long run is a chain of runs
    short enough that no client reaches that count."""
    try:
        exe = h2load_path()
    except H2loadNotFound:  # the Python sender: same pacing, its own CPU in the latencies
        from . import http

        request = http.build_request("POST", urlsplit(url).netloc, path, body)
        outcomes, _ = asyncio.run(http.paced(int(urlsplit(url).port or 80), [request], rate, seconds, max_connections=clients))
        return outcomes, {"total": len(outcomes)}
    streams = max(1, min(streams, clients))
    per_client = max(1, round(rate / clients))
    chunk = max(1, min(round(seconds), 90 // per_client))
    outcomes: list[Outcome] = []
    summary: dict[str, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def chain(k: int, n_clients: int, tmp: Path, body_file: Path) -> None:
        # h2load fires every client's request at the same instants: the streams start a fraction of a
        # period apart, so the server sees ``streams`` smaller bursts instead of one burst of every client.
        time.sleep(k / per_client / streams)
        log_file = tmp / f"log{k}"
        while (left := end - time.monotonic()) > 0.5:
            log_file.unlink(missing_ok=True)  # h2load appends
            cmd = [
                exe,
                "--h1",
                "-c",
                str(n_clients),
                "-m",
                "1",
                "--rps",
                str(per_client),
                "-D",
                str(max(1, min(chunk, round(left)))),
                "-d",
                str(body_file),
                "-H",
                "Content-Type: application/json",
                "--log-file",
                str(log_file),
                "-T",
                "30",
                "-N",
                "30",
                url.rstrip("/") + path,
            ]
            code, out, _ = run_timed(cmd, None, chunk + 60)
            text = log_file.read_text() if log_file.exists() else ""
            found = [
                Outcome(start / 1e6, duration / 1e6, max(0, status), "" if status > 0 else "lost")
                for start, status, duration in log_records(text)
            ]
            with lock:
                outcomes.extend(found)
                for key, value in parse_summary(out).items():
                    summary[key] = summary.get(key, 0) + value
                summary["exit"] = max(summary.get("exit", 0), code)

    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        sizes = [clients // streams + (1 if k < clients % streams else 0) for k in range(streams)]
        threads = [threading.Thread(target=chain, args=(k, n, Path(tmp), body_file)) for k, n in enumerate(sizes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    outcomes.sort(key=lambda o: o.started)
    return outcomes, summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.drivers.h2load", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="host:port of the gRPC server")
    p.add_argument("--model", default="mnist-lstm", help="model_spec.name (store name)")
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-m", "--streams", type=int, default=1, help="concurrent calls per connection")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    request = predict_request_bytes(load_image(None, args.data_dir, 0), args.model)
    try:
        result = run_h2grpc(args.target, request, args.connections, args.streams, args.duration, args.warmup)
    except H2loadNotFound as e:
        print(f"h2load driver: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
