"""Triton / TF Serving configuration text from signatures: parsed by the engines' own protobuf messages."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from training.repository import RepositoryError, tf_serving_config, triton_config

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is a dev dependency")

CLASSIFIER = {
    "name": "mnist-lstm",
    "task": "classification",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
    "labels": [str(d) for d in range(10)],
}
ENCODER = {
    "name": "fashion-vae4-encoder",
    "task": "encoding",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1], "range": [0.0, 1.0]}],
    "outputs": [
        {"name": "z_mean", "dtype": "float32", "shape": [-1, 4], "range": None},
        {"name": "z_log_var", "dtype": "float32", "shape": [-1, 4], "range": None},
    ],
}


def parse(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_classifier_config_parses_with_names_dtypes_dims_and_batching() -> None:
    config = parse(triton_config("mnist-lstm", CLASSIFIER, [1795431344], max_batch_size=32, queue_delay_us=500))
    assert config.name == "mnist-lstm"
    assert config.backend == "onnxruntime" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [("images", [28, 28], model_config_pb2.TYPE_FP32)]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("probabilities", [10], "labels.txt")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.version_policy.specific.versions) == [1795431344]
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    assert all(w.inputs["images"].zero_data and list(w.inputs["images"].dims) == [28, 28] for w in config.model_warmup)


def test_encoder_config_has_both_outputs_and_no_labels() -> None:
    config = parse(triton_config("fashion-vae4-encoder", ENCODER, [2, 1]))
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("z_mean", [4], ""), ("z_log_var", [4], "")]
    assert list(config.input[0].dims) == [28, 28, 1]
    assert list(config.version_policy.specific.versions) == [1, 2]


def test_warmup_never_exceeds_max_batch_size() -> None:
    assert [w.batch_size for w in parse(triton_config("m", CLASSIFIER, [1], max_batch_size=4)).model_warmup] == [1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": [1, 28, 28]}, "variable batch axis"),
        ({"shape": [-1, -1, 28]}, "variable batch axis"),
        ({"dtype": "complex64"}, "no type"),
    ],
)
def test_signatures_triton_cannot_express_are_refused(change: dict, message: str) -> None:
    signature = {**CLASSIFIER, "inputs": [{**CLASSIFIER["inputs"][0], **change}]}
    with pytest.raises(RepositoryError, match=message):
        triton_config("mnist-lstm", signature, [1])


def test_tf_serving_config_parses_as_model_server_config() -> None:
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    text = tf_serving_config({"mnist-lstm": [20, 10], "fashion-vae2-decoder": [5]})
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["fashion-vae2-decoder", "mnist-lstm"]
    assert entries["mnist-lstm"].base_path == "/models/mnist-lstm"
    assert entries["mnist-lstm"].model_platform == "tensorflow"
    assert list(entries["mnist-lstm"].model_version_policy.specific.versions) == [10, 20]
