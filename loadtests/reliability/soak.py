"""A paced soak below capacity: no errors, p99 as flat at the end as after warm-up, RSS flat.

One run per (sender, model) of the plan: h2load (C, little client CPU: the latencies are the server's)
and the Python paced sender (:func:`loadtests.drivers.http.paced`), which must show it kept pace for
its figures to count as the server's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..drivers import h2load, http
from ..drivers.core import Outcome
from ..server import processes
from .capacity import capacity
from .target import Plan, Target, pct

WINDOW_S = 30.0  # the printed p99 per window, over the whole run (the verdict uses 4 windows after warm-up)


def soak_probe(t: Target, plan: Plan, rps: float) -> None:
    """Every (sender, model) of ``plan``, each paced at ``plan.soak_load`` of the capacity measured with a
    closed loop of its own kind: wrk for h2load (``rps``, for ``lstm``), the Python loop for the Python
    sender. Paced at 80 % of wrk's figure, the Python sender's own CPU (about 0.25 of 2 cores) left the
    box 99 % busy: an overload, not a soak."""
    for model in plan.soak_models:
        for sender in plan.soak_senders:
            full = rps if (model, sender) == ("lstm", "h2load") else capacity(t, plan, model, python=sender == "python")
            soak_run(t, plan, plan.soak_load * full, sender, model)


@dataclass(frozen=True)
class Sample:
    """One second of the soak as the box saw it."""

    at: float  # seconds since the run started
    rss_mb: float  # the HTTP workers' RSS, summed
    busy: float  # share of the box's CPU time not idle over the last second (steal included), 0..1
    steal: float  # share taken by the hypervisor for other guests
    workers: tuple[tuple[float, int], ...]  # per HTTP worker: CPU cores used, established connections on its port


class Sampler(threading.Thread):
    """Samples the box and each HTTP worker once a second while the soak runs (psutil, /proc/stat)."""

    def __init__(self, t: Target) -> None:
        super().__init__(daemon=True)
        import psutil

        self.t, self.psutil = t, psutil
        self.workers = [p for role, p in processes(t.service) if role == "HTTP worker"]
        self.samples: list[Sample] = []
        self.halt = threading.Event()
        self.started = time.time()

    def run(self) -> None:
        ps = self.psutil
        last_box, last_cpu = ps.cpu_times(), [self._cpu(p) for p in self.workers]
        while not self.halt.wait(1.0):
            box, cpu = ps.cpu_times(), [self._cpu(p) for p in self.workers]
            spent = {k: getattr(box, k) - getattr(last_box, k) for k in box._fields}
            total = sum(spent.values()) or 1e-9
            idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
            workers = tuple((max(0.0, c - lc), self._connections(p)) for p, c, lc in zip(self.workers, cpu, last_cpu))
            self.samples.append(
                Sample(time.time() - self.started, self.t.rss_mb(), 1 - idle / total, spent.get("steal", 0.0) / total, workers)
            )
            last_box, last_cpu = box, cpu

    def stop(self) -> list[Sample]:
        self.halt.set()
        self.join(5)
        return self.samples

    def _cpu(self, p: Any) -> float:
        try:
            c = p.cpu_times()
            return float(c.user + c.system)
        except self.psutil.Error:
            return 0.0

    def _connections(self, p: Any) -> int:
        try:
            return sum(1 for c in p.net_connections("tcp") if c.status == "ESTABLISHED" and c.laddr.port == self.t.port)
        except self.psutil.Error:
            return -1


def soak_run(t: Target, plan: Plan, rate: float, sender: str, model: str) -> None:
    seconds = plan.soak_minutes * 60.0
    warmup = min(30.0, seconds * 0.25)
    sampler = Sampler(t)
    # at most ~20 requests/s per connection, so each h2load run in the chain lasts seconds (see loadtests.drivers.h2load.paced)
    clients = max(plan.connections, int(rate // 20) + 1)
    client: http.PacedClient | None = None
    sampler.start()
    if sender == "python":
        origin = time.monotonic()
        # h2load holds a late request back on its connection; this sender opens another (up to 4x), so a
        # slow answer does not delay the next send (an error only when even those are all busy)
        requests = t.classify_requests(model=model)
        outcomes, client = asyncio.run(http.paced(t.port, requests, rate, seconds, max_connections=4 * clients))
    else:  # h2load's clock: seconds since the epoch
        origin = time.time()
        outcomes, _ = h2load.paced(t.url, "/v1/classify", t.classify_body(model=model), rate, seconds, clients=clients)
    samples = sampler.stop()
    runs = [Outcome(o.started - origin, o.seconds, o.status, o.kind) for o in outcomes]  # started: seconds into the run
    label = f"soak at {plan.soak_load:.0%} for {plan.soak_minutes:g} min ({sender}, {model})"
    print(f"  {label}, per {WINDOW_S:.0f} s:", flush=True)
    for line in window_lines(runs, samples, seconds):
        print(f"    {line}", flush=True)
    errors = [o for o in runs if o.status != 200]
    measured = [o for o in runs if o.started >= warmup and o.status == 200]
    windows = 4
    span = (seconds - warmup) / windows
    p99s = [pct([o.seconds for o in measured if lo <= o.started < lo + span], 99) for lo in (warmup + w * span for w in range(windows))]
    first, last = p99s[0], p99s[-1]
    slack_ms = plan.p99_slack_ms
    after_warmup = [s.rss_mb for s in samples if s.at >= warmup]
    growth = (after_warmup[-1] / after_warmup[0] - 1) * 100 if len(after_warmup) >= 2 else 0.0
    kinds: dict[str, int] = {}
    for o in errors:
        kinds[str(o.status or o.kind)] = kinds.get(str(o.status or o.kind), 0) + 1
    t.add(
        f"{label}: errors",
        f"{len(runs)} requests at {len(runs) / seconds:.0f}/s",
        "0",
        f"{len(errors)}" + (f" {kinds}" if kinds else ""),
        bool(runs) and not errors,
    )
    t.add(
        f"soak ({sender}, {model}): p99 flat after warm-up",
        f"{windows} windows of {span:.0f}s",
        f"last <= 1.5 x first + {slack_ms:.0f} ms",
        " -> ".join(f"{p:.0f}" for p in p99s) + " ms",
        bool(measured) and last <= 1.5 * first + slack_ms,
    )
    t.add(
        f"soak ({sender}, {model}): RSS growth after warm-up",
        f"{len(after_warmup)} samples",
        "< 5 %",
        f"{after_warmup[0] if after_warmup else 0:.0f} -> {after_warmup[-1] if after_warmup else 0:.0f} MB ({growth:+.1f} %)",
        growth < 5.0,
    )
    if client is not None:
        t.add(
            f"soak ({sender}, {model}): the sender kept pace",
            f"{client.sends} sends, {client.cpu_cores:.2f} cores",
            "p99 send <= 10 ms late, no own GC pause > 20 ms",
            f"p99 {client.late_p99_ms:.1f} ms late (max {client.late_max_ms:.0f}), {client.gc_pauses} GC pauses, longest {client.gc_max_ms:.1f} ms",
            client.kept_pace(),
        )


def window_lines(runs: list[Outcome], samples: list[Sample], seconds: float, window: float = WINDOW_S) -> list[str]:
    """One line per ``window``: the answered requests' p50 and p99 beside what the box and each worker did."""
    lines = []
    p50s, p99s = per_window(runs, seconds, window, 50), per_window(runs, seconds, window, 99)
    for k, (p50, p99) in enumerate(zip(p50s, p99s)):
        inside = [s for s in samples if k * window < s.at <= (k + 1) * window]
        n = max(1, len(inside))
        busy, steal = sum(s.busy for s in inside) / n, sum(s.steal for s in inside) / n
        per_worker = list(zip(*(s.workers for s in inside))) if inside else []
        cpu = "/".join(f"{sum(c for c, _ in w) / n:.2f}" for w in per_worker)
        conns = "/".join(f"{sum(c for _, c in w) / n:.0f}" for w in per_worker)
        lines.append(
            f"{k * window:4.0f}-{(k + 1) * window:.0f} s: p50 {p50:5.1f}  p99 {p99:6.1f} ms | box busy {busy:.0%} (steal {steal:.0%})"
            f" | workers' cores {cpu or '-'}, connections {conns or '-'}"
        )
    return lines


def per_window(runs: list[Outcome], seconds: float, window: float = WINDOW_S, q: float = 99) -> list[float]:
    """The ``q`` percentile (ms) of the answered requests per ``window`` seconds, over the whole run
    (``started``: seconds into the run)."""
    buckets: list[list[float]] = [[] for _ in range(max(1, int(seconds // window)))]
    for o in runs:
        k = int(o.started // window)
        if o.status == 200 and 0 <= k < len(buckets):
            buckets[k].append(o.seconds)
    return [pct(b, q) for b in buckets]
