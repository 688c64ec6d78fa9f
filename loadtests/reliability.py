"""``python -m loadtests.reliability``: the service's own reliability suite, against a server it starts.

Three parts, one table (probe | tried | expected | got | verdict), exit status 1 on any failure:

1. **Schemathesis** over ``/docs.json`` (the OpenAPI 3.1 document): generated requests, positive and
   negative, checked for server errors and for status codes, content types, headers and bodies the
   document does not declare. The request count and the 5xx count come from the server's own
   ``/metrics``, not from the tool.
2. **Hostile inputs**, per HTTP route and per gRPC method: image bombs and odd formats, malformed
   JSON, ``.npy`` and protobuf, oversize bodies, headers, names and shapes. Each expects its 4xx or
   gRPC code, the API's error shape and a short message; the server must be healthy (HTTP ready,
   gRPC SERVING) after each, and the workers' RSS is checked after the heavy ones.
3. **Faults under load**: slow clients (others unaffected), overload at 150 % of the measured
   capacity (fast 503s, bounded p99), ``kill -9`` of a worker (only its in-flight requests may fail,
   replaced within 5 s, throughput back to 90 % within 10 s), a soak at 80 % (0 errors, flat p99,
   RSS growth < 5 % after warm-up) and last SIGTERM (not one accepted request lost, exit 0).

``--quick`` is the bounded form ``make test`` runs (tests/e2e/test_reliability.py); ``make
reliability`` runs the full one (``--minutes 10``). Loopback only; every loop is bounded in count
and time. Load comes from :mod:`loadtests.loadgen` (closed loop) and a paced sender built on its
request/response helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import loadgen, workload
from .server import Service, launch, processes, stop, wait_ready

MiB = 1 << 20


@dataclass
class Row:
    probe: str
    tried: str
    expected: str
    got: str
    ok: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"


@dataclass
class Plan:
    """How much of everything: ``quick`` (make test) or full (make reliability)."""

    examples: int  # Schemathesis examples per operation
    min_requests: int  # Schemathesis requests the run must reach
    fault_s: float  # seconds of load per fault probe
    soak_minutes: float
    soak_load: float = 0.8  # of capacity
    connections: int = 32
    overload_clients: int = 800  # paced connections at 150 %: more than the workers may hold (SERVING_MAX_IN_FLIGHT)
    replace_bound_s: float = 5.0  # kill -9: a new worker serving within this
    p99_slack_ms: float = 20.0  # soak: last window's p99 <= 1.5 x the first + this

    @classmethod
    def make(cls, quick: bool, minutes: float | None) -> Plan:
        if quick:
            # on 2 shared cores the client's own CPU moves the capacity by tens of %: the bounded form soaks at 50 %
            # On 2 cores shared with other work short windows are noisy, so the bounded form allows more.
            # BentoML's supervisor (circus) looks for dead workers every 10 s (check_delay=10, not
            # configurable through BentoML's public API): a replacement takes 10 s + start-up at worst.
            return cls(
                examples=12,
                min_requests=200,
                fault_s=4.0,
                soak_minutes=minutes if minutes is not None else 0.5,
                soak_load=0.5,
                replace_bound_s=13.0,
                p99_slack_ms=100.0,
            )
        return cls(examples=60, min_requests=1000, fault_s=10.0, soak_minutes=minutes if minutes is not None else 10.0)


# ---------------------------------------------------------------- the server under test


@dataclass
class Target:
    service: Service
    settings: dict[str, Any]
    images: np.ndarray
    rows: list[Row] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.service.http_url

    @property
    def grpc(self) -> str:
        return self.service.grpc_target

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def add(self, probe: str, tried: Any, expected: str, got: str, ok: bool) -> bool:
        row = Row(probe, str(tried), expected, got, bool(ok))
        self.rows.append(row)
        print(f"  {row.verdict}  {probe}: {got}", flush=True)
        return row.ok

    def healthy(self) -> tuple[bool, str]:
        """HTTP /readyz 200 and gRPC health SERVING, and the launcher still running."""
        import grpc
        import httpx
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if self.service.process.poll() is not None:
            return False, f"the server exited with {self.service.process.returncode}"
        try:
            ready = httpx.get(f"{self.url}/readyz", timeout=5).status_code
            with grpc.insecure_channel(self.grpc) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        except Exception as e:  # noqa: BLE001 - any failure is unhealthy
            return False, f"{type(e).__name__}: {e}"
        ok = ready == 200 and status == health_pb2.HealthCheckResponse.SERVING
        return ok, "" if ok else f"readyz {ready}, gRPC health {status}"

    def worker_pids(self) -> list[int]:
        return sorted(p.pid for role, p in processes(self.service) if role == "HTTP worker")

    def rss_mb(self) -> float:
        total = 0.0
        for role, proc in processes(self.service):
            if role == "HTTP worker":
                try:
                    total += proc.memory_info().rss / MiB
                except Exception:  # noqa: BLE001 - a worker that just went away
                    pass
        return total

    def metrics(self) -> dict[str, float]:
        """Requests answered so far by status class, from the server's /metrics (every worker)."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "bentoml_service_request_total":
                    code = sample.labels.get("http_response_code", "0")
                    key = f"{code[0]}xx"
                    counts[key] = counts.get(key, 0.0) + sample.value
                    counts["all"] = counts.get("all", 0.0) + sample.value
        return counts


# ---------------------------------------------------------------- raw HTTP


