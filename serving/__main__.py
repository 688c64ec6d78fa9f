"""``python -m serving``: serve HTTP and gRPC (``make serve`` and the container's command).

Builds the quick model profile first when the store is empty, then replaces itself with
``bentoml serve`` (no supervisor process: every BentoML worker runs the HTTP and the gRPC
front over one engine). SIGTERM goes straight to BentoML, whose workers drain both fronts:
unready at once, still answering for SERVING_DRAIN_DELAY_S (default 5 s, for Kubernetes' endpoint
propagation; `make serve` sets 0), then finishing what they accepted (SERVING_DRAIN_TIMEOUT_S).
BentoML kills a worker 30 s after SIGTERM, so keep the delay + timeout under that.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .settings import Settings

REPO = Path(__file__).resolve().parent.parent


def store_is_empty() -> bool:
    from contract.store import list_store

    return not list_store()


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

    os.environ.update(
        SERVING_HOST=args.host,
        SERVING_HTTP_PORT=str(args.http_port),
        SERVING_GRPC_PORT="0" if args.no_grpc else str(args.grpc_port),
    )
    print(
        f"serving: HTTP on http://{args.host}:{args.http_port}" + ("" if args.no_grpc else f", gRPC on {args.host}:{args.grpc_port}"),
        flush=True,
    )
    if target.startswith("serving."):
        os.chdir(REPO)
    # Nothing left to supervise: each BentoML worker runs both fronts, so become `bentoml serve`.
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            target,
            "--host",
            args.host,
            "--port",
            str(args.http_port),
            # uvicorn's own bound on in-flight requests at shutdown (after the service's drain, serving/service.py)
            "--timeout-graceful-shutdown",
            str(max(1, math.ceil(settings.drain_timeout_s))),
            # idle keep-alive connections are closed after this long
            "--timeout-keep-alive",
            str(settings.keepalive_timeout_s),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
