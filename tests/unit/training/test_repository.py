"""training.repository: a Triton model repository and TF Serving base paths written from the model store.

The store is faked (``contract.store`` lists a real one; tests/unit/contract/test_store.py); the
configuration text is parsed back by the engines' own protobuf messages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from google.protobuf import text_format

from contract.errors import ModelNotFound
from contract.protos.inference import model_config_pb2
from contract.store import Stored
from training import repository
from training.repository import RepositoryError, export_repository, tf_serving_config

CLASSIFIER = {
    "name": "mnist-lstm",
    "task": "classification",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}],
    "labels": [str(d) for d in range(10)],
}
DECODER = {
    "name": "fashion-vae2-decoder",
    "task": "generation",
    "inputs": [{"name": "z", "dtype": "float32", "shape": [-1, 2]}],
    "outputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1]}],
    "labels": ["T-shirt/top"],
}


def stored(root: Path, signature: dict, created: float, *, kind: str = "", sha256: str | None = None) -> Stored:
    path = root / signature["name"] / str(created)
    (path / "saved_model").mkdir(parents=True)
    (path / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    (path / "signature.json").write_text(json.dumps(signature))
    metadata: dict = {"kind": kind} if kind else {}
    if not kind:
        (path / "model.onnx").write_bytes(f"onnx {created}".encode())
        metadata["sha256"] = sha256 or hashlib.sha256(f"onnx {created}".encode()).hexdigest()
    return Stored(signature["name"], f"v{created:.0f}", created, path, metadata)


@pytest.fixture
def store(tmp_path, monkeypatch) -> list[Stored]:
    versions = [
        stored(tmp_path / "store", CLASSIFIER, 1000.0),
        stored(tmp_path / "store", CLASSIFIER, 2000.0),
        stored(tmp_path / "store", DECODER, 1500.0),
        stored(tmp_path / "store", {**CLASSIFIER, "name": "mnist-ensemble"}, 2500.0, kind="ensemble"),
    ]

    def list_store(tags=()):
        if not tags:
            return list(versions)
        for tag in tags:
            if not any(s.store_name == tag or s.tag == tag for s in versions):
                raise ModelNotFound(f"no {tag}")
        return [max((s for s in versions if s.store_name == tag or s.tag == tag), key=lambda s: s.created) for tag in tags]

    monkeypatch.setattr(repository, "list_store", list_store)
    return versions


def test_triton_layout_is_the_latest_of_every_model_without_the_ensemble(store, tmp_path, capsys) -> None:
    out = tmp_path / "triton"
    written = export_repository("triton", out)
    assert [(w["name"], w["version"]) for w in written] == [("fashion-vae2-decoder", 1500), ("mnist-lstm", 2000)]
    assert "mnist-ensemble:v2500: skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fashion-vae2-decoder", "mnist-lstm"]
    assert (out / "mnist-lstm" / "2000" / "model.onnx").read_bytes() == b"onnx 2000.0"
    assert (out / "mnist-lstm" / "labels.txt").read_text().splitlines() == CLASSIFIER["labels"]
    assert not (out / "fashion-vae2-decoder" / "labels.txt").exists()  # not a classifier

    config = text_format.Parse((out / "mnist-lstm" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.max_batch_size, list(config.version_policy.specific.versions)) == ("mnist-lstm", 64, [2000])
    assert config.HasField("dynamic_batching") and config.output[0].label_filename == "labels.txt"
    decoder = text_format.Parse((out / "fashion-vae2-decoder" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert [(t.name, list(t.dims)) for t in (*decoder.input, *decoder.output)] == [("z", [2]), ("images", [28, 28, 1])]


def test_re_exporting_an_older_version_keeps_both_in_the_version_policy(store, tmp_path) -> None:
    out = tmp_path / "triton"
    export_repository("triton", out, ["mnist-lstm"], max_batch_size=8, max_queue_delay_us=100)
    export_repository("triton", out, ["mnist-lstm:v1000"], max_batch_size=8, max_queue_delay_us=100)
    config = text_format.Parse((out / "mnist-lstm" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert list(config.version_policy.specific.versions) == [1000, 2000]
    assert (config.max_batch_size, config.dynamic_batching.max_queue_delay_microseconds) == (8, 100)


def test_tfserving_layout_copies_saved_models(store, tmp_path) -> None:
    out = tmp_path / "tfserving"
    export_repository("tfserving", out, ["mnist-lstm", "fashion-vae2-decoder"])
    assert (out / "mnist-lstm" / "2000" / "saved_model.pb").is_file()
    assert 'base_path: "/models/fashion-vae2-decoder"' in (out / "models.config").read_text()


def test_a_model_file_that_does_not_match_its_sha256_is_not_exported(tmp_path, monkeypatch) -> None:
    bad = stored(tmp_path / "store", CLASSIFIER, 1000.0, sha256="0" * 64)
    monkeypatch.setattr(repository, "list_store", lambda tags=(): [bad])
    with pytest.raises(RepositoryError, match="does not match the stored '0+'; refusing to export it"):
        export_repository("triton", tmp_path / "triton")


def test_a_signature_triton_cannot_express_is_a_repository_error(tmp_path, monkeypatch) -> None:
    odd = stored(tmp_path / "store", {**CLASSIFIER, "inputs": [{**CLASSIFIER["inputs"][0], "dtype": "complex64"}]}, 1000.0)
    monkeypatch.setattr(repository, "list_store", lambda tags=(): [odd])
    with pytest.raises(RepositoryError, match="no type"):
        export_repository("triton", tmp_path / "triton")


def test_store_errors_are_repository_errors(store, tmp_path) -> None:
    with pytest.raises(RepositoryError, match="no mnist-gru"):
        export_repository("triton", tmp_path / "triton", ["mnist-gru"])
    (store[1].path / "signature.json").write_text(json.dumps({**CLASSIFIER, "name": "mnist-gru"}))
    with pytest.raises(RepositoryError, match="mnist-lstm:v2000: no usable signature.json .* not registered by `python -m training`"):
        export_repository("triton", tmp_path / "triton", ["mnist-lstm"])
    with pytest.raises(RepositoryError, match="nothing to export"):
        export_repository("triton", tmp_path / "triton", ["mnist-ensemble"])
    with pytest.raises(RepositoryError, match="unknown layout"):
        export_repository("onnx", tmp_path / "x")


def test_tf_serving_config_parses_as_model_server_config() -> None:
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    text = tf_serving_config({"mnist-lstm": [20, 10], "fashion-vae2-decoder": [5]})
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["fashion-vae2-decoder", "mnist-lstm"]
    assert entries["mnist-lstm"].base_path == "/models/mnist-lstm"
    assert entries["mnist-lstm"].model_platform == "tensorflow"
    assert list(entries["mnist-lstm"].model_version_policy.specific.versions) == [10, 20]
