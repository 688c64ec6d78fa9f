"""``python -m serving``: HTTP (BentoML) and gRPC (TF Serving API) fronts as one unit.

Builds the quick model profile first when the store is empty, starts
``bentoml serve`` and the gRPC front as child processes, forwards SIGTERM /
SIGINT to both (each drains its in-flight requests), and exits with the
first non-zero status. This is the entrypoint of ``make serve`` and of the
container image.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .settings import Settings

REPO = Path(__file__).resolve().parent.parent


def store_is_empty() -> bool:
    import bentoml

    return not bentoml.models.list()


def build_quick_models(data_dir: str | None) -> None:
    cmd = [sys.executable, "-m", "training", "build", "--profile", "quick"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    print(
        "serving: the model store is empty: training and exporting the quick profile of every model first "
        "(a few minutes; `make models` builds the full-quality profile)",
        flush=True,
    )
    subprocess.run(cmd, check=True, cwd=REPO)


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.host, help="bind address (SERVING_HOST)")
    parser.add_argument("--http-port", type=int, default=settings.http_port, help="BentoML HTTP port (SERVING_HTTP_PORT)")
    parser.add_argument("--grpc-port", type=int, default=settings.grpc_port, help="gRPC port (SERVING_GRPC_PORT)")
    parser.add_argument("--no-grpc", action="store_true", help="serve HTTP only")
    parser.add_argument("--no-build", action="store_true", help="fail instead of training when the store is empty")
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR"), help="IDX data for the quick build (DATA_DIR)")
    args = parser.parse_args(argv)

    target = os.environ.get("SERVING_BENTO", "serving.service:DigitsService")
    # A built Bento brings its own models; only the service run from source needs the store to hold some.
    if target.startswith("serving.") and store_is_empty():
        if args.no_build:
            print("serving: the model store is empty; run `make models` (or drop --no-build)", file=sys.stderr)
            return 2
        build_quick_models(args.data_dir)

    env = {**os.environ, "SERVING_HOST": args.host, "SERVING_HTTP_PORT": str(args.http_port), "SERVING_GRPC_PORT": str(args.grpc_port)}
    drain = settings.drain_timeout_s
    http = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target, "--host", args.host, "--port", str(args.http_port),
         # uvicorn's own bound on in-flight requests at shutdown
         "--timeout-graceful-shutdown", str(max(1, math.ceil(drain)))],
        cwd=REPO if target.startswith("serving.") else None,
        env=env,
    )
    grpc_front = None
    if not args.no_grpc:
        grpc_front = subprocess.Popen(
            [sys.executable, "-m", "serving.grpc_server", "--host", args.host, "--port", str(args.grpc_port),
             "--http-url", f"http://127.0.0.1:{args.http_port}"],
            env=env,
        )
    children = [c for c in (grpc_front, http) if c is not None]
    print(f"serving: HTTP on http://{args.host}:{args.http_port}"
          + ("" if grpc_front is None else f", gRPC on {args.host}:{args.grpc_port}"), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set() and all(c.poll() is None for c in children):
        stop.wait(0.2)

    # The gRPC front forwards to HTTP, so it drains first; HTTP then gets what is left of the drain budget.
    deadline = time.monotonic() + drain + 5
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    codes = [c.returncode for c in children]
    return 0 if stop.is_set() and all(code in (0, -signal.SIGTERM) for code in codes) else next((c for c in codes if c), 1)


if __name__ == "__main__":
    raise SystemExit(main())
