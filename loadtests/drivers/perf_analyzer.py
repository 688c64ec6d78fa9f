"""Triton's own load tool, ``perf_analyzer``, against any v2 or TF Serving endpoint (ours or Triton's).

The binary comes with the ``tritonclient`` wheel (``.venv/bin/perf_analyzer``). Even on a CPU-only
machine it links ``libb64.so.0d`` (Debian's ``libb64-0d``) and ``libcudart.so.12``, which the
``nvidia-cuda-runtime-cu12`` wheel (a dev dependency) provides: :func:`environment` puts that wheel's
library folder on ``LD_LIBRARY_PATH``, and :func:`unavailable` says what is missing, if anything.

    from loadtests.drivers import perf_analyzer as pa
    r = pa.run("grpc-streaming", http="127.0.0.1:3000", grpc="127.0.0.1:8500", model="mnist-lstm", concurrency=32)
    r["throughput"], r["p50_us"], r["p99_us"]

Each request is one 28 x 28 image of zeros (``--input-data zero``: every model's pixel and latent
rules accept zeros), shape ``1,28,28``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# perf_analyzer's arguments per mode: protocol, and how it sends (sync, async, streaming, shared memory)
MODES: dict[str, tuple[str, ...]] = {
    "http": ("-i", "http"),
    "http-async": ("-i", "http", "--async"),
    "grpc": ("-i", "grpc"),
    "grpc-async": ("-i", "grpc", "--async"),
    "grpc-streaming": ("-i", "grpc", "--streaming"),
    "http-shm": ("-i", "http", "--shared-memory", "system"),
    "grpc-shm": ("-i", "grpc", "--shared-memory", "system"),
    "tfserving": ("--service-kind", "tfserving", "-i", "grpc"),
}


class PerfAnalyzerFailed(RuntimeError):
    """perf_analyzer exited non-zero or wrote no result."""


def binary() -> str | None:
    """The perf_analyzer next to this interpreter (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / "perf_analyzer"
    return str(beside) if beside.exists() else shutil.which("perf_analyzer")


def _cudart_dir() -> Path | None:
    try:
        import nvidia.cuda_runtime  # the nvidia-cuda-runtime-cu12 wheel (a namespace package)
    except ImportError:
        return None
    for root in nvidia.cuda_runtime.__path__:
        lib = Path(root) / "lib"
        if (lib / "libcudart.so.12").exists():
            return lib
    return None


def environment() -> dict[str, str]:
    """The environment perf_analyzer runs in: ours, with the CUDA runtime wheel's libraries findable."""
    env = dict(os.environ)
    lib = _cudart_dir()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def unavailable() -> str | None:
    """Why perf_analyzer cannot run here (and what to install), or None when it can."""
    exe = binary()
    if exe is None:
        return "no perf_analyzer: it comes with the tritonclient wheel (make venv)"
    linked = subprocess.run(["ldd", exe], capture_output=True, text=True, env=environment(), check=False).stdout
    missing = re.findall(r"^\s*(\S+) => not found", linked, re.MULTILINE)
    if missing:
        hints = {"libb64.so.0d": "apt-get install libb64-0d", "libcudart.so.12": "pip install nvidia-cuda-runtime-cu12 (make venv)"}
        return "perf_analyzer cannot load " + ", ".join(f"{m} ({hints.get(m, 'install it')})" for m in missing)
    return None


def command(
    mode: str,
    http: str,
    grpc: str,
    model: str,
    concurrency: int,
    measurement_ms: int,
    csv_path: str,
    shape: str = "images:1,28,28",
    stability_percent: int = 50,
    max_trials: int = 5,
) -> list[str]:
    """The perf_analyzer command line for ``mode`` (a key of :data:`MODES`).

    perf_analyzer repeats a measurement until its last three windows agree within ``stability_percent``
    (max/min of throughput and latency) and gives up, exiting 2, after ``max_trials`` windows."""
    exe = binary()
    if exe is None:
        raise PerfAnalyzerFailed(unavailable() or "no perf_analyzer")
    url = http if mode.startswith("http") else grpc
    return [
        exe,
        "-m",
        model,
        "-u",
        url,
        *MODES[mode],
        "--input-data",
        "zero",
        "--shape",
        shape,
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        str(measurement_ms),
        "--stability-percentage",
        str(stability_percent),
        "--max-trials",
        str(max_trials),
        "-f",
        csv_path,
    ]


def run(
    mode: str,
    http: str,
    grpc: str,
    model: str,
    concurrency: int = 1,
    measurement_ms: int = 2000,
    timeout_s: float = 120,
    shape: str = "images:1,28,28",
    stability_percent: int = 50,
    max_trials: int = 5,
) -> dict[str, Any]:
    """One perf_analyzer run; its figures (``throughput`` infer/s, ``p50_us`` .. ``p99_us``) and its report text.
    ``shape``: the input's shape as perf_analyzer's ``--shape`` takes it (without the batch axis for a
    model whose config has a ``max_batch_size``, as Triton's has). ``stability_percent``, ``max_trials``:
    see :func:`command` (a smoke test on a busy machine wants a wide margin, a benchmark a narrow one)."""
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        out = os.path.join(tmp, "result.csv")
        argv = command(mode, http, grpc, model, concurrency, measurement_ms, out, shape, stability_percent, max_trials)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=environment(), timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as e:  # a server that stops answering: a failed run, not a crashed benchmark
            raise PerfAnalyzerFailed(f"perf_analyzer {mode} gave no result within {timeout_s:.0f} s (killed)") from e
        if done.returncode != 0 or not os.path.exists(out):
            raise PerfAnalyzerFailed(f"perf_analyzer {mode} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
        with open(out, newline="") as f:
            row = next(csv.DictReader(f))
    return {
        "mode": mode,
        "concurrency": concurrency,
        "throughput": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]),
        "p90_us": float(row["p90 latency"]),
        "p99_us": float(row["p99 latency"]),
        "report": done.stdout,
    }
