"""Overload at 150 % of capacity, paced: what the server cannot take is refused fast (503), what it takes stays fast."""

from __future__ import annotations

from ..drivers.h2load import paced
from .target import Plan, Target, pct


def overload_probe(t: Target, plan: Plan, rps: float) -> None:
    rate = 1.5 * rps
    body = t.classify_body()
    outcomes, summary = paced(t.url, "/v1/classify", body, rate, plan.fault_s, clients=plan.overload_clients)
    other: dict[str, int] = {}
    for o in outcomes:
        if o.status not in (200, 503):
            other[str(o.status or o.kind)] = other.get(str(o.status or o.kind), 0) + 1
    # Latencies of the sustained overload: the first second or so is 800 connections opening at once.
    warm = max(1.0, plan.fault_s / 5)
    steady = [o for o in outcomes if outcomes and o.started >= outcomes[0].started + warm]
    ok = [o.seconds for o in steady if o.status == 200]
    refused = [o.seconds for o in steady if o.status == 503]
    p99_ok, p50_503, p99_503 = pct(ok, 99), pct(refused, 50), pct(refused, 99)
    # bounded, not growing: the last third's p99 against the first third's
    third = (plan.fault_s - warm) / 3
    first = [o.seconds for o in steady if o.status == 200 and o.started < steady[0].started + third] if steady else []
    last = [o.seconds for o in steady if o.status == 200 and o.started >= steady[-1].started - third] if steady else []
    growing = pct(last, 99) > 1.5 * pct(first, 99) + 100
    sent = summary.get("total", len(outcomes))
    good = (
        not other
        and bool(outcomes)
        and sent == len(outcomes)
        and bool(refused)
        and p99_ok <= 1000
        and p50_503 <= 250
        and p99_503 <= 500
        and not growing
    )
    t.add(
        "overload at 150 % of capacity",
        f"{len(outcomes)} requests at {len(outcomes) / plan.fault_s:.0f}/s (target {rate:.0f}/s)",
        f"only 200 and 503; after {warm:.0f}s: 503 p50 <= 250, p99 <= 500 ms; 200 p99 <= 1000 ms, not growing",
        f"{len(ok)} x 200 (p99 {p99_ok:.0f} ms; first/last third {pct(first, 99):.0f}/{pct(last, 99):.0f}), "
        f"{len(refused)} x 503 (p50 {p50_503:.0f}, p99 {p99_503:.0f} ms), other {other or 0}",
        good,
    )
    ok_h, why = t.healthy()
    t.add("overload: healthy after", "-", "ready", "ready" if ok_h else why, ok_h)
