"""One real server (BentoML HTTP + TF-Serving gRPC front) per test session, on free loopback ports.

Starting, waiting for and stopping the service live in ``loadtests.server`` (the benchmark uses them too).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtests.server import REPO, launch, stop, wait_ready


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


@pytest.fixture(scope="session")
def server(trained_store, tmp_path_factory) -> Server:
    from training.data import load

    # Its own BENTOML_HOME over the session's models: BentoML empties $BENTOML_HOME/prometheus_multiproc_dir
    # whenever a server starts, so a second server on the same home (a load test, a package test) would
    # leave this one's /metrics frozen.
    home = tmp_path_factory.mktemp("server-home")
    (home / "models").symlink_to(Path(trained_store.home).resolve() / "models", target_is_directory=True)
    service = launch(tmp_path_factory.mktemp("server") / "server.log", str(home))
    try:
        wait_ready(service, timeout=120)
        split = load("mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets"))
        yield Server(service.http_url, service.grpc_target, home, service.process, service.log_path, split.x_test[:500], split.y_test[:500])
    finally:
        stop(service)
