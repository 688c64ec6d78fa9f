"""The TF-Serving gRPC servicer against a real engine: a tiny ONNX classifier, real ORT, a real grpc.aio server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from contract import tensors
from contract.artifacts import file_sha256
from contract.protos.tensorflow.core.framework import types_pb2
from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from loadtests.server import free_port
from serving.core.dataplane import DataPlane
from serving.core.engine import Engine
from serving.core.registry import Registry
from serving.core.runtime import ModelRuntime
from serving.protocols import grpc_services
from serving.settings import Settings
from serving.transport.grpc import GrpcServer

onnx = pytest.importorskip("onnx")

SIGNATURE = {
    "task": "classification",
    "public_name": "tiny",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}],
}
WEIGHTS = np.random.default_rng(0).standard_normal((784, 10)).astype(np.float32)


def tiny_classifier(directory: Path) -> ModelRuntime:
    """softmax(flatten(images) @ W): the signature of the digit classifiers, built with onnx.helper."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    (directory / "signature.json").write_text(json.dumps(SIGNATURE))
    return ModelRuntime(
        "mnist-tiny",
        "v1",
        directory,
        {"sha256": file_sha256(directory / "model.onnx")},
        SIGNATURE,
        ["CPUExecutionProvider"],
        created=1_700_000_000.0,
    )


def expected(images: np.ndarray) -> np.ndarray:
    logits = images.reshape(len(images), -1).astype(np.float64) @ WEIGHTS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    settings = Settings.from_env({"SERVING_GRPC_PORT": str(free_port()), "SERVING_MAX_IMAGES_PER_REQUEST": "8"})
    engine = Engine(settings, Registry([tiny_classifier(tmp_path_factory.mktemp("tiny"))]))
    engine.load()
    yield engine
    asyncio.run(engine.close())


def run(engine: Engine, calls) -> list:
    """Start the front on a fresh loop, run ``calls(stub, channel)``, stop the front."""

    async def main() -> list:
        front = GrpcServer(engine.settings, *grpc_services(DataPlane(engine)))
        await front.start(engine.ready)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{engine.settings.grpc_port}") as channel:
                return await calls(prediction_service_pb2_grpc.PredictionServiceStub(channel), channel)
        finally:
            await front.stop(1.0)  # the batchers' tasks end with this loop; the next run starts them anew

    return asyncio.run(main())


def request(images: np.ndarray, name: str = "mnist-tiny") -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.inputs["images"].CopyFrom(tensors.array_to_tensor_proto(images))
    return req


def test_predict_answers_from_the_engine_and_merges_concurrent_calls(engine):
    images = np.random.default_rng(1).random((24, 28, 28), dtype=np.float32)

    async def calls(stub, _):
        return await asyncio.gather(*(stub.Predict(request(images[i : i + 1]), timeout=10) for i in range(24)))

    responses = run(engine, calls)
    got = np.concatenate([tensors.tensor_proto_to_array(r.outputs["probabilities"]) for r in responses])
    np.testing.assert_allclose(got, expected(images), atol=1e-5)
    assert {r.model_spec.version.value for r in responses} == {1_700_000_000}


def test_predict_carries_the_verdict_and_output_filter_keeps_to_what_is_asked(engine):
    images = np.zeros((2, 28, 28), np.float32)
    images[1, 4:24, 12:16] = 1.0  # a stroke: ink, unlike the empty first image

    async def calls(stub, _):
        plain = await stub.Predict(request(images), timeout=10)
        whole = request(images)
        whole.output_filter.extend(["probabilities", "confidence", "digit", "reason"])
        filtered = request(images)
        filtered.output_filter.append("digit")
        return [plain, await stub.Predict(whole, timeout=10), await stub.Predict(filtered, timeout=10)]

    plain, whole, filtered = run(engine, calls)
    assert list(plain.outputs) == ["probabilities"]  # no output_filter: the model's own outputs
    assert sorted(whole.outputs) == ["confidence", "digit", "probabilities", "reason"]
    reason = whole.outputs["reason"]
    assert reason.dtype == types_pb2.DT_STRING and reason.string_val[0] == b"blank"
    digit = tensors.tensor_proto_to_array(whole.outputs["digit"])
    assert digit.dtype == np.bool_ and not digit[0]
    confidence = tensors.tensor_proto_to_array(whole.outputs["confidence"])
    np.testing.assert_allclose(confidence, expected(images).max(axis=1), atol=1e-5)  # no calibration recorded: T = 1
    assert list(filtered.outputs) == ["digit"]


