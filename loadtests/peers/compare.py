"""Ours vs the peers, one server at a time, the same image and the same wrk load: one call per server.

    from loadtests.peers import compare
    row = compare.run_server("triton", model_dir, out_dir, image, connections=[1, 32], duration_s=10)
    print(compare.render_markdown([row_ours, row_triton, row_textbook]))

``run_server`` starts the server (ours via :mod:`loadtests.server`, the peers via :mod:`loadtests.peers`),
checks one request answers 200, runs wrk at each connection count, samples RSS and the server's CPU, and
always stops it. A peer that cannot run here (no ``.venv-peers``, no ``wrk``) comes back as a row with
``skipped`` set instead of raising.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..drivers import wrk
from ..procstats import cpu_seconds, rss_mb
from . import PeerError, start_textbook, start_triton

SERVERS = ("ours", "triton", "textbook")
LABELS = {
    "ours": "ours (`python -m serving`, `POST /v1/classify`)",
    "triton": "Triton 2.51 via PyTriton 0.7.0, ORT in the infer function, dynamic batching (≤ 64, 2 ms)",
    "textbook": "textbook BentoML (`@bentoml.api(batchable=True)`, 1 worker)",
}


def _cpu(procs: Sequence[Any]) -> float:
    return sum(cpu_seconds(procs).values())


def _rss_mb(procs: Sequence[Any]) -> float:
    return sum(mb for mb in map(rss_mb, procs) if mb is not None)


def measure(
    url: str,
    spec: wrk.RequestSpec,
    connections: Sequence[int],
    duration_s: float,
    warmup_s: float,
    processes: Callable[[], list[Any]],
    client_cpus: set[int] | None = None,
) -> list[dict[str, Any]]:
    """wrk at each connection count; each run also gets ``server_cpu_cores`` over its measured window
    (the warm-up is a separate wrk run, so the window is wrk's own duration)."""
    runs = []
    for c in connections:
        if warmup_s > 0:
            wrk.run_wrk(
                url, spec.path, spec.body, spec.content_type, connections=c, duration_s=warmup_s, cpus=client_cpus, headers=spec.headers
            )
        procs = processes()
        before, t0 = _cpu(procs), time.monotonic()
        r = wrk.run_wrk(
            url, spec.path, spec.body, spec.content_type, connections=c, duration_s=duration_s, cpus=client_cpus, headers=spec.headers
        )
        r["server_cpu_cores"] = (_cpu(procs) - before) / (time.monotonic() - t0)
        runs.append(r)
        print(
            f"peers: {url}{spec.path} c={c}: {r['rps']:,.0f} req/s, p50 {r['p50_ms'] or 0:.1f} ms, "
            f"p99 {r['p99_ms'] or 0:.1f} ms, errors {r['errors']}, non-2xx {r['non2xx']}, "
            f"server CPU {r['server_cpu_cores']:.2f}, wrk CPU {r['client_cpu_cores']:.2f}",
            flush=True,
        )
    return runs


def run_server(
    which: str,
    model_dir: Path,
    out_dir: Path,
    image: Any,
    connections: Sequence[int] = (1, 32),
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    *,
    home: str | None = None,
    model: str = "lstm",
    server_cpus: set[int] | None = None,
    client_cpus: set[int] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180.0,
    grpc_connections: int = 0,
    label: str | None = None,
) -> dict[str, Any]:
    """Start ``which`` (``ours``, ``triton`` or ``textbook``), measure it, stop it; one result row.

    For ``ours``, ``grpc_connections`` > 0 adds, after the ``/v1`` runs and at that many connections
    (one call in flight on each): a TF-Serving gRPC ``Predict`` run (h2load) as ``row["grpc"]``, and the
    Open Inference Protocol v2 as ``row["v2"]``: REST with JSON tensors (Triton's body), REST with the
    binary tensor extension (wrk) and gRPC ``ModelInfer`` (h2load).
    """
    if which not in SERVERS:
        raise ValueError(f"which must be one of {SERVERS}")
    row: dict[str, Any] = {"server": which, "label": label or LABELS[which], "env": extra_env or {}}
    try:
        wrk.wrk_path()
    except wrk.WrkNotFound as e:
        return row | {"skipped": str(e)}
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{which}.log"
    if which == "ours":
        from .. import server

        svc = server.launch(log, home, cpus=server_cpus, extra_env=extra_env)
        try:
            row["ready_s"] = server.wait_ready(svc, timeout=timeout)
            spec = wrk.RequestSpec("/v1/classify", wrk.ours_body(image, model))
            procs = lambda: [p for _, p in server.processes(svc)]  # noqa: E731
            row.update(_measure_one(svc.http_url, spec, connections, duration_s, warmup_s, procs, client_cpus))
            if grpc_connections:
                store_name = f"mnist-{model}"
                row["grpc"] = _measure_grpc(svc.grpc_target, image, store_name, grpc_connections, duration_s, warmup_s, procs, client_cpus)
                row["v2"] = _measure_v2(svc, image, store_name, grpc_connections, duration_s, warmup_s, procs, client_cpus)
                row["rss_mb"] = max(row["rss_mb"], _rss_mb(procs()))
                row["perf_analyzer"] = measure_perf_analyzer(
                    svc.http_url.removeprefix("http://"), svc.grpc_target, store_name, PA_MODES, (1, grpc_connections), duration_s
                )
        finally:
            server.stop(svc)
        return row
    try:
        start = start_triton if which == "triton" else start_textbook
        peer = start(model_dir, log, cpus=server_cpus, timeout=timeout)
    except PeerError as e:  # PeerUnavailable included: say why and go on
        return row | {"skipped": str(e)[:2000]}
    try:
        row["ready_s"] = peer.ready_s
        row.update(_measure_one(peer.url, peer.request(image), connections, duration_s, warmup_s, peer.processes, client_cpus))
        row["rss_by_process"] = peer.rss_by_process()
        if which == "triton" and peer.grpc_target:
            modes = tuple(m for m in PA_MODES if m != "tfserving")  # Triton serves no TF Serving API
            row["perf_analyzer"] = measure_perf_analyzer(
                peer.url.removeprefix("http://"), peer.grpc_target, peer.model_name, modes, (1, max(connections)), duration_s, "28,28"
            )
    finally:
        peer.stop()
    return row


def _measure_one(
    url: str,
    spec: wrk.RequestSpec,
    connections: Sequence[int],
    duration_s: float,
    warmup_s: float,
    processes: Callable[[], list[Any]],
    client_cpus: set[int] | None,
) -> dict[str, Any]:
    status, body = wrk.probe(url, spec)
    if status != 200:
        raise RuntimeError(f"{url}{spec.path} answered {status} to the benchmark's request: {body[:500]!r}")
    rss_ready = _rss_mb(processes())
    runs = measure(url, spec, connections, duration_s, warmup_s, processes, client_cpus)
    return {
        "url": url,
        "path": spec.path,
        "body_bytes": len(spec.body),
        "runs": runs,
        "rss_ready_mb": rss_ready,
        "rss_mb": _rss_mb(processes()),
        "processes": len(processes()),
    }


def _measure_grpc(
    target: str,
    image: Any,
    store_name: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    processes: Callable[[], list[Any]],
    client_cpus: set[int] | None,
    v2: bool = False,
) -> dict[str, Any]:
    from ..drivers import grpc, h2load

    procs = processes()
    before, t0 = _cpu(procs), time.monotonic()
    if v2:
        request, how = (
            grpc.infer_request_bytes(image, store_name),
            dict(method=grpc.INFER_METHOD, check=grpc.check_infer_response),
        )
    else:
        request, how = grpc.predict_request_bytes(image, store_name), {}
    try:
        r = h2load.run_h2grpc(target, request, connections, 1, duration_s, warmup_s, cpus=client_cpus, **how)
    except h2load.H2loadNotFound as e:
        return {"skipped": str(e)}
    r["server_cpu_cores"] = (_cpu(procs) - before) / (time.monotonic() - t0)
    print(
        f"peers: gRPC {'ModelInfer' if v2 else 'Predict'} {target} c={connections}: {r['rps']:,.0f} req/s, "
        f"p50 {r['p50_ms'] or 0:.1f} ms, p99 {r['p99_ms'] or 0:.1f} ms, errors {r['errors']}, "
        f"h2load CPU {r['client_cpu_cores']:.2f}",
        flush=True,
    )
    return r


V2_LABELS = {
    "http_json": "v2 REST, JSON tensors (`POST /v2/models/mnist-lstm/infer`, Triton's body)",
    "http_binary": "v2 REST, binary tensor extension",
    "grpc": "v2 gRPC `ModelInfer` (h2load)",
}


def _measure_v2(
    svc: Any,
    image: Any,
    store_name: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    processes: Callable[[], list[Any]],
    client_cpus: set[int] | None,
) -> dict[str, Any]:
    """Our Open Inference Protocol fronts at ``connections``: REST JSON, REST binary, gRPC."""
    specs = {
        "http_json": wrk.RequestSpec(f"/v2/models/{store_name}/infer", wrk.triton_body(image)),
        "http_binary": wrk.v2_binary_spec(image, store_name),
    }
    out: dict[str, Any] = {}
    for key, spec in specs.items():
        status, body = wrk.probe(svc.http_url, spec)
        if status != 200:
            raise RuntimeError(f"{spec.path} answered {status} to the benchmark's v2 request: {body[:500]!r}")
        (out[key],) = measure(svc.http_url, spec, [connections], duration_s, warmup_s, processes, client_cpus)
    out["grpc"] = _measure_grpc(svc.grpc_target, image, store_name, connections, duration_s, warmup_s, processes, client_cpus, v2=True)
    return out


# perf_analyzer's modes in the side-by-side (loadtests/drivers/perf_analyzer.py), for ours and for PyTriton.
PA_MODES = ("http", "grpc", "grpc-async", "grpc-streaming", "grpc-shm", "tfserving")


def measure_perf_analyzer(
    http: str,
    grpc: str,
    model: str,
    modes: Sequence[str],
    concurrencies: Sequence[int],
    duration_s: float,
    shape_without_batch: str | None = None,
) -> list[dict[str, Any]]:
    """Triton's perf_analyzer in each mode at each concurrency: infer/s, p50 and p99 (or why not).
    ``shape_without_batch``: the per-image shape for a server whose config batches (Triton's)."""
    from ..drivers import perf_analyzer

    why = perf_analyzer.unavailable()
    if why is not None:
        return [{"skipped": why}]
    shape = f"images:{shape_without_batch}" if shape_without_batch else "images:1,28,28"
    out: list[dict[str, Any]] = []
    for mode in modes:
        for c in concurrencies:
            try:
                r = perf_analyzer.run(mode, http, grpc, model, concurrency=c, measurement_ms=int(duration_s * 1000 / 3), shape=shape)
                r.pop("report")
            except perf_analyzer.PerfAnalyzerFailed as e:
                r = {"mode": mode, "concurrency": c, "skipped": str(e).strip().splitlines()[-1][:200]}
            print(f"peers: perf_analyzer {mode} c={c} {model}: {r.get('throughput', 0):,.0f} infer/s", flush=True)
            out.append(r)
    return out


def render_perf_analyzer(rows: Sequence[dict[str, Any]]) -> str:
    """perf_analyzer's figures, one line per (mode, concurrency), each server's side by side, with the ratio."""
    by_server = {row["label"]: {(r.get("mode"), r.get("concurrency")): r for r in row.get("perf_analyzer") or ()} for row in rows}
    by_server = {label: runs for label, runs in by_server.items() if runs}
    if len(by_server) < 1:
        return ""
    labels = list(by_server)
    keys = list(dict.fromkeys(k for runs in by_server.values() for k in runs if k[0] is not None))
    head = " | ".join(f"{label}: infer/s, p50 / p99 ms" for label in labels)
    lines = [f"| perf_analyzer mode | concurrency | {head} | {labels[0]} / {labels[-1]} |", "|---|--:|" + "--:|" * (len(labels) + 1)]
    for mode, c in keys:
        cells, rates = [], []
        for label in labels:
            r = by_server[label].get((mode, c))
            if r is None or r.get("skipped"):
                cells.append("—" if r is None else f"skipped: {r['skipped'][:60]}")
                rates.append(None)
                continue
            cells.append(f"{r['throughput']:,.0f}, {r['p50_us'] / 1000:.1f} / {r['p99_us'] / 1000:.1f}")
            rates.append(r["throughput"])
        ratio = f"{rates[0] / rates[-1]:.2f}x" if len(rates) > 1 and rates[0] and rates[-1] else "—"
        lines.append(f"| {mode} | {c} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines) + "\n"


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One table: a line per (server, connections)."""
    lines = [
        "| server | conns | req/s | p50 ms | p99 ms | errors / non-2xx | server CPU | wrk CPU | RSS MB (procs) | ready s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['label']} | | skipped: {row['skipped'].splitlines()[0][:120]} | | | | | | | |")
            continue
        seen: list[int] = []
        for r in row.get("runs", []):
            conns = f"{r['connections']}" + (f" (after {max(seen)})" if r["connections"] in seen else "")
            seen.append(r["connections"])
            lines.append(
                f"| {row['label']} | {conns} | {r['rps']:,.0f} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
                f"{r['errors']} / {r['non2xx']} | {r.get('server_cpu_cores', 0):.2f} | {r['client_cpu_cores']:.2f} | "
                f"{row['rss_mb']:,.0f} ({row['processes']}) | {_f(row.get('ready_s'))} |"
            )
        g = row.get("grpc")
        if g and not g.get("skipped"):
            lines.append(
                f"| {row['label']}: TF-Serving gRPC `Predict` (h2load) | {g['concurrency']} | {g['rps']:,.0f} | "
                f"{_f(g['p50_ms'])} | {_f(g['p99_ms'])} | {g['errors']} / {g['non2xx']} | "
                f"{g.get('server_cpu_cores', 0):.2f} | {g['client_cpu_cores']:.2f} | {row['rss_mb']:,.0f} ({row['processes']}) | |"
            )
        for key, r in (row.get("v2") or {}).items():
            if r.get("skipped"):
                continue
            lines.append(
                f"| {row['label']}: {V2_LABELS[key]} | {r.get('concurrency', r.get('connections'))} | {r['rps']:,.0f} | "
                f"{_f(r['p50_ms'])} | {_f(r['p99_ms'])} | {r['errors']} / {r['non2xx']} | "
                f"{r.get('server_cpu_cores', 0):.2f} | {r['client_cpu_cores']:.2f} | {row['rss_mb']:,.0f} ({row['processes']}) | |"
            )
    return "\n".join(lines) + "\n"


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"
