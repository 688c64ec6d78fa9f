"""The benchmark's report: targets with PASS/MISS, and Markdown tables. Pure functions over the bench's dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BATCHES = (1, 8, 64, 1024)


@dataclass(frozen=True)
class Target:
    """One stated target and how this run measured against it."""

    name: str
    wanted: str
    measured: float | None
    shown: str
    ok: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "MISS")


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number for a table cell; ``-`` for missing."""
    if value is None:
        return "-"
    if abs(value) >= 100 and digits > 0:
        digits = 0
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one letter per column (l/r), default: first left, rest right."""
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
        raise ValueError("every row and the alignment need one entry per header")
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _at(rows: Sequence[dict[str, Any]], key: str, value: Any) -> dict[str, Any] | None:
    return next((r for r in rows if r.get(key) == value), None)


def _check(name: str, wanted: str, measured: float | None, shown: Callable[[float], str], ok: Callable[[float], bool]) -> Target:
    if measured is None:
        return Target(name, wanted, None, "not measured", None)
    return Target(name, wanted, measured, shown(measured), ok(measured))


def targets(report: dict[str, Any]) -> list[Target]:
    """The issue's targets for a 2-core CPU box, judged on ``report`` (the bench's JSON)."""
    served = report.get("served", [])
    at32 = _at(served, "concurrency", 32) or {}
    base32 = _at(report.get("baseline", {}).get("runs", []), "concurrency", 32) or {}
    bulk = report.get("bulk", {})
    manifold = report.get("manifold", {}).get("served", {})
    worker_rss = [p["rss_mb"] for p in report.get("processes", []) if p.get("role") == "HTTP worker"]
    errors = sum(int(r.get("errors") or 0) for r in served)
    ratio = at32.get("rps") / base32["rps"] if at32.get("rps") and base32.get("rps") else None
    return [
        *_peer_targets(report),
        _check("(2) served req/s at 32 clients", ">= 1,000", at32.get("rps"), lambda v: fmt(v), lambda v: v >= 1000),
        _check("(2) served p99 at 32 clients", "<= 50 ms", at32.get("p99_ms"), lambda v: fmt(v, 1, " ms"), lambda v: v <= 50),
        _check("(2) mean batch size at 32 clients", "> 1", at32.get("mean_batch"), lambda v: fmt(v, 2), lambda v: v > 1),
        _check("(2) errors over all served runs", "0", float(errors) if served else None, lambda v: fmt(v, 0), lambda v: v == 0),
        _check("(2) / (4) at 32 clients", ">= 30x", ratio, lambda v: fmt(v, 1, "x"), lambda v: v >= 30),
        _check("(3) bulk / in-process at 1,024", ">= 90%", bulk.get("ratio_to_inprocess"), lambda v: f"{v:.0%}", lambda v: v >= 0.9),
        _check("(5) 30x30 manifold PNG, served p50", "<= 100 ms", manifold.get("p50_ms"), lambda v: fmt(v, 1, " ms"), lambda v: v <= 100),
        _check("(6) launch to ready", "<= 15 s", report.get("ready_s"), lambda v: fmt(v, 1, " s"), lambda v: v <= 15),
        _check(
            "(6) HTTP worker RSS (max over workers)",
            "<= 500 MB",
            max(worker_rss) if worker_rss else None,
            lambda v: fmt(v, 0, " MB"),
            lambda v: v <= 500,
        ),
    ]


def _peer(report: dict[str, Any], server: str, plain: bool = True) -> dict[str, Any]:
    """The side-by-side row of ``server`` (``plain``: ours without extra environment)."""
    for row in report.get("peers", []):
        if row.get("server") == server and not row.get("skipped") and (not plain or not row.get("env")):
            return row
    return {}


def _runs(row: dict[str, Any], connections: int) -> list[dict[str, Any]]:
    return [r for r in row.get("runs", []) if r.get("connections") == connections]


def _peer_targets(report: dict[str, Any]) -> list[Target]:
    """The engine issue's targets, as ratios to the peers measured in the same run (section (7))."""
    ours, triton = _peer(report, "ours"), _peer(report, "triton")
    top = max((r["connections"] for r in ours.get("runs", [])), default=32)
    o32, t32 = (_runs(ours, top) or [{}])[0], (_runs(triton, top) or [{}])[0]
    singles = _runs(ours, 1)
    fresh, after = (singles + [{}, {}])[0], (singles + [{}, {}])[1]
    grpc = ours.get("grpc") or {}
    rps_ratio = o32["rps"] / t32["rps"] if o32.get("rps") and t32.get("rps") else None
    p99_ratio = o32["p99_ms"] / t32["p99_ms"] if o32.get("p99_ms") and t32.get("p99_ms") else None
    grpc_rps = grpc["rps"] / o32["rps"] if grpc.get("rps") and o32.get("rps") else None
    grpc_p99 = grpc["p99_ms"] / o32["p99_ms"] if grpc.get("p99_ms") and o32.get("p99_ms") else None
    return [
        _check(f"(7) HTTP req/s at {top} connections / Triton's", ">= 1.25x", rps_ratio, lambda v: fmt(v, 2, "x"), lambda v: v >= 1.25),
        _check(f"(7) HTTP p99 at {top} connections / Triton's", "<= 1.00x", p99_ratio, lambda v: fmt(v, 2, "x"), lambda v: v <= 1.0),
        _check("(7) 1 connection p50, fresh server", "<= 1.5 ms", fresh.get("p50_ms"), lambda v: fmt(v, 2, " ms"), lambda v: v <= 1.5),
        _check(
            f"(7) 1 connection p50, after the {top}-connection run",
            "<= 1.5 ms",
            after.get("p50_ms"),
            lambda v: fmt(v, 2, " ms"),
            lambda v: v <= 1.5,
        ),
        _check(f"(7) gRPC Predict req/s at {top} / HTTP's", ">= 0.8x", grpc_rps, lambda v: fmt(v, 2, "x"), lambda v: v >= 0.8),
        _check(f"(7) gRPC Predict p99 at {top} / HTTP's", "<= 2x", grpc_p99, lambda v: fmt(v, 2, "x"), lambda v: v <= 2.0),
        _check(
            "(7) RSS of all server processes (max over the runs)",
            "<= 600 MB",
            ours.get("rss_mb"),
            lambda v: fmt(v, 0, " MB"),
            lambda v: v <= 600,
        ),
        _check("(7) launch to ready", "<= 10 s", ours.get("ready_s"), lambda v: fmt(v, 1, " s"), lambda v: v <= 10),
        *_fast_path_targets(ours, triton, top, o32, t32),
    ]


