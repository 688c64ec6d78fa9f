"""One real server (BentoML HTTP + TF-Serving gRPC front) per test session, on free loopback ports."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    http_url: str
    grpc_target: str
    home: Path
    process: subprocess.Popen
    log_path: Path
    test_images: np.ndarray
    test_labels: np.ndarray

    def model_dir(self, store_name: str) -> Path:
        """The directory of the latest stored version of a model."""
        base = self.home / "models" / store_name
        return base / (base / "latest").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample from /metrics over series matching the labels."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(httpx.get(f"{self.http_url}/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


def start_server(home: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, str]:
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "SERVING_HOST": "127.0.0.1",
        "SERVING_LOG_LEVEL": "INFO",
        "BENTOML_DO_NOT_TRACK": "True",
        **(extra_env or {}),
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--no-build", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"


def wait_ready(process: subprocess.Popen, http_url: str, grpc_target: str, log_path: Path, timeout: float = 120.0) -> float:
    """Seconds until HTTP /readyz is 200 and gRPC health is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    started = time.monotonic()
    deadline = started + timeout
    http_ready = False
    with grpc.insecure_channel(grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-5000:]}")
            try:
                http_ready = http_ready or httpx.get(f"{http_url}/readyz", timeout=2).status_code == 200
                if http_ready and health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except (httpx.HTTPError, grpc.RpcError):
                pass
            time.sleep(0.3)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log_path.read_text(errors='replace')[-5000:]}")


def stop_server(process: subprocess.Popen, timeout: float = 40.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


@pytest.fixture(scope="session")
def server(trained_store, tmp_path_factory) -> Server:
    from training.data import load

    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, http_url, grpc_target = start_server(Path(trained_store.home), log_path)
    try:
        wait_ready(process, http_url, grpc_target, log_path)
        split = load("mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets"))
        yield Server(http_url, grpc_target, Path(trained_store.home), process, log_path,
                     split.x_test[:500], split.y_test[:500])
    finally:
        stop_server(process)
