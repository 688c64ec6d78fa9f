"""The Bento: built from the bentofiles, checked without running it, then served from outside the repository.

Builds both variants into the ``trained_store`` (a few seconds each, no Docker),
checks their contents and generated Dockerfiles (``deploy.bento.check_bento``,
hadolint included), then proves the Bento is self-contained: ``bentoml serve
<tag>`` from an empty working directory, and the exported Bento (what
``bentoml containerize`` copies into the image: code + models) served from a
fresh, empty ``BENTOML_HOME`` the way the image's command runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from deploy import bento
from loadtests.server import REPO, Service, free_port, stop, wait_ready

pytestmark = pytest.mark.slow

DIGIT = np.zeros((28, 28), dtype=np.uint8)
DIGIT[4:24, 13:16] = 255  # a vertical bar: some digit, and a valid request


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without anything that could make the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SERVING_BENTO") and not k.startswith("SERVING_")}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "SERVING_HOST": "127.0.0.1", **extra}


@pytest.fixture(scope="module")
def built(trained_store) -> dict[str, bento.Built]:
    """Both variants, built with the CLI (``python -m deploy bento``) into the trained store."""
    result = {}
    for variant in ("cpu", "gpu"):
        command = [sys.executable, "-m", "deploy", "bento", "--json"] + (["--gpu"] if variant == "gpu" else [])
        run = subprocess.run(command, cwd=REPO, env=clean_env(Path(trained_store.home)), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        data = json.loads(run.stdout.strip().splitlines()[-1])
        result[variant] = bento.Built(data["tag"], Path(data["path"]), data["variant"], data["models"])
    return result


@contextlib.contextmanager
def serve(target: str, home: Path, cwd: Path, log_path: Path) -> Iterator[str]:
    """``bentoml serve <target>`` on a free loopback port; yields the base URL, always stops it."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            # Every worker serves gRPC too: on a free port, never the default 8500 another server may share.
            cwd=cwd,
            env=clean_env(home, SERVING_GRPC_PORT=str(free_port())),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"bentoml serve {target} exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"bentoml serve {target} not ready in 90s:\n{log_path.read_text(errors='replace')[-4000:]}")
        yield url
    finally:
        stop(Service(process, url, "", log_path, time.monotonic()))


