"""Schemathesis over ``/docs.json``: generated requests, 0 server errors (the server's own count), 0 schema violations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .target import Plan, Target


def schemathesis_probe(t: Target, plan: Plan, workdir: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        t.add("schemathesis", "-", "installed", "the `st` command is missing (pip install schemathesis)", False)
        return
    before = t.metrics()
    report = workdir / "schemathesis.json"
    # one worker: Hypothesis parses lambda sources with ast, which CPython 3.11 does not allow from two threads at once
    cmd = [
        st,
        "run",
        f"{t.url}/docs.json",
        "--url",
        t.url,
        "-n",
        str(plan.examples),
        "--mode",
        "all",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    started = time.monotonic()
    try:
        run = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=max(120, plan.examples * 30),
            cwd=workdir,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        out, code = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired as e:
        out, code = f"timed out after {e.timeout}s", -1
    seconds = time.monotonic() - started
    (workdir / "schemathesis.log").write_text(out)
    after = t.metrics()
    sent = int(after.get("all", 0) - before.get("all", 0))
    server_errors = int(after.get("5xx", 0) - before.get("5xx", 0))
    failures = _schemathesis_failures(report, out)
    t.add(
        "schemathesis: generated requests",
        f"{plan.examples}/operation",
        f">= {plan.min_requests}",
        f"{sent} in {seconds:.0f}s",
        sent >= plan.min_requests,
    )
    t.add("schemathesis: server errors (5xx)", sent, "0", str(server_errors), server_errors == 0)
    detail = "" if code == 0 else f" (exit {code}; see {workdir / 'schemathesis.log'})"
    t.add("schemathesis: schema violations", sent, "0", f"{failures}{detail}", failures == 0 and code == 0)
    ok, why = t.healthy()
    t.add("schemathesis: healthy after", "-", "ready", "ready" if ok else why, ok)


def _schemathesis_failures(report: Path, output: str) -> int:
    """Distinct failures Schemathesis found (its JSON report; else the summary line)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        for key in ("failures", "issues"):
            value = data.get(key)
            if isinstance(value, list):
                return len(value)
            if isinstance(value, int):
                return value
        summary = data.get("summary") or {}
        for key in ("failures", "issues", "unique_failures"):
            if isinstance(summary.get(key), int):
                return summary[key]
    import re

    found = re.search(r"(\d+) (?:unique )?(?:failures?|issues?)", output)
    return int(found.group(1)) if found else (0 if "No issues found" in output else 1)
