"""contract.protos: generated TF Serving protos, importable without TensorFlow."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
PROTOS = REPO / "contract" / "protos"

# Every generated module, as its path under contract/protos (== the stock module name).
GENERATED = sorted(
    p.relative_to(PROTOS).with_suffix("").as_posix().replace("/", ".")
    for root in ("tensorflow", "tensorflow_serving")
    for p in (PROTOS / root).rglob("*_pb2.py")
)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_needed_module_is_generated():
    assert {
        "tensorflow_serving.apis.predict_pb2",
        "tensorflow_serving.apis.get_model_metadata_pb2",
        "tensorflow_serving.apis.prediction_service_pb2",
        "tensorflow.core.framework.tensor_pb2",
        "tensorflow.core.framework.tensor_shape_pb2",
        "tensorflow.core.framework.types_pb2",
        "tensorflow.core.protobuf.meta_graph_pb2",
        "tensorflow.core.example.example_pb2",
    } <= set(GENERATED)
    assert (PROTOS / "tensorflow_serving" / "apis" / "prediction_service_pb2_grpc.py").is_file()


def test_checked_in_code_matches_sources():
    pytest.importorskip("grpc_tools")
    proc = _run("import sys; from contract.protos import generate; sys.exit(generate.main(['--check']))")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_does_not_pull_in_tensorflow():
    proc = _run(
        "import json, sys\n"
        "import contract.protos.tensorflow_serving.apis.prediction_service_pb2_grpc\n"
        "import contract.protos.tensorflow_serving.apis.predict_pb2\n"
        "import contract.protos.tensorflow_serving.apis.get_model_metadata_pb2\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('tensorflow', 'tensorflow_serving'))))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_service_stubs():
    from contract.protos.tensorflow_serving.apis import prediction_service_pb2, prediction_service_pb2_grpc

    service = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    assert service.full_name == "tensorflow.serving.PredictionService"
    assert {m.name for m in service.methods} >= {"Predict", "GetModelMetadata", "Classify", "Regress", "MultiInference"}
    assert hasattr(prediction_service_pb2_grpc, "PredictionServiceStub")
    assert hasattr(prediction_service_pb2_grpc, "add_PredictionServiceServicer_to_server")


@pytest.fixture(scope="module")
def stock():
    """Import the stock tensorflow-serving-api modules beside ours (skip if not installed)."""
    importlib.import_module("contract.protos.tensorflow_serving.apis.prediction_service_pb2")
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2")


@pytest.mark.parametrize("name", GENERATED)
def test_descriptor_identical_to_stock(stock, name):
    ours = importlib.import_module(f"contract.protos.{name}")
    theirs = importlib.import_module(name)
    assert ours.DESCRIPTOR.name == theirs.DESCRIPTOR.name
    assert ours.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb


def test_predict_request_round_trips_through_stock(stock):
    from contract.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from contract.protos.tensorflow_serving.apis import predict_pb2

    stock_predict = importlib.import_module("tensorflow_serving.apis.predict_pb2")
    image = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "mnist"
    req.model_spec.signature_name = "serving_default"
    req.model_spec.version.value = 3
    req.output_filter.append("probabilities")
    req.inputs["images"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in image.shape]),
            tensor_content=image.tobytes(),
        )
    )
    req.inputs["ids"].dtype = types_pb2.DT_INT64
    req.inputs["ids"].int64_val.extend([1, -2, 2**40])
    req.request_options.max_cache_length = 7
    req.request_options.handshake.estimated_payload_bytes = 123
    wire = req.SerializeToString()

    theirs = stock_predict.PredictRequest.FromString(wire)
    assert theirs.model_spec.name == "mnist"
    assert theirs.model_spec.version.value == 3
    assert list(theirs.output_filter) == ["probabilities"]
    tensor = theirs.inputs["images"]
    assert tensor.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 28, 28]
    np.testing.assert_array_equal(np.frombuffer(tensor.tensor_content, np.float32).reshape(2, 28, 28), image)
    assert list(theirs.inputs["ids"].int64_val) == [1, -2, 2**40]
    assert theirs.request_options.handshake.estimated_payload_bytes == 123

    back = predict_pb2.PredictRequest.FromString(theirs.SerializeToString())
    assert back == req
    assert back.SerializeToString(deterministic=True) == req.SerializeToString(deterministic=True)


def test_stock_imported_first_then_ours():
    """The other import order (stock modules already in the pool) works too."""
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    proc = _run(
        "from tensorflow_serving.apis import predict_pb2 as theirs, prediction_service_pb2_grpc\n"
        "from contract.protos.tensorflow_serving.apis import predict_pb2 as ours\n"
        "from contract.protos.tensorflow_serving.apis import prediction_service_pb2_grpc as ours_grpc\n"
        "assert ours.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb\n"
        "req = ours.PredictRequest()\n"
        "req.model_spec.name = 'm'\n"
        "req.inputs['x'].tensor_content = b'\\x00\\x01'\n"
        "back = theirs.PredictRequest.FromString(req.SerializeToString())\n"
        "assert back.inputs['x'].tensor_content == b'\\x00\\x01', back\n"
        "assert ours.PredictRequest.FromString(back.SerializeToString()) == req\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ok"


# ------------------------------------------------------------------ Open Inference Protocol (KServe v2 / Triton)

INFERENCE = {"grpc_service_pb2": "tritonclient.grpc.service_pb2", "model_config_pb2": "tritonclient.grpc.model_config_pb2"}


def test_inference_service_has_the_v2_methods():
    from contract.protos.inference import grpc_service_pb2, grpc_service_pb2_grpc

    service = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"} <= {m.name for m in service.methods}
    assert hasattr(grpc_service_pb2_grpc, "add_GRPCInferenceServiceServicer_to_server")


@pytest.mark.parametrize(("ours", "stock"), sorted(INFERENCE.items()))
def test_inference_descriptor_identical_to_tritonclient(ours, stock):
    """Same file names and bytes as tritonclient's, so a process can load both (a client test beside a server)."""
    mine = importlib.import_module(f"contract.protos.inference.{ours}")
    theirs = pytest.importorskip(stock, reason="tritonclient[grpc] is a dev dependency")
    assert mine.DESCRIPTOR.name == theirs.DESCRIPTOR.name
    assert mine.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb
