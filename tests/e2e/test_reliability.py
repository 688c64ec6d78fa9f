"""The reliability suite's bounded form (``python -m loadtests.reliability --quick``) passes.

Schemathesis over /docs.json, every hostile input per route and gRPC method, and each fault under
load (slow clients, 150 % overload, kill -9 of a worker, a 30 s soak, SIGTERM), against a server of
its own started from a copy of the test store (so its /metrics counts only its own requests).
``make reliability`` runs the full form (a 10-minute soak); docs/reliability.md has its figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.server import REPO

pytestmark = pytest.mark.slow


def test_reliability_suite_quick(trained_store, tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    shutil.copytree(Path(trained_store.home) / "models", home / "models")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "loadtests.reliability", "--quick", "--bentoml-home", str(home), "--out", str(out)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "BENTOML_HOME": str(home)})
    print(run.stdout[-20000:])
    table = (out / "reliability.md").read_text() if (out / "reliability.md").exists() else ""
    assert run.returncode == 0, f"the reliability suite failed:\n{table or run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert "| FAIL |" not in table and table.count("| PASS |") >= 80, table
