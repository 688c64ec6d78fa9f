"""(7) side by side: ours vs Triton (PyTriton) vs the textbook BentoML service, one server at a time."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The side-by-side: each server alone in turn, the same model file and single-image request, wrk (HTTP)
# and h2load (gRPC). "ours" once more with a 2 ms queue delay: the A/B of never waiting vs waiting for company.
PEER_RUNS = (
    ("ours", None, None),
    ("ours", {"SERVING_QUEUE_DELAY_MS": "2"}, "ours, SERVING_QUEUE_DELAY_MS=2 (A/B)"),
    ("triton", None, None),
    ("textbook", None, None),
)


def bench_peers(
    args: argparse.Namespace, rep: dict[str, Any], model_dir: Path, server_cpus: set[int] | None, client_cpus: set[int] | None, out: Path
) -> None:
    """(7): ours vs Triton (PyTriton) vs the textbook BentoML service; C=1, C=32, then C=1 again."""
    from ..peers import compare
    from ..workload import mnist_test_images

    image = mnist_test_images(args.data_dir, 1)[0]
    top = max(args.concurrency)
    connections = [1, top, 1]
    rows = []
    for which, env, label in PEER_RUNS:
        print(f"bench: (7) {label or compare.LABELS[which]}", flush=True)
        rows.append(
            compare.run_server(
                which,
                model_dir,
                out / "peers",
                image,
                connections,
                args.peer_duration,
                args.warmup,
                home=args.home,
                model=args.model,
                server_cpus=server_cpus,
                client_cpus=client_cpus,
                extra_env={**args.server_env, **(env or {})} if which == "ours" else None,
                grpc_connections=top if which == "ours" and env is None else 0,
                label=label,
            )
        )
    rep["peers"] = rows
    print(compare.render_markdown(rows), flush=True)
    print(compare.render_perf_analyzer([r for r in rows if r.get("perf_analyzer")]), flush=True)
