"""The capacity probe, run first of the faults: the 100 % that the overload and the soak are paced against."""

from __future__ import annotations

import asyncio

from ..drivers import wrk
from ..drivers.http import closed_loop_outcomes
from .target import Plan, Target, pct


def capacity(t: Target, plan: Plan, model: str = "lstm", python: bool = False) -> float:
    """The server's answers per second for ``model`` under a closed loop of ``plan.connections`` (the 100 %
    of the overload and the soak): measured with wrk (little client CPU) when installed, else (or with
    ``python``) with the Python closed loop, whose own CPU shares the box the way the Python paced
    sender's does."""
    seconds = max(3.0, plan.fault_s / 2)
    how = "python"
    if not python:
        try:
            r = wrk.run_wrk(
                t.url, "/v1/classify", t.classify_body(model=model), connections=plan.connections, duration_s=seconds, warmup_s=1
            )
            rps, p99, how = r["rps"], r["p99_ms"] or 0.0, "wrk"
        except wrk.WrkNotFound:
            pass
    if how == "python":
        outcomes = asyncio.run(closed_loop_outcomes(t.port, t.classify_requests(model=model), plan.connections, seconds))
        ok = [o for o in outcomes if o.status == 200]
        rps, p99, how = len(ok) / seconds, pct([o.seconds for o in ok], 99), "python"
    t.add(
        "capacity (closed loop)" + ("" if model == "lstm" and how == "wrk" else f", {model}, {how}"),
        f"{how}, {plan.connections} connections, {seconds:.0f}s",
        "> 0 answers/s",
        f"{rps:.0f}/s, p99 {p99:.0f} ms",
        rps > 0,
    )
    return rps