def _pa(row: dict[str, Any], mode: str, concurrency: int) -> dict[str, Any]:
    """One perf_analyzer run of a side-by-side row ({} when missing or skipped)."""
    for r in row.get("perf_analyzer") or ():
        if r.get("mode") == mode and r.get("concurrency") == concurrency and not r.get("skipped"):
            return dict(r)
    return {}


def _fast_path_targets(ours: dict[str, Any], triton: dict[str, Any], top: int, o32: dict[str, Any], t32: dict[str, Any]) -> list[Target]:
    """The gRPC fast-path issue's goals, from perf_analyzer's rows of this run (and wrk's /v1 rows)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    g, h, tg = _pa(ours, "grpc", top), _pa(ours, "http", top), _pa(triton, "grpc", top)
    g1, h1, tf = _pa(ours, "grpc", 1), _pa(ours, "http", 1), _pa(ours, "tfserving", top)
    x = lambda v: fmt(v, 2, "x")  # noqa: E731
    return [
        _check(
            f"(7) v2 gRPC infer/s at {top} / our v2 HTTP (perf_analyzer)",
            ">= 1.15x",
            ratio(g.get("throughput"), h.get("throughput")),
            x,
            lambda v: v >= 1.15,
        ),
        _check(
            f"(7) v2 gRPC infer/s at {top} / Triton's gRPC",
            ">= 1.5x",
            ratio(g.get("throughput"), tg.get("throughput")),
            x,
            lambda v: v >= 1.5,
        ),
        _check(
            f"(7) v2 gRPC p99 at {top} / Triton's gRPC p99", "<= 1.00x", ratio(g.get("p99_us"), tg.get("p99_us")), x, lambda v: v <= 1.0
        ),
        _check("(7) v2 gRPC p50 at 1 / our v2 HTTP p50", "<= 0.6x", ratio(g1.get("p50_us"), h1.get("p50_us")), x, lambda v: v <= 0.6),
        _check(
            f"(7) TF Serving Predict infer/s at {top} / our v2 HTTP",
            ">= 1.00x",
            ratio(tf.get("throughput"), h.get("throughput")),
            x,
            lambda v: v >= 1.0,
        ),
        _check(f"(7) /v1 HTTP req/s at {top} / Triton's (wrk)", ">= 2x", ratio(o32.get("rps"), t32.get("rps")), x, lambda v: v >= 2.0),
        _check(
            "(7) RSS of all server processes / Triton's", "<= 2x", ratio(ours.get("rss_mb"), triton.get("rss_mb")), x, lambda v: v <= 2.0
        ),
    ]


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown: header, one table per part, the targets."""
    m = report.get("machine", {})
    out = [f"# Benchmark {report.get('started', '')}", ""]
    out.append(
        f"Machine: {m.get('cores', '?')} cores ({m.get('cpu_model', '?')}), GPU: {m.get('gpu') or 'none'}, "
        f"ONNX Runtime provider: {m.get('ort_provider', '?')} in-process, {m.get('ort_provider_served', '?')} served (onnxruntime {m.get('onnxruntime', '?')}, bentoml {m.get('bentoml', '?')}, "
        f"Python {m.get('python', '?')})."
    )
    load = report.get("load_average", {})
    if load:
        out.append(f"Load average (1/5/15 min): before {load.get('before')}, after {load.get('after')}.")
    out.append(
        f"Store: `{report.get('store', '?')}`; served model for (2)-(4): `{report.get('model', '?')}`; code: {report.get('code', '?')}."
    )
    if report.get("placement"):
        out.append(f"Placement: {report['placement']}.")
    if report.get("server_env"):
        out.append("Server environment: " + ", ".join(f"`{k}={v}`" for k, v in report["server_env"].items()) + ".")
    out.append("")

    inproc = report.get("inprocess", [])
    if inproc:
        out += ["## (1) In-process ONNX Runtime (serving.runtime.ModelRuntime), images/s (ms per call)", ""]
        rows = []
        for r in inproc:
            cells = []
            for b in BATCHES:
                cell = r.get("batches", {}).get(str(b))
                cells.append(f"{fmt(cell['images_per_s'], 0)} ({fmt(cell['ms_per_call'], 2)})" if cell else "-")
            rows.append([r["model"], *cells])
        out += [markdown_table(["model", *(f"batch {b}" for b in BATCHES)], rows), ""]

    served = report.get("served", [])
    if served:
        out += ["## (2) Served single-image classification, `POST /v1/classify`", ""]
        rows = [
            [
                r["concurrency"],
                fmt(r.get("rps")),
                fmt(r.get("p50_ms"), 1),
                fmt(r.get("p99_ms"), 1),
                r.get("errors", 0),
                fmt(r.get("mean_batch"), 2),
                fmt(r.get("mean_adaptive_batch"), 2),
                fmt(r.get("server_cpu_cores"), 2),
                " + ".join(fmt(c, 2) for c in r.get("worker_cpu_cores") or []) or "-",
                fmt(r.get("client_cpu_cores"), 2),
                fmt(r.get("box_cpu_cores"), 2),
            ]
            for r in served
        ]
        out += [
            markdown_table(
                [
                    "clients",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "mean batch (model_batch_size)",
                    "mean batch (bentoml adaptive)",
                    "server CPU (cores)",
                    "of which HTTP workers",
                    "client CPU (cores)",
                    "whole machine busy (cores)",
                ],
                rows,
            ),
            "",
        ]

    bulk = report.get("bulk", {})
    if bulk:
        out += ["## (3) Bulk classification, 1,024 images per `POST /v1/classify/batch`", ""]
        out += [
            markdown_table(
                [
                    "images/s served",
                    "p50 ms per request",
                    "in-process images/s at 1,024 (measured right after)",
                    "in-process, table (1)",
                    "served / in-process",
                ],
                [
                    [
                        fmt(bulk.get("images_per_s"), 0),
                        fmt(bulk.get("p50_ms"), 1),
                        fmt(bulk.get("inprocess_images_per_s"), 0),
                        fmt(bulk.get("inprocess_table_images_per_s"), 0),
                        f"{bulk['ratio_to_inprocess']:.0%}" if bulk.get("ratio_to_inprocess") else "-",
                    ]
                ],
                "rrrrr",
            ),
            "",
        ]

    baseline = report.get("baseline", {})
    if baseline.get("runs"):
        out += ["## (4) Baseline: Keras `model.predict` per request in a ThreadingHTTPServer (`loadtests/baseline_server.py`)", ""]
        ours = {r["concurrency"]: r for r in served}
        rows = []
        for r in baseline["runs"]:
            mine = ours.get(r["concurrency"], {})
            ratio = mine.get("rps") / r["rps"] if mine.get("rps") and r.get("rps") else None
            rows.append(
                [
                    r["concurrency"],
                    fmt(r.get("rps")),
                    fmt(r.get("p50_ms"), 1),
                    fmt(r.get("p99_ms"), 1),
                    r.get("errors", 0),
                    fmt(ratio, 1, "x"),
                ]
            )
        out += [markdown_table(["clients", "req/s", "p50 ms", "p99 ms", "errors", "ours / baseline"], rows), ""]
        if baseline.get("ready_s") is not None:
            out += [f"Baseline launch to ready: {fmt(baseline['ready_s'], 1)} s; RSS {fmt(baseline.get('rss_mb'), 0)} MB.", ""]
    elif baseline.get("skipped"):
        out += [f"## (4) Baseline: not measured ({baseline['skipped']})", ""]

    manifold = report.get("manifold", {})
    if manifold:
        out += ["## (5) 30x30 latent manifold", ""]
        rows = []
        s = manifold.get("served")
        if s:
            rows.append(
                [
                    "served `GET /v1/generate/manifold?n=30` (one batched decode + PNG)",
                    fmt(s.get("p50_ms"), 1),
                    fmt(s.get("p99_ms"), 1),
                    f"{s.get('requests', 0)} requests",
                ]
            )
        seed = manifold.get("seed_loop")
        if seed:
            rows.append(
                [
                    f"seed loop: 900 x `decoder.predict` (EXTRAPOLATED from {seed['calls_measured']} measured calls)",
                    fmt(seed["extrapolated_ms"], 0),
                    "-",
                    f"{fmt(seed['ms_per_call'], 1)} ms per call",
                ]
            )
        elif manifold.get("seed_skipped"):
            rows.append([f"seed loop: not measured ({manifold['seed_skipped']})", "-", "-", "-"])
        out += [markdown_table(["what", "p50 ms", "p99 ms", "note"], rows, "lrrl"), ""]

    procs = report.get("processes", [])
    if procs or report.get("ready_s") is not None:
        out += ["## (6) Start-up and memory", ""]
        out += [
            f"Launch (`python -m serving`) to ready (HTTP `/readyz` 200 and gRPC health SERVING): {fmt(report.get('ready_s'), 1)} s.",
            "",
        ]
        if procs:
            phases = list(procs[0].get("rss_by_phase_mb") or {"ready": None})
            rows = [
                [p["role"], p["pid"], *(fmt((p.get("rss_by_phase_mb") or {}).get(ph, p.get("rss_ready_mb")), 0) for ph in phases)]
                for p in procs
            ]
            out += [markdown_table(["process", "pid", *(f"RSS MB {ph}" for ph in phases)], rows), ""]

    peers = report.get("peers", [])
    if peers:
        from ..peers.compare import render_markdown as peers_table

        out += [
            "## (7) Side by side: the same model file and single-image request, one server at a time",
            "",
            "HTTP load from wrk (1 thread, keep-alive connections, closed loop); our gRPC from h2load (one call in flight "
            "per connection). Each server runs alone on the same CPUs.",
            "",
            peers_table(peers),
        ]
        from ..peers.compare import render_perf_analyzer

        pa = render_perf_analyzer([p for p in peers if p.get("perf_analyzer")])
        if pa:
            out += [
                "",
                "Triton's perf_analyzer against ours and PyTriton (one 28x28 image of zeros per request; `--shared-memory system` "
                "for grpc-shm; ratio = ours / PyTriton):",
                "",
                pa,
            ]

    profiled = [r for r in served if r.get("profile")]
    for r in profiled:
        prof = r["profile"]
        total = prof["samples"]
        files = ", ".join(f"`{Path(f).name}`" for f in prof.get("files", []))
        out += [
            f"## Where the HTTP workers' CPU goes at {r['concurrency']} clients (py-spy)",
            "",
            f"{total} on-CPU samples from {prof.get('workers', 1)} worker(s) in {prof['seconds']:.0f} s at "
            f"{prof['rate']} Hz, all threads (raw stacks: {files}).",
            "",
        ]
        rows = [[name, f"{n / total:.1%}"] for name, n in prof["categories"].items()] if total else []
        out += [markdown_table(["where", "share of samples"], rows), ""]

    out += ["## Targets (2-core CPU box)", ""]
    out += [
        markdown_table(
            ["target", "wanted", "measured", "verdict"], [[t.name, t.wanted, t.shown, t.verdict] for t in targets(report)], "llrl"
        ),
        "",
    ]
    notes = report.get("notes", [])
    if notes:
        out += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)
