"""Load generators in their own processes: our Python drivers, and the C ones (wrk, h2load) with their CPU time.

A driver's CLI (``python -m loadtests.drivers.http`` / ``.grpc``) prints ``{"event": "window_start"}`` and
``{"event": "window_end"}`` as its measured window opens and closes, then its result as one JSON line;
:func:`run_driver` runs one, pinned to ``cpus``, calls ``on_window`` at those moments (so the caller can
scrape the server's metrics and CPU then) and returns the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..server import REPO


def pin(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpus`` (None: no pinning)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0"``, ``"0,1"`` or ``"0-3"`` (and mixes) -> a CPU set; empty or None -> None."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return cpus or None


def run_driver(
    module: str,
    args: Sequence[str],
    *,
    label: str,
    cpus: set[int] | None = None,
    on_window: Callable[[str], None] | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """``python -m module args`` in its own process; its result dict. ``on_window`` gets ``"window_start"``
    and ``"window_end"``; ``timeout_s`` bounds the wait after its output ends. RuntimeError (``label``,
    status and the end of its stderr) when it fails."""
    with tempfile.TemporaryDirectory(prefix="driver-") as tmp:
        err_path = Path(tmp) / "stderr.txt"
        result: dict[str, Any] = {}
        with err_path.open("w") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=err_file, text=True, preexec_fn=pin(cpus)
            )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") in ("window_start", "window_end"):
                    if on_window:
                        on_window(event["event"])
                elif "rps" in event:
                    result = event
            proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = err_path.read_text(errors="replace")
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"{label} failed with status {proc.returncode}: {err[-2000:]}")
    return result


def run_timed(cmd: list[str], cpus: set[int] | None, limit_s: float) -> tuple[int, str, float]:
    """Run a load generator (wrk, h2load); (exit status, output, its CPU seconds). Killed if it overruns ``limit_s``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=pin(cpus))
    watchdog = threading.Timer(limit_s, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own CPU time
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, usage.ru_utime + usage.ru_stime
