"""What the bench ran on: CPU, GPU, the code's state, the load, and where server and client were pinned."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..server import REPO


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_names() -> list[str]:
    """``nvidia-smi -L`` lines, or [] when there is no NVIDIA GPU/driver."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def code_state() -> str:
    """``git describe --always --dirty`` of the checkout, plus the serving/ files that differ from it."""

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    described = git("describe", "--always", "--dirty") or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "serving").splitlines()]
    return described + (f" (uncommitted: {', '.join(changed)})" if changed else "")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def placements(mode: str) -> tuple[set[int] | None, set[int] | None, str]:
    """CPU sets for (server, client) and a sentence saying what was done."""
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "split" and len(cpus) >= 2:
        client, server = {cpus[0]}, set(cpus[1:])
        return (
            server,
            client,
            (
                f"server (every process) and in-process runs pinned to CPU {sorted(server)}, "
                f"load generator pinned to CPU {sorted(client)} (os.sched_setaffinity)"
            ),
        )
    return None, None, f"no pinning: server, load generator and in-process runs share CPUs {cpus}"
