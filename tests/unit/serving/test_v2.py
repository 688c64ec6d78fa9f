"""serving.protocols.oip.common: the Open Inference Protocol's metadata, config and tensors, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from contract.errors import InvalidInput
from serving.protocols.oip import common as v2
from tests.unit.serving.fakes import CLASSIFIER, DECODER, ENCODER, PLANE


def test_metadata_and_config_come_from_the_signature():
    meta = v2.model_metadata(PLANE, CLASSIFIER)
    assert meta == {
        "name": "mnist-lstm",
        "versions": ["1700000000"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }
    # the verdict's outputs are answered when named, and the config says which they are
    assert v2.model_config(PLANE, CLASSIFIER)["parameters"]["verdict_outputs"] == {"string_value": "confidence,digit,reason"}
    assert [o["name"] for o in v2.model_metadata(PLANE, DECODER)["outputs"]] == ["images"]
    config = v2.model_config(PLANE, DECODER)
    assert config["max_batch_size"] == 256 and config["input"] == [{"name": "z", "data_type": "TYPE_FP32", "dims": [2]}]
    assert config["parameters"] == {
        "task": {"string_value": "generation"},
        "kind": {"string_value": "decoder"},
        "public_name": {"string_value": "vae2"},
        "default": {"string_value": "true"},
        "metrics": {"string_value": "{}"},
        "provider": {"string_value": ""},
        "max_manifold_n": {"string_value": "40"},
    }
    assert v2.model_config(PLANE, ENCODER)["parameters"]["default"] == {"string_value": "false"}
    assert v2.model_config(PLANE, CLASSIFIER)["max_batch_size"] == 256


def test_json_data_is_decoded_flat_or_nested_only_when_asked():
    flat = v2.json_tensor("z", "FP32", [2, 2], [1, 2.5, 3, 4])
    nested = v2.json_tensor("z", "FP32", [2, 2], [[1, 2.5], [3, 4]])
    assert flat.shape == (2, 2) and flat.datatype == "FP32"
    np.testing.assert_array_equal(flat.array().ravel(), nested.array().ravel())
    with pytest.raises(InvalidInput, match="has no data"):
        v2.json_tensor("images", "UINT8", [1, 2], None)
    with pytest.raises(InvalidInput, match="only numbers"):
        v2.json_tensor("z", "FP32", [1, 2], ["a", 1]).array()


def test_raw_bytes_must_match_the_declared_shape():
    raw = np.arange(4, dtype="<f4").tobytes()
    np.testing.assert_array_equal(v2.raw_tensor("z", "FP32", [2, 2], raw).array(), [[0, 1], [2, 3]])
    with pytest.raises(InvalidInput, match="needs 16 bytes of data, got 12"):
        v2.raw_tensor("z", "FP32", [2, 2], raw[:12]).array()


def test_outputs_in_binary_form():
    datatype, raw = v2.raw_bytes(np.array([[b"0.9:1:1", b"0.1:0:0"]], dtype=object))
    assert datatype == "BYTES" and raw == (7).to_bytes(4, "little") + b"0.9:1:1" + (7).to_bytes(4, "little") + b"0.1:0:0"
    assert v2.raw_bytes(np.zeros((1, 2), np.float32)) == ("FP32", bytes(8))
