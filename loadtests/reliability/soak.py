"""A paced soak below capacity: no errors, p99 as flat at the end as after warm-up, RSS flat."""

from __future__ import annotations

import threading
import time

from ..drivers.h2load import paced
from .target import Plan, Target, pct


def soak_probe(t: Target, plan: Plan, rps: float) -> None:
    seconds = plan.soak_minutes * 60.0
    rate = plan.soak_load * rps
    warmup = min(30.0, seconds * 0.25)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(1.0):
            samples.append((time.time(), t.rss_mb()))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    started = time.time()
    sampler.start()
    body = t.classify_body()
    # at most ~20 requests/s per connection, so each h2load run in the chain lasts seconds (see loadtests.drivers.h2load.paced)
    outcomes, _ = paced(t.url, "/v1/classify", body, rate, seconds, clients=max(plan.connections, int(rate // 20) + 1))
    stop.set()
    sampler.join(5)
    errors = [o for o in outcomes if o.status != 200]
    measured = [o for o in outcomes if o.started >= started + warmup and o.status == 200]
    windows = 4
    span = (seconds - warmup) / windows
    p99s = []
    for w in range(windows):
        lo = started + warmup + w * span
        p99s.append(pct([o.seconds for o in measured if lo <= o.started < lo + span], 99))
    first, last = p99s[0], p99s[-1]
    slack_ms = plan.p99_slack_ms
    flat = last <= 1.5 * first + slack_ms
    after_warmup = [rss for when, rss in samples if when >= started + warmup]
    growth = (after_warmup[-1] / after_warmup[0] - 1) * 100 if len(after_warmup) >= 2 else 0.0
    kinds: dict[str, int] = {}
    for o in errors:
        kinds[str(o.status or o.kind)] = kinds.get(str(o.status or o.kind), 0) + 1
    t.add(
        f"soak at {plan.soak_load:.0%} for {plan.soak_minutes:g} min: errors",
        f"{len(outcomes)} requests at {len(outcomes) / seconds:.0f}/s",
        "0",
        f"{len(errors)}" + (f" {kinds}" if kinds else ""),
        bool(outcomes) and not errors,
    )
    t.add(
        "soak: p99 flat after warm-up",
        f"{windows} windows of {span:.0f}s",
        f"last <= 1.5 x first + {slack_ms:.0f} ms",
        " -> ".join(f"{p:.0f}" for p in p99s) + " ms",
        flat,
    )
    t.add(
        "soak: RSS growth after warm-up",
        f"{len(after_warmup)} samples",
        "< 5 %",
        f"{after_warmup[0] if after_warmup else 0:.0f} -> {after_warmup[-1] if after_warmup else 0:.0f} MB ({growth:+.1f} %)",
        growth < 5.0,
    )
