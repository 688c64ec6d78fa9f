"""The TF-Serving gRPC front, used exactly as a TensorFlow Serving client would use it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def predict_request(model: str, key: str, array: np.ndarray, version: int | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    return request


def rpc_error(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, 30.0)
    return info.value


def test_predict_matches_http_to_1e_5(stub, server):
    images = server.test_images[:64]
    response = stub.Predict(predict_request("mnist-lstm", "images", images.astype(np.float32) / 255.0), 30.0)
    grpc_probs = tf.make_ndarray(response.outputs["probabilities"])
    http_body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "lstm", "images": images.tolist()}, timeout=60).json()
    http_probs = np.array([p["probabilities"] for p in http_body["predictions"]])
    assert grpc_probs.shape == (64, 10)
    np.testing.assert_allclose(grpc_probs, http_probs, atol=1e-5)
    assert response.model_spec.name == "mnist-lstm"
    assert response.model_spec.signature_name == "serving_default"


def test_decoder_predict_and_output_filter(stub, server):
    z = np.array([[1.4, -1.3], [0.0, 0.0]], dtype=np.float32)
    response = stub.Predict(predict_request("fashion-vae2-decoder", "z", z), 30.0)
    images = tf.make_ndarray(response.outputs["images"])
    assert images.shape == (2, 28, 28, 1) and 0 <= images.min() and images.max() <= 1
    http_images = httpx.post(f"{server.http_url}/v1/generate", json={"model": "vae2", "z": z.tolist(), "format": "array"}).json()["images"]
    np.testing.assert_allclose(images[..., 0], http_images, atol=1e-5)
    encoder = predict_request("fashion-vae2-encoder", "images", images)
    encoder.output_filter.append("z_mean")
    encoded = stub.Predict(encoder, 30.0)
    assert list(encoded.outputs.keys()) == ["z_mean"]
    assert tf.make_ndarray(encoded.outputs["z_mean"]).shape == (2, 2)


def test_model_metadata_matches_signature_json(stub, server):
    models = httpx.get(f"{server.http_url}/v1/models").json()["models"]
    assert models
    for entry in models:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = entry["store_name"]
        request.metadata_field.append("signature_def")
        response = stub.GetModelMetadata(request, 30.0)
        assert response.model_spec.version.value == entry["version_number"]
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sigmap)
        signature = sigmap.signature_def["serving_default"]
        stored = json.loads((server.model_dir(entry["store_name"]) / "signature.json").read_text())
        # The model's own tensors (a classifier's verdict outputs are answered when named: serving/core/verdict.py).
        for kind, specs in (("inputs", stored["inputs"]), ("outputs", stored["outputs"])):
            infos = getattr(signature, kind)
            assert sorted(infos.keys()) == sorted(s["name"] for s in specs)
            for spec in specs:
                info = infos[spec["name"]]
                assert [d.size for d in info.tensor_shape.dim] == spec["shape"]
                assert tf.dtypes.as_dtype(info.dtype).name == spec["dtype"]


def test_health_and_reflection(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tensorflow.serving.PredictionService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="tensorflow.serving.Nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        details = unknown.value.details()
        assert "unknown service 'tensorflow.serving.Nope'" in details and "'tensorflow.serving.PredictionService'" in details
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        names = {s.name for s in answer.list_services_response.service}
        assert {"tensorflow.serving.PredictionService", "grpc.health.v1.Health"} <= names


def test_grpc_and_http_requests_share_batches(stub, server):
    """gRPC and HTTP calls for one model, at once: fewer batches than calls, each with its own answer."""
    labels = {"model": "fashion-vae4-decoder"}
    before = server.metric("model_batch_size_count", **labels)
    z = np.random.default_rng(1).standard_normal((64, 16, 4)).astype(np.float32)

    def one(i: int) -> np.ndarray:
        if i % 2:
            response = stub.Predict(predict_request("fashion-vae4-decoder", "z", z[i]), 60.0)
            return tf.make_ndarray(response.outputs["images"])
        body = {"model": "vae4", "z": z[i].tolist(), "format": "array"}
        return np.asarray(httpx.post(f"{server.http_url}/v1/generate", json=body, timeout=60).json()["images"])

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one, range(len(z))))
    batches = server.metric("model_batch_size_count", **labels) - before
    print(f"{len(z)} calls ran as {batches:.0f} batches")
    assert batches < len(z), f"{len(z)} calls ran as {batches:.0f} batches"
    np.testing.assert_allclose(answers[3].reshape(16, 28, 28), one(3).reshape(16, 28, 28), atol=1e-5)


@pytest.mark.parametrize(
    "model,key,array,code,words",
    [
        ("mnist-lstm", "images", np.zeros((2, 28, 27), np.float32), grpc.StatusCode.INVALID_ARGUMENT, ["28 x 28"]),
        ("mnist-lstm", "images", np.full((1, 28, 28), 2.0, np.float32), grpc.StatusCode.INVALID_ARGUMENT, ["within"]),
        ("mnist-lstm", "images", np.full((1, 28, 28), np.nan, np.float32), grpc.StatusCode.INVALID_ARGUMENT, ["finite"]),
        (
            "mnist-lstm",
            "images",
            np.array([["a"] * 28] * 28, dtype=object)[None],
            grpc.StatusCode.INVALID_ARGUMENT,
            ["datatype", "DT_STRING"],
        ),
        ("mnist-lstm", "pixels", np.zeros((1, 28, 28), np.float32), grpc.StatusCode.INVALID_ARGUMENT, ["images"]),
        ("fashion-vae2-decoder", "z", np.zeros((1, 3), np.float32), grpc.StatusCode.INVALID_ARGUMENT, ["z"]),
        ("mnist-resnet", "images", np.zeros((1, 28, 28), np.float32), grpc.StatusCode.NOT_FOUND, ["mnist-resnet"]),
        ("mnist-lstm", "images", np.zeros((300, 28, 28), np.float32), grpc.StatusCode.RESOURCE_EXHAUSTED, ["256"]),
    ],
)
def test_bad_predict_gets_its_code_and_message(stub, server, model, key, array, code, words):
    error = rpc_error(stub.Predict, predict_request(model, key, array))
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details(), error.details()
    ok = stub.Predict(predict_request("mnist-lstm", "images", np.zeros((1, 28, 28), np.float32)), 30.0)
    assert tf.make_ndarray(ok.outputs["probabilities"]).shape == (1, 10)


def test_versions_signatures_and_unimplemented_methods(stub, server):
    version = httpx.get(f"{server.http_url}/v1/models/mnist-lstm").json()["version_number"]
    ok = stub.Predict(predict_request("mnist-lstm", "images", np.zeros((1, 28, 28), np.float32), version=version), 30.0)
    assert ok.model_spec.version.value == version
    assert (
        rpc_error(stub.Predict, predict_request("mnist-lstm", "images", np.zeros((1, 28, 28), np.float32), version=1)).code()
        == grpc.StatusCode.NOT_FOUND
    )
    wrong_signature = predict_request("mnist-lstm", "images", np.zeros((1, 28, 28), np.float32))
    wrong_signature.model_spec.signature_name = "predict_images"
    assert rpc_error(stub.Predict, wrong_signature).code() == grpc.StatusCode.INVALID_ARGUMENT
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "mnist-lstm"
    error = rpc_error(stub.Classify, classify)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED and "Predict" in error.details()


def test_message_over_the_size_limit_is_refused(server):
    from serving.settings import Settings

    limit = Settings.from_env({}).grpc_max_message_bytes
    rows = limit // (28 * 28 * 4) + 1
    with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        error = rpc_error(stub.Predict, predict_request("mnist-lstm", "images", np.zeros((rows, 28, 28), np.float32)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_undecodable_bytes_are_invalid_argument(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff not a protobuf", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PredictRequest" in info.value.details()


def test_declared_shape_is_checked_before_anything_is_allocated(stub):
    """A tiny message declaring a huge tensor (one float_val broadcast) is refused, not materialised."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist-lstm"
    tensor = request.inputs["images"]
    tensor.dtype = tf.float32.as_datatype_enum
    for size in (85_000, 28, 28):
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.append(0.5)
    error = rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most" in error.details()
    assert len(request.SerializeToString()) < 200
    tensor.tensor_shape.dim[0].size, tensor.tensor_shape.dim[1].size = 1, 85_000  # the batch axis within bounds, the others not
    error = rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "must have shape N x 28 x 28, got 1 x 85000 x 28" in error.details()


def test_long_model_names_are_not_echoed_whole(stub):
    request = predict_request("m" * 100_000, "images", np.zeros((1, 28, 28), np.float32))
    error = rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND and len(error.details()) < 1000


def test_workers_never_load_tensorflow(server, stub):
    """gRPC has been served (by every test above); no worker has TensorFlow mapped into its memory."""
    import psutil

    workers = [p for p in psutil.Process(server.process.pid).children(recursive=True) if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert workers
    for worker in workers:
        mapped = {m.path for m in worker.memory_maps()}
        assert not [path for path in mapped if "tensorflow" in path or "keras" in path], worker.pid
