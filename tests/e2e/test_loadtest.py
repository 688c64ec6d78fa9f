"""``python -m loadtests run`` end to end: a short bounded locust run against the session server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from loadtests.slo import read_stats_csv
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_loadtest_run_writes_reports_and_a_verdict(server, datasets_dir, tmp_path):
    out = tmp_path / "loadtest"
    command = [
        sys.executable,
        "-m",
        "loadtests",
        "run",
        "--url",
        server.http_url,
        "--grpc-target",
        server.grpc_target,
        "--users",
        "2",
        "--spawn-rate",
        "2",
        "--duration",
        "10s",
        "--profile",
        "smoke",
        "--bulk-rows",
        "64",
        "--data-dir",
        str(datasets_dir),
        "--out",
        str(out),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    shown = f"exit {done.returncode} after {took:.0f}s\nstdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    assert "SLO verdict: " in done.stdout, shown
    for name in ("locust_stats.csv", "locust_failures.csv", "locust_stats_history.csv", "report.html", "verdict.json", "locust.log"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{name} missing\n{shown}"
    assert "<html" in (out / "report.html").read_text(errors="replace").lower()
    stats = read_stats_csv(out / "locust_stats.csv")
    total = next(s for s in stats if s.name == "Aggregated")
    assert total.requests > 0, shown
    # 2 users for 10 s against a healthy server: no request may fail, and the lenient smoke limits hold.
    assert total.failures == 0, shown
    assert done.returncode == 0 and json.loads((out / "verdict.json").read_text())["ok"], shown
