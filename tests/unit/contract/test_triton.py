"""contract.triton: Triton model configurations from signatures, parsed back by Triton's own ModelConfig message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from contract import triton
from contract.protos.inference import model_config_pb2

REPO = Path(__file__).resolve().parents[3]
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
    "labels": ["T-shirt/top", "Trouser"],
}


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def pbtxt(name: str, signature: dict, **options) -> model_config_pb2.ModelConfig:
    return parse(triton.config_pbtxt(triton.model_config(name, signature, **options)))


def test_defaults_are_the_served_engines_batching() -> None:
    from serving.settings import Settings

    settings = Settings()
    assert triton.MAX_BATCH_SIZE == settings.max_batch_size
    assert triton.MAX_QUEUE_DELAY_US == round(settings.queue_delay_ms * 1000)


def test_classifier_config_parses_with_names_dtypes_dims_labels_batching_and_warmup() -> None:
    config = pbtxt("mnist-lstm", CLASSIFIER, versions=[1795431344], max_batch_size=32, max_queue_delay_us=500)
    assert config.name == "mnist-lstm"
    assert config.backend == "onnxruntime" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [("images", [28, 28], model_config_pb2.TYPE_FP32)]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("probabilities", [10], "labels.txt")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.version_policy.specific.versions) == [1795431344]
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    assert all(w.inputs["images"].zero_data and list(w.inputs["images"].dims) == [28, 28] for w in config.model_warmup)


def test_default_config_batches_as_the_engine_and_says_so() -> None:
    text = triton.config_pbtxt(triton.model_config("mnist-lstm", CLASSIFIER), "Written by a test.")
    assert text.startswith("# Written by a test.\n# max_batch_size 64, dynamic_batching max_queue_delay_microseconds 0 ")
    config = parse(text)
    assert config.max_batch_size == triton.MAX_BATCH_SIZE
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 0
    assert not config.HasField("version_policy")  # none pinned: Triton serves the latest


def test_encoder_config_has_both_outputs_and_no_labels() -> None:
    config = pbtxt("fashion-vae4-encoder", ENCODER, versions=[2, 1])
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("z_mean", [4], ""), ("z_log_var", [4], "")]
    assert list(config.input[0].dims) == [28, 28, 1]
    assert list(config.version_policy.specific.versions) == [1, 2]
    assert triton.labels_text(ENCODER) is None


def test_labels_file_is_a_classifiers_class_names() -> None:
    assert triton.labels_text(CLASSIFIER) == "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"
    assert triton.labels_text({**CLASSIFIER, "labels": []}) is None
    unlabelled = pbtxt("mnist-lstm", {**CLASSIFIER, "labels": []})
    assert unlabelled.output[0].label_filename == ""  # no labels.txt is written, so none is named
    assert pbtxt("mnist-lstm", CLASSIFIER, labels=False).output[0].label_filename == ""


def test_warmup_never_exceeds_max_batch_size_and_can_be_left_out() -> None:
    assert [w.batch_size for w in pbtxt("m", CLASSIFIER, max_batch_size=4).model_warmup] == [1]
    assert "model_warmup" not in triton.model_config("m", CLASSIFIER, warmup=())


def test_json_form_is_the_message_the_v2_grpc_front_answers() -> None:
    config = triton.model_config("mnist-lstm", CLASSIFIER, parameters={"task": "classification", "default": "true"})
    message = triton.config_message(config)
    assert message.parameters["default"].string_value == "true"
    assert parse(triton.config_pbtxt(config)) == message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": [1, 28, 28]}, "variable batch axis"),
        ({"shape": [-1, -1, 28]}, "variable batch axis"),
        ({"shape": [-1]}, None),
        ({"dtype": "complex64"}, "no type"),
    ],
)
def test_signatures_triton_cannot_express_are_refused(change: dict, message: str | None) -> None:
    signature = {**CLASSIFIER, "inputs": [{**CLASSIFIER["inputs"][0], **change}]}
    if message is None:  # a batch of scalars is fine: no dims
        assert triton.model_config("m", signature)["input"][0]["dims"] == []
        return
    with pytest.raises(triton.TritonConfigError, match=message):
        triton.model_config("mnist-lstm", signature)


@pytest.mark.parametrize(("max_batch_size", "delay"), [(0, 0), (8, -1)])
def test_batching_out_of_range_is_refused(max_batch_size: int, delay: int) -> None:
    with pytest.raises(triton.TritonConfigError, match="max_batch_size"):
        triton.model_config("m", CLASSIFIER, max_batch_size=max_batch_size, max_queue_delay_us=delay)


def test_imports_with_the_standard_library_alone() -> None:
    """The benchmark's Triton peer imports it in its own venv: no protobuf until a configuration is rendered."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import contract.triton, contract.artifacts, contract.store; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('google', 'numpy', 'bentoml', 'serving', 'training')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-S", "-I", "-c", code, str(REPO)], check=True, timeout=60)
