"""``python -m serving``: HTTP (BentoML) and gRPC (TF Serving API) fronts as one unit.

Builds the quick model profile first when the store is empty, starts
``bentoml serve`` and the gRPC front as child processes, forwards SIGTERM /
SIGINT to both (each drains its in-flight requests), and exits with the
first non-zero status. This is the entrypoint of ``make serve`` and of the
container image.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
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

    if store_is_empty():
        if args.no_build:
            print("serving: the model store is empty; run `make models` (or drop --no-build)", file=sys.stderr)
            return 2
        build_quick_models(args.data_dir)

    env = {**os.environ, "SERVING_HOST": args.host, "SERVING_HTTP_PORT": str(args.http_port), "SERVING_GRPC_PORT": str(args.grpc_port)}
    target = os.environ.get("SERVING_BENTO", "serving.service:DigitsService")
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target, "--host", args.host, "--port", str(args.http_port)],
            cwd=REPO if target.startswith("serving.") else None,
            env=env,
        )
    ]
    if not args.no_grpc:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "serving.grpc_server", "--host", args.host, "--port", str(args.grpc_port),
                 "--http-url", f"http://127.0.0.1:{args.http_port}"],
                env=env,
            )
        )
    print(f"serving: HTTP on http://{args.host}:{args.http_port}"
          + ("" if args.no_grpc else f", gRPC on {args.host}:{args.grpc_port}"), flush=True)

    stop_requested = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    # Run until a child exits (or we are told to stop); then stop the rest and wait, bounded.
    while all(c.poll() is None for c in children):
        time.sleep(0.2)
    if not stop_requested:
        forward(signal.SIGTERM, None)
    deadline = time.monotonic() + settings.drain_timeout_s + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    codes = [c.returncode for c in children]
    return 0 if stop_requested and all(code in (0, -signal.SIGTERM) for code in codes) else next((c for c in codes if c), 1)


if __name__ == "__main__":
    raise SystemExit(main())
