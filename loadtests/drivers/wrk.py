"""Single-image HTTP load with ``wrk``, the same way for our service and for the peers.

:func:`run_wrk` runs ``wrk`` (a C closed-loop load generator: C keep-alive connections, each sending
the next request as soon as the answer arrives) with a generated Lua script that POSTs one fixed body
and prints, in ``done()``, one JSON line: latency percentiles (wrk's microseconds), socket errors and
the count of non-2xx answers. The body builders make the request for each server from one 28x28 uint8
MNIST image: our ``POST /v1/classify``, Triton's KServe v2 ``POST /v2/models/<name>/infer`` and the
textbook BentoML ``POST /predict``.

    from loadtests.drivers import wrk
    specs = wrk.requests_for_image(image)                          # {"ours", "triton", "textbook"}
    r = wrk.run_wrk(url, specs["ours"].path, specs["ours"].body, connections=32, duration_s=10)
    r["rps"], r["p50_ms"], r["p99_ms"], r["errors"], r["non2xx"], r["requests"]

wrk is Debian's package ``wrk`` (``apt-get install wrk``); :class:`WrkNotFound` says so when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .process import run_timed

MARKER = "WRKLOAD_JSON "


class WrkNotFound(RuntimeError):
    """``wrk`` is not installed."""


class WrkFailed(RuntimeError):
    """``wrk`` exited non-zero or printed no result line."""


# ---------------------------------------------------------------- request bodies


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request to send over and over: path, body, its content type and any other headers."""

    path: str
    body: bytes
    content_type: str = "application/json"
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


def _uint8_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.shape != (28, 28):
        raise ValueError(f"expected one 28x28 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError("image values must be 0..255")
        arr = arr.astype(np.uint8)
    return arr


def _num(v: float) -> str:
    """A compact JSON number: ``0``, ``1`` or up to 4 decimals (MNIST/255 needs no more)."""
    if v == 0.0:
        return "0"
    if v == 1.0:
        return "1"
    return f"{v:.4f}".rstrip("0")


def scaled_rows_json(image: Any) -> str:
    """A 28x28 uint8 image as the JSON text of 28 rows of 28 floats in 0..1 (value / 255)."""
    x = _uint8_image(image).astype(np.float64) / 255.0
    return "[" + ",".join("[" + ",".join(_num(v) for v in row) + "]" for row in x.tolist()) + "]"


def ours_body(image: Any, model: str | None = "lstm") -> bytes:
    """``POST /v1/classify``: ``{"model":"lstm","images":[<28x28 ints 0..255>]}``, the HTTP driver's bytes."""
    from .. import workload

    return workload.classify_body(workload.images_json(_uint8_image(image)), model)


def triton_body(image: Any, input_name: str = "images") -> bytes:
    """Triton ``POST /v2/models/<name>/infer`` (KServe v2 JSON): FP32 [1, 28, 28], row-major flat data in 0..1."""
    flat = ",".join(_num(v) for v in (_uint8_image(image).astype(np.float64) / 255.0).ravel().tolist())
    return (f'{{"inputs":[{{"name":{json.dumps(input_name)},"datatype":"FP32","shape":[1,28,28],"data":[{flat}]}}]}}').encode()


def v2_binary_spec(image: Any, model: str = "mnist-lstm") -> RequestSpec:
    """Our ``POST /v2/models/<name>/infer`` with the binary tensor data extension: a JSON header, then
    the FP32 [1, 28, 28] image as 3,136 raw little-endian bytes (what ``tritonclient.http`` sends)."""
    raw = (_uint8_image(image).astype(np.float32) / 255.0).astype("<f4").tobytes()
    header = json.dumps(
        {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "parameters": {"binary_data_size": len(raw)}}]},
        separators=(",", ":"),
    ).encode()
    return RequestSpec(
        f"/v2/models/{model}/infer",
        header + raw,
        "application/octet-stream",
        headers=(("Inference-Header-Content-Length", str(len(header))),),
    )


