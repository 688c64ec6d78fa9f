"""``python -m loadtests.bench``: in-process vs served vs the peers and the seed-style baseline, one run, one machine.

Measures (1) ONNX Runtime in-process per model and batch size, (2) served single-image
``POST /v1/classify`` at 1/8/32 closed-loop clients with the batch sizes the service's
``/metrics`` saw, (3) bulk ``.npy`` classification, (4) the Keras ``model.predict``-per-request
baseline at the same concurrency, (5) the 30x30 manifold served vs the seed's 900-call loop
(a measured sample, extrapolated), (6) launch-to-ready and RSS per server process, (7) side by side with
Triton (PyTriton) and the textbook BentoML service on the same model file and request (wrk; our TF-Serving
gRPC ``Predict`` with h2load), including one-connection latency on a fresh server and after the 32-connection run.
Writes ``bench.md`` and ``bench.json`` to ``results/bench-<timestamp>/`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import promtext, report
from .server import REPO, free_port
from .workload import default_data_dir

MB = 1024 * 1024


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_names() -> list[str]:
    """``nvidia-smi -L`` lines, or [] when there is no NVIDIA GPU/driver."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def code_state() -> str:
    """``git describe --always --dirty`` of the checkout, plus the serving/ files that differ from it."""

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    described = git("describe", "--always", "--dirty") or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "serving").splitlines()]
    return described + (f" (uncommitted: {', '.join(changed)})" if changed else "")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def placements(mode: str) -> tuple[set[int] | None, set[int] | None, str]:
    """CPU sets for (server, client) and a sentence saying what was done."""
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "split" and len(cpus) >= 2:
        client, server = {cpus[0]}, set(cpus[1:])
        return (
            server,
            client,
            (
                f"server (every process) and in-process runs pinned to CPU {sorted(server)}, "
                f"load generator pinned to CPU {sorted(client)} (os.sched_setaffinity)"
            ),
        )
    return None, None, f"no pinning: server, load generator and in-process runs share CPUs {cpus}"


# ---------------------------------------------------------------- (1) in-process


def inputs_for(rt: Any, rows: int, images01: Any) -> Any:
    """``rows`` inputs of ``rt``'s shape: real test images for image inputs, N(0, 1) points for latents."""
    import numpy as np

    shape = rt.row_shape
    if len(shape) >= 2:
        reps = -(-rows // len(images01))
        x = np.concatenate([images01] * reps)[:rows]
        return np.ascontiguousarray(x.reshape(rows, *shape), dtype=np.float32)
    return np.random.default_rng(0).standard_normal((rows, *shape), dtype=np.float32)


def time_runtime(rt: Any, x: Any, min_seconds: float, min_calls: int = 3) -> dict[str, float]:
    """Images/s and ms per call of ``rt.predict_all`` on ``x`` (after two warm-up calls)."""
    for _ in range(2):
        rt.predict_all(x)
    calls, started = 0, time.perf_counter()
    while True:
        rt.predict_all(x)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and calls >= min_calls:
            break
    return {"images_per_s": calls * len(x) / elapsed, "ms_per_call": elapsed * 1000.0 / calls, "calls": calls}


def measure_inprocess(batches: Sequence[int], min_seconds: float, images01: Any, cpus: set[int] | None) -> tuple[list[dict[str, Any]], Any]:
    """(1): every stored model through serving.runtime's Registry, the same code and settings as the server."""
    from serving.lifecycle import registry_from_store
    from serving.settings import Settings

    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        registry = registry_from_store(Settings.from_env())
        registry.load_all()
        rows = []
        for name in sorted(registry.runtimes):
            rt = registry.runtimes[name]
            cells = {str(b): time_runtime(rt, inputs_for(rt, b, images01), min_seconds) for b in batches}
            rows.append({"model": name, "task": rt.task, "provider": rt.provider, "batches": cells})
            print(f"bench: (1) {name}: " + ", ".join(f"b{b} {c['images_per_s']:,.0f}/s" for b, c in cells.items()), flush=True)
        return rows, registry
    finally:
        os.sched_setaffinity(0, before)


# ---------------------------------------------------------------- load generator and server probes


def run_loadgen(
    url: str,
    kind: str,
    model: str | None,
    concurrency: int,
    warmup: float,
    duration: float,
    data_dir: str,
    cpus: set[int] | None,
    on_window: Any = None,
) -> dict[str, Any]:
    """One loadgen process; ``on_window(start|end)`` is called when its measured window opens and closes."""
    cmd = [
        sys.executable,
        "-m",
        "loadtests.loadgen",
        "--url",
        url,
        "--kind",
        kind,
        "-c",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--data-dir",
        data_dir,
    ]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    )
    result: dict[str, Any] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") in ("window_start", "window_end") and on_window:
            on_window(event["event"])
        elif "rps" in event:
            result = event
    if proc.wait() != 0 or not result:
        raise RuntimeError(f"loadgen {kind} c={concurrency} failed with status {proc.returncode}")
    return result


