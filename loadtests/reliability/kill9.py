"""``kill -9`` of a worker under load: only its in-flight requests fail, a new worker serves within the bound,
and throughput is back to 90 % within 10 s."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..drivers.http import closed_loop_outcomes
from .target import Plan, Target


def kill9_probe(t: Target, plan: Plan) -> None:
    pids = t.worker_pids()
    if len(pids) < 2:
        t.add("kill -9 of a worker", "-", ">= 2 workers", f"{len(pids)} worker(s)", False)
        return
    victim = pids[0]
    requests = t.classify_requests()
    result: dict[str, Any] = {}
    grpc_port = int(urlsplit("x://" + t.grpc).port or 0)
    # The load runs on its own thread (and event loop), so watching for the new worker never waits on it.
    load = threading.Thread(
        target=lambda: result.update(outcomes=asyncio.run(closed_loop_outcomes(t.port, requests, plan.connections, 16.0)))
    )
    load.start()
    time.sleep(4.0)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced = None
    while time.monotonic() - killed < 10:
        fresh = [p for p in t.worker_pids() if p not in pids]
        if fresh and _listens(fresh[0], grpc_port):  # the gRPC port opens after the engine has loaded and warmed
            replaced = time.monotonic() - killed
            break
        time.sleep(0.05)
    load.join(60)
    result.update(killed=killed, replaced=replaced)
    outcomes, killed = result["outcomes"], result["killed"]
    failed = [o for o in outcomes if o.status != 200]
    base = [o for o in outcomes if o.status == 200 and killed - 3.0 <= o.started + o.seconds < killed]
    baseline = len(base) / 3.0
    recovered = None
    for second in range(0, 11):
        lo = killed + second
        window = [o for o in outcomes if o.status == 200 and lo <= o.started + o.seconds < lo + 2.0]
        if len(window) / 2.0 >= 0.9 * baseline:
            recovered = second
            break
    t.add(
        "kill -9 of a worker: failed requests",
        f"{len(outcomes)} requests, {plan.connections} connections",
        f"<= {plan.connections} (its in-flight)",
        f"{len(failed)}",
        len(failed) <= plan.connections,
    )
    replaced = result["replaced"]
    t.add(
        "kill -9 of a worker: replaced",
        "-",
        f"<= {plan.replace_bound_s:g} s",
        "never" if replaced is None else f"{replaced:.1f}s",
        replaced is not None and replaced <= plan.replace_bound_s,
    )
    t.add(
        "kill -9 of a worker: throughput back to 90 %",
        f"baseline {baseline:.0f}/s",
        "<= 10 s",
        "never" if recovered is None else f"{recovered}s",
        recovered is not None and recovered <= 10,
    )


def _listens(pid: int, port: int) -> bool:
    import psutil

    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