@dataclass
class Answer:
    status: int  # 0: no answer
    headers: dict[str, str]
    body: bytes
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def exchange(port: int, request: bytes | Callable[[socket.socket], None], timeout: float = 30.0) -> Answer:
    """Send one raw request (bytes, or a function that writes it) and read one response."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return Answer(0, {}, b"", f"connect: {e}")

    def write() -> None:
        try:
            if callable(request):
                request(sock)
            else:
                sock.sendall(request)
        except OSError:
            pass  # the server may answer (413, 431) and close before the whole request is written

    # Write while reading: a server that refuses a large body answers before reading it all.
    writer = threading.Thread(target=write, daemon=True)
    with sock:
        writer.start()
        try:
            return _read_answer(sock)
        finally:
            writer.join(timeout)


def _read_answer(sock: socket.socket) -> Answer:
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer(0, {}, b"", f"closed without an answer after {len(buf)} bytes")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            body = _dechunk(body)
        else:
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        return Answer(status, headers, body)
    except (OSError, ValueError, IndexError) as e:
        return Answer(0, {}, b"", f"{type(e).__name__}: {e}")


def _dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def http_request(
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    chunked: bool = False,
) -> bytes | Callable[[socket.socket], None]:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    head += [f"{k}: {v}" for k, v in headers]
    if not chunked:
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    head.append("Transfer-Encoding: chunked")
    start = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    def write(sock: socket.socket) -> None:
        sock.sendall(start)
        step = 1 << 20
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")

    return write


# ---------------------------------------------------------------- 1. Schemathesis


def schemathesis_probe(t: Target, plan: Plan, workdir: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        t.add("schemathesis", "-", "installed", "the `st` command is missing (pip install schemathesis)", False)
        return
    before = t.metrics()
    report = workdir / "schemathesis.json"
    # one worker: Hypothesis parses lambda sources with ast, which CPython 3.11 does not allow from two threads at once
    cmd = [
        st,
        "run",
        f"{t.url}/docs.json",
        "--url",
        t.url,
        "-n",
        str(plan.examples),
        "--mode",
        "all",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    started = time.monotonic()
    try:
        run = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=max(120, plan.examples * 30),
            cwd=workdir,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        out, code = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired as e:
        out, code = f"timed out after {e.timeout}s", -1
    seconds = time.monotonic() - started
    (workdir / "schemathesis.log").write_text(out)
    after = t.metrics()
    sent = int(after.get("all", 0) - before.get("all", 0))
    server_errors = int(after.get("5xx", 0) - before.get("5xx", 0))
    failures = _schemathesis_failures(report, out)
    t.add(
        "schemathesis: generated requests",
        f"{plan.examples}/operation",
        f">= {plan.min_requests}",
        f"{sent} in {seconds:.0f}s",
        sent >= plan.min_requests,
    )
    t.add("schemathesis: server errors (5xx)", sent, "0", str(server_errors), server_errors == 0)
    detail = "" if code == 0 else f" (exit {code}; see {workdir / 'schemathesis.log'})"
    t.add("schemathesis: schema violations", sent, "0", f"{failures}{detail}", failures == 0 and code == 0)
    ok, why = t.healthy()
    t.add("schemathesis: healthy after", "-", "ready", "ready" if ok else why, ok)


def _schemathesis_failures(report: Path, output: str) -> int:
    """Distinct failures Schemathesis found (its JSON report; else the summary line)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        for key in ("failures", "issues"):
            value = data.get(key)
            if isinstance(value, list):
                return len(value)
            if isinstance(value, int):
                return value
        summary = data.get("summary") or {}
        for key in ("failures", "issues", "unique_failures"):
            if isinstance(summary.get(key), int):
                return summary[key]
    import re

    found = re.search(r"(\d+) (?:unique )?(?:failures?|issues?)", output)
    return int(found.group(1)) if found else (0 if "No issues found" in output else 1)


# ---------------------------------------------------------------- 2. hostile inputs


@dataclass(frozen=True)
class Hostile:
    route: str
    name: str
    request: Any  # bytes or a writer
    status: int
    shape: str = "v1"  # v1: {"error", "type"}; v2: {"error"}; parser: uvicorn's own short plain-text 400
    heavy: bool = False


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _ico(png: bytes) -> bytes:
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


def _npy(shape: str, descr: str = "|u1", data: bytes = b"\x00" * 64) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


