"""Closed-loop gRPC load from ``h2load`` (nghttp2, C): TF-Serving ``Predict`` with one pre-framed request.

A gRPC unary call is an HTTP/2 POST of a length-prefixed message with ``content-type: application/grpc``,
so h2load can drive it at a few percent of a core, as wrk drives HTTP/1.1 (the Python gRPC load
generator in :mod:`loadtests.grpcload` spends ~0.3 cores at 3,000 calls/s on a 2-core box, which would
tilt the gRPC / HTTP ratio). h2load judges only the HTTP status, so :func:`run_h2grpc` first makes
one call with a real gRPC client and checks its answer, and reports non-OK ``grpc-status`` trailers it
cannot see as a caveat. Latencies come from h2load's per-request log.

    python -m loadtests.h2grpc --target 127.0.0.1:8500 --model mnist-lstm -c 32 --duration 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .grpcload import METHOD, check_response, load_image, predict_request_bytes
from .loadgen import percentile
from .wrkload import run_timed


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


def latencies_ms(log_text: str) -> list[float]:
    """Request times in ms from h2load's ``--log-file`` (``start_us status duration_us`` per line), 2xx only."""
    out = []
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit() and 200 <= int(parts[1]) < 300:
            out.append(int(parts[2]) / 1000.0)
    return out


def parse_summary(stdout: str) -> dict[str, int]:
    """Counts from h2load's ``requests:`` and ``status codes:`` lines."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("requests:"):
            for part in line[len("requests:") :].split(","):
                words = part.split()
                if len(words) >= 2 and words[0].isdigit():
                    counts[words[1]] = int(words[0])
        elif line.startswith("status codes:"):
            for part in line[len("status codes:") :].split(","):
                words = part.split()
                if len(words) >= 2 and words[0].isdigit():
                    counts[words[1]] = int(words[0])
    return counts


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
    :data:`~loadtests.grpcload.INFER_METHOD` and :func:`~loadtests.grpcload.check_infer_response`."""
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.h2grpc", description=__doc__.splitlines()[0])
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
        print(f"h2grpc: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
