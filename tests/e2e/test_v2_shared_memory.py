"""System shared memory over REST and gRPC, as tritonclient's shared memory utilities use it."""

from __future__ import annotations

import uuid
import warnings

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # its pkg_resources import
    import tritonclient.utils.shared_memory as shm  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

CLASSIFIER = "mnist-lstm"
N = 16
IN_BYTES, OUT_BYTES = N * 28 * 28 * 4, N * 10 * 4


@pytest.fixture(scope="module")
def images(server) -> np.ndarray:
    return (server.test_images[:N] / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def expected(server, images) -> np.ndarray:
    body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "lstm", "images": images.tolist()}, timeout=60).json()
    return np.array([p["probabilities"] for p in body["predictions"]], np.float32)


@pytest.fixture
def regions(images):
    """An input region holding the images and an output region, in one POSIX object each (cleaned up)."""
    tag = uuid.uuid4().hex[:8]
    keys = {"in": f"/digits-test-in-{tag}", "out": f"/digits-test-out-{tag}"}
    handles = {
        "in": shm.create_shared_memory_region(f"in-{tag}", keys["in"], IN_BYTES + 64),
        "out": shm.create_shared_memory_region(f"out-{tag}", keys["out"], OUT_BYTES + 64),
    }
    shm.set_shared_memory_region(handles["in"], [images], offset=64)  # the region starts 64 bytes in
    yield tag, keys, handles
    for handle in handles.values():
        shm.destroy_shared_memory_region(handle)


def _clients(server):
    return (
        tritonclient_http.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=60),
        tritonclient_grpc.InferenceServerClient(server.grpc_target),
    )


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_inputs_and_outputs_in_registered_regions(server, regions, expected, transport):
    tag, keys, handles = regions
    http, grpc = _clients(server)
    client, module = (http, tritonclient_http) if transport == "http" else (grpc, tritonclient_grpc)
    try:
        client.register_system_shared_memory(f"in-{tag}", keys["in"], IN_BYTES, offset=64)
        client.register_system_shared_memory(f"out-{tag}", keys["out"], OUT_BYTES, offset=64)
        # a registration through one transport (one worker) is seen through the other (any worker)
        for other in (http, grpc):
            status = other.get_system_shared_memory_status(as_json=True) if other is grpc else other.get_system_shared_memory_status()
            listed = status["regions"].values() if other is grpc else status
            assert {r["name"] for r in listed} >= {f"in-{tag}", f"out-{tag}"}, status
        x = module.InferInput("images", [N, 28, 28], "FP32")
        x.set_shared_memory(f"in-{tag}", IN_BYTES)
        out = module.InferRequestedOutput("probabilities")
        out.set_shared_memory(f"out-{tag}", OUT_BYTES)
        result = client.infer(CLASSIFIER, [x], outputs=[out])
        answer = result.get_output("probabilities")
        shape = list(answer["shape"] if transport == "http" else answer.shape)
        assert shape == [N, 10]
        probs = shm.get_contents_as_numpy(handles["out"], np.float32, [N, 10], offset=64)
        np.testing.assert_allclose(probs, expected, atol=1e-6)
    finally:
        http.unregister_system_shared_memory()
        assert http.get_system_shared_memory_status() == []
        http.close()
        grpc.close()


@pytest.mark.parametrize(
    "key,offset,size,words",
    [
        ("/no-such-object-here", 0, 16, "unable to open"),
        ("../../etc/passwd", 0, 16, "not a posix shared memory name"),
        (None, 0, IN_BYTES + 65, "past the end"),
        (None, 10**9, 16, "past the end"),
    ],
)
def test_bad_registrations_are_clear_errors_on_both_transports(server, regions, key, offset, size, words):
    tag, keys, _ = regions
    http, grpc = _clients(server)
    try:
        for client in (http, grpc):
            with pytest.raises(InferenceServerException) as raised:
                client.register_system_shared_memory(f"bad-{tag}", key or keys["in"], size, offset=offset)
            assert words in str(raised.value).lower(), str(raised.value)
        assert http.get_system_shared_memory_status() == []
    finally:
        http.close()
        grpc.close()


def test_reads_and_writes_outside_a_region_are_refused(server, regions):
    tag, keys, _ = regions
    http, grpc = _clients(server)
    try:
        http.register_system_shared_memory(f"in-{tag}", keys["in"], IN_BYTES, offset=64)
        http.register_system_shared_memory(f"out-{tag}", keys["out"], OUT_BYTES, offset=64)
        cases = [
            ("input past the region", f"in-{tag}", IN_BYTES, 8, f"out-{tag}", OUT_BYTES, "past the end of region"),
            ("output too small", f"in-{tag}", IN_BYTES, 0, f"out-{tag}", OUT_BYTES - 4, "byte size is only"),
            ("unknown region", "no-such-region", IN_BYTES, 0, f"out-{tag}", OUT_BYTES, "no shared memory region"),
        ]
        for client, module in ((http, tritonclient_http), (grpc, tritonclient_grpc)):
            for what, in_name, in_size, in_offset, out_name, out_size, words in cases:
                x = module.InferInput("images", [N, 28, 28], "FP32")
                x.set_shared_memory(in_name, in_size, offset=in_offset)
                out = module.InferRequestedOutput("probabilities")
                out.set_shared_memory(out_name, out_size)
                with pytest.raises(InferenceServerException) as raised:
                    client.infer(CLASSIFIER, [x], outputs=[out])
                assert words in str(raised.value), (what, str(raised.value))
    finally:
        http.unregister_system_shared_memory()
        http.close()
        grpc.close()


def test_status_of_an_unknown_region_is_not_found_and_cuda_shared_memory_is_not_offered(server):
    response = httpx.get(f"{server.http_url}/v2/systemsharedmemory/region/nope/status")
    assert response.status_code == 404 and "no shared memory region 'nope'" in response.json()["error"]
    assert httpx.get(f"{server.http_url}/v2/cudasharedmemory/status").json() == []
    cuda = httpx.post(
        f"{server.http_url}/v2/cudasharedmemory/region/x/register", json={"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": 4}
    )
    assert cuda.status_code == 501 and "system shared memory" in cuda.json()["error"]
    assert "system_shared_memory" in httpx.get(f"{server.http_url}/v2").json()["extensions"]
