"""The CPU image, built and run on a real Docker engine (``make container-test``).

Builds the Bento into the session's trained store, the image from it (``deploy.image.build_image``,
cached by Docker's layer cache and the host wheelhouse), runs it on the host network bound to
loopback (no docker-proxy in the way: a refused connection stays refused), and talks to it the way
users do: ``/v1`` JSON and PNG, Triton's clients over v2 REST and gRPC, the TF Serving stub, the demo
page. Last, ``docker stop`` under a closed-loop load: no accepted request lost, exit code 0.

Needs a Docker engine and a base image: ``BASE_IMAGE`` (default python:3.11-slim; where no
registry is reachable, ``make base-image`` and ``BASE_IMAGE=digits-base:bookworm``). Without an
engine the module skips, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from deploy import bento, image
from loadtests.drivers.core import Tally
from loadtests.drivers.http import closed_loop_outcomes
from loadtests.server import REPO, free_port
from loadtests.workload import classify_body, images_json

pytestmark = pytest.mark.slow

MAX_IMAGE_MB = 1200
READY_S = 15.0


def _engine_or_skip() -> None:
    why = bento.docker_engine()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI runs the container test, but no Docker engine answers: {why}", pytrace=False)
    pytest.skip(f"no Docker engine ({why}); start dockerd to run the container test")


@dataclass
class Running:
    name: str
    http_port: int
    grpc_port: int
    started: float
    ready_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def logs(self) -> str:
        logs = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
        return (logs.stdout + logs.stderr)[-4000:]


@pytest.fixture(scope="module")
def built_image(trained_store) -> image.Image:
    _engine_or_skip()
    env = {**os.environ, "BENTOML_HOME": str(trained_store.home)}
    made = subprocess.run(
        [sys.executable, "-m", "deploy", "bento", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr[-3000:]
    tag = json.loads(made.stdout.strip().splitlines()[-1])["tag"]
    built = subprocess.run(
        [sys.executable, "-m", "deploy", "container", "--bento", tag, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    data = json.loads(built.stdout.strip().splitlines()[-1])
    return image.Image(tuple(data["tags"]), data["bento"], data["base"], data["size_mb"])


def run_container(tag: str, name: str, options: tuple[str, ...] = (), **env: str) -> Running:
    http_port, grpc_port = free_port(), free_port()
    settings = {"SERVING_HOST": "127.0.0.1", "SERVING_HTTP_PORT": str(http_port), "SERVING_GRPC_PORT": str(grpc_port), **env}
    cmd = ["docker", "run", "-d", "--name", name, "--network", "host", "--stop-timeout", "30", *options]
    cmd += [a for k, v in settings.items() for a in ("-e", f"{k}={v}")] + [tag]
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    running = Running(name, http_port, grpc_port, started, 0.0)
    deadline = started + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                running.ready_s = time.monotonic() - started
                return running
        except httpx.HTTPError:
            pass
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True).stdout.strip()
        if state == "false":
            break
        time.sleep(0.2)
    raise AssertionError(f"container {name} never became ready; its log:\n{running.logs()}")


def remove(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def container(built_image: image.Image) -> Iterator[Running]:
    name = f"digits-test-{os.getpid()}"
    remove(name)
    try:
        yield run_container(built_image.tags[0], name)
    finally:
        remove(name)


@pytest.fixture(scope="module")
def digits(datasets_dir) -> tuple[np.ndarray, np.ndarray]:
    from training.data import load

    split = load("mnist", str(datasets_dir))
    return split.x_test[:64], split.y_test[:64]


def test_image_size_user_and_health(built_image: image.Image, container: Running) -> None:
    assert built_image.size_mb <= MAX_IMAGE_MB, f"{built_image.size_mb:.0f} MB"
    inspect = json.loads(subprocess.run(["docker", "inspect", built_image.tags[0]], capture_output=True, text=True, check=True).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == f"{image.UID}:{image.UID}"
    assert {"3000/tcp", "8500/tcp"} <= set(config["ExposedPorts"])
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    assert container.ready_s <= READY_S, f"ready after {container.ready_s:.1f}s\n{container.logs()}"
    # The image's own HEALTHCHECK turns healthy (its first probe comes after --interval).
    deadline = time.monotonic() + 40
    health = ""
    while time.monotonic() < deadline:
        health = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", container.name], capture_output=True, text=True
        ).stdout.strip()
        if health == "healthy":
            break
        time.sleep(1)
    assert health == "healthy"
    # No TensorFlow, the CPU build of ONNX Runtime, and the fast event loop and parser uvicorn picks.
    probe = "import importlib.util as u, onnxruntime as o; print(u.find_spec('tensorflow') is None, o.get_device(), u.find_spec('uvloop') is not None)"
    out = subprocess.run(
        ["docker", "exec", container.name, "python", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "CPU", "True"]


def test_classify_and_generate_png(container: Running, digits) -> None:
    images, labels = digits
    answer = httpx.post(f"{container.url}/v1/classify", json={"images": images[:16].tolist()}, timeout=30)
    assert answer.status_code == 200, answer.text
    predicted = [p["label"] for p in answer.json()["predictions"]]
    assert len(predicted) == 16 and all(0 <= p <= 9 for p in predicted)
    png = httpx.get(f"{container.url}/v1/generate/manifold", params={"n": 5}, timeout=30)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    demo = httpx.get(f"{container.url}/demo/", timeout=30)
    assert demo.status_code == 200 and "<html" in demo.text.lower()


def test_v2_rest_and_grpc_with_tritonclient(container: Running, digits) -> None:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    images = (digits[0][:4].astype(np.float32) / 255.0).reshape(4, 28, 28)
    results = []
    for module, target in ((thttp, f"127.0.0.1:{container.http_port}"), (tgrpc, f"127.0.0.1:{container.grpc_port}")):
        client = module.InferenceServerClient(target)
        assert client.is_server_ready()
        tensor = module.InferInput("images", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        results.append(client.infer("mnist-lstm", [tensor]).as_numpy("probabilities"))
        client.close()
    assert results[0].shape == (4, 10)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_tf_serving_predict_stub(container: Running, digits) -> None:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from contract.tensors import array_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lstm"
    request.inputs["images"].CopyFrom(array_to_tensor_proto(digits[0][:3].astype(np.float32) / 255.0))
    with grpc.insecure_channel(f"127.0.0.1:{container.grpc_port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert list(response.outputs["probabilities"].tensor_shape.dim)[0].size == 3


def test_a_mounted_store_is_served_instead_of_the_image_models(built_image: image.Image, trained_store, tmp_path) -> None:
    """The documented option: a store's models mounted over the image's, served from source instead of the Bento."""
    import shutil

    models = tmp_path / "models"
    source = trained_store.home / "models" / "mnist-lstm"
    shutil.copytree(source, models / "mnist-lstm")  # a store holding one model: what is served shows where it came from
    # BentoML makes each version's folder 0700: the image's user (1034) must be able to read the mount.
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"digits-store-{os.getpid()}"
    remove(name)
    try:
        mount = ("-v", f"{models}:/home/bentoml/models:ro")
        running = run_container(built_image.tags[0], name, mount, SERVING_BENTO="serving.service:DigitsService")
        served = httpx.get(f"{running.url}/v1/models", timeout=30).json()
        names = sorted(m["name"] for m in served["models"])
        assert names == ["lstm"], served
    finally:
        remove(name)


# The drain's first step (serving.transport.drain), run in the image as its user: can it filter the listener?
FILTER_PROBE = (
    "import socket; from serving.transport.drain import refuse_new_connections; "
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); raise SystemExit(0 if refuse_new_connections(s) else 1)"
)


def unprivileged_filters(tag: str) -> bool:
    """Whether this kernel lets the image's (non-root) user attach a socket filter. Stock kernels do;
    some (this machine's: BPF JIT always on) want CAP_NET_ADMIN, which no non-root process has."""
    probe = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", FILTER_PROBE], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def test_docker_stop_under_load_loses_nothing(built_image: image.Image, digits) -> None:
    """A second container: closed-loop load, then ``docker stop``; every request is answered or refused at
    connect, and the container exits 0 within the drain bounds.

    Where the kernel refuses the drain's socket filter to non-root users, the container runs as root with
    CAP_NET_ADMIN (``--user 0 --cap-add NET_ADMIN``, what docs/deploy.md tells ops to do on such kernels):
    without the filter, connections the kernel queues after the workers stop accepting are reset."""
    name = f"digits-stop-{os.getpid()}"
    remove(name)
    privileges = () if unprivileged_filters(built_image.tags[0]) else ("--user", "0", "--cap-add", "NET_ADMIN")
    try:
        running = run_container(built_image.tags[0], name, privileges, SERVING_DRAIN_DELAY_S="1")
        body = classify_body(images_json(digits[0][0]), "lstm")
        request = (
            f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        result: dict[str, object] = {}

        async def scenario() -> None:
            stop = asyncio.Event()
            load = asyncio.ensure_future(closed_loop_outcomes(running.http_port, [request], 8, 60.0, stop))
            await asyncio.sleep(2.0)
            started = time.monotonic()
            stopped = await asyncio.to_thread(subprocess.run, ["docker", "stop", name], capture_output=True, timeout=60)
            result["stop_s"] = time.monotonic() - started
            result["stopped"] = stopped.returncode
            stop.set()
            result["outcomes"] = await load

        asyncio.run(scenario())
        outcomes = result["outcomes"]
        assert isinstance(outcomes, list)
        tally = Tally.of(outcomes)
        answered, lost, errors = tally.answered, tally.lost, tally.errors
        exit_code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True).stdout.strip()
        summary = f"{' '.join(privileges) or 'as the image user'}: {len(answered)} answered, {len(lost)} lost, {len(errors)} errors; stop {result['stop_s']:.1f}s, exit {exit_code}"
        print(f"docker stop under load: {summary}")
        assert result["stopped"] == 0
        assert len(answered) > 50 and not lost and not errors, f"{summary}\n{running.logs()}"
        assert exit_code == "0", f"{summary}\n{running.logs()}"
    finally:
        remove(name)
