"""model=ensemble on every classification route: the seven combined (each calibrated by its own temperature,
weighted per image by its confidence), each run through its own batcher."""

from __future__ import annotations

import io

import grpc
import httpx
import numpy as np
import pytest

from tests.e2e.test_http import CLASSIFIERS, assert_client_error, png_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


def combined(http, answers: dict[str, np.ndarray]) -> np.ndarray:
    """What the ensemble should answer from its members' answers: contract.calibration.combine with the
    temperatures the members' signatures record."""
    from contract.calibration import combine

    signatures = {m["name"]: m["signature"] for m in http.get("/v1/models").json()["models"]}
    temperatures = [signatures[name].get("calibration", {}).get("temperature", 1.0) for name in answers]
    assert any(t != 1.0 for t in temperatures)  # training fitted them
    return combine(list(answers.values()), temperatures)


def probabilities(body: dict) -> np.ndarray:
    return np.array([p["probabilities"] for p in body["predictions"]], dtype=np.float32)


def test_the_ensemble_is_listed_with_its_measured_accuracy_and_members(http):
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"] if m["task"] == "classification"}
    ensemble = models["ensemble"]
    assert ensemble["store_name"] == "mnist-ensemble" and ensemble["ready"] and not ensemble["default"]
    assert [m["name"] for m in ensemble["members"]] == list(CLASSIFIERS)
    # Measured at build time with exactly the member versions served here.
    assert all(m["version"] == models[m["name"]]["version"] == m["measured_version"] for m in ensemble["members"])
    assert 0.0 < ensemble["metrics"]["test_accuracy"] <= 1.0
    assert ensemble["training"]["test_size"] == models["lstm"]["training"]["test_size"]


def test_ensemble_combines_the_seven_answers(http, server):
    images = server.test_images[:32].tolist()
    singles = {name: probabilities(http.post("/v1/classify", json={"model": name, "images": images}).json()) for name in CLASSIFIERS}
    body = http.post("/v1/classify", json={"model": "ensemble", "images": images}).json()
    assert body["model"] == "ensemble" and "members" not in body["predictions"][0]
    mean = combined(http, singles)
    np.testing.assert_allclose(probabilities(body), mean, atol=1e-6)
    assert not np.allclose(mean, np.mean(list(singles.values()), axis=0), atol=1e-4)  # not the plain mean
    assert [p["label"] for p in body["predictions"]] == mean.argmax(1).tolist()

    with_members = http.post("/v1/classify", json={"model": "ensemble", "images": images, "members": True}).json()
    np.testing.assert_allclose(probabilities(with_members), probabilities(body), atol=0)
    for i, prediction in enumerate(with_members["predictions"]):
        assert list(prediction["members"]) == list(CLASSIFIERS)
        for name, answer in prediction["members"].items():
            np.testing.assert_allclose(answer["probabilities"], singles[name][i], atol=1e-6)
            assert answer["label"] == int(singles[name][i].argmax())


def test_ensemble_on_upload_and_bulk(http, server):
    digit = server.test_images[3]
    single = http.post("/v1/classify", json={"model": "ensemble", "images": [digit.tolist()], "members": True}).json()
    upload = http.post("/v1/classify/image?model=ensemble&members=true", files={"image": ("d.png", png_bytes(digit), "image/png")}).json()
    assert upload["model"] == "ensemble" and set(upload["predictions"][0]["members"]) == set(CLASSIFIERS)
    assert upload["predictions"][0]["label"] == single["predictions"][0]["label"]

    buf = io.BytesIO()
    np.save(buf, server.test_images[:300])
    plain = http.post("/v1/classify/batch?model=ensemble", content=buf.getvalue(), headers={"content-type": "application/octet-stream"})
    probs = np.load(io.BytesIO(plain.content))
    assert probs.shape == (300, 10) and plain.headers["x-model"] == "ensemble"
    archive = http.post(
        "/v1/classify/batch?model=ensemble&members=true", content=buf.getvalue(), headers={"content-type": "application/octet-stream"}
    )
    assert archive.headers["content-type"] == "application/x-npz"
    arrays = np.load(io.BytesIO(archive.content))
    assert set(arrays.files) == {"probabilities", *CLASSIFIERS}
    np.testing.assert_allclose(arrays["probabilities"], probs, atol=0)
    np.testing.assert_allclose(combined(http, {name: arrays[name] for name in CLASSIFIERS}), probs, atol=1e-6)
    json_probs = probabilities(http.post("/v1/classify", json={"model": "ensemble", "images": server.test_images[:8].tolist()}).json())
    np.testing.assert_allclose(probs[:8], json_probs, atol=1e-5)


def test_one_request_is_one_batch_per_member(http, server):
    before = {name: server.metric("model_batch_size_count", model=f"mnist-{name}") for name in CLASSIFIERS}
    rows = {name: server.metric("model_batch_size_sum", model=f"mnist-{name}") for name in CLASSIFIERS}
    http.post("/v1/classify", json={"model": "ensemble", "images": server.test_images[:5].tolist()}).raise_for_status()
    for name in CLASSIFIERS:
        assert server.metric("model_batch_size_count", model=f"mnist-{name}") - before[name] == 1, name
        assert server.metric("model_batch_size_sum", model=f"mnist-{name}") - rows[name] == 5, name


def test_members_needs_the_ensemble(http, server):
    response = http.post("/v1/classify", json={"model": "lstm", "images": server.test_images[:1].tolist(), "members": True})
    assert_client_error(response, 400, "ensemble")


@pytest.mark.parametrize("name", ["ensemble", "mnist-ensemble"])
def test_grpc_predict_of_the_ensemble(server, name):
    tf = pytest.importorskip("tensorflow")
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    images = server.test_images[:16].astype(np.float32) / 255.0
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        response = stub.Predict(request, 30.0)
        metadata = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata.model_spec.name = name
        metadata.metadata_field.append("signature_def")
        assert stub.GetModelMetadata(metadata, 30.0).model_spec.name == "mnist-ensemble"
    grpc_probs = tf.make_ndarray(response.outputs["probabilities"])
    http_probs = probabilities(
        httpx.post(f"{server.http_url}/v1/classify", json={"model": "ensemble", "images": images.tolist()}, timeout=60).json()
    )
    np.testing.assert_allclose(grpc_probs, http_probs, atol=1e-6)
    assert response.model_spec.name == "mnist-ensemble"