def scrape(url: str) -> promtext.Samples:
    import httpx

    return promtext.parse(httpx.get(f"{url}/metrics", timeout=10).text)


def cpu_seconds(procs: Sequence[Any]) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process, by pid."""
    out: dict[int, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except Exception:  # a process that went away counts nothing
            pass
    return out


def box_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, summed over cores (psutil.cpu_times)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def rss_mb(proc: Any) -> float | None:
    try:
        return proc.memory_info().rss / MB
    except Exception:
        return None


# ---------------------------------------------------------------- the run


def time_manifold(url: str, model: str, requests: int, n: int = 30) -> dict[str, Any]:
    """Sequential ``GET /v1/generate/manifold`` calls (one warm-up, not counted): latency of one grid PNG."""
    import httpx

    from .loadgen import percentile

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


def adjacent_inprocess(registry: Any, store_name: str, cpus: set[int] | None, seconds: float) -> float | None:
    """In-process images/s of one model at batch 1,024, measured now on ``cpus``."""
    import numpy as np

    rt = registry.runtimes.get(store_name)
    if rt is None or not rt.ready:
        return None
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        rows = np.random.default_rng(0).random((1024, *rt.row_shape), dtype=np.float32)
        return time_runtime(rt, rows, seconds)["images_per_s"]
    finally:
        os.sched_setaffinity(0, before)


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
    from . import profiling

    marks: dict[str, Any] = {}
    spies: list[tuple[subprocess.Popen, Path]] = []

    def on_window(event: str) -> None:
        marks[event] = (time.perf_counter(), scrape(url), cpu_seconds(server_procs))
        marks[event + "_box"] = box_busy_seconds()
        if event == "window_start" and profile_dir:
            for pid in worker_pids:
                path = profile_dir / f"worker-{pid}-profile-c{concurrency}.txt"
                spies.append((profiling.record(pid, args.duration - 1, path), path))

    result = run_loadgen(url, "classify", model, concurrency, args.warmup, args.duration, args.data_dir, client_cpus, on_window)
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
    from . import server
    from .workload import Catalog

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
        bulk = run_loadgen(
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


def bench_baseline(
    args: argparse.Namespace, rep: dict[str, Any], model_dir: Path, server_cpus: set[int] | None, client_cpus: set[int] | None, out: Path
) -> None:
    import httpx
    import psutil

    if not (model_dir / "saved_model").is_dir():
        rep["baseline"] = {"skipped": f"{model_dir} has no saved_model/"}
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (out / "baseline.log").open("wb")
    launched = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.baseline_server", "serve", "--model-dir", str(model_dir), "--port", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
    )
    try:
        deadline = launched + args.ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the baseline server exited with {proc.returncode}; see {out / 'baseline.log'}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the baseline server did not come up") from None
            time.sleep(0.1)
        ready_s = time.monotonic() - launched
        runs = []
        for c in args.concurrency:
            r = run_loadgen(url, "classify", rep["model"], c, args.baseline_warmup, args.baseline_duration, args.data_dir, client_cpus)
            runs.append(r)
            print(
                f"bench: (4) baseline c={c}: {r['rps']:.1f} req/s, p50 {r['p50_ms'] or 0:.0f} ms, p99 {r['p99_ms'] or 0:.0f} ms, "
                f"errors {r['errors']}",
                flush=True,
            )
        rep["baseline"] = {"runs": runs, "ready_s": ready_s, "rss_mb": rss_mb(psutil.Process(proc.pid)), "model_dir": str(model_dir)}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
    from .peers import compare
    from .workload import mnist_test_images

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


def seed_loop(args: argparse.Namespace, decoder_dir: Path, server_cpus: set[int] | None) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.baseline_server",
            "seed-manifold",
            "--model-dir",
            str(decoder_dir),
            "--calls",
            str(args.seed_calls),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seed-manifold failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m loadtests.bench``."""
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
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

    from .workload import mnist_test_images

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
        from serving.lifecycle import registry_from_store
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
            f"(loadtests/loadgen.py), requests pre-encoded; it used {min(client_cpu):.2f}-{max(client_cpu):.2f} "
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
