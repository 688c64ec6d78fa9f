"""serving.v2: the Open Inference Protocol's tensor rules, metadata and outputs, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.errors import InvalidInput, PayloadTooLarge, VersionNotFound
from serving.core.engine import Engine
from serving.core.runtime import ModelRuntime, Registry
from serving.protocols.oip import common as v2
from serving.settings import Settings

CLASSIFIER_SIGNATURE = {
    "name": "mnist-lstm",
    "public_name": "lstm",
    "task": "classification",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
    "labels": [str(i) for i in range(10)],
}
DECODER_SIGNATURE = {
    "name": "fashion-vae2-decoder",
    "public_name": "vae2",
    "task": "generation",
    "latent_dim": 2,
    "inputs": [{"name": "z", "dtype": "float32", "shape": [-1, 2], "range": None}],
    "outputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1], "range": [0.0, 1.0]}],
}
ENCODER_SIGNATURE = {
    **DECODER_SIGNATURE,
    "name": "fashion-vae2-encoder",
    "task": "encoding",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1], "range": [0.0, 1.0]}],
    "outputs": [{"name": "z_mean", "dtype": "float32", "shape": [-1, 2]}, {"name": "z_log_var", "dtype": "float32", "shape": [-1, 2]}],
}


def runtime(signature: dict) -> ModelRuntime:
    rt = ModelRuntime(
        store_name=signature["name"],
        version="abc",
        path=Path("/nonexistent"),
        metadata={},
        signature=signature,
        providers=["CPUExecutionProvider"],
        created=1700000000.5,
    )
    rt.ready = True
    return rt


CLASSIFIER, DECODER, ENCODER = runtime(CLASSIFIER_SIGNATURE), runtime(DECODER_SIGNATURE), runtime(ENCODER_SIGNATURE)
ENGINE = Engine(Settings.from_env({}), Registry([CLASSIFIER, DECODER, ENCODER]))


def test_models_are_found_by_store_or_public_name_and_version():
    assert v2.find_model(ENGINE, "mnist-lstm", "") is CLASSIFIER
    assert v2.find_model(ENGINE, "lstm", "1700000000") is CLASSIFIER
    assert v2.find_model(ENGINE, "lstm", "abc") is CLASSIFIER  # the store tag works too
    assert v2.find_model(ENGINE, "vae2", None) is DECODER  # a shared public name means the decoder
    assert v2.find_model(ENGINE, "fashion-vae2-encoder", None) is ENCODER
    with pytest.raises(VersionNotFound, match="serving 1700000000"):
        v2.find_model(ENGINE, "lstm", "2")


def test_metadata_and_config_come_from_the_signature():
    meta = v2.model_metadata(ENGINE, CLASSIFIER)
    assert meta == {
        "name": "mnist-lstm",
        "versions": ["1700000000"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }
    config = v2.model_config(ENGINE, DECODER)
    assert config["max_batch_size"] == 256 and config["input"] == [{"name": "z", "data_type": "TYPE_FP32", "dims": [2]}]
    assert config["parameters"] == {
        "task": {"string_value": "generation"},
        "public_name": {"string_value": "vae2"},
        "default": {"string_value": "true"},
    }
    assert v2.model_config(ENGINE, ENCODER)["parameters"]["default"] == {"string_value": "false"}


def test_pixel_inputs_take_uint8_or_fp32_and_latents_fp32():
    assert v2.check_input_header(ENGINE, CLASSIFIER, "images", "UINT8", [2, 28, 28]) == (np.dtype("uint8"), (2, 28, 28))
    assert v2.check_input_header(ENGINE, ENCODER, "images", "UINT8", [1, 28, 28, 1])[0] == np.dtype("uint8")
    with pytest.raises(InvalidInput, match="takes datatype FP32, got 'UINT8'"):
        v2.check_input_header(ENGINE, DECODER, "z", "UINT8", [1, 2])


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "error", "words"),
    [
        ("pixels", "FP32", [1, 28, 28], InvalidInput, "no input 'pixels'"),
        ("images", "FP64", [1, 28, 28], InvalidInput, "UINT8 or FP32"),
        ("images", "FP32", [1, 784], InvalidInput, "shape [N, 28, 28]"),
        ("images", "FP32", [1, -28, 28], InvalidInput, "non-negative"),
        ("images", "FP32", [1, 28.0, 28], InvalidInput, "non-negative integers"),
        ("images", "FP32", [0, 28, 28], InvalidInput, "at least one row"),
        ("images", "FP32", [257, 28, 28], PayloadTooLarge, "at most 256"),
    ],
)
def test_bad_input_headers_are_refused_before_any_allocation(name, datatype, shape, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[")):
        v2.check_input_header(ENGINE, CLASSIFIER, name, datatype, shape)


def test_json_data_flat_or_nested_and_its_count():
    flat = v2.array_from_json("z", np.dtype("<f4"), (2, 2), [1, 2.5, 3, 4])
    nested = v2.array_from_json("z", np.dtype("<f4"), (2, 2), [[1, 2.5], [3, 4]])
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.float32 and flat.shape == (2, 2)
    with pytest.raises(InvalidInput, match="holds 4 elements, but data has 3"):
        v2.array_from_json("z", np.dtype("<f4"), (2, 2), [1, 2, 3])
    with pytest.raises(InvalidInput, match="must be integers"):
        v2.array_from_json("images", np.dtype("uint8"), (1, 2), [1.5, 2])
    with pytest.raises(InvalidInput, match="0..255"):
        v2.array_from_json("images", np.dtype("uint8"), (1, 2), [1, 256])
    with pytest.raises(InvalidInput, match="no data"):
        v2.array_from_json("images", np.dtype("uint8"), (1, 2), None)


def test_raw_bytes_must_be_exactly_the_shapes():
    raw = np.arange(4, dtype="<f4").tobytes()
    np.testing.assert_array_equal(v2.array_from_bytes("z", np.dtype("<f4"), (2, 2), raw), [[0, 1], [2, 3]])
    with pytest.raises(InvalidInput, match="needs 16 bytes of data, got 12"):
        v2.array_from_bytes("z", np.dtype("<f4"), (2, 2), raw[:12])


def test_rows_follow_the_v1_pixel_rule():
    rows = v2.to_rows(CLASSIFIER, "images", np.full((1, 28, 28), 255, np.uint8))
    assert rows.dtype == np.float32 and float(rows.max()) == 1.0
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        v2.to_rows(CLASSIFIER, "images", np.full((1, 28, 28), 2.0, np.float32))
    with pytest.raises(InvalidInput, match="non-finite"):
        v2.to_rows(DECODER, "z", np.array([[np.nan, 0.0]], np.float32))


def test_outputs_requested_and_the_classification_extension():
    assert v2.check_outputs(CLASSIFIER, None) == [v2.Output("probabilities")]
    with pytest.raises(InvalidInput, match="no output"):
        v2.check_outputs(CLASSIFIER, [v2.Output("logits")])
    with pytest.raises(InvalidInput, match="classification"):
        v2.check_outputs(DECODER, [v2.Output("images", classes=2)])
    probs = np.array([[0.1, 0.7, 0.2] + [0.0] * 7], np.float32)
    datatype, top = v2.output_array(CLASSIFIER, v2.Output("probabilities", classes=2), {"probabilities": probs})
    assert datatype == "BYTES" and top.tolist() == [[b"0.700000:1:1", b"0.200000:2:2"]]
    assert v2.raw_bytes("BYTES", top) == b"\x0c\x00\x00\x000.700000:1:1\x0c\x00\x00\x000.200000:2:2"
    assert v2.raw_bytes("FP32", probs) == probs.astype("<f4").tobytes()
    assert v2.output_array(CLASSIFIER, v2.Output("probabilities"), {"probabilities": probs})[0] == "FP32"