def textbook_body(image: Any, input_name: str = "images") -> bytes:
    """Textbook BentoML ``POST /predict``: ``{"images": [<28 rows of 28 floats in 0..1>]}``, shape [1, 28, 28]."""
    return f"{{{json.dumps(input_name)}:[{scaled_rows_json(image)}]}}".encode()


def requests_for_image(
    image: Any, model: str = "lstm", triton_model: str = "mnist-lstm", input_name: str = "images"
) -> dict[str, RequestSpec]:
    """The single-image request of each server for one image: keys ``ours``, ``triton``, ``textbook``."""
    return {
        "ours": RequestSpec("/v1/classify", ours_body(image, model)),
        "triton": RequestSpec(f"/v2/models/{triton_model}/infer", triton_body(image, input_name)),
        "textbook": RequestSpec("/predict", textbook_body(image, input_name)),
    }


def probe(url: str, spec: RequestSpec, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send ``spec`` once (urllib); ``(status, body)``. For checking a body is accepted before loading it."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url.rstrip("/") + spec.path, data=spec.body, method=spec.method, headers={"Content-Type": spec.content_type, **dict(spec.headers)}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---------------------------------------------------------------- wrk


def wrk_path() -> str:
    """The ``wrk`` executable, or :class:`WrkNotFound` with how to install it."""
    path = shutil.which("wrk")
    if not path:
        raise WrkNotFound(
            "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu package 'wrk'); the peer comparison drives its HTTP load with it"
        )
    return path


def _lua_string(text: str) -> str:
    """A Lua long-bracket string literal holding ``text`` verbatim."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A newline right after the opening bracket is dropped by Lua: add one so a leading newline survives.
    return f"[{eq}[\n{text}]{eq}]"


def lua_script(
    body_path: str | os.PathLike[str], content_type: str = "application/json", method: str = "POST", headers: Sequence[tuple[str, str]] = ()
) -> str:
    """The wrk script: send the body in ``body_path`` (read once per thread); count non-2xx answers per
    thread; ``done()`` prints one line ``WRKLOAD_JSON {...}`` with wrk's summary, socket errors, the
    non-2xx count and latency percentiles in microseconds."""
    extra = "".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}\n" for k, v in headers)
    return f"""-- generated by loadtests/drivers/wrk.py
local f = assert(io.open({_lua_string(str(body_path))}, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = {_lua_string(method)}
wrk.headers["Content-Type"] = {_lua_string(content_type)}
{extra}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  first_non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_non2xx == 0 then first_non2xx = status end
  end
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  return string.format("%.1f", v)
end

function done(summary, latency, requests)
  local n, first = 0, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
    if first == 0 then first = t:get("first_non2xx") or 0 end
  end
  local e = summary.errors
  local fields = {{
    '"requests":' .. num(summary.requests),
    '"duration_us":' .. num(summary.duration),
    '"bytes":' .. num(summary.bytes),
    '"connect":' .. num(e.connect), '"read":' .. num(e.read), '"write":' .. num(e.write),
    '"status":' .. num(e.status), '"timeout":' .. num(e.timeout),
    '"non2xx":' .. num(n), '"first_non2xx_status":' .. num(first),
    '"p50_us":' .. num(latency:percentile(50)), '"p90_us":' .. num(latency:percentile(90)),
    '"p99_us":' .. num(latency:percentile(99)), '"mean_us":' .. num(latency.mean),
    '"max_us":' .. num(latency.max), '"min_us":' .. num(latency.min),
  }}
  io.write("{MARKER}{{" .. table.concat(fields, ",") .. "}}\\n")
end
"""


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The result from wrk's output (the ``WRKLOAD_JSON`` line of :func:`lua_script`'s ``done()``).

    ``requests``: answers completed (any status); ``rps``: 2xx answers per second; ``errors``: socket
    errors (connect + read + write + timeout); ``non2xx``: answers whose status was not 2xx; latencies
    in ms (wrk records every completed answer, 2xx or not).
    """
    raw = None
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
    if raw is None:
        raise WrkFailed(f"wrk printed no {MARKER.strip()} line:\n{stdout[-2000:]}")
    seconds = (raw["duration_us"] or 0) / 1e6
    requests = int(raw["requests"] or 0)
    non2xx = int(raw["non2xx"] or 0)
    errors = int(sum(raw[k] or 0 for k in ("connect", "read", "write", "timeout")))

    def ms(key: str) -> float | None:
        return raw[key] / 1000.0 if raw.get(key) is not None and requests else None

    return {
        "rps": (requests - non2xx) / seconds if seconds else 0.0,
        "p50_ms": ms("p50_us"),
        "p90_ms": ms("p90_us"),
        "p99_ms": ms("p99_us"),
        "mean_ms": ms("mean_us"),
        "max_ms": ms("max_us"),
        "errors": errors,
        "non2xx": non2xx,
        "requests": requests,
        "seconds": seconds,
        "socket_errors": {k: int(raw[k] or 0) for k in ("connect", "read", "write", "timeout")},
        "first_non2xx_status": int(raw["first_non2xx_status"] or 0) or None,
        "bytes_read": int(raw["bytes"] or 0),
    }


def wrk_command(
    url: str, script: str | os.PathLike[str], connections: int, duration_s: int, threads: int, timeout_s: float, wrk: str = "wrk"
) -> list[str]:
    """The wrk command line (duration and timeout in whole seconds, threads at most the connections)."""
    threads = max(1, min(threads, connections))
    return [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        f"{max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
    ]


def run_wrk(
    url: str,
    path: str,
    body_bytes: bytes,
    content_type: str = "application/json",
    connections: int = 32,
    duration_s: float = 10.0,
    threads: int = 1,
    *,
    warmup_s: float = 0.0,
    timeout_s: float = 10.0,
    cpus: set[int] | None = None,
    method: str = "POST",
    headers: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Closed-loop load on ``url + path`` with ``connections`` keep-alive connections for ``duration_s``
    (whole seconds, at least 1) after an unmeasured ``warmup_s`` run; ``cpus`` pins wrk.

    Returns ``rps`` (2xx/s), ``p50_ms``, ``p99_ms``, ``errors`` (socket), ``non2xx``, ``requests`` and more
    (see :func:`parse_wrk_output`), plus ``connections``, ``threads``, ``client_cpu_cores`` (wrk's CPU
    seconds per measured second) and ``body_bytes``.
    """
    if not 1 <= connections <= 10_000 or not 0 < duration_s <= 600 or not 0 <= warmup_s <= 120:
        raise ValueError("connections 1..10000, duration_s (0, 600], warmup_s [0, 120]")
    exe = wrk_path()
    target = url.rstrip("/") + path
    seconds = max(1, round(duration_s))
    with tempfile.TemporaryDirectory(prefix="wrkload-") as tmp:
        body_file, script_file = Path(tmp) / "body", Path(tmp) / "post.lua"
        body_file.write_bytes(body_bytes)
        script_file.write_text(lua_script(body_file, content_type, method, headers))
        if warmup_s > 0:
            warm = wrk_command(target, script_file, connections, max(1, round(warmup_s)), threads, timeout_s, exe)
            run_timed(warm, cpus, max(1, round(warmup_s)) + timeout_s + 30)
        cmd = wrk_command(target, script_file, connections, seconds, threads, timeout_s, exe)
        started = time.monotonic()
        code, out, cpu = run_timed(cmd, cpus, seconds + timeout_s + 30)
        wall = time.monotonic() - started
    if code != 0:
        raise WrkFailed(f"wrk exited with {code}: {' '.join(cmd)}\n{out[-2000:]}")
    result = parse_wrk_output(out)
    result.update(
        connections=connections,
        threads=max(1, min(threads, connections)),
        body_bytes=len(body_bytes),
        client_cpu_s=cpu,
        client_cpu_cores=cpu / (result["seconds"] or wall or 1.0),
        url=target,
    )
    return result
