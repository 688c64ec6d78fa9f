"""Restricted APIs (SERVING_RESTRICTED_API): admin groups need their key over HTTP and gRPC; inference stays open."""

from __future__ import annotations

import shutil
import uuid
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtests.server import launch, stop, wait_ready

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    import tritonclient.utils.shared_memory as shm  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

ADMIN = {"admin-key": "s3cret"}
STATS = {"stats-key": "other"}


@pytest.fixture(scope="module")
def restricted(trained_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("restricted")
    home = root / "bentoml"
    shutil.copytree(Path(trained_store.home) / "models", home / "models")
    env = {
        "SERVING_RESTRICTED_API": "model-repository,shared-memory:admin-key=s3cret; statistics:stats-key=other",
        "SERVING_MODEL_CONTROL": "true",
        "SERVING_STATE_DIR": str(root / "state"),
        "SERVING_WORKERS": "1",
    }
    service = launch(root / "server.log", str(home), extra_env=env)
    try:
        wait_ready(service, timeout=120)
        yield service
    finally:
        stop(service)


@pytest.mark.parametrize(
    "method,path,needs",
    [
        ("POST", "/v2/repository/index", ADMIN),
        ("POST", "/v2/repository/models/mnist-lstm/load", ADMIN),
        ("PUT", "/v1/models/lstm/labels/stable", ADMIN),
        ("GET", "/v2/systemsharedmemory/status", ADMIN),
        ("POST", "/v2/systemsharedmemory/unregister", ADMIN),
        ("GET", "/v2/models/stats", STATS),
        ("GET", "/v2/models/mnist-lstm/stats", STATS),
    ],
)
def test_http_admin_groups_need_their_key(restricted, method, path, needs):
    url = f"{restricted.http_url}{path}"
    body = {"version": "1"} if method == "PUT" else None
    for headers in ({}, {next(iter(needs)): "wrong"}, ADMIN if needs is STATS else STATS):
        refused = httpx.request(method, url, json=body, headers=headers, timeout=30)
        assert refused.status_code == 403, (headers, refused.text)
        assert f"send the header {next(iter(needs))!r}" in refused.json()["error"]
    allowed = httpx.request(method, url, json=body, headers=needs, timeout=30)
    assert allowed.status_code != 403, allowed.text


def test_inference_health_and_metadata_stay_open(restricted):
    url = restricted.http_url
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/mnist-lstm").status_code == 200
    assert httpx.post(f"{url}/v1/classify", json={"model": "lstm", "images": [[[0] * 28] * 28]}).status_code == 200
    grpc = tritonclient_grpc.InferenceServerClient(restricted.grpc_target)
    try:
        x = tritonclient_grpc.InferInput("images", [1, 28, 28], "FP32")
        x.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
        assert grpc.infer("mnist-lstm", [x]).as_numpy("probabilities").shape == (1, 10)
    finally:
        grpc.close()


def test_tritonclient_sends_the_key_as_header_or_metadata(restricted):
    http = tritonclient_http.InferenceServerClient(restricted.http_url.removeprefix("http://"))
    grpc = tritonclient_grpc.InferenceServerClient(restricted.grpc_target)
    key = f"/digits-restricted-{uuid.uuid4().hex[:8]}"
    region = shm.create_shared_memory_region("r", key, 64)
    try:
        for client in (http, grpc):
            with pytest.raises(InferenceServerException) as raised:
                client.get_inference_statistics("mnist-lstm")
            assert "restricted" in str(raised.value) and "stats-key" in str(raised.value)
            assert client.get_inference_statistics("mnist-lstm", headers=STATS) is not None
            with pytest.raises(InferenceServerException) as raised:
                client.register_system_shared_memory("r", key, 64)
            assert "admin-key" in str(raised.value)
            client.register_system_shared_memory("r", key, 64, headers=ADMIN)
            client.unregister_system_shared_memory("r", headers=ADMIN)
            with pytest.raises(InferenceServerException):
                client.get_model_repository_index(headers=STATS)  # another group's key is no key
            assert client.get_model_repository_index(headers=ADMIN) is not None
        with pytest.raises(InferenceServerException) as raised:
            grpc.get_inference_statistics("mnist-lstm", headers={"stats-key": "wrong"})
        assert "PERMISSION_DENIED" in str(raised.value.status())
    finally:
        http.close()
        grpc.close()
        shm.destroy_shared_memory_region(region)
