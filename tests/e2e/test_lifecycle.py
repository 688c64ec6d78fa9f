"""Model lifecycle against a real server: hot reload under load, versions side by side, labels, refusals, control API.

The server here has its own copy of the session's trained store (tests publish versions into it),
polls the store every second and has the control API on. Each test works on its own model, so the
tests do not depend on each other's order.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from contract import tensors
from contract.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from loadtests.server import REPO, launch, processes, stop, wait_ready

pytestmark = pytest.mark.slow

POLL_S = 1.0


@pytest.fixture(scope="module")
def life(trained_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    home, runs = root / "bentoml", root / "runs"
    shutil.copytree(trained_store.home, home, symlinks=True)
    shutil.copytree(trained_store.runs, runs, symlinks=True)
    env = {
        "SERVING_MODEL_POLL_S": str(POLL_S),
        "SERVING_MODEL_CONTROL": "true",
        "SERVING_RETIRE_GRACE_S": "1",
        "SERVING_VERSION_POLICY": "latest; mnist-simple-rnn-cell=latest 2",
        "SERVING_STATE_DIR": str(root / "state"),
    }
    service = launch(root / "server.log", str(home), extra_env=env)
    try:
        wait_ready(service, timeout=120)
        service.home, service.runs = home, runs  # type: ignore[attr-defined]
        yield service
    finally:
        stop(service)


def publish(home: Path, store_name: str, onnx_from: str | None = None, tamper: bool = False) -> str:
    """Register a new version of ``store_name`` through BentoML's public API, from the newest stored files
    (``onnx_from``: another model's ONNX file and sha256, i.e. other weights; ``tamper``: a corrupt file)."""
    code = f"""
import json, shutil, sys, bentoml
base = bentoml.models.get({store_name!r})
source = bentoml.models.get({onnx_from or store_name!r})
metadata = dict(base.info.metadata)
metadata["sha256"] = source.info.metadata["sha256"]
with bentoml.models.create({store_name!r}, metadata=metadata, labels=dict(base.info.labels)) as model:
    shutil.copy2(base.path_of("signature.json"), model.path_of("signature.json"))
    data = bytearray(open(source.path_of("model.onnx"), "rb").read())
    if {tamper!r}:
        data[len(data) // 2] ^= 0xFF
    open(model.path_of("model.onnx"), "wb").write(bytes(data))
print(model.tag.version)
"""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def versions_of(service, store_name: str) -> dict[str, dict]:
    return {m["version"]: m for m in httpx.get(f"{service.http_url}/v1/models").json()["models"] if m["store_name"] == store_name}


def on_every_worker(service, store_name: str, numbers: list[int]) -> bool:
    """True once every worker says it serves exactly ``numbers`` of ``store_name`` (``[]``: none)."""
    workers = httpx.get(f"{service.http_url}/v1/models").json()["workers"]
    return len(workers) == 2 and all(sorted(w.get(store_name, []), reverse=True) == numbers for w in workers.values())


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def classify(service, model: str, images: np.ndarray, version: str | None = None) -> dict:
    body = {"model": model, "images": images.tolist(), **({"version": version} if version else {})}
    response = httpx.post(f"{service.http_url}/v1/classify", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def rss_mb(service) -> float:
    return sum(p.memory_info().rss for _, p in processes(service)) / 2**20


# ------------------------------------------------------------------ hot reload under load


class SteadyLoad:
    """Closed-loop single-image requests over HTTP and gRPC; records every answer's version and every failure."""

    def __init__(self, service, store_name: str, public: str) -> None:
        self.service, self.store_name, self.public = service, store_name, public
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, str]] = []  # (time, protocol, version number)
        self.failures: collections.Counter[str] = collections.Counter()
        self.threads = [threading.Thread(target=self._http, daemon=True) for _ in range(3)]
        self.threads += [threading.Thread(target=self._grpc, daemon=True) for _ in range(2)]
        self.numbers: dict[str, str] = {}

    def __enter__(self) -> SteadyLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _http(self) -> None:
        image = [[0] * 28] * 28
        with httpx.Client(base_url=self.service.http_url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/v1/classify", json={"model": self.public, "images": [image]})
                    if r.status_code == 200:
                        self.answers.append((time.monotonic(), "http", r.json()["version"]))
                    else:
                        self.failures[f"HTTP {r.status_code}: {r.text[:120]}"] += 1
                except httpx.HTTPError as e:
                    self.failures[f"HTTP {type(e).__name__}"] += 1

    def _grpc(self) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.store_name
        request.inputs["images"].CopyFrom(tensors.array_to_tensor_proto(np.zeros((1, 28, 28), np.float32)))
        with grpc.insecure_channel(self.service.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self.stop.is_set():
                try:
                    response = stub.Predict(request, timeout=30)
                    self.answers.append((time.monotonic(), "grpc", str(response.model_spec.version.value)))
                except grpc.RpcError as e:
                    self.failures[f"gRPC {e.code().name}: {e.details()[:120]}"] += 1


def test_a_published_version_goes_live_under_load_with_zero_failures(life):
    store_name, public = "mnist-lstm", "lstm"
    (old,) = versions_of(life, store_name).values()
    with SteadyLoad(life, store_name, public) as load:
        time.sleep(2)
        published_at = time.monotonic()
        # The user's path: re-export the trained run, which registers a new version of this one model.
        env = {**os.environ, "BENTOML_HOME": str(life.home), "BENTOML_DO_NOT_TRACK": "True", "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(
            [sys.executable, "-m", "training", "export", "--model", public, "--runs", str(life.runs)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        registered = time.monotonic()
        new = wait_for(
            lambda: next((v for v in versions_of(life, store_name).values() if v["version"] != old["version"]), None),
            POLL_S + 10,
            "the new version in /v1/models",
        )
        new_tag, new_number = new["version"], str(new["version_number"])

        def switched() -> bool:  # the latest answers on both protocols name the new version
            recent = load.answers[-50:]
            return len(recent) == 50 and {v for _, _, v in recent} <= {new_tag, new_number}

        wait_for(switched, POLL_S + 10, "every answer to name the new version")
        switched_at = time.monotonic()
        time.sleep(2)
    assert load.failures == {}, load.failures
    assert switched_at - registered <= POLL_S + 10
    after = [(p, v) for t, p, v in load.answers if t > switched_at]
    assert after and all(v in (new_tag, new_number) for _, v in after)
    assert {p for p, _ in after} == {"http", "grpc"}
    before = {v for t, _, v in load.answers if t < published_at}
    assert before <= {old["version"], str(old["version_number"])}
    wait_for(lambda: on_every_worker(life, store_name, [new["version_number"]]), 10, "the old version to be retired everywhere")


# ------------------------------------------------------------------ side by side, labels, memory


def test_two_versions_side_by_side_labels_move_traffic_and_unload_frees_memory(life, server):
    store_name, public = "mnist-simple-rnn-cell", "simple-rnn-cell"  # this server serves its latest 2
    images = (server.test_images[:8] / 255.0).astype(np.float32)
    (old,) = versions_of(life, store_name).values()
    old_probs = np.array([p["probabilities"] for p in classify(life, public, images)["predictions"]])
    rss_before = rss_mb(life)
    # A new version with other weights (the dense-rnn's ONNX file): its answers must be its own.
    new_tag = publish(life.home, store_name, onnx_from="mnist-dense-rnn")
    new_entry = wait_for(lambda: versions_of(life, store_name).get(new_tag), POLL_S + 10, "the new version")
    new_number = str(new_entry["version_number"])
    wait_for(
        lambda: on_every_worker(life, store_name, [int(new_number), old["version_number"]]),
        POLL_S + 10,
        "two served versions on every worker",
    )
    dense = np.array([p["probabilities"] for p in classify(life, "dense-rnn", images)["predictions"]])

    as_new = classify(life, public, images, version=new_number)
    as_old = classify(life, public, images, version=str(old["version_number"]))
    assert as_new["version"] == new_tag and as_old["version"] == old["version"]
    np.testing.assert_allclose([p["probabilities"] for p in as_new["predictions"]], dense, atol=1e-6)
    np.testing.assert_allclose([p["probabilities"] for p in as_old["predictions"]], old_probs, atol=1e-6)
    assert classify(life, public, images)["version"] == new_tag  # unversioned: the newest

    def unversioned_all(tag: str) -> bool:  # 20 in a row, so both workers answered
        return all(classify(life, public, images[:1])["version"] == tag for _ in range(20))

    # The stable label moves unversioned traffic, on HTTP and gRPC, on every worker.
    label = httpx.put(f"{life.http_url}/v1/models/{public}/labels/stable", json={"version": str(old["version_number"])})
    assert label.status_code == 200 and label.json()["labels"] == {"stable": str(old["version_number"])}
    wait_for(lambda: unversioned_all(old["version"]), 10, "unversioned traffic on the stable version")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = store_name
    request.model_spec.version_label = "stable"
    request.inputs["images"].CopyFrom(tensors.array_to_tensor_proto(images[:1]))
    with grpc.insecure_channel(life.grpc_target) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert str(answer.model_spec.version.value) == str(old["version_number"])
    httpx.put(f"{life.http_url}/v1/models/{public}/labels/stable", json={"version": new_tag}).raise_for_status()
    wait_for(lambda: unversioned_all(new_tag), 10, "unversioned traffic to follow the label")
    v2_meta = httpx.get(f"{life.http_url}/v2/models/{store_name}").json()
    assert set(v2_meta["versions"]) == {new_number, str(old["version_number"])}
    rss_loaded = rss_mb(life)

    unload = httpx.post(f"{life.http_url}/v2/repository/models/{store_name}/unload", json={"parameters": {"version": new_number}})
    assert unload.status_code == 200, unload.text
    wait_for(lambda: on_every_worker(life, store_name, [old["version_number"]]), 10, "the unloaded version to go everywhere")
    assert classify(life, public, images)["version"] == old["version"]  # the label names nothing served: newest
    missing = httpx.post(f"{life.http_url}/v1/classify", json={"model": public, "version": new_number, "images": [[[0] * 28] * 28]})
    assert missing.status_code == 404 and "no version" in missing.json()["error"]
    time.sleep(1.5)  # the retire grace and the drained queue, then the session is dropped
    rss_after = rss_mb(life)
    assert rss_after <= rss_before * 1.10, (rss_before, rss_loaded, rss_after)
    index = httpx.post(f"{life.http_url}/v2/repository/index").json()
    row = next(r for r in index if r["name"] == store_name and r["version"] == new_number)
    assert row["state"] == "UNAVAILABLE" and "unloaded" in row["reason"]


def test_a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving(life, server):
    store_name, public = "mnist-stacked-lstm", "stacked-lstm"
    (old,) = versions_of(life, store_name).values()
    bad_tag = publish(life.home, store_name, tamper=True)
    index_url = f"{life.http_url}/v2/repository/index"

    def refused() -> dict | None:
        rows = [r for r in httpx.post(index_url).json() if r["name"] == store_name and r["state"] == "UNAVAILABLE"]
        return next((r for r in rows if "sha256" in r["reason"]), None)

    row = wait_for(refused, POLL_S + 10, "the corrupt version to be refused")
    assert "refused" in row["reason"]
    assert list(versions_of(life, store_name)) == [old["version"]]
    assert classify(life, public, (server.test_images[:2] / 255.0).astype(np.float32))["version"] == old["version"]
    assert f"refused {store_name}:{bad_tag}" in life.log_path.read_text(errors="replace")


def test_triton_clients_drive_the_repository(life):
    tritonclient_http = pytest.importorskip("tritonclient.http")
    tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
    store_name = "mnist-lstm-cell"
    http = tritonclient_http.InferenceServerClient(life.http_url.removeprefix("http://"))
    rpc = tritonclient_grpc.InferenceServerClient(life.grpc_target)
    index = {r["name"] for r in http.get_model_repository_index()}
    assert {"mnist-lstm-cell", "fashion-vae2-decoder"} <= index
    assert store_name in {m.name for m in rpc.get_model_repository_index().models}
    rpc.unload_model(store_name)
    wait_for(lambda: on_every_worker(life, store_name, []), 10, "the model to be unloaded on every worker")
    assert not http.is_model_ready(store_name)
    gone = httpx.post(f"{life.http_url}/v1/classify", json={"model": "lstm-cell", "images": [[[0] * 28] * 28]})
    assert gone.status_code == 404
    http.load_model(store_name)
    wait_for(
        lambda: (
            len(on_every_worker_numbers := versions_of(life, store_name)) == 1
            and on_every_worker(life, store_name, [next(iter(on_every_worker_numbers.values()))["version_number"]])
        ),
        10,
        "the model to be back on every worker",
    )
    assert rpc.is_model_ready(store_name)
    with pytest.raises(Exception, match="no stored model"):
        http.load_model("no-such-model")


def test_control_api_is_off_by_default(server):
    for path in ("/v2/repository/models/mnist-lstm/unload", "/v2/repository/models/mnist-lstm/load"):
        response = httpx.post(f"{server.http_url}{path}")
        assert response.status_code == 403 and "SERVING_MODEL_CONTROL" in response.json()["error"]
    label = httpx.put(f"{server.http_url}/v1/models/lstm/labels/stable", json={"version": "1"})
    assert label.status_code == 403
    assert httpx.post(f"{server.http_url}/v2/repository/index").status_code == 200  # reading is allowed
    with grpc.insecure_channel(server.grpc_target) as channel:
        from contract.protos.inference import grpc_service_pb2 as pb
        from contract.protos.inference import grpc_service_pb2_grpc

        with pytest.raises(grpc.RpcError) as info:
            grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryModelUnload(
                pb.RepositoryModelUnloadRequest(model_name="mnist-lstm"), timeout=10
            )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert json.loads(httpx.get(f"{server.http_url}/v1/models/lstm").text)["ready"]
