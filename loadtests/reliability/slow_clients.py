"""Slow clients: 60 trickling connections (slow-loris headers, trickled bodies) beside normal clients, who
keep their latency; and an idle keep-alive connection is closed after ``SERVING_KEEPALIVE_TIMEOUT_S``."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from ..drivers.http import closed_loop_outcomes
from .target import Plan, Target, pct


def slow_clients_probe(t: Target, plan: Plan) -> None:
    requests = t.classify_requests()
    seconds = plan.fault_s
    before = asyncio.run(closed_loop_outcomes(t.port, requests, 4, seconds))
    stop = threading.Event()
    # (what opens the request, what is dripped every 0.5 s): 50 slow-loris headers, 10 trickled bodies
    slow = [(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n")] * 50
    slow += [(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", b" ")] * 10
    socks: list[tuple[socket.socket, bytes]] = []

    def trickle() -> None:
        for opening, drip in slow:
            try:
                sock = socket.create_connection(("127.0.0.1", t.port), timeout=5)
                sock.sendall(opening)
                socks.append((sock, drip))
            except OSError:
                pass
        while not stop.wait(0.5):
            for sock, drip in list(socks):
                try:
                    sock.sendall(drip)
                except OSError:
                    socks.remove((sock, drip))

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(1.0)
    during = asyncio.run(closed_loop_outcomes(t.port, requests, 4, seconds))
    stop.set()
    thread.join(5)
    for sock, _ in socks:
        sock.close()
    p_before = pct([o.seconds for o in before if o.status == 200], 99)
    p_during = pct([o.seconds for o in during if o.status == 200], 99)
    errors = sum(1 for o in during if o.status != 200)
    bound = 2 * p_before + 20
    t.add(
        "slow clients: 60 trickling connections beside 4 normal",
        f"{len(during)} requests",
        f"0 errors, p99 <= {bound:.0f} ms",
        f"{errors} errors, p99 {p_before:.0f} -> {p_during:.0f} ms",
        errors == 0 and p_during <= bound,
    )
    # An idle keep-alive connection is closed after SERVING_KEEPALIVE_TIMEOUT_S.
    keepalive = float(t.settings["keepalive_timeout_s"])
    s = socket.create_connection(("127.0.0.1", t.port), timeout=keepalive + 5)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    closed_after = time.monotonic() - started
    s.close()
    t.add(
        "idle keep-alive connection",
        1,
        f"closed after ~{keepalive:.0f}s",
        f"closed after {closed_after:.1f}s",
        data.startswith(b"HTTP/1.1 200") and keepalive - 1 <= closed_after <= keepalive + 2,
    )
