"""(2), (3), (5), (6): the service served, closed-loop single-image and bulk classification, the manifold, start-up and RSS."""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import promtext
from ..drivers.core import percentile
from ..drivers.http import run_http
from ..procstats import box_busy_seconds, cpu_seconds, rss_mb
from .inprocess import adjacent_inprocess


def scrape(url: str) -> promtext.Samples:
    import httpx

    return promtext.parse(httpx.get(f"{url}/metrics", timeout=10).text)


def time_manifold(url: str, model: str, requests: int, n: int = 30) -> dict[str, Any]:
    """Sequential ``GET /v1/generate/manifold`` calls (one warm-up, not counted): latency of one grid PNG."""
    import httpx

    times: list[float] = []
    errors = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(requests + 1):
            started = time.perf_counter()
            response = client.get("/v1/generate/manifold", params={"model": model, "n": n})
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code != 200 or not response.content.startswith(b"\x89PNG"):
                errors += 1
            elif i:
                times.append(elapsed)
    times.sort()
    return {
        "model": model,
        "n": n,
        "requests": len(times),
        "errors": errors,
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": times[-1] if times else None,
    }


def served_run(
    url: str,
    store_name: str,
    model: str,
    concurrency: int,
    args: argparse.Namespace,
    server_procs: Sequence[Any],
    client_cpus: set[int] | None,
    profile_dir: Path | None = None,
    worker_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """One closed-loop run of (2); with ``profile_dir``, py-spy records every HTTP worker during the window."""
    from .. import profiling

    marks: dict[str, Any] = {}
    spies: list[tuple[subprocess.Popen, Path]] = []

    def on_window(event: str) -> None:
        marks[event] = (time.perf_counter(), scrape(url), cpu_seconds(server_procs))
        marks[event + "_box"] = box_busy_seconds()
        if event == "window_start" and profile_dir:
            for pid in worker_pids:
                path = profile_dir / f"worker-{pid}-profile-c{concurrency}.txt"
                spies.append((profiling.record(pid, args.duration - 1, path), path))

    result = run_http(url, "classify", model, concurrency, args.warmup, args.duration, args.data_dir, client_cpus, on_window)
    lines: list[str] = []
    for proc, path in spies:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0 or not path.exists():
            result["profile_error"] = err.decode(errors="replace")[-500:]
        else:
            lines += path.read_text().splitlines()
    if lines:
        total, counts = profiling.categorize(lines)
        result["profile"] = {
            "files": [str(p) for _, p in spies],
            "samples": total,
            "seconds": args.duration - 1,
            "rate": 100,
            "workers": len(spies),
            "categories": dict(counts.most_common()),
        }
    (t0, m0, c0), (t1, m1, c1) = marks["window_start"], marks["window_end"]
    batch = promtext.histogram_delta(m0, m1, "model_batch_size", {"model": store_name})
    adaptive = promtext.histogram_delta(m0, m1, "bentoml_service_adaptive_batch_size", {"method_name": "predict_items"})
    by_pid = {pid: (c1[pid] - c0[pid]) / (t1 - t0) for pid in c1 if pid in c0}
    result.update(
        mean_batch=batch.mean,
        batches=batch.count,
        mean_adaptive_batch=adaptive.mean,
        server_cpu_cores=sum(by_pid.values()),
        box_cpu_cores=(marks["window_end_box"] - marks["window_start_box"]) / (t1 - t0),
        worker_cpu_cores=[by_pid[pid] for pid in worker_pids if pid in by_pid],
    )
    print(
        f"bench: (2) c={concurrency}: {result['rps']:,.0f} req/s, p50 {result['p50_ms'] or 0:.1f} ms, "
        f"p99 {result['p99_ms'] or 0:.1f} ms, errors {result['errors']}, mean batch {batch.mean or 0:.2f}, "
        f"server CPU {result['server_cpu_cores']:.2f}, client CPU {result['client_cpu_cores']:.2f}",
        flush=True,
    )
    return result


def bench_service(
    args: argparse.Namespace, rep: dict[str, Any], registry: Any, server_cpus: set[int] | None, client_cpus: set[int] | None, out: Path
) -> None:
    """(2), (3), (5) and (6) against one launch of the service."""
    from .. import server
    from ..workload import Catalog

    svc = server.launch(out / "server.log", args.home, cpus=server_cpus, extra_env=args.server_env)
    try:
        rep["ready_s"] = server.wait_ready(svc, timeout=args.ready_timeout)
        print(f"bench: (6) launch to ready {rep['ready_s']:.1f}s", flush=True)
        procs = server.processes(svc)
        rss: dict[str, dict[int, float | None]] = {}

        def sample_rss(phase: str) -> None:
            rss[phase] = {p.pid: rss_mb(p) for _, p in procs}

        sample_rss("ready")
        catalog = Catalog.fetch(svc.http_url)
        rep["served_provider"] = sorted({m.get("provider") or "?" for m in catalog.entries})
        model = rep["model"]
        store_name = catalog.store_name(model)
        all_procs = [p for _, p in procs]
        workers = [p.pid for role, p in procs if role == "HTTP worker"]
        top = max(args.concurrency)
        rep["served"] = [
            served_run(svc.http_url, store_name, model, c, args, all_procs, client_cpus, out if args.py_spy and c == top else None, workers)
            for c in args.concurrency
        ]
        sample_rss("after (2)")

        marks: dict[str, Any] = {}
        bulk = run_http(
            svc.http_url,
            "bulk",
            model,
            1,
            args.warmup,
            args.duration,
            args.data_dir,
            client_cpus,
            lambda e: marks.__setitem__(e, scrape(svc.http_url)),
        )
        sample_rss("after (3)")
        images_per_s = bulk["rps"] * 1024
        inproc = next((r for r in rep.get("inprocess", []) if r["model"] == store_name), None)
        table_base = inproc["batches"].get("1024", {}).get("images_per_s") if inproc else None
        # The same in-process figure again, right now and on the server's CPUs: the shared machine's load
        # drifts within minutes, and the ratio should compare like with like.
        adjacent = adjacent_inprocess(registry, store_name, server_cpus, args.inprocess_seconds * 4) if registry else None
        base = adjacent or table_base
        rep["bulk"] = {
            **bulk,
            "images_per_s": images_per_s,
            "inprocess_images_per_s": base,
            "inprocess_table_images_per_s": table_base,
            "ratio_to_inprocess": images_per_s / base if base else None,
            "mean_batch": promtext.histogram_delta(
                marks["window_start"], marks["window_end"], "model_batch_size", {"model": store_name}
            ).mean,
        }
        print(f"bench: (3) bulk {images_per_s:,.0f} images/s" + (f" = {images_per_s / base:.0%} of in-process" if base else ""), flush=True)

        if catalog.manifold_model:
            manifold = time_manifold(svc.http_url, catalog.manifold_model, args.manifold_requests)
            rep["manifold"]["served"] = manifold
            print(f"bench: (5) manifold p50 {manifold['p50_ms']:.1f} ms, p99 {manifold['p99_ms']:.1f} ms", flush=True)
        sample_rss("after (5)")
        rep["processes"] = [
            {
                "role": role,
                "pid": p.pid,
                "rss_ready_mb": rss["ready"].get(p.pid),
                "rss_mb": rss_mb(p),
                "rss_by_phase_mb": {phase: values.get(p.pid) for phase, values in rss.items()},
            }
            for role, p in procs
        ]
        rep["decoder_dir"] = (
            str(registry.runtimes[catalog.store_name(catalog.manifold_model)].path) if catalog.manifold_model and registry else None
        )
    finally:
        server.stop(svc)
