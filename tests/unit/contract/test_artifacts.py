"""contract.artifacts: what training writes and serving checks about a stored model."""

from __future__ import annotations

import hashlib
import json

import pytest

from contract.artifacts import check_model_file, file_sha256, read_signature, version_number
from contract.errors import ModelIntegrityError


def test_sha256_of_a_file_in_chunks(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    (tmp_path / "model.onnx").write_bytes(data)
    assert file_sha256(tmp_path / "model.onnx") == hashlib.sha256(data).hexdigest()


def test_model_file_must_match_its_recorded_sha256(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    digest = hashlib.sha256(b"onnx").hexdigest()
    assert check_model_file(tmp_path, digest, "mnist-lstm:v1") == tmp_path / "model.onnx"
    for recorded in ("0" * 64, None, ""):  # a model registered without a digest is refused too
        with pytest.raises(ModelIntegrityError, match=f"mnist-lstm:v1: model.onnx sha256 {digest} does not match"):
            check_model_file(tmp_path, recorded, "mnist-lstm:v1")
    with pytest.raises(OSError):
        check_model_file(tmp_path / "missing", digest, "mnist-lstm:v1")


def test_version_number_is_whole_seconds():
    assert version_number(1795541821.93) == 1795541821


def test_signature_must_describe_the_model(tmp_path):
    good = {"name": "mnist-lstm", "inputs": [{"name": "images"}], "outputs": [{"name": "probabilities"}]}
    (tmp_path / "signature.json").write_text(json.dumps(good))
    assert read_signature(tmp_path, "mnist-lstm") == good
    assert read_signature(tmp_path) == good
    with pytest.raises(ValueError, match="not 'mnist-gru'"):
        read_signature(tmp_path, "mnist-gru")
    (tmp_path / "signature.json").write_text(json.dumps({"name": "mnist-lstm", "inputs": []}))
    with pytest.raises(ValueError, match="inputs and outputs"):
        read_signature(tmp_path)
    (tmp_path / "signature.json").write_text("{not json")
    with pytest.raises(ValueError):
        read_signature(tmp_path)
