"""Compressed requests and answers, as tritonclient sends and reads them, and bounded inflation (bombs)."""

from __future__ import annotations

import gzip
import zlib

import grpc
import httpx
import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

from tests.e2e.test_http import assert_client_error  # noqa: E402

CLASSIFIER = "mnist-lstm"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def images(server) -> np.ndarray:
    return (server.test_images[:8] / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def expected(server, images) -> np.ndarray:
    body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "lstm", "images": images.tolist()}, timeout=60).json()
    return np.array([p["probabilities"] for p in body["predictions"]])


def _classify_json(images: np.ndarray) -> bytes:
    return httpx.Request("POST", "http://x", json={"model": "lstm", "images": images.tolist()}).read()


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("request_algorithm", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_algorithm", [None, "gzip", "deflate"])
def test_tritonclient_http_compression(server, images, expected, request_algorithm, response_algorithm):
    client = tritonclient_http.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=60)
    try:
        x = tritonclient_http.InferInput("images", list(images.shape), "FP32")
        x.set_data_from_numpy(images, binary_data=False)
        result = client.infer(
            CLASSIFIER,
            [x],
            outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=False)],
            request_compression_algorithm=request_algorithm,
            response_compression_algorithm=response_algorithm,
        )
    finally:
        client.close()
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)


@pytest.mark.parametrize("encoding,pack", [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)])
def test_v1_takes_compressed_bodies_and_answers_compressed(server, images, expected, encoding, pack):
    body = pack(_classify_json(images))
    headers = {"content-type": "application/json", "content-encoding": encoding, "accept-encoding": encoding}
    with httpx.Client(timeout=60) as client:
        raw = client.build_request("POST", f"{server.http_url}/v1/classify", content=body, headers=headers)
        response = client.send(raw)
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == encoding and "Accept-Encoding" in response.headers.get("vary", "")
    probs = np.array([p["probabilities"] for p in response.json()["predictions"]])  # httpx inflates it
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_small_answers_and_unasked_ones_are_not_compressed(server):
    assert "content-encoding" not in httpx.get(f"{server.http_url}/v2/health/ready", headers={"accept-encoding": "gzip"}).headers
    big = httpx.get(f"{server.http_url}/v1/models", headers={"accept-encoding": "identity"})
    assert big.status_code == 200 and "content-encoding" not in big.headers
    preferred = httpx.get(f"{server.http_url}/v1/models", headers={"accept-encoding": "deflate;q=0.5, gzip;q=0.9, br"})
    assert preferred.headers["content-encoding"] == "gzip"


def _worker_rss(server) -> int:
    return sum(child.memory_info().rss for child in psutil.Process(server.process.pid).children(recursive=True))


@pytest.mark.parametrize(
    "body,encoding,status,words",
    [
        (b"not gzip at all", "gzip", 400, ["not valid gzip"]),
        (gzip.compress(b'{"images": [[0]]}')[:-12], "gzip", 400, ["truncated"]),
        (b"", "deflate", 400, ["empty"]),
        (b"{}", "br", 415, ["br", "gzip"]),
    ],
)
def test_bad_compressed_bodies_get_clear_errors(server, body, encoding, status, words):
    response = httpx.post(
        f"{server.http_url}/v1/classify", content=body, headers={"content-type": "application/json", "content-encoding": encoding}
    )
    assert_client_error(response, status, *words)


def test_a_gzip_bomb_is_413_without_memory_growth(server):
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB in about 0.5 MiB
    before = _worker_rss(server)
    for path in ("/v1/classify", "/v2/models/mnist-lstm/infer", "/v1/classify/batch"):
        response = httpx.post(f"{server.http_url}{path}", content=bomb, headers={"content-encoding": "gzip"}, timeout=60)
        assert response.status_code == 413 and "inflates to more than" in response.json()["error"], response.text
    grown = _worker_rss(server) - before
    assert grown < 64 * MiB, f"the workers grew by {grown / MiB:.0f} MiB answering gzip bombs"
    assert httpx.get(f"{server.http_url}/readyz").status_code == 200


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_grpc_compression(server, images, expected, algorithm):
    client = tritonclient_grpc.InferenceServerClient(server.grpc_target)
    try:
        x = tritonclient_grpc.InferInput("images", list(images.shape), "FP32")
        x.set_data_from_numpy(images)
        result = client.infer(CLASSIFIER, [x], compression_algorithm=algorithm)
    finally:
        client.close()
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)


def test_a_grpc_message_that_inflates_past_the_limit_is_resource_exhausted(server):
    request = pb.ModelInferRequest(model_name=CLASSIFIER, raw_input_contents=[bytes(64 * MiB)])  # 64 MiB of zeros, over 16 MiB
    request.inputs.add(name="images", datatype="FP32", shape=[64 * MiB // 3136, 28, 28])
    with grpc.insecure_channel(server.grpc_target, compression=grpc.Compression.Gzip) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, raised.value.details()
    assert httpx.get(f"{server.http_url}/readyz").status_code == 200