def test_metadata_is_the_signature(engine):
    async def calls(stub, _):
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        req.model_spec.name = "mnist-tiny"
        return [await stub.GetModelMetadata(req, timeout=10)]

    (response,) = run(engine, calls)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    sig = sigs.signature_def["serving_default"]
    assert [d.size for d in sig.inputs["images"].tensor_shape.dim] == [-1, 28, 28]
    assert list(sig.outputs) == ["probabilities"]  # the model's own tensors; the verdict's are answered when named


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        (lambda: request(np.zeros((1, 28, 28), np.float32), name="nope"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        (lambda: request(np.zeros((1, 27, 28), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (lambda: request(np.full((1, 28, 28), 2.0, np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "within [0, 1]"),
        (lambda: request(np.zeros((9, 28, 28), np.float32)), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 8 images per request"),
        (lambda: b"\x0a\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "PredictRequest"),
    ],
)
def test_bad_requests_get_their_code_and_message(engine, build, code, words):
    async def calls(_, channel):
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        body = build()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(body if isinstance(body, bytes) else body.SerializeToString(), timeout=10)
        ok = await prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request(np.zeros((1, 28, 28), np.float32)), timeout=10
        )
        return [info.value, ok]

    error, ok = run(engine, calls)
    assert error.code() == code and words in error.details()
    assert ok.outputs["probabilities"].tensor_shape.dim[1].size == 10  # still serving


def test_classify_is_unimplemented(engine):
    async def calls(_, channel):
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Classify")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(b"", timeout=10)
        return [info.value]

    (error,) = run(engine, calls)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED and "Predict" in error.details()


def test_serving_modules_never_import_tensorflow():
    code = (
        "import sys; import serving.service, serving.transport.grpc, contract.tensors as c, numpy as np;"
        "c.tensor_proto_to_array(c.array_to_tensor_proto(np.zeros((2, 3), np.float32)));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras')))"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_answers_are_compressed_when_configured(tmp_path, algorithm):
    """SERVING_GRPC_RESPONSE_COMPRESSION: the same answer, in fewer bytes on the wire (counted by a TCP relay
    between client and server), with a stock stub that asked for nothing."""

    async def served_bytes(compression: str) -> tuple[int, np.ndarray]:
        settings = Settings.from_env(
            {
                "SERVING_GRPC_PORT": str(free_port()),
                "SERVING_MAX_IMAGES_PER_REQUEST": "256",
                "SERVING_GRPC_RESPONSE_COMPRESSION": compression,
            }
        )
        engine = Engine(settings, Registry([tiny_classifier(tmp_path / compression)]))
        engine.load()
        front = GrpcServer(settings, *grpc_services(DataPlane(engine)))
        await front.start(True)
        downstream = 0

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", settings.grpc_port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
                nonlocal downstream
                while data := await src.read(65536):
                    downstream += len(data) if count else 0
                    dst.write(data)
                    await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True), return_exceptions=True)

        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                answer = await stub.Predict(request(np.zeros((256, 28, 28), np.float32)), timeout=10)
            return downstream, tensors.tensor_proto_to_array(answer.outputs["probabilities"])
        finally:
            proxy.close()
            await front.stop(1.0)
            await engine.close()

    plain, plain_answer = asyncio.run(served_bytes("none"))
    packed, packed_answer = asyncio.run(served_bytes(algorithm))
    np.testing.assert_array_equal(plain_answer, packed_answer)
    assert plain > 10_000 and packed < plain / 3, (plain, packed)  # 256 equal rows: most of it compresses away
