"""``python -m loadtests.peers``: ours vs Triton vs textbook BentoML on one image per request (wrk).

Each server runs alone in turn on free loopback ports, serving the same ``model.onnx`` from the store,
and gets the same single-image request at each connection count. Writes ``peers.md`` and ``peers.json``
to ``results/peers-<timestamp>/`` (or ``--out``) and prints the table. ``make bench-peers``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..server import REPO
from . import find_model_dir
from .compare import SERVERS, render_markdown, run_server


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.peers", description=__doc__.splitlines()[0])
    p.add_argument("--home", default=os.environ.get("BENTOML_HOME"), help="BentoML store (default $BENTOML_HOME, ~/bentoml)")
    p.add_argument("--model", default="lstm", help="our public model name (its store name is mnist-<model>)")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}")
    p.add_argument("-c", "--connections", default="1,32", help="wrk connections, comma list")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (whole seconds)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured wrk seconds before each run")
    p.add_argument("--image-index", type=int, default=0, help="which MNIST test image")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", help="results folder (default results/peers-<timestamp>/)")
    args = p.parse_args(argv)
    connections = [int(c) for c in args.connections.split(",") if c.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not all(1 <= c <= 256 for c in connections) or not 0 < args.duration <= 120 or set(servers) - set(SERVERS):
        print(f"peers: connections 1..256, duration (0, 120] s, servers from {SERVERS}", file=sys.stderr)
        return 2
    if args.home:
        os.environ["BENTOML_HOME"] = args.home
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from ..workload import mnist_test_images

    image = mnist_test_images(args.data_dir, args.image_index + 1)[args.image_index]
    model_dir = find_model_dir(args.home, f"mnist-{args.model}")
    out = Path(args.out) if args.out else REPO / "results" / f"peers-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"peers: model {model_dir}, connections {connections}, {args.duration:g} s each; logs in {out}", flush=True)
    rows = [
        run_server(s, model_dir, out, image, connections, args.duration, args.warmup, home=args.home, model=args.model) for s in servers
    ]
    markdown = render_markdown(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(
        json.dumps({"model_dir": str(model_dir), "load_average": os.getloadavg(), "rows": rows}, indent=2, default=str) + "\n"
    )
    (out / "peers.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