def _multipart(data: bytes, filename: str = "x.png", boundary: str = "reliability") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def hostile_http(t: Target) -> list[Hostile]:
    limit = int(t.settings["max_body_bytes"])
    image = t.images[0]
    one = json.dumps({"model": "lstm", "images": image.tolist()}).encode()
    big_name = "m" * MiB
    post = http_request
    out: list[Hostile] = []
    # /v1/classify (JSON)
    c = "/v1/classify"
    out += [
        Hostile(c, "malformed JSON", post("POST", c, b'{"images": [[1, 2], '), 400),
        Hostile(c, "not an object", post("POST", c, b'"images"'), 400),
        Hostile(c, "invalid UTF-8", post("POST", c, b'{"images": "\xff\xfe"}'), 400),
        Hostile(c, "5,000-digit integer", post("POST", c, b'{"images": [' + b"9" * 5000 + b"]}"), 400),
        Hostile(c, "NaN pixels", post("POST", c, b'{"images": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}"), 400),
        Hostile(c, "wrong shape 27x28", post("POST", c, json.dumps({"images": [[0] * 28] * 27}).encode()), 400),
        Hostile(c, "nesting 100,000 deep", post("POST", c, b"[" * 100_000 + b"]" * 100_000), 413),
        Hostile(c, "10^6 tiny images", post("POST", c, b'{"images": [' + b",".join([b"[[0]]"] * 1_000_000) + b"]}"), 413, heavy=True),
        Hostile(c, "300 images (limit 256)", post("POST", c, json.dumps({"images": [[[0] * 28] * 28] * 300}).encode()), 413),
        Hostile(c, "1 MiB model name", post("POST", c, json.dumps({"model": big_name, "images": image.tolist()}).encode()), 404),
        Hostile(
            c,
            "declared body over the limit",
            f"POST {c} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode(),
            413,
        ),
        Hostile(c, "100 MB chunked body", post("POST", c, b" " * (100 * 10**6), chunked=True), 413, heavy=True),
        Hostile(c, "PATCH (no such method)", post("PATCH", c, one), 405),
        Hostile(c, "text/plain body", post("POST", c, b"hello", content_type="text/plain"), 400),
    ]
    # /v1/classify/image (multipart)
    ci = "/v1/classify/image"
    for name, data, status, heavy in [
        ("ICO embedding a 13000x13000 PNG", _ico(_png_header(13_000, 13_000)), 400, True),
        ("PNG declaring 40000x40000", _png_header(40_000, 40_000), 413, True),
        ("random bytes", random.Random(1).randbytes(2000), 400, False),
        ("truncated PNG", _png_header(64, 64)[:40], 400, False),
        ("empty file", b"", 400, False),
    ]:
        body, ctype = _multipart(data)
        out.append(Hostile(ci, name, post("POST", ci, body, content_type=ctype), status, heavy=heavy))
    out += [
        Hostile(ci, "multipart without a boundary", post("POST", ci, b"--x\r\n\r\n", content_type="multipart/form-data"), 400),
        Hostile(ci, "multipart, bad data", post("POST", ci, b"garbage", content_type="multipart/form-data; boundary=b"), 400),
        Hostile(ci, "no image field", post("POST", ci, b"", content_type="application/json"), 400),
    ]
    # /v1/classify/batch (.npy)
    cb = "/v1/classify/batch"
    over = io.BytesIO()
    np.save(over, np.zeros((limit // 784 + 100, 28, 28), dtype=np.uint8))
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    npy_ct = "application/octet-stream"
    out += [
        Hostile(cb, ".npy with negative dims (-1, -28, 28)", post("POST", cb, _npy("(-1, -28, 28)"), npy_ct), 400),
        Hostile(cb, ".npy with negative dims (-1, 28, 28)", post("POST", cb, _npy("(-1, 28, 28)"), npy_ct), 400),
        Hostile(cb, ".npy declaring 10^9 x 10^9 x 28", post("POST", cb, _npy("(1000000000, 1000000000, 28)"), npy_ct), 400),
        Hostile(cb, ".npy pickled objects", post("POST", cb, pickled.getvalue(), npy_ct), 400),
        Hostile(cb, ".npy complex dtype", post("POST", cb, _npy("(1, 28, 28)", "<c8", b"\x00" * 784 * 8), npy_ct), 400),
        Hostile(cb, ".npy truncated", post("POST", cb, _npy("(10, 28, 28)"), npy_ct), 400),
        Hostile(cb, "not .npy at all", post("POST", cb, b"hello world", npy_ct), 400),
        Hostile(cb, ".npy over the body limit (declared)", post("POST", cb, over.getvalue(), npy_ct), 413, heavy=True),
        Hostile(cb, ".npy over the body limit (chunked)", post("POST", cb, over.getvalue(), npy_ct, chunked=True), 413, heavy=True),
    ]
    # /v1/generate, /v1/generate/sample, /v1/generate/manifold, /v1/models
    g = "/v1/generate"
    out += [
        Hostile(g, "z with NaN", post("POST", g, b'{"z": [[NaN, 0]]}'), 400),
        Hostile(g, "z 10^6 rows", post("POST", g, b'{"z": [' + b",".join([b"[0,0]"] * 1_000_000) + b"]}"), 413, heavy=True),
        Hostile(g, "unknown format", post("POST", g, b'{"z": [[0, 0]], "format": "gif"}'), 400),
        Hostile("/v1/generate/sample", "n = 10^9", post("POST", "/v1/generate/sample", b'{"n": 1000000000}'), 413),
        Hostile("/v1/generate/sample", "n = -1", post("POST", "/v1/generate/sample", b'{"n": -1}'), 400),
        Hostile("/v1/generate/manifold", "n = 1000", post("GET", "/v1/generate/manifold?n=1000", content_type=None), 413),
        Hostile("/v1/generate/manifold", "scale = 0", post("GET", "/v1/generate/manifold?scale=0", content_type=None), 400),
        Hostile("/v1/generate/manifold", "dims = x,y", post("GET", "/v1/generate/manifold?dims=x,y", content_type=None), 400),
        Hostile("/v1/models/{name}", "10 KB name", post("GET", "/v1/models/" + "m" * 10_000, content_type=None), 404),
        # over 64 KiB, uvicorn's HTTP parser refuses the request line itself (plain text, before any app code)
        Hostile("/v1/models/{name}", "1 MiB name (URL)", post("GET", "/v1/models/" + big_name, content_type=None), 400, "parser"),
        Hostile("/v1/models/{name}/labels/{label}", "control off", post("PUT", "/v1/models/lstm/labels/stable", b'{"version": "1"}'), 403),
        Hostile("(any)", "1 MiB of headers", post("GET", "/v1/models", content_type=None, headers=[("X-Big", "a" * MiB)]), 431),
        Hostile("(any)", "unknown path", post("GET", "/nope/" + "x" * 2000, content_type=None), 404),
        Hostile("(any)", "POST /readyz", post("POST", "/readyz", b""), 405),
    ]
    # /v2 REST
    v = "/v2/models/mnist-lstm/infer"
    header = json.dumps(
        {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "parameters": {"binary_data_size": 3136}}]}
    ).encode()
    out += [
        Hostile(v, "malformed JSON", post("POST", v, b'{"inputs": ['), 400, "v2"),
        Hostile(
            v,
            "negative shape",
            post("POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28], "data": [0]}]}).encode()),
            400,
            "v2",
        ),
        Hostile(
            v,
            "shape 10^9 rows",
            post(
                "POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [10**9, 28, 28], "data": [0]}]}).encode()
            ),
            413,
            "v2",
        ),
        Hostile(
            v,
            "BYTES datatype",
            post(
                "POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1, 28, 28], "data": ["a"]}]}).encode()
            ),
            400,
            "v2",
        ),
        Hostile(
            v,
            "binary size mismatch",
            post("POST", v, header + b"\x00" * 100, npy_ct, headers=[("Inference-Header-Content-Length", str(len(header)))]),
            400,
            "v2",
        ),
        Hostile(
            v,
            "header length past the body",
            post("POST", v, header, npy_ct, headers=[("Inference-Header-Content-Length", "999999")]),
            400,
            "v2",
        ),
        Hostile(
            v,
            "10^6 values",
            post(
                "POST",
                v,
                b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": ['
                + b",".join([b"0"] * 1_000_000)
                + b"]}]}",
            ),
            413,
            "v2",
            heavy=True,
        ),
        Hostile("/v2/models/{name}", "10 KB name", post("GET", "/v2/models/" + "m" * 10_000, content_type=None), 404, "v2"),
        Hostile(
            "/v2/repository/models/{name}/load", "control off", post("POST", "/v2/repository/models/mnist-lstm/load", b"{}"), 403, "v2"
        ),
    ]
    return out


def check_shape(answer: Answer, shape: str) -> str:
    """'' when the body is the API's error shape with a short message, else what is wrong."""
    if shape == "parser":
        return "" if len(answer.body) < 200 else f"a {len(answer.body)}-byte answer (echoes the input?)"
    body = answer.json()
    want = {"error", "type"} if shape == "v1" else {"error"}
    if not isinstance(body, dict) or set(body) != want or not isinstance(body.get("error"), str):
        return f"body {answer.body[:120]!r} is not {sorted(want)}"
    if len(answer.body) > 2000:
        return f"error body of {len(answer.body)} bytes (echoes the input?)"
    return ""


def hostile_probes(t: Target, rss_growth_mb: float) -> None:
    baseline = t.rss_mb()
    for h in hostile_http(t):
        answer = exchange(t.port, h.request, timeout=60)
        problem = "" if answer.status == h.status else f"status {answer.status or answer.error}"
        problem = problem or check_shape(answer, h.shape)
        ok, why = t.healthy()
        got = f"{answer.status}" + (f" ({problem})" if problem else "") + ("" if ok else f"; unhealthy: {why}")
        if h.heavy:
            rss = t.rss_mb()
            grew = rss - baseline
            got += f"; RSS {rss:.0f} MB ({grew:+.0f})"
            ok = ok and grew < rss_growth_mb
        t.add(f"HTTP {h.route}: {h.name}", 1, f"{h.status} + error shape", got, not problem and ok)
    for name, method, request, code, heavy in hostile_grpc(t):
        got_code, message = grpc_call(t.grpc, method, request)
        ok, why = t.healthy()
        problem = "" if got_code == code else f"{got_code}"
        if len(message) > 1000:
            problem = (problem + "; " if problem else "") + f"message of {len(message)} chars"
        got = (got_code + (f" ({problem})" if problem else "")) + ("" if ok else f"; unhealthy: {why}")
        if heavy:
            rss = t.rss_mb()
            got += f"; RSS {rss:.0f} MB ({rss - baseline:+.0f})"
            ok = ok and rss - baseline < rss_growth_mb
        t.add(f"gRPC {method.rsplit('/', 1)[1]}: {name}", 1, code, got, not problem and ok)


def hostile_grpc(t: Target) -> list[tuple[str, str, bytes, str, bool]]:
    from contract.protos.inference import grpc_service_pb2 as v2pb
    from contract.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    predict = "/tensorflow.serving.PredictionService/Predict"
    infer = "/inference.GRPCInferenceService/ModelInfer"

    def predict_req(
        name: str = "mnist-lstm",
        dims: Sequence[int] = (1, 28, 28),
        dtype: int = types_pb2.DT_FLOAT,
        floats: Sequence[float] = (0.5,),
        content: bytes | None = None,
    ) -> bytes:
        r = predict_pb2.PredictRequest()
        r.model_spec.name = name
        tensor = tensor_pb2.TensorProto(
            dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
        )
        if content is not None:
            tensor.tensor_content = content
        else:
            tensor.float_val.extend(floats)
        r.inputs["images"].CopyFrom(tensor)
        return r.SerializeToString()

    def infer_req(
        name: str = "mnist-lstm", shape: Sequence[int] = (1, 28, 28), datatype: str = "FP32", raw: bytes | None = b"\x00" * 3136
    ) -> bytes:
        r = v2pb.ModelInferRequest(model_name=name)
        r.inputs.add(name="images", datatype=datatype, shape=list(shape))
        if raw is not None:
            r.raw_input_contents.append(raw)
        return r.SerializeToString()

    junk = random.Random(2).randbytes(4000)
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = "m" * MiB
    return [
        ("undecodable bytes", predict, junk, "INVALID_ARGUMENT", False),
        ("85,000x28x28 declared, 1 value", predict, predict_req(dims=(85_000, 28, 28)), "RESOURCE_EXHAUSTED", True),
        ("negative dimension", predict, predict_req(dims=(-1, 28, 28)), "INVALID_ARGUMENT", False),
        ("tensor_content size mismatch", predict, predict_req(content=b"\x00" * 100), "INVALID_ARGUMENT", False),
        ("DT_STRING", predict, predict_req(dtype=types_pb2.DT_STRING), "INVALID_ARGUMENT", False),
        ("NaN values", predict, predict_req(floats=[float("nan")] * 784), "INVALID_ARGUMENT", False),
        ("1 MiB model name", predict, predict_req(name="m" * MiB), "NOT_FOUND", False),
        ("message over 16 MiB", predict, predict_req(content=b"\x00" * (17 * MiB)), "RESOURCE_EXHAUSTED", True),
        (
            "GetModelMetadata, 1 MiB name",
            "/tensorflow.serving.PredictionService/GetModelMetadata",
            meta.SerializeToString(),
            "NOT_FOUND",
            False,
        ),
        ("Classify", "/tensorflow.serving.PredictionService/Classify", b"", "UNIMPLEMENTED", False),
        ("undecodable bytes", infer, junk, "INVALID_ARGUMENT", False),
        ("10^9 rows declared", infer, infer_req(shape=(10**9, 28, 28)), "RESOURCE_EXHAUSTED", False),
        ("negative shape", infer, infer_req(shape=(-1, 28, 28)), "INVALID_ARGUMENT", False),
        ("raw size mismatch", infer, infer_req(raw=b"\x00" * 10), "INVALID_ARGUMENT", False),
        ("BYTES datatype", infer, infer_req(datatype="BYTES"), "INVALID_ARGUMENT", False),
        ("1 MiB model name", infer, infer_req(name="m" * MiB), "NOT_FOUND", False),
        (
            "RepositoryModelLoad, control off",
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            v2pb.RepositoryModelLoadRequest(model_name="mnist-lstm").SerializeToString(),
            "PERMISSION_DENIED",
            False,
        ),
    ]


def grpc_call(target: str, method: str, request: bytes, timeout: float = 30.0) -> tuple[str, str]:
    """(status code name, details) of one unary call with raw request bytes."""
    import grpc

    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(request, timeout=timeout)
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""


# ---------------------------------------------------------------- load


@dataclass
class Outcome:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer
    kind: str = ""  # for status 0: refused | lost | timeout


class Pool:
    """Keep-alive connections for the paced sender and the fault probes (request bytes from loadgen)."""

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
            status, _, close = await asyncio.wait_for(loadgen.read_response(reader), timeout)
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


async def closed_loop(
    port: int, requests: Sequence[bytes], connections: int, seconds: float, stop: asyncio.Event | None = None
) -> list[Outcome]:
    """``connections`` clients sending back to back on keep-alive for ``seconds`` (or until ``stop``)."""
    outcomes: list[Outcome] = []
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        pool = Pool(port)
        i = k
        while time.monotonic() < end and not (stop and stop.is_set()):
            outcome = await pool.send(requests[i % len(requests)])
            i += 1
            outcomes.append(outcome)
            if outcome.status == 0:
                await asyncio.sleep(0.05)
        pool.close()

    await asyncio.gather(*(client(k) for k in range(connections)))
    return outcomes


async def paced(port: int, requests: Sequence[bytes], rate: float, seconds: float, max_connections: int = 256) -> list[Outcome]:
    """Open loop: one request every 1/rate s whatever the answers do (up to ``max_connections`` at once)."""
    outcomes: list[Outcome] = []
    pool = Pool(port)
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    n = int(rate * seconds)
    skipped = 0

    async def one(i: int) -> None:
        outcomes.append(await pool.send(requests[i % len(requests)], timeout=15))

    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_connections:
            skipped += 1
            outcomes.append(Outcome(time.monotonic(), 0.0, -1, "client-saturated"))
            continue
        task = asyncio.ensure_future(one(i))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    pool.close()
    return outcomes


def h2load_paced(
    url: str, path: str, body: bytes, rate: float, seconds: float, clients: int, streams: int = 4
) -> tuple[list[Outcome], dict[str, int]]:
    """Paced HTTP/1.1 load from h2load (C: little client CPU, so latencies are the server's): ``clients``
    keep-alive connections, each sending ``rate / clients`` requests per second for ``seconds``.
    Every request's start, status and time come from h2load's ``--log-file``; status 0 = no answer.

    h2load does not reconnect a client whose connection the server closes, and the server closes
    every connection after SERVING_REQUESTS_PER_CONNECTION answers, so a long run is a chain of runs
    short enough that no client reaches that count."""
    from . import h2grpc, wrkload

    try:
        exe = h2grpc.h2load_path()
    except h2grpc.H2loadNotFound:  # the Python sender: same pacing, its own CPU in the latencies
        host = urlsplit(url).netloc
        request = loadgen.build_request("POST", host, path, body)
        outcomes = asyncio.run(paced(int(urlsplit(url).port or 80), [request], rate, seconds, max_connections=clients))
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
            code, out, _ = wrkload.run_timed(cmd, None, chunk + 60)
            found = []
            for line in (log_file.read_text() if log_file.exists() else "").splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0].isdigit() and parts[1].lstrip("-").isdigit():
                    status = max(0, int(parts[1]))
                    found.append(Outcome(int(parts[0]) / 1e6, int(parts[2]) / 1e6, status, "" if status else "lost"))
            with lock:
                outcomes.extend(found)
                for key, value in h2grpc.parse_summary(out).items():
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


def pct(values: Sequence[float], q: float) -> float:
    return (loadgen.percentile(sorted(values), q) or 0.0) * 1000.0


def classify_requests(t: Target, n: int = 64) -> list[bytes]:
    host = urlsplit(t.url).netloc
    return [
        loadgen.build_request("POST", host, "/v1/classify", workload.classify_body(workload.images_json(img), "lstm"))
        for img in t.images[:n]
    ]


def capacity(t: Target, plan: Plan) -> float:
    """The server's answers per second under a closed loop of ``plan.connections`` (the 100 % of the
    overload and the soak): measured with wrk (little client CPU) when installed, else with Python."""
    from . import wrkload

    seconds = max(3.0, plan.fault_s / 2)
    body = workload.classify_body(workload.images_json(t.images[0]), "lstm")
    try:
        r = wrkload.run_wrk(t.url, "/v1/classify", body, connections=plan.connections, duration_s=seconds, warmup_s=1)
        rps, p99, how = r["rps"], r["p99_ms"] or 0.0, "wrk"
    except wrkload.WrkNotFound:
        outcomes = asyncio.run(closed_loop(t.port, classify_requests(t), plan.connections, seconds))
        ok = [o for o in outcomes if o.status == 200]
        rps, p99, how = len(ok) / seconds, pct([o.seconds for o in ok], 99), "python"
    t.add(
        "capacity (closed loop)",
        f"{how}, {plan.connections} connections, {seconds:.0f}s",
        "> 0 answers/s",
        f"{rps:.0f}/s, p99 {p99:.0f} ms",
        rps > 0,
    )
    return rps


# ---------------------------------------------------------------- 3. faults


def slow_clients_probe(t: Target, plan: Plan) -> None:
    """Slow-loris headers and trickled bodies beside normal clients: the normal ones keep their latency."""
    requests = classify_requests(t)
    seconds = plan.fault_s
    before = asyncio.run(closed_loop(t.port, requests, 4, seconds))
    stop = threading.Event()
    socks: list[socket.socket] = []

    def trickle() -> None:
        for _ in range(50):
            try:
                s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
                s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            except OSError:
                pass
        for _ in range(10):
            try:
                s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
                s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
                socks.append(s)
            except OSError:
                pass
        while not stop.wait(0.5):
            for s in list(socks):
                try:
                    s.sendall(b"X-a: b\r\n" if socks.index(s) < 50 else b" ")
                except OSError:
                    socks.remove(s)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(1.0)
    during = asyncio.run(closed_loop(t.port, requests, 4, seconds))
    stop.set()
    thread.join(5)
    for s in socks:
        s.close()
    p_before = pct([o.seconds for o in before if o.status == 200], 99)
    p_during = pct([o.seconds for o in during if o.status == 200], 99)
    errors = sum(1 for o in during if o.status != 200)
    bound = 2 * p_before + 20
    t.add(
        "slow clients: 60 trickling connections beside 4 normal",
        f"{len(during)} requests",
        f"0 errors, p99 <= {bound:.0f} ms",
        f"{errors} errors, p99 {p_before:.0f} -> {p_during:.0f} ms",
        errors == 0 and p_during <= bound,
    )
    # An idle keep-alive connection is closed after SERVING_KEEPALIVE_TIMEOUT_S.
    keepalive = float(t.settings["keepalive_timeout_s"])
    s = socket.create_connection(("127.0.0.1", t.port), timeout=keepalive + 5)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    closed_after = time.monotonic() - started
    s.close()
    t.add(
        "idle keep-alive connection",
        1,
        f"closed after ~{keepalive:.0f}s",
        f"closed after {closed_after:.1f}s",
        data.startswith(b"HTTP/1.1 200") and keepalive - 1 <= closed_after <= keepalive + 2,
    )


def overload_probe(t: Target, plan: Plan, rps: float) -> None:
    """150 % of capacity, paced: what the server cannot take is refused fast (503), what it takes stays fast."""
    rate = 1.5 * rps
    body = workload.classify_body(workload.images_json(t.images[0]), "lstm")
    outcomes, summary = h2load_paced(t.url, "/v1/classify", body, rate, plan.fault_s, clients=plan.overload_clients)
    other: dict[str, int] = {}
    for o in outcomes:
        if o.status not in (200, 503):
            other[str(o.status or o.kind)] = other.get(str(o.status or o.kind), 0) + 1
    # Latencies of the sustained overload: the first second or so is 800 connections opening at once.
    warm = max(1.0, plan.fault_s / 5)
    steady = [o for o in outcomes if outcomes and o.started >= outcomes[0].started + warm]
    ok = [o.seconds for o in steady if o.status == 200]
    refused = [o.seconds for o in steady if o.status == 503]
    p99_ok, p50_503, p99_503 = pct(ok, 99), pct(refused, 50), pct(refused, 99)
    # bounded, not growing: the last third's p99 against the first third's
    third = (plan.fault_s - warm) / 3
    first = [o.seconds for o in steady if o.status == 200 and o.started < steady[0].started + third] if steady else []
    last = [o.seconds for o in steady if o.status == 200 and o.started >= steady[-1].started - third] if steady else []
    growing = pct(last, 99) > 1.5 * pct(first, 99) + 100
    sent = summary.get("total", len(outcomes))
    good = (
        not other
        and bool(outcomes)
        and sent == len(outcomes)
        and bool(refused)
        and p99_ok <= 1000
        and p50_503 <= 250
        and p99_503 <= 500
        and not growing
    )
    t.add(
        "overload at 150 % of capacity",
        f"{len(outcomes)} requests at {len(outcomes) / plan.fault_s:.0f}/s (target {rate:.0f}/s)",
        f"only 200 and 503; after {warm:.0f}s: 503 p50 <= 250, p99 <= 500 ms; 200 p99 <= 1000 ms, not growing",
        f"{len(ok)} x 200 (p99 {p99_ok:.0f} ms; first/last third {pct(first, 99):.0f}/{pct(last, 99):.0f}), "
        f"{len(refused)} x 503 (p50 {p50_503:.0f}, p99 {p99_503:.0f} ms), other {other or 0}",
        good,
    )
    ok_h, why = t.healthy()
    t.add("overload: healthy after", "-", "ready", "ready" if ok_h else why, ok_h)


def kill9_probe(t: Target, plan: Plan) -> None:
    pids = t.worker_pids()
    if len(pids) < 2:
        t.add("kill -9 of a worker", "-", ">= 2 workers", f"{len(pids)} worker(s)", False)
        return
    victim = pids[0]
    requests = classify_requests(t)
    result: dict[str, Any] = {}
    grpc_port = int(urlsplit("x://" + t.grpc).port or 0)
    # The load runs on its own thread (and event loop), so watching for the new worker never waits on it.
    load = threading.Thread(target=lambda: result.update(outcomes=asyncio.run(closed_loop(t.port, requests, plan.connections, 16.0))))
    load.start()
    time.sleep(4.0)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced = None
    while time.monotonic() - killed < 10:
        fresh = [p for p in t.worker_pids() if p not in pids]
        if fresh and _listens(fresh[0], grpc_port):  # the gRPC port opens after the engine has loaded and warmed
            replaced = time.monotonic() - killed
            break
        time.sleep(0.05)
    load.join(60)
    result.update(killed=killed, replaced=replaced)
    outcomes, killed = result["outcomes"], result["killed"]
    failed = [o for o in outcomes if o.status != 200]
    base = [o for o in outcomes if o.status == 200 and killed - 3.0 <= o.started + o.seconds < killed]
    baseline = len(base) / 3.0
    recovered = None
    for second in range(0, 11):
        lo = killed + second
        window = [o for o in outcomes if o.status == 200 and lo <= o.started + o.seconds < lo + 2.0]
        if len(window) / 2.0 >= 0.9 * baseline:
            recovered = second
            break
    t.add(
        "kill -9 of a worker: failed requests",
        f"{len(outcomes)} requests, {plan.connections} connections",
        f"<= {plan.connections} (its in-flight)",
        f"{len(failed)}",
        len(failed) <= plan.connections,
    )
    replaced = result["replaced"]
    t.add(
        "kill -9 of a worker: replaced",
        "-",
        f"<= {plan.replace_bound_s:g} s",
        "never" if replaced is None else f"{replaced:.1f}s",
        replaced is not None and replaced <= plan.replace_bound_s,
    )
    t.add(
        "kill -9 of a worker: throughput back to 90 %",
        f"baseline {baseline:.0f}/s",
        "<= 10 s",
        "never" if recovered is None else f"{recovered}s",
        recovered is not None and recovered <= 10,
    )


def _listens(pid: int, port: int) -> bool:
    import psutil

    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def soak_probe(t: Target, plan: Plan, rps: float) -> None:
    """A paced soak below capacity: no errors, p99 as flat at the end as after warm-up, RSS flat."""
    seconds = plan.soak_minutes * 60.0
    rate = plan.soak_load * rps
    warmup = min(30.0, seconds * 0.25)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(1.0):
            samples.append((time.time(), t.rss_mb()))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    started = time.time()
    sampler.start()
    body = workload.classify_body(workload.images_json(t.images[0]), "lstm")
    # at most ~20 requests/s per connection, so each h2load run in the chain lasts seconds (see h2load_paced)
    outcomes, _ = h2load_paced(t.url, "/v1/classify", body, rate, seconds, clients=max(plan.connections, int(rate // 20) + 1))
    stop.set()
    sampler.join(5)
    errors = [o for o in outcomes if o.status != 200]
    measured = [o for o in outcomes if o.started >= started + warmup and o.status == 200]
    windows = 4
    span = (seconds - warmup) / windows
    p99s = []
    for w in range(windows):
        lo = started + warmup + w * span
        p99s.append(pct([o.seconds for o in measured if lo <= o.started < lo + span], 99))
    first, last = p99s[0], p99s[-1]
    slack_ms = plan.p99_slack_ms
    flat = last <= 1.5 * first + slack_ms
    after_warmup = [rss for when, rss in samples if when >= started + warmup]
    growth = (after_warmup[-1] / after_warmup[0] - 1) * 100 if len(after_warmup) >= 2 else 0.0
    kinds: dict[str, int] = {}
    for o in errors:
        kinds[str(o.status or o.kind)] = kinds.get(str(o.status or o.kind), 0) + 1
    t.add(
        f"soak at {plan.soak_load:.0%} for {plan.soak_minutes:g} min: errors",
        f"{len(outcomes)} requests at {len(outcomes) / seconds:.0f}/s",
        "0",
        f"{len(errors)}" + (f" {kinds}" if kinds else ""),
        bool(outcomes) and not errors,
    )
    t.add(
        "soak: p99 flat after warm-up",
        f"{windows} windows of {span:.0f}s",
        f"last <= 1.5 x first + {slack_ms:.0f} ms",
        " -> ".join(f"{p:.0f}" for p in p99s) + " ms",
        flat,
    )
    t.add(
        "soak: RSS growth after warm-up",
        f"{len(after_warmup)} samples",
        "< 5 %",
        f"{after_warmup[0] if after_warmup else 0:.0f} -> {after_warmup[-1] if after_warmup else 0:.0f} MB ({growth:+.1f} %)",
        growth < 5.0,
    )


def sigterm_probe(t: Target, plan: Plan) -> None:
    """SIGTERM to the launcher under keep-alive load: every request is answered or never accepted."""
    requests = classify_requests(t)
    delay = float(t.settings["drain_delay_s"])
    result: dict[str, Any] = {}

    async def scenario() -> None:
        load = asyncio.ensure_future(closed_loop(t.port, requests, plan.connections, 60.0, stop := asyncio.Event()))
        await asyncio.sleep(2.0)
        signalled = time.monotonic()
        t.service.process.send_signal(signal.SIGTERM)
        # During the delay the server reports unready but still answers.
        await asyncio.sleep(min(0.5, delay / 2) if delay else 0.0)
        if delay:
            answer = await asyncio.to_thread(exchange, t.port, http_request("GET", "/readyz", content_type=None), 5.0)
            result["readyz"] = answer.status
        code = await asyncio.to_thread(_wait, t.service.process, 60.0)
        result.update(signalled=signalled, code=code, exited=time.monotonic() - signalled)
        stop.set()
        result["outcomes"] = await load

    asyncio.run(scenario())
    outcomes, signalled = result["outcomes"], result["signalled"]
    after = [o for o in outcomes if o.started >= signalled]
    answered = [o for o in outcomes if o.status == 200]
    lost = [o for o in outcomes if o.status == 0 and o.kind in ("lost", "timeout")]
    bad = [o for o in outcomes if o.status not in (0, 200)]
    refused = [o for o in outcomes if o.kind == "refused"]
    t.add(
        "SIGTERM under load: accepted requests lost",
        f"{len(outcomes)} requests ({len(after)} after the signal)",
        "0 lost, 0 errors",
        f"{len(lost)} lost, {len(bad)} errors, {len(answered)} answered, {len(refused)} refused at connect",
        not lost and not bad,
    )
    if delay:
        t.add("SIGTERM: unready during the drain delay", "GET /readyz", "503", str(result.get("readyz")), result.get("readyz") == 503)
    bound = delay + float(t.settings["drain_timeout_s"]) + 5
    t.add(
        "SIGTERM: launcher exit",
        "-",
        f"0 within {bound:.0f}s",
        f"{result['code']} after {result['exited']:.1f}s",
        result["code"] == 0 and result["exited"] <= bound,
    )


def _wait(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------- report and main


def table(rows: Sequence[Row]) -> str:
    head = ("probe", "tried", "expected", "got", "verdict")
    cells = [head] + [(r.probe, r.tried, r.expected, r.got, r.verdict) for r in rows]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|---|---|---|---|---|")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bounded form (make test): few examples, seconds of load, a 30 s soak")
    parser.add_argument("--minutes", type=float, help="soak minutes (default 10; 0.5 with --quick)")
    parser.add_argument("--only", default="schemathesis,hostile,faults", help="comma list of parts: schemathesis, hostile, faults")
    parser.add_argument("--bentoml-home", default=os.environ.get("BENTOML_HOME"), help="model store (BENTOML_HOME)")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder (DATA_DIR)")
    parser.add_argument("--out", type=Path, help="write the table (Markdown) and the rows (JSON) here")
    parser.add_argument("--drain-delay", type=float, default=1.0, help="SERVING_DRAIN_DELAY_S of the server under test")
    parser.add_argument("--rss-growth-mb", type=float, default=100.0, help="most RSS growth allowed after a heavy hostile input")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes is not None and not 0 < args.minutes <= 60:
        print("reliability: --minutes must be within (0, 60]", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, args.minutes)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    from serving.settings import Settings

    env = {"SERVING_DRAIN_DELAY_S": str(args.drain_delay), "SERVING_DRAIN_TIMEOUT_S": "10", "SERVING_WORKERS": "2"}
    settings = Settings.from_env({**os.environ, **env}).describe()
    images = workload.mnist_test_images(args.data_dir, limit=256)
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        workdir = Path(tmp)
        service = launch(workdir / "server.log", args.bentoml_home, extra_env=env)
        target = Target(service, settings, images)
        started = time.monotonic()
        try:
            wait_ready(service, timeout=300)
            print(f"reliability: server ready on {service.http_url} and {service.grpc_target} ({plan})", flush=True)
            if "schemathesis" in parts:
                schemathesis_probe(target, plan, workdir)
            if "hostile" in parts:
                hostile_probes(target, args.rss_growth_mb)
            if "faults" in parts:
                rps = capacity(target, plan)
                slow_clients_probe(target, plan)
                overload_probe(target, plan, rps)
                kill9_probe(target, plan)
                soak_probe(target, plan, rps)
                sigterm_probe(target, plan)
        except Exception as e:  # noqa: BLE001 - a crash of the suite is a failed row, with the server log
            target.add("suite", "-", "runs to the end", f"{type(e).__name__}: {e}", False)
            print(service.log_tail(), file=sys.stderr)
        finally:
            stop(service)
            elapsed = time.monotonic() - started
        failed = [r for r in target.rows if not r.ok]
        text = table(target.rows)
        print()
        print(text)
        print(f"\n{len(target.rows) - len(failed)} passed, {len(failed)} failed ({elapsed:.0f}s)")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "reliability.md").write_text(text + "\n")
            (args.out / "reliability.json").write_text(json.dumps([asdict(r) for r in target.rows], indent=2))
            shutil.copy(workdir / "server.log", args.out / "server.log")
            if (workdir / "schemathesis.log").exists():
                shutil.copy(workdir / "schemathesis.log", args.out / "schemathesis.log")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
