"""Where the HTTP worker's CPU goes: py-spy samples (collapsed stacks) grouped into cost categories."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# First match from the leaf upwards wins, so specific rules come before the frameworks that call them.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("ONNX Runtime session.run (the inference)", r"Session\.run \(onnxruntime"),
    ("logging (access log, app log)", r"\(logging/__init__\.py|Logger\._log"),
    ("request JSON -> numpy (serving.protocols.codec)", r"numbers_from_json|npy_to_array|pixels_json|floats_json"),
    ("input rules (serving.core.rules)", r"serving/core/rules\.py|check_header"),
    ("TensorProto <-> numpy (contract.tensors)", r"tensor_proto_to_array|array_to_tensor_proto"),
    (
        "response building (tolist, JSON render)",
        r"_classification|serialize_response|jsonable_encoder|JSONResponse|render \(starlette|dump_json",
    ),
    (
        "body read + FastAPI/pydantic validation",
        r"Request\.json|Request\.body|solve_dependencies|_validate_value|validate_python|request_body_to_args|JSONDecoder|json/__init__",
    ),
    (
        "engine batcher (queue, merge, thread hand-off)",
        r"serving/core/batcher\.py|serving/core/engine\.py|run_in_executor|run_in_threadpool|to_thread",
    ),
    ("gRPC front (grpc.aio, servicer)", r"serving/transport/grpc\.py|serving/protocols/(oip|tfserving)/|grpc/aio|grpc/_cython|cygrpc"),
    (
        "OpenTelemetry tracing",
        r"opentelemetry|asgi/__init__\.py|trace/__init__|_decorator\.py|context/contextvars|sampling\.py|attributes/__init__",
    ),
    (
        "BentoML/Starlette/FastAPI middleware and routing",
        r"instruments\.py|traffic\.py|access\.py|_bentoml_impl/server/app\.py|starlette/|fastapi/|BodyLimit|proxy_headers",
    ),
    ("uvicorn HTTP parsing/writing", r"h11|httptools|uvicorn/protocols"),
    ("prometheus metrics", r"prometheus_client"),
    ("event loop and sockets", r"asyncio|selectors|uvloop"),
    ("threads waiting/handing off", r"threading\.py"),
)


def categorize(lines: Iterable[str], categories: tuple[tuple[str, str], ...] = CATEGORIES) -> tuple[int, Counter[str]]:
    """Total samples and samples per category from py-spy ``--format raw`` lines (``frame;frame;... count``)."""
    rules = [(name, re.compile(pattern)) for name, pattern in categories]
    total, counts = 0, Counter[str]()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in reversed(stack.split(";")):
            name = next((name for name, rule in rules if rule.search(frame)), None)
            if name:
                counts[name] += n
                break
        else:
            counts["other"] += n
    return total, counts


def py_spy() -> str | None:
    """The py-spy executable next to this Python or on PATH."""
    import sys

    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """Start ``py-spy record`` (raw collapsed stacks, all threads, non-blocking) on ``pid``."""
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [
            exe,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(seconds))),
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
