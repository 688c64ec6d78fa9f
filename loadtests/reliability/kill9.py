"""``kill -9`` of a worker under load: only its in-flight requests fail, the host starts a new worker, the
new worker serves within the plan's start-up bound, and throughput is back to 90 % within 10 s of that."""

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

# BentoML's supervisor (circus) looks for dead workers every 10 s (check_delay=10 in BentoML's arbiter, not
# configurable through its public API), so a replacement process starts up to this long after a kill.
HOST_RESPAWN_S = 10.0
CLIENT_CALLERS = 4  # threads calling through the project's client during the kill
RECOVERY_S = 10.0  # throughput back to 90 % of the baseline within this long of the new worker serving


def kill9_probe(t: Target, plan: Plan) -> None:
    pids = t.worker_pids()
    if len(pids) < 2:
        t.add("kill -9 of a worker", "-", ">= 2 workers", f"{len(pids)} worker(s)", False)
        return
    victim = pids[0]
    requests = t.classify_requests()
    result: dict[str, Any] = {}
    grpc_port = int(urlsplit("x://" + t.grpc).port or 0)
    # The load runs on its own thread (and event loop), so watching for the new worker never waits on it; it lasts
    # 4 s before the kill and long enough after it for the respawn, the start-up and the recovery windows.
    watch_s = HOST_RESPAWN_S + 1.0 + plan.replace_bound_s
    seconds = 4.0 + watch_s + RECOVERY_S + 2.0
    load = threading.Thread(
        target=lambda: result.update(outcomes=asyncio.run(closed_loop_outcomes(t.port, requests, plan.connections, seconds)))
    )
    # Beside the raw load, callers of the project's own client (clients.connect, its default retry policy):
    # a request the killed worker held comes back as a reset connection, which the client retries.
    stop = threading.Event()
    calls: list[str] = []
    callers = [threading.Thread(target=_client_calls, args=(t, stop, calls)) for _ in range(CLIENT_CALLERS)]
    load.start()
    for caller in callers:
        caller.start()
    time.sleep(4.0)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    started = serving = None
    while time.monotonic() - killed < watch_s:
        fresh = [p for p in t.worker_pids() if p not in pids]
        if fresh and started is None:
            started = time.monotonic() - killed
        if fresh and _listens(fresh[0], grpc_port):  # the gRPC port opens after the engine has loaded and warmed
            serving = time.monotonic() - killed
            break
        time.sleep(0.05)
    load.join(seconds + 60)
    stop.set()
    for caller in callers:
        caller.join(60)
    outcomes = result["outcomes"]
    failed = [o for o in outcomes if o.status != 200]
    base = [o for o in outcomes if o.status == 200 and killed - 3.0 <= o.started + o.seconds < killed]
    baseline = len(base) / 3.0
    recovered = None
    if serving is not None:
        for second in range(0, int(RECOVERY_S) + 1):
            lo = killed + serving + second
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
    t.add(
        "kill -9 of a worker: the host starts a new one",
        "-",
        f"<= {HOST_RESPAWN_S + 1:g} s (BentoML's supervisor looks every {HOST_RESPAWN_S:g} s)",
        "never" if started is None else f"{started:.1f}s",
        started is not None and started <= HOST_RESPAWN_S + 1,
    )
    lost = [c for c in calls if c != "ok"]
    t.add(
        "kill -9 of a worker: the project's client (retries a reset connection)",
        f"{len(calls)} calls, {CLIENT_CALLERS} callers",
        "0 failed",
        f"{len(lost)}" + (f" ({lost[0]})" if lost else ""),
        bool(calls) and not lost,
    )
    startup = None if started is None or serving is None else serving - started
    t.add(
        "kill -9 of a worker: the new one serving",
        "-",
        f"<= {plan.replace_bound_s:g} s after it started",
        "never" if startup is None else f"{startup:.1f}s ({serving:.1f}s after the kill)",
        startup is not None and startup <= plan.replace_bound_s,
    )
    t.add(
        "kill -9 of a worker: throughput back to 90 %",
        f"baseline {baseline:.0f}/s",
        f"<= {RECOVERY_S:g} s after the new worker serves",
        "never" if recovered is None else f"{recovered}s",
        recovered is not None and recovered <= RECOVERY_S,
    )


def _client_calls(t: Target, stop: threading.Event, calls: list[str]) -> None:
    """``classify`` calls through the project's HTTP client until ``stop``: "ok" or the error, per call."""
    from clients import ClientError, connect

    with connect(url=f"http://127.0.0.1:{t.port}", timeout=30.0) as client:
        i = 0
        while not stop.is_set():
            try:
                client.classify(t.images[i % len(t.images)], model="lstm")
                calls.append("ok")
            except ClientError as e:
                calls.append(f"{type(e).__name__}: {e}")
            i += 1


def _listens(pid: int, port: int) -> bool:
    import psutil

    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