def classify(url: str) -> dict:
    response = httpx.post(f"{url}/v1/classify", json={"model": "lstm", "images": [DIGIT.tolist()]}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 1 and len(body["predictions"][0]["probabilities"]) == 10
    assert abs(sum(body["predictions"][0]["probabilities"]) - 1.0) < 1e-4
    return body


def served_versions(url: str) -> dict[str, str]:
    return {m["store_name"]: m["version"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["models"]}


def export(tag: str, home: Path, into: Path) -> Path:
    """``bentoml export`` (code + models, what containerize builds from), unpacked into ``into``."""
    archive = into.parent / f"{into.name}.bento"
    run = subprocess.run(
        [sys.executable, "-m", "bentoml", "export", tag, str(archive)], env=clean_env(home), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_bento_contents(built, trained_store, variant: str) -> None:
    item = built[variant]
    checks = {c.name: c for c in bento.check_bento(item, lint=False)}
    failed = [f"{c.name}: {c.detail}" for c in checks.values() if not c.ok]
    assert not failed, failed

    # Every model of the bentofile, at the version the store had as latest when the Bento was built.
    home = Path(trained_store.home)
    names = bento.bentofile(variant)["models"]
    latest = {n: (home / "models" / n / "latest").read_text().strip() for n in names}
    assert sorted(item.models) == sorted(f"{n}:{v}" for n, v in latest.items())

    info = yaml.safe_load((item.path / "bento.yaml").read_text())
    assert info["service"] == "serving.service:DigitsService"
    assert info["labels"]["variant"] == variant
    sources = {str(p.relative_to(item.path / "src")) for p in (item.path / "src").rglob("*") if p.is_file()}
    assert {
        "serving/service.py",
        "serving/__main__.py",
        "serving/transport/grpc.py",
        "serving/protocols/tfserving/predict.py",
        "serving/core/engine.py",
        "contract/protos/tensorflow_serving/apis/prediction_service_pb2_grpc.py",
        *bento.DEMO_ASSETS,
    } <= sources
    assert not [s for s in sources if s.split("/")[0] in ("tests", "training", "runs", "results", "data", "exports")]

    dockerfile = (item.path / "env" / "docker" / "Dockerfile").read_text()
    base = "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04" if variant == "gpu" else "python:3.11-slim"
    assert f"FROM {base} " in dockerfile
    assert "EXPOSE 3000" in dockerfile and "EXPOSE 8500" in dockerfile
    assert 'CMD ["python", "-m", "serving", "--no-build"]' in dockerfile
    requirements = (item.path / "env" / "python" / "requirements.txt").read_text().split()
    assert ("onnxruntime-gpu==1.31.1" in requirements) == (variant == "gpu")
    assert ("onnxruntime==1.31.1" in requirements) == (variant == "cpu")
    assert not [r for r in requirements if r.lower().startswith(("tensorflow", "tf-", "keras"))], requirements


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_generated_dockerfile_passes_hadolint(built, variant: str) -> None:
    findings = bento.hadolint(built[variant].path / "env" / "docker" / "Dockerfile")
    assert not findings, findings


def test_check_cli_passes(built, trained_store) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "deploy", "check", "--bento", built["cpu"].tag, "--json"],
        cwd=REPO,
        env=clean_env(Path(trained_store.home)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert all(c["ok"] for c in json.loads(run.stdout)["checks"])


def test_bento_serves_from_an_empty_directory(built, trained_store, tmp_path: Path) -> None:
    # No repository on sys.path: `serving` can only come from the Bento's src/.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    with serve(built["cpu"].tag, Path(trained_store.home), cwd, tmp_path / "serve.log") as url:
        assert classify(url)["model"] == "lstm"
        # The demo page's files come from the Bento too.
        for path, kind in (("/demo/", "text/html"), ("/demo/demo.js", "text/javascript"), ("/demo/demo.css", "text/css")):
            answer = httpx.get(url + path, timeout=10)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), (path, answer.status_code)


def test_exported_bento_carries_its_models(built, trained_store, tmp_path: Path) -> None:
    # What the image holds: the exported Bento with models/ inside, and an empty BENTOML_HOME.
    directory = export(built["cpu"].tag, Path(trained_store.home), tmp_path / "bento")
    assert sorted(p.name for p in (directory / "models").iterdir()) == sorted(t.partition(":")[0] for t in built["cpu"].models)
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    with serve(str(directory), empty_home, directory, tmp_path / "serve.log") as url:
        classify(url)
        assert served_versions(url) == dict(t.split(":") for t in built["cpu"].models)
    assert not (empty_home / "models").exists() or not any((empty_home / "models").iterdir())


def test_image_command_serves_http_and_grpc(built, trained_store, tmp_path: Path) -> None:
    """The image's CMD, with the image's environment, against the exported Bento."""
    directory = export(built["cpu"].tag, Path(trained_store.home), tmp_path / "bento")
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    http_port, grpc_port = free_port(), free_port()
    log_path = tmp_path / "launcher.log"
    env = clean_env(empty_home, SERVING_BENTO=str(directory), PYTHONPATH=str(directory / "src"))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *bento.COMMAND[1:], "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log_path, time.monotonic())
    try:
        # Ready means HTTP /readyz is 200 and gRPC health says SERVING.
        wait_ready(service, timeout=120)
        classify(service.http_url)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    finally:
        stop(service)


def test_bento_serves_its_own_model_versions(built, trained_store, tmp_path: Path) -> None:
    """A newer model in the store after the build must not leak into `bentoml serve <bento>`."""
    home = tmp_path / "store"
    shutil.copytree(Path(trained_store.home), home, ignore=shutil.ignore_patterns("tmp", "prometheus_multiproc_dir"))
    newer = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import bentoml, shutil\n"
                "old = bentoml.models.get('mnist-lstm:latest')\n"
                "with bentoml.models.create('mnist-lstm', metadata=dict(old.info.metadata), labels=dict(old.info.labels)) as m:\n"
                "    [shutil.copy2(old.path_of(f), m.path_of(f)) for f in ('model.onnx', 'signature.json')]\n"
                "print(m.tag)\n"
            ),
        ],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert newer.returncode == 0, newer.stderr[-2000:]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    with serve(built["cpu"].tag, home, cwd, tmp_path / "serve.log") as url:
        assert served_versions(url) == dict(t.split(":") for t in built["cpu"].models)
