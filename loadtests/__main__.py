"""``python -m loadtests``: headless locust runs with an SLO verdict.

``run`` starts the service on free loopback ports (unless ``--url`` names one), runs
locust for a bounded time with bounded users, writes locust's CSV and HTML report to
``results/loadtest-<timestamp>/``, prints the SLO verdict and exits 1 on a breach.
``verdict`` judges an existing results folder again (e.g. against another profile).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from . import slo
from .workload import REPO, Catalog, default_data_dir

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CSV_PREFIX = "locust"
HTTP_USERS = ("ClassifyJsonUser", "ClassifyImageUser", "BulkClassifyUser")
GENERATION_USERS = ("GenerateUser", "ManifoldUser")
GRPC_USERS = ("GrpcPredictUser",)


def timestamp() -> str:
    """Local time as ``YYYYmmdd-HHMMSS`` for results folder names."""
    return time.strftime("%Y%m%d-%H%M%S")


def user_classes(catalog: Catalog, grpc: bool) -> list[str]:
    """The locust user classes that have something to call on this server."""
    classes: list[str] = []
    if catalog.classifiers:
        classes += HTTP_USERS
        if grpc:
            classes += GRPC_USERS
    if catalog.generators:
        classes.append("GenerateUser")
        if catalog.manifold_model:
            classes.append("ManifoldUser")
    return classes


def locust_command(
    url: str,
    grpc_target: str | None,
    classes: Sequence[str],
    users: int,
    spawn_rate: float,
    duration_s: float,
    out: Path,
    data_dir: str,
    bulk_rows: int,
) -> list[str]:
    """The headless locust command line for one bounded run."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{max(1, round(duration_s))}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(out / CSV_PREFIX),
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--loglevel",
        "INFO",
        "--data-dir",
        data_dir,
        "--bulk-rows",
        str(bulk_rows),
        *(["--grpc-target", grpc_target] if grpc_target else []),
        *classes,
    ]


def summary_of(log: str) -> str:
    """locust's closing tables (counts, then percentiles) from its log, without TF/gRPC noise."""
    start = log.find("Type     Name")
    if start < 0:
        return "(locust printed no summary)"
    keep = [line for line in log[start:].splitlines() if not line.startswith(("I0000", "W0000", "E0000"))]
    return "\n".join(keep).rstrip()


def judge(out: Path, profile: slo.Profile) -> slo.Verdict:
    """The verdict over ``out/locust_stats.csv``, also written to ``out/verdict.json``."""
    stats_csv = out / f"{CSV_PREFIX}_stats.csv"
    if not stats_csv.is_file():
        raise FileNotFoundError(f"locust wrote no {stats_csv.name} in {out}; see {out / 'locust.log'}")
    result = slo.verdict(slo.read_stats_csv(stats_csv), profile)
    (out / "verdict.json").write_text(
        json.dumps(
            {"profile": profile.name, "ok": result.ok, "checks": [asdict(c) for c in result.checks], "notes": result.notes},
            indent=2,
        )
        + "\n"
    )
    (out / "verdict.txt").write_text(slo.render(result) + "\n")
    return result


def run(args: argparse.Namespace) -> int:
    from . import server

    profile = slo.load_profile(args.profile)
    users = args.users or profile.users
    spawn_rate = args.spawn_rate or profile.spawn_rate
    duration_s = slo.parse_duration(args.duration) if args.duration else profile.duration_s
    slo.check_bounds(users, spawn_rate, duration_s)
    out = Path(args.out) if args.out else REPO / "results" / f"loadtest-{timestamp()}"
    out.mkdir(parents=True, exist_ok=True)

    service = None
    try:
        if args.url:
            url, grpc_target = args.url.rstrip("/"), args.grpc_target
        else:
            print(f"loadtests: starting the service (BENTOML_HOME={os.environ.get('BENTOML_HOME', '~/bentoml')}) ...", flush=True)
            service = server.launch(out / "server.log")
            ready_s = server.wait_ready(service, timeout=args.ready_timeout)
            url, grpc_target = service.http_url, (None if args.no_grpc else service.grpc_target)
            print(f"loadtests: ready in {ready_s:.1f}s on {url} and gRPC {service.grpc_target}", flush=True)
        catalog = Catalog.fetch(url)
        classes = user_classes(catalog, grpc=bool(grpc_target))
        if not classes:
            print(f"loadtests: {url} serves no classifier or generator; nothing to load-test", file=sys.stderr)
            return 2
        if not grpc_target:
            print("loadtests: no gRPC target: the gRPC user is left out (give --grpc-target with --url)", flush=True)
        command = locust_command(url, grpc_target, classes, users, spawn_rate, duration_s, out, args.data_dir, args.bulk_rows)
        print(f"loadtests: {users} users (spawn {spawn_rate:g}/s) for {duration_s:g}s: {', '.join(classes)}", flush=True)
        with (out / "locust.log").open("wb") as log:
            finished = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=duration_s + 180, check=False)
        print(summary_of((out / "locust.log").read_text(errors="replace")))
        if finished.returncode not in (0, 1):  # 1 = some requests failed; the verdict says so
            print(f"loadtests: locust exited with {finished.returncode}; see {out / 'locust.log'}", file=sys.stderr)
        result = judge(out, profile)
    finally:
        if service is not None:
            code = server.stop(service)
            if code not in (0, None):
                print(f"loadtests: the service stopped with status {code}; see {out / 'server.log'}", file=sys.stderr)
    print(slo.render(result))
    print(f"loadtests: report {out / 'report.html'}, CSV {out / (CSV_PREFIX + '_stats.csv')}")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m loadtests``."""
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = commands.add_parser("run", help="bounded headless locust run + SLO verdict (exit 1 on a breach)")
    r.add_argument("--url", help="an already running service (default: start one from $BENTOML_HOME on free ports)")
    r.add_argument("--grpc-target", help="host:port of that service's gRPC front (with --url; without it no gRPC user)")
    r.add_argument("--users", type=int, help=f"concurrent users, 1..{slo.MAX_USERS} (default: the profile's)")
    r.add_argument("--spawn-rate", type=float, help="users started per second (default: the profile's)")
    r.add_argument("--duration", help="run time, e.g. 60s or 2m (default: the profile's)")
    r.add_argument("--out", help="results folder (default: results/loadtest-<timestamp>/)")
    r.add_argument("--profile", default="default", help="SLO profile: a bundled name (default, smoke) or a .toml path")
    r.add_argument("--data-dir", default=default_data_dir(), help="MNIST IDX folder (default: $DATA_DIR or ../shared/datasets)")
    r.add_argument("--bulk-rows", type=int, default=256, help="images per bulk .npy request (default 256)")
    r.add_argument("--no-grpc", action="store_true", help="leave the gRPC user out")
    r.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for the started service")
    v = commands.add_parser("verdict", help="judge an existing results folder again")
    v.add_argument("folder", help="a results/loadtest-* folder")
    v.add_argument("--profile", default="default", help="SLO profile name or .toml path")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        result = judge(Path(args.folder), slo.load_profile(args.profile))
        print(slo.render(result))
        return 0 if result.ok else 1
    except (ValueError, OSError, RuntimeError, httpx.HTTPError) as e:
        print(f"loadtests: error: {e}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as e:
        print(f"loadtests: error: locust overran its time bound ({e.timeout:.0f}s)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
