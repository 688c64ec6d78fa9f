"""The suite's command line: start the server, run the probes in order, print and write the table."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from .. import workload
from ..server import launch, stop, wait_ready
from .capacity import capacity
from .hostile import hostile_probes
from .kill9 import kill9_probe
from .overload import overload_probe
from .schemathesis_probe import schemathesis_probe
from .sigterm import sigterm_probe
from .slow_clients import slow_clients_probe
from .soak import soak_probe
from .streaming import streaming_probe
from .target import Plan, Target, table


def build_parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    parser = argparse.ArgumentParser(prog="python -m loadtests.reliability", description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bounded form (make test): few examples, seconds of load, a 30 s soak")
    parser.add_argument("--minutes", type=float, help="soak minutes (default 10; 0.5 with --quick)")
    parser.add_argument("--soak-senders", help="comma list of the soak's senders: h2load, python (default both; h2load with --quick)")
    parser.add_argument("--soak-models", default="lstm", help="comma list of the classifiers to soak, one run each per sender")
    parser.add_argument(
        "--only",
        default="schemathesis,hostile,faults",
        help="comma list of parts: schemathesis, hostile, faults (soak: the capacity and the soak alone)",
    )
    parser.add_argument("--bentoml-home", default=os.environ.get("BENTOML_HOME"), help="model store (BENTOML_HOME)")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder (DATA_DIR)")
    parser.add_argument("--out", type=Path, help="write the table (Markdown) and the rows (JSON) here")
    parser.add_argument("--drain-delay", type=float, default=1.0, help="SERVING_DRAIN_DELAY_S of the server under test")
    parser.add_argument("--rss-growth-mb", type=float, default=100.0, help="most RSS growth allowed after a heavy hostile input")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes is not None and not 0 < args.minutes <= 60:
        print("reliability: --minutes must be within (0, 60]", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick, args.minutes)
    senders = tuple(x.strip() for x in (args.soak_senders or ",".join(plan.soak_senders)).split(",") if x.strip())
    if not senders or not set(senders) <= {"h2load", "python"}:
        print("reliability: --soak-senders takes h2load and/or python", file=sys.stderr)
        return 2
    plan = replace(plan, soak_senders=senders, soak_models=tuple(m.strip() for m in args.soak_models.split(",") if m.strip()))
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    from serving.settings import Settings

    env = {"SERVING_DRAIN_DELAY_S": str(args.drain_delay), "SERVING_DRAIN_TIMEOUT_S": "10", "SERVING_WORKERS": "2"}
    settings = Settings.from_env({**os.environ, **env}).describe()
    images = workload.mnist_test_images(args.data_dir, limit=256)
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        workdir = Path(tmp)
        service = launch(workdir / "server.log", args.bentoml_home, extra_env=env)
        target = Target(service, settings, images)
        started = time.monotonic()
        try:
            wait_ready(service, timeout=300)
            print(f"reliability: server ready on {service.http_url} and {service.grpc_target} ({plan})", flush=True)
            if "schemathesis" in parts:
                schemathesis_probe(target, plan, workdir)
            if "hostile" in parts:
                hostile_probes(target, args.rss_growth_mb)
                streaming_probe(target)
            if "faults" in parts:
                rps = capacity(target, plan)
                slow_clients_probe(target, plan)
                overload_probe(target, plan, rps)
                kill9_probe(target, plan)
                soak_probe(target, plan, rps)
                sigterm_probe(target, plan)
            elif "soak" in parts:
                soak_probe(target, plan, capacity(target, plan))
        except Exception as e:  # noqa: BLE001 - a crash of the suite is a failed row, with the server log
            target.add("suite", "-", "runs to the end", f"{type(e).__name__}: {e}", False)
            print(service.log_tail(), file=sys.stderr)
        finally:
            stop(service)
            elapsed = time.monotonic() - started
        failed = [r for r in target.rows if not r.ok]
        text = table(target.rows)
        print()
        print(text)
        print(f"\n{len(target.rows) - len(failed)} passed, {len(failed)} failed ({elapsed:.0f}s)")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "reliability.md").write_text(text + "\n")
            (args.out / "reliability.json").write_text(json.dumps([asdict(r) for r in target.rows], indent=2))
            shutil.copy(workdir / "server.log", args.out / "server.log")
            if (workdir / "schemathesis.log").exists():
                shutil.copy(workdir / "schemathesis.log", args.out / "schemathesis.log")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
