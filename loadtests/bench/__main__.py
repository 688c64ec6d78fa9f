"""The bench's command line: parse, run the parts in order, write ``bench.md`` and ``bench.json``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..server import REPO
from ..workload import default_data_dir
from . import report
from .baseline import bench_baseline, seed_loop
from .inprocess import measure_inprocess
from .machine import code_state, cpu_model, gpu_names, load_average, placements
from .served import bench_service
from .side_by_side import bench_peers


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m loadtests.bench``."""
    from . import __doc__ as doc

    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=(doc or "").splitlines()[0])
    p.add_argument("--home", default=os.environ.get("BENTOML_HOME"), help="BentoML store (default $BENTOML_HOME)")
    p.add_argument("--model", default="lstm", help="classifier for (2)-(4) (public name; default lstm)")
    p.add_argument("--concurrency", default="1,8,32", help="closed-loop clients for (2) and (4)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per served run")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each served run")
    p.add_argument("--baseline-duration", type=float, default=15.0, help="measured seconds per baseline run")
    p.add_argument("--baseline-warmup", type=float, default=5.0, help="the baseline needs seconds per answer at 32 clients")
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the served service (repeatable), e.g. SERVING_WORKERS=2",
    )
    p.add_argument("--manifold-requests", type=int, default=20, help="sequential manifold requests timed in (5)")
    p.add_argument("--inprocess-seconds", type=float, default=0.5, help="minimum seconds per (model, batch) in (1)")
    p.add_argument("--seed-calls", type=int, default=50, help="decoder.predict calls measured for the seed loop")
    p.add_argument(
        "--placement",
        choices=("shared", "split"),
        default="shared",
        help="shared (default): no pinning, the server may use every core; split: server on CPU 1.., "
        "load generator on CPU 0 (then ONNX Runtime gets one core)",
    )
    p.add_argument(
        "--py-spy", action="store_true", help="record the HTTP worker with py-spy during the highest-concurrency run and break its CPU down"
    )
    p.add_argument("--peer-duration", type=float, default=10.0, help="measured seconds per run in (7), the side-by-side")
    p.add_argument("--skip", default="", help="comma list of parts to skip: inprocess, baseline, seed, peers")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--out", help="results folder (default results/bench-<timestamp>/)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    try:
        args.server_env = dict(item.split("=", 1) for item in args.server_env)
    except ValueError:
        print("bench: --server-env takes KEY=VALUE", file=sys.stderr)
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not all(1 <= c <= 256 for c in args.concurrency) or not 0 < args.duration <= 120:
        print("bench: concurrency must be 1..256 and duration (0, 120] s", file=sys.stderr)
        return 2
    if args.home:
        os.environ["BENTOML_HOME"] = args.home  # before bentoml is imported: it reads the store location once
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO / "results" / f"bench-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    import numpy as np

    from ..workload import mnist_test_images

    server_cpus, client_cpus, placement = placements(args.placement)
    rep: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "store": os.environ.get("BENTOML_HOME", "~/bentoml"),
        "model": args.model,
        "placement": placement,
        "code": code_state(),
        "server_env": args.server_env,
        "load_average": {"before": load_average()},
        "manifold": {},
        "notes": [],
    }
    images01 = mnist_test_images(args.data_dir, 1024).astype(np.float32) / 255.0
    registry = None
    if "inprocess" not in skip:
        rep["inprocess"], registry = measure_inprocess([1, 8, 64, 1024], args.inprocess_seconds, images01, server_cpus)
    else:
        from serving.core.lifecycle import registry_from_store
        from serving.settings import Settings

        registry = registry_from_store(Settings.from_env())
    import bentoml
    import onnxruntime

    rt_names = {rt.public_name: rt for rt in registry.runtimes.values() if rt.task == "classification"}
    if args.model not in rt_names:
        print(f"bench: no classifier {args.model!r} in the store; have {sorted(rt_names)}", file=sys.stderr)
        return 2
    gpus = gpu_names()
    rep["machine"] = {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "gpu": "; ".join(gpus) if gpus else None,
        "ort_provider": next((r["provider"] for r in rep.get("inprocess", [])), None) or "see served",
        "onnxruntime": onnxruntime.__version__,
        "bentoml": bentoml.__version__,
        "python": platform.python_version(),
    }
    if not gpus:
        rep["notes"].append(
            "No GPU on this machine: GPU figures are unmeasured. On a CUDA host the same command measures "
            "whatever provider the server's SERVING_PROVIDERS=auto picks."
        )

    bench_service(args, rep, registry, server_cpus, client_cpus, out)
    rep["machine"]["ort_provider_served"] = ", ".join(rep.get("served_provider", []))
    if "baseline" not in skip:
        bench_baseline(args, rep, rt_names[args.model].path, server_cpus, client_cpus, out)
    else:
        rep["baseline"] = {"skipped": "--skip baseline"}
    if "peers" not in skip:
        bench_peers(args, rep, rt_names[args.model].path, server_cpus, client_cpus, out)
    else:
        rep["peers"] = []
    decoder_dir = Path(rep["decoder_dir"]) if rep.get("decoder_dir") else None
    if "seed" in skip or decoder_dir is None:
        rep["manifold"]["seed_skipped"] = "--skip seed" if "seed" in skip else "no 2-D decoder loaded"
    elif not (decoder_dir / "saved_model").is_dir():
        rep["manifold"]["seed_skipped"] = f"{decoder_dir} has no saved_model/"
    else:
        rep["manifold"]["seed_loop"] = seed_loop(args, decoder_dir, server_cpus)
        print(f"bench: (5) seed loop {rep['manifold']['seed_loop']['ms_per_call']:.1f} ms per call", flush=True)

    rep["load_average"]["after"] = load_average()
    client_cpu = [r.get("client_cpu_cores") for r in rep.get("served", []) if r.get("client_cpu_cores") is not None]
    if client_cpu:
        rep["notes"].append(
            f"Load generator: raw asyncio HTTP/1.1 keep-alive client in its own process "
            f"(loadtests/drivers/http.py), requests pre-encoded; it used {min(client_cpu):.2f}-{max(client_cpu):.2f} "
            "CPU cores during the served runs (column 'client CPU')."
        )
    rep["targets"] = [t.__dict__ | {"verdict": t.verdict} for t in report.targets(rep)]
    markdown = report.render_markdown(rep)
    (out / "bench.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown)
    print(markdown)
    print(f"bench: wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
