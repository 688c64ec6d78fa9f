"""SIGTERM to the launcher under keep-alive load: every request is answered or never accepted, the server is
unready during the drain delay, and the launcher exits 0 in time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

from ..drivers.core import Tally
from ..drivers.http import closed_loop_outcomes
from .rawhttp import exchange, http_request
from .target import Plan, Target


def sigterm_probe(t: Target, plan: Plan) -> None:
    requests = t.classify_requests()
    delay = float(t.settings["drain_delay_s"])
    result: dict[str, Any] = {}

    async def scenario() -> None:
        load = asyncio.ensure_future(closed_loop_outcomes(t.port, requests, plan.connections, 60.0, stop := asyncio.Event()))
        await asyncio.sleep(2.0)
        signalled = time.monotonic()
        t.service.process.send_signal(signal.SIGTERM)
        # During the delay the server reports unready but still answers.
        await asyncio.sleep(min(0.5, delay / 2) if delay else 0.0)
        if delay:
            answer = await asyncio.to_thread(exchange, t.port, http_request("GET", "/readyz", content_type=None), 5.0)
            result["readyz"] = answer.status
        code = await asyncio.to_thread(_wait, t.service.process, 60.0)
        result.update(signalled=signalled, code=code, exited=time.monotonic() - signalled)
        stop.set()
        result["outcomes"] = await load

    asyncio.run(scenario())
    outcomes, signalled = result["outcomes"], result["signalled"]
    after = [o for o in outcomes if o.started >= signalled]
    tally = Tally.of(outcomes)
    t.add(
        "SIGTERM under load: accepted requests lost",
        f"{len(outcomes)} requests ({len(after)} after the signal)",
        "0 lost, 0 errors",
        f"{len(tally.lost)} lost, {len(tally.errors)} errors, {len(tally.answered)} answered, {len(tally.refused)} refused at connect",
        not tally.lost and not tally.errors,
    )
    if delay:
        t.add("SIGTERM: unready during the drain delay", "GET /readyz", "503", str(result.get("readyz")), result.get("readyz") == 503)
    bound = delay + float(t.settings["drain_timeout_s"]) + 5
    t.add(
        "SIGTERM: launcher exit",
        "-",
        f"0 within {bound:.0f}s",
        f"{result['code']} after {result['exited']:.1f}s",
        result["code"] == 0 and result["exited"] <= bound,
    )


def _wait(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
