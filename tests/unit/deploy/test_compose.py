"""deploy/compose.yaml: the service under the image name the build tags, its ports and stop grace, and a
Prometheus that mounts deploy/prometheus; Compose's own schema check where a Compose is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.settings import Settings, unknown_env_names

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "deploy" / "compose.yaml"


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_the_service_runs_the_cpu_image_on_both_ports() -> None:
    digits = services()["digits"]
    assert digits["image"] == "digits-cpu:latest"  # what `python -m deploy container` tags (and :<bento version>)
    assert sorted(digits["ports"]) == ["3000:3000", "8500:8500"]
    assert digits["stop_grace_period"] == "30s"
    env = {name: str(value) for name, value in digits.get("environment", {}).items()}
    assert unknown_env_names(env) == []
    settings = Settings.from_env(env)
    # Drain delay + drain timeout must end before BentoML kills a worker (30 s after SIGTERM) and before Docker does.
    assert settings.drain_delay_s + settings.drain_timeout_s < 30


def test_prometheus_mounts_the_repository_config_and_rules() -> None:
    prometheus = services()["prometheus"]
    image = prometheus["image"]
    # A Docker Hub short name with a pinned tag; no registry host name in the repository.
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", image), image
    assert prometheus["ports"] == ["9090:9090"]
    mounts = {}
    for volume in prometheus["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro", volume
        mounts[target] = (COMPOSE.parent / source).resolve()
    assert mounts == {
        "/etc/prometheus/prometheus.yml": REPO / "deploy" / "prometheus" / "prometheus.yml",
        "/etc/prometheus/alerts.yml": REPO / "deploy" / "prometheus" / "alerts.yml",
    }
    assert all(path.is_file() for path in mounts.values())
    # prometheus.yml scrapes the compose service by its name on the HTTP port.
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert [c["targets"] for job in config["scrape_configs"] for c in job["static_configs"]] == [["digits:3000"]]


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose here (`docker compose` plugin or `docker-compose`); the checks above still ran")
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
