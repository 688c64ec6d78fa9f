"""The Open Inference Protocol (KServe v2) over REST and gRPC, used as Triton's and KServe's own clients use it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = REPO / os.environ.get("KSERVE_VENV", ".venv-kserve") / "bin" / "python"
CLASSIFIER, DECODER = "mnist-lstm", "fashion-vae2-decoder"


@pytest.fixture(scope="module")
def images(server) -> np.ndarray:
    return (server.test_images[:16] / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def v1_probabilities(server, images) -> np.ndarray:
    body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "lstm", "images": images.tolist()}, timeout=60).json()
    return np.array([p["probabilities"] for p in body["predictions"]])


@pytest.fixture(scope="module")
def triton_http(server):
    client = tritonclient_http.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_grpc(server):
    client = tritonclient_grpc.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def healthy(server) -> None:
    assert httpx.get(f"{server.http_url}/v2/health/ready", timeout=10).json() == {"ready": True}


# ------------------------------------------------------------------ tritonclient: metadata, readiness, infer


@pytest.mark.parametrize("client_name", ["triton_http", "triton_grpc"])
def test_triton_client_metadata_and_readiness(request, client_name, server):
    client = request.getfixturevalue(client_name)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(CLASSIFIER) and client.is_model_ready("lstm")
    as_json = client_name == "triton_http"
    server_meta = client.get_server_metadata() if as_json else _message_dict(client.get_server_metadata())
    assert server_meta["name"] == "digits"
    assert {"binary_tensor_data", "classification"} <= set(server_meta["extensions"])
    meta = client.get_model_metadata(CLASSIFIER) if as_json else _message_dict(client.get_model_metadata(CLASSIFIER))
    described = httpx.get(f"{server.http_url}/v1/models/{CLASSIFIER}").json()
    assert meta["name"] == CLASSIFIER and meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == [str(described["version_number"])]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == [("images", "FP32", [-1, 28, 28])]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("probabilities", "FP32")]  # the verdict's: when named
    config = client.get_model_config(DECODER) if as_json else _message_dict(client.get_model_config(DECODER))["config"]
    assert config["name"] == DECODER and int(config["max_batch_size"]) >= 1
    assert [int(d) for d in config["input"][0]["dims"]] == [2]


def _message_dict(message) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True)


@pytest.mark.parametrize("binary", [True, False])
def test_triton_http_infer_matches_v1(triton_http, images, v1_probabilities, binary):
    tensor = tritonclient_http.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    result = triton_http.infer(CLASSIFIER, [tensor], outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy("probabilities"), v1_probabilities, atol=1e-6)
    assert result.get_response()["model_name"] == CLASSIFIER


def test_triton_grpc_infer_matches_v1(triton_grpc, server, images, v1_probabilities):
    tensor = tritonclient_grpc.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = triton_grpc.infer(CLASSIFIER, [tensor])
    np.testing.assert_allclose(result.as_numpy("probabilities"), v1_probabilities, atol=1e-6)
    # Typed contents instead of raw bytes: the same answer.
    request = pb.ModelInferRequest(model_name="lstm")
    request.inputs.add(name="images", datatype="FP32", shape=images.shape).contents.fp32_contents.extend(images.ravel().tolist())
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    probs = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(len(images), 10)
    np.testing.assert_allclose(probs, v1_probabilities, atol=1e-6)


@pytest.mark.parametrize("client_name", ["triton_http", "triton_grpc"])
def test_uint8_pixels_and_the_classification_extension(request, client_name, server, v1_probabilities):
    client = request.getfixturevalue(client_name)
    module = tritonclient_http if client_name == "triton_http" else tritonclient_grpc
    pixels = server.test_images[:16].astype(np.uint8)
    tensor = module.InferInput("images", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    probs = client.infer("lstm", [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(probs, v1_probabilities, atol=1e-6)
    top = client.infer("lstm", [tensor], outputs=[module.InferRequestedOutput("probabilities", class_count=2)]).as_numpy("probabilities")
    assert top.shape == (16, 2)
    first = [entry.decode().split(":") for entry in top[:, 0]]
    assert [int(index) for _, index, _ in first] == v1_probabilities.argmax(1).tolist()
    assert [label for _, _, label in first] == [str(i) for i in v1_probabilities.argmax(1)]
    np.testing.assert_allclose([float(score) for score, _, _ in first], v1_probabilities.max(1), atol=1e-6)


@pytest.mark.parametrize("client_name", ["triton_http", "triton_grpc"])
def test_decoder_takes_z(request, client_name, server):
    client = request.getfixturevalue(client_name)
    module = tritonclient_http if client_name == "triton_http" else tritonclient_grpc
    z = np.array([[1.4, -1.3], [0.0, 0.0]], dtype=np.float32)
    tensor = module.InferInput("z", [2, 2], "FP32")
    tensor.set_data_from_numpy(z)
    decoded = client.infer("vae2", [tensor]).as_numpy("images")
    v1 = httpx.post(f"{server.http_url}/v1/generate", json={"model": "vae2", "z": z.tolist(), "format": "array"}).json()
    assert decoded.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(decoded[..., 0], np.array(v1["images"]), atol=1e-6)


def test_versioned_paths(server, triton_http):
    version = triton_http.get_model_metadata(CLASSIFIER)["versions"][0]
    assert triton_http.is_model_ready(CLASSIFIER, model_version=version)
    assert httpx.get(f"{server.http_url}/v2/models/{CLASSIFIER}/versions/{version}").json()["name"] == CLASSIFIER
    assert not triton_http.is_model_ready(CLASSIFIER, model_version="7")


def test_v2_requests_go_through_the_shared_batcher(server, triton_http, images):
    before = server.metric("model_queue_seconds_count", model=CLASSIFIER)
    tensor = tritonclient_http.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    for _ in range(3):
        triton_http.infer(CLASSIFIER, [tensor])
    assert server.metric("model_queue_seconds_count", model=CLASSIFIER) >= before + 3


def test_root_and_unknown_paths_answer_json(server):
    root = httpx.get(f"{server.http_url}/v2")
    assert root.status_code == 200 and root.json()["name"] == "digits"
    assert httpx.get(f"{server.http_url}/v2/health/live").json() == {"live": True}
    missing = httpx.get(f"{server.http_url}/v2/no/such/path")
    assert missing.status_code == 404 and "no route" in missing.json()["error"]


# ------------------------------------------------------------------ bad requests: the protocol's error, server healthy


def _body(inputs: list[dict], **extra) -> dict:
    return {"inputs": inputs, **extra}


ZEROS = [0.0] * 784


def _image(**overrides) -> dict:
    return {"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "data": ZEROS, **overrides}


REST_BAD = {
    "unknown model": ("no-such-model", _body([_image()]), {}, 404, "unknown model"),
    "unknown version": (f"{CLASSIFIER}/versions/999", _body([_image()]), {}, 404, "no version"),
    "wrong datatype": (CLASSIFIER, _body([_image(datatype="FP64")]), {}, 400, "datatype"),
    "unknown datatype": (CLASSIFIER, _body([_image(datatype="FLOAT")]), {}, 400, "datatype"),
    "shape not matching data": (CLASSIFIER, _body([_image(shape=[2, 28, 28])]), {}, 400, "holds 1568 elements"),
    "wrong shape": (CLASSIFIER, _body([_image(shape=[1, 784], data=ZEROS)]), {}, 400, "must have shape"),
    "negative dimension": (CLASSIFIER, _body([_image(shape=[-1, 28, 28])]), {}, 400, "non-negative"),
    "missing input": (CLASSIFIER, _body([]), {}, 400, "takes one input"),
    "unknown input": (CLASSIFIER, _body([_image(name="pixels")]), {}, 400, "no input 'pixels'"),
    "no data": (CLASSIFIER, _body([_image(data=None)]), {}, 400, "no data"),
    "strings in data": (CLASSIFIER, _body([_image(data=["a"] * 784)]), {}, 400, "only numbers"),
    "out of range": (CLASSIFIER, _body([_image(data=[2.0] * 784)]), {}, 400, "[0, 1]"),
    "uint8 over 255": (CLASSIFIER, _body([_image(datatype="UINT8", data=[300] * 784)]), {}, 400, "0..255"),
    "unknown output": (CLASSIFIER, _body([_image()], outputs=[{"name": "logits"}]), {}, 400, "logits"),
    "oversize rows": (CLASSIFIER, _body([_image(shape=[100000, 28, 28])]), {}, 413, "at most"),
    "not json": (CLASSIFIER, "{not json", {}, 400, "not valid json"),
    "no inputs field": (CLASSIFIER, {"id": "x"}, {}, 400, "inputs"),
}


def _post(server, model: str, body, headers: dict, content: bytes | None = None) -> httpx.Response:
    data = content if content is not None else (body if isinstance(body, str) else json.dumps(body)).encode()
    return httpx.post(f"{server.http_url}/v2/models/{model}/infer", content=data, headers=headers, timeout=30)


@pytest.mark.parametrize("case", sorted(REST_BAD))
def test_rest_bad_request_gets_the_protocol_error(server, case):
    model, body, headers, status, words = REST_BAD[case]
    response = _post(server, model, body, headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"} and words.lower() in payload["error"].lower(), payload
    healthy(server)


def _binary_request(header: dict, raw: bytes, declared: int | None = None) -> tuple[bytes, dict]:
    text = json.dumps(header).encode()
    return text + raw, {"Inference-Header-Content-Length": str(len(text) if declared is None else declared)}


@pytest.mark.parametrize(
    ("case", "declared", "size", "raw_len", "words"),
    [
        ("header length over the body", 10**6, 3136, 3136, "only"),
        ("header length not a number", "abc", 3136, 3136, "byte count"),
        ("header length inside the JSON", 5, 3136, 3136, "not valid json"),
        ("binary_data_size not the bytes sent", None, 3136, 3000, "3000 bytes follow"),
        ("bytes not the shape's", None, 3000, 3000, "needs 3136 bytes"),
    ],
)
def test_rest_binary_extension_errors(server, case, declared, size, raw_len, words):
    header = {"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}
    content, headers = _binary_request(header, b"\0" * raw_len, declared if isinstance(declared, int) else None)
    if isinstance(declared, str):
        headers = {"Inference-Header-Content-Length": declared}
    response = _post(server, CLASSIFIER, None, headers, content)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and words.lower() in response.json()["error"].lower(), response.json()
    healthy(server)


def test_rest_binary_request_and_json_response(server, images, v1_probabilities):
    header = {
        "inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32", "parameters": {"binary_data_size": images.nbytes}}],
        "id": "req-1",
    }
    content, headers = _binary_request(header, images.tobytes())
    response = _post(server, CLASSIFIER, None, headers, content)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"] == "req-1" and body["model_name"] == CLASSIFIER
    (out,) = body["outputs"]
    assert out["shape"] == [len(images), 10] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"]).reshape(len(images), 10), v1_probabilities, atol=1e-6)


def test_rest_body_over_the_limit_is_413(server):
    response = httpx.post(f"{server.http_url}/v2/models/{CLASSIFIER}/infer", content=b"0" * (17 << 20), timeout=60)
    assert response.status_code == 413 and "limit" in response.json()["error"]
    healthy(server)


GRPC_IMAGE = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28]}


def _grpc_bad() -> dict[str, tuple[pb.ModelInferRequest, grpc.StatusCode, str]]:
    def req(model=CLASSIFIER, version="", raw=(b"\0" * 3136,), **tensor) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(model_name=model, model_version=version, raw_input_contents=list(raw))
        message.inputs.add(**{**GRPC_IMAGE, **tensor})
        return message

    both = req()
    both.inputs[0].contents.fp32_contents.extend(ZEROS)
    return {
        "unknown model": (req(model="no-such-model"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        "unknown version": (req(version="999"), grpc.StatusCode.NOT_FOUND, "no version"),
        "wrong datatype": (req(datatype="INT32"), grpc.StatusCode.INVALID_ARGUMENT, "datatype"),
        "shape not matching data": (req(shape=[2, 28, 28]), grpc.StatusCode.INVALID_ARGUMENT, "needs 6272 bytes"),
        "contents not matching shape": (req(raw=()), grpc.StatusCode.INVALID_ARGUMENT, "no data"),
        "missing input": (pb.ModelInferRequest(model_name=CLASSIFIER), grpc.StatusCode.INVALID_ARGUMENT, "takes one input"),
        "raw and contents": (both, grpc.StatusCode.INVALID_ARGUMENT, "both"),
        "oversize": (req(shape=[10**6, 28, 28]), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most"),
        "NaN pixels": (req(raw=(np.full(784, np.nan, np.float32).tobytes(),)), grpc.StatusCode.INVALID_ARGUMENT, "non-finite"),
    }


@pytest.mark.parametrize("case", sorted(_grpc_bad()))
def test_grpc_bad_request_gets_its_code(server, case):
    message, code, words = _grpc_bad()[case]
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
    assert info.value.code() == code, info.value.details()
    assert words.lower() in info.value.details().lower(), info.value.details()
    healthy(server)


def test_grpc_undecodable_bytes_are_invalid_argument(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    healthy(server)


def test_triton_client_sees_the_error_message(triton_grpc, triton_http):
    for client, module in ((triton_grpc, tritonclient_grpc), (triton_http, tritonclient_http)):
        tensor = module.InferInput("images", [1, 28, 28], "FP32")
        tensor.set_data_from_numpy(np.full((1, 28, 28), 3.0, np.float32))
        with pytest.raises(InferenceServerException, match=r"within \[0, 1\]"):
            client.infer(CLASSIFIER, [tensor])


# ------------------------------------------------------------------ KServe's own clients (in their venv)


def test_kserve_rest_and_grpc_clients(server, images, v1_probabilities, tmp_path):
    if not KSERVE_PYTHON.exists():
        pytest.fail(f"{KSERVE_PYTHON} is missing: run `make kserve-venv` (make test does)", pytrace=False)
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "PROBE_HTTP": server.http_url, "PROBE_GRPC": server.grpc_target, "PROBE_IMAGES": str(tmp_path / "images.npy")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(KSERVE_PYTHON), str(REPO / "tests/e2e/kserve/probe.py")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    rest, rpc = seen["rest"], seen["grpc"]
    assert rest["live"] and rest["ready"] and rest["model_ready"] and rest["unknown_model_ready"] is False
    assert rpc["live"] and rpc["ready"] and rpc["model_ready"]
    for probs in (rest["probabilities_binary_True"], rest["probabilities_binary_False"], rpc["probabilities"]):
        np.testing.assert_allclose(np.array(probs), v1_probabilities, atol=1e-6)
    assert rest["decoded_shape"] == rpc["decoded_shape"] == [2, 28, 28, 1]
    assert rpc["model_name"] == CLASSIFIER and rpc["server_metadata"]["name"] == "digits"
    assert rpc["model_metadata"]["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert {case: e["status"] for case, e in rest["errors"].items()} == {
        "unknown_model": 404,
        "wrong_datatype": 400,
        "shape_vs_data": 400,
        "missing_input": 400,
    }
    assert all(set(e["body"]) == {"error"} for e in rest["errors"].values())
    assert {case: e["code"] for case, e in rpc["errors"].items()} == {
        "unknown_model": "NOT_FOUND",
        "unknown_version": "NOT_FOUND",
        "wrong_datatype": "INVALID_ARGUMENT",
        "shape_vs_data": "INVALID_ARGUMENT",
        "missing_input": "INVALID_ARGUMENT",
        "oversize": "RESOURCE_EXHAUSTED",
    }
    assert all(e["details"] for e in rpc["errors"].values())
    healthy(server)


@pytest.mark.parametrize("client_name", ["triton_http", "triton_grpc"])
def test_the_ensemble_over_v2(request, client_name, server, images):
    client = request.getfixturevalue(client_name)
    module = tritonclient_http if client_name == "triton_http" else tritonclient_grpc
    tensor = module.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    probs = client.infer("ensemble", [tensor]).as_numpy("probabilities")
    body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "ensemble", "images": images.tolist()}, timeout=60).json()
    np.testing.assert_allclose(probs, [p["probabilities"] for p in body["predictions"]], atol=1e-6)
    assert client.is_model_ready("mnist-ensemble")
