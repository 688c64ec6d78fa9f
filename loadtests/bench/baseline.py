"""(4) the seed-style baseline: Keras ``model.predict`` per request in a ThreadingHTTPServer, and the seed's manifold loop."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..drivers.http import run_http
from ..procstats import rss_mb
from ..server import REPO, free_port


def bench_baseline(
    args: argparse.Namespace, rep: dict[str, Any], model_dir: Path, server_cpus: set[int] | None, client_cpus: set[int] | None, out: Path
) -> None:
    import httpx
    import psutil

    if not (model_dir / "saved_model").is_dir():
        rep["baseline"] = {"skipped": f"{model_dir} has no saved_model/"}
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (out / "baseline.log").open("wb")
    launched = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.baseline_server", "serve", "--model-dir", str(model_dir), "--port", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
    )
    try:
        deadline = launched + args.ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the baseline server exited with {proc.returncode}; see {out / 'baseline.log'}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the baseline server did not come up") from None
            time.sleep(0.1)
        ready_s = time.monotonic() - launched
        runs = []
        for c in args.concurrency:
            r = run_http(url, "classify", rep["model"], c, args.baseline_warmup, args.baseline_duration, args.data_dir, client_cpus)
            runs.append(r)
            print(
                f"bench: (4) baseline c={c}: {r['rps']:.1f} req/s, p50 {r['p50_ms'] or 0:.0f} ms, p99 {r['p99_ms'] or 0:.0f} ms, "
                f"errors {r['errors']}",
                flush=True,
            )
        rep["baseline"] = {"runs": runs, "ready_s": ready_s, "rss_mb": rss_mb(psutil.Process(proc.pid)), "model_dir": str(model_dir)}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def seed_loop(args: argparse.Namespace, decoder_dir: Path, server_cpus: set[int] | None) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.baseline_server",
            "seed-manifold",
            "--model-dir",
            str(decoder_dir),
            "--calls",
            str(args.seed_calls),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seed-manifold failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
