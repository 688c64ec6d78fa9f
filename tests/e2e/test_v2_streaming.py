"""v2 gRPC streaming (``ModelStreamInfer``), as tritonclient's ``start_stream``/``async_stream_infer`` use it."""

from __future__ import annotations

import queue

import grpc
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

CLASSIFIER = "mnist-lstm"
BAD = {
    "bad-model": ("no-such-model", "FP32", [1, 28, 28], "unknown model"),
    "bad-shape": (CLASSIFIER, "FP32", [1, 27, 28], "28 x 28"),
    "bad-dtype": (CLASSIFIER, "FP64", [1, 28, 28], "FP64"),
}


@pytest.fixture(scope="module")
def images(server) -> np.ndarray:
    return (server.test_images[:24] / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def v1_probabilities(server, images) -> np.ndarray:
    body = httpx.post(f"{server.http_url}/v1/classify", json={"model": "lstm", "images": images.tolist()}, timeout=60).json()
    return np.array([p["probabilities"] for p in body["predictions"]])


def _input(array: np.ndarray, datatype: str = "FP32", shape: list[int] | None = None):
    tensor = tritonclient_grpc.InferInput("images", shape or list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_tritonclient_stream_answers_each_request_by_id_and_goes_on_after_errors(server, images, v1_probabilities):
    results: queue.Queue = queue.Queue()
    client = tritonclient_grpc.InferenceServerClient(server.grpc_target)
    try:
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        for i, image in enumerate(images):
            client.async_stream_infer(CLASSIFIER, [_input(image[None])], request_id=f"img-{i}")
            if i in (3, 10, 17):  # a bad request among good ones: its error, and the stream goes on
                name = sorted(BAD)[(3, 10, 17).index(i)]
                model, datatype, shape, _ = BAD[name]
                array = image[None].astype(np.float64) if datatype == "FP64" else image[None, : shape[1]]
                client.async_stream_infer(model, [_input(array, datatype, shape)], request_id=name)
        answers, errors = {}, []
        for _ in range(len(images) + len(BAD)):
            result, error = results.get(timeout=60)
            if error is not None:
                errors.append(str(error))
            else:
                answers[result.get_response().id] = result.as_numpy("probabilities")[0]
    finally:
        client.stop_stream()
        client.close()
    assert sorted(answers) == sorted(f"img-{i}" for i in range(len(images)))
    for i in range(len(images)):
        np.testing.assert_allclose(answers[f"img-{i}"], v1_probabilities[i], atol=1e-6)
    assert len(errors) == len(BAD)
    for _, _, _, words in BAD.values():
        assert any(words.lower() in e.lower() for e in errors), (words, errors)


def test_stream_error_responses_carry_the_request_id_and_undecodable_messages_are_answered(server, images):
    good = pb.ModelInferRequest(model_name=CLASSIFIER, id="good", raw_input_contents=[images[0].tobytes()])
    good.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    bad = pb.ModelInferRequest(model_name="no-such-model", id="bad", raw_input_contents=[images[0].tobytes()])
    bad.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    with grpc.insecure_channel(server.grpc_target) as channel:
        typed = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter([bad, good]), timeout=60)
        by_id = {r.infer_response.id: r for r in typed}
        raw = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        answers = [pb.ModelStreamInferResponse.FromString(m) for m in raw(iter([b"\xff\xff\xff", good.SerializeToString()]), timeout=60)]
    assert set(by_id) == {"good", "bad"}
    assert by_id["good"].error_message == "" and by_id["good"].infer_response.model_name == CLASSIFIER
    assert "unknown model" in by_id["bad"].error_message and by_id["bad"].infer_response.model_name == "no-such-model"
    assert sorted(bool(a.error_message) for a in answers) == [False, True]
    assert any("not a valid inference.ModelInferRequest" in a.error_message for a in answers)


def test_stream_requests_share_batches_with_every_other_call(server, images):
    before = server.metric("model_batch_size_count", model=CLASSIFIER)
    requests = []
    for i in range(64):
        message = pb.ModelInferRequest(model_name=CLASSIFIER, id=str(i), raw_input_contents=[images[i % len(images)].tobytes()])
        message.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
        requests.append(message)
    with grpc.insecure_channel(server.grpc_target) as channel:
        answers = list(service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(requests), timeout=60))
    assert sorted(int(a.infer_response.id) for a in answers) == list(range(64))
    assert all(not a.error_message for a in answers)
    batches = server.metric("model_batch_size_count", model=CLASSIFIER) - before
    assert 0 < batches < 64, f"64 stream requests in flight together ran as {batches} batches"
