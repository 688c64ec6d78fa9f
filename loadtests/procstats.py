"""CPU time and memory of server processes, and the whole machine's busy time (psutil), for the bench and the peers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MB = 1024 * 1024


def cpu_seconds(procs: Sequence[Any]) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process, by pid."""
    out: dict[int, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except Exception:  # a process that went away counts nothing
            pass
    return out


def box_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, summed over cores (psutil.cpu_times)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def rss_mb(proc: Any) -> float | None:
    """Resident memory of one process, MB; None when it went away."""
    try:
        return proc.memory_info().rss / MB
    except Exception:
        return None
