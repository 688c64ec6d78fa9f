"""Start ``python -m serving`` on free loopback ports, wait until it is ready, always stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A running ``python -m serving`` (it becomes ``bentoml serve``: a parent and its HTTP+gRPC workers)."""

    process: subprocess.Popen
    http_url: str
    grpc_target: str
    log_path: Path
    launched: float  # time.monotonic() at launch
    ready_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def launch(
    log_path: Path,
    bentoml_home: str | None = None,
    cpus: set[int] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Service:
    """Start the service on free ports, its log in ``log_path``; ``cpus`` pins it (and its children)."""
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "SERVING_HOST": "127.0.0.1",
        "BENTOML_DO_NOT_TRACK": "True",
        # a local server has no endpoints to leave: stop at once on SIGTERM unless told otherwise
        "SERVING_DRAIN_DELAY_S": os.environ.get("SERVING_DRAIN_DELAY_S", "0"),
        **({"BENTOML_HOME": bentoml_home} if bentoml_home else {}),
        **(extra_env or {}),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--no-build", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    return Service(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log_path, time.monotonic(), env=env)


def wait_ready(service: Service, timeout: float = 180.0, grpc: bool = True) -> float:
    """Seconds from launch until ``/readyz`` is 200 and (with ``grpc``) gRPC health says SERVING."""
    import grpc as grpc_lib
    import httpx
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    http_ready = False
    with grpc_lib.insecure_channel(service.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"the service exited with {service.process.returncode}:\n{service.log_tail()}")
            try:
                http_ready = http_ready or httpx.get(f"{service.http_url}/readyz", timeout=2).status_code == 200
                if http_ready and (
                    not grpc or health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
                ):
                    service.ready_s = time.monotonic() - service.launched
                    return service.ready_s
            except (httpx.HTTPError, grpc_lib.RpcError):
                pass
            time.sleep(0.05)
    raise RuntimeError(f"the service was not ready after {timeout:.0f}s:\n{service.log_tail()}")


def stop(service: Service, timeout: float = 40.0) -> int:
    """SIGTERM the server (its workers drain both fronts); SIGKILL the whole group if it overstays."""
    process = service.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


@contextmanager
def running(
    log_path: Path,
    bentoml_home: str | None = None,
    cpus: set[int] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[Service]:
    """A ready service for the ``with`` block; stopped on the way out, whatever happens."""
    service = launch(log_path, bentoml_home, cpus, extra_env)
    try:
        wait_ready(service, timeout)
        yield service
    finally:
        stop(service)


ROLES = ("launcher", "bentoml parent", "HTTP worker")


def role_of(cmdline: list[str]) -> str | None:
    """Which part of the service a process is, from its command line."""
    text = " ".join(cmdline)
    if "_bentoml_impl.worker" in text:
        return "HTTP worker"
    if "bentoml serve" in text:
        return "bentoml parent"
    if "-m serving" in text:
        return "launcher"
    return None


def processes(service: Service) -> list[tuple[str, Any]]:
    """``(role, psutil.Process)`` for the launcher and every descendant with a known role."""
    import psutil

    try:
        root = psutil.Process(service.process.pid)
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    out = []
    for proc in found:
        try:
            role = role_of(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if role:
            out.append((role, proc))
    return out
