from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from contract.errors import ModelIntegrityError, ModelNotFound, NotReady, VersionNotFound
from serving.core import runtime
from serving.core.registry import Registry
from serving.core.runtime import ModelRuntime, choose_providers

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_auto_takes_cuda_only_when_a_gpu_driver_is_present(monkeypatch):
    monkeypatch.setattr(runtime, "_gpu_present", lambda: True)
    assert choose_providers("auto", ALL) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(runtime, "_gpu_present", lambda: False)
    # The GPU wheel lists CUDA even on a CPU-only host; auto must not pick it there.
    assert choose_providers("auto", ALL) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_explicit_providers_keep_their_order_and_end_with_cpu():
    assert choose_providers("trt,cuda", ALL) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cpu", ALL) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="CUDAExecutionProvider"):
        choose_providers("cuda", ["CPUExecutionProvider"])


def classifier_onnx(path: Path, seed: int) -> None:
    """A real ONNX classifier: images [N,28,28] -> softmax(flatten(images) @ W) [N,10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(size=(784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(np.array([-1, 784], np.int64), "shape"), numpy_helper.from_array(weights, "w")],
    )
    # IR version 8 matches opset 17 (what tf2onnx writes); onnx 1.23 would default to one ORT 1.31 refuses.
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def make_runtime(tmp_path: Path, name: str, accuracy: float, seed: int = 0, tamper: bool = False) -> ModelRuntime:
    folder = tmp_path / name
    folder.mkdir()
    classifier_onnx(folder / "model.onnx", seed)
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    if tamper:
        with (folder / "model.onnx").open("ab") as f:
            f.write(b"\0")
    signature = {
        "name": name,
        "public_name": name.removeprefix("mnist-"),
        "task": "classification",
        "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
    }
    return ModelRuntime(
        store_name=name,
        version="v1",
        path=folder,
        signature=signature,
        providers=["CPUExecutionProvider"],
        metadata={"sha256": digest, "metrics": {"test_accuracy": accuracy}},
    )


def test_runtime_loads_warms_up_and_predicts_any_batch_size(tmp_path):
    rt = make_runtime(tmp_path, "mnist-a", 0.9)
    assert not rt.ready
    rt.load()
    assert rt.ready and rt.provider == "CPUExecutionProvider"
    x = np.random.default_rng(1).random((7, 28, 28), dtype=np.float32)
    seven = rt.predict(x)
    assert seven.shape == (7, 10)
    np.testing.assert_allclose(seven.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(rt.predict(x[3:4]), seven[3:4], atol=1e-6)


def test_a_model_file_that_does_not_match_its_sha256_is_refused(tmp_path):
    rt = make_runtime(tmp_path, "mnist-a", 0.9, tamper=True)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        rt.load()
    assert not rt.ready and rt.session is None


def test_registry_names_defaults_and_readiness(tmp_path):
    a, b = make_runtime(tmp_path, "mnist-a", 0.91, 0), make_runtime(tmp_path, "mnist-b", 0.97, 1)
    registry = Registry([a, b])
    assert not registry.ready
    with pytest.raises(NotReady):
        registry.get("classification", "a")
    registry.load_all()
    assert registry.ready
    assert registry.default_name("classification") == "b"  # best stored accuracy
    assert registry.get("classification", None) is b
    assert registry.get("classification", "mnist-a") is a and registry.get("classification", "a") is a
    with pytest.raises(ModelNotFound, match="a, b"):
        registry.get("classification", "c")
    with pytest.raises(ModelNotFound):
        registry.get("generation", "a")
    with pytest.raises(VersionNotFound):
        registry.get("classification", "a", version="v9")
    assert Registry([a, b], default_classifier="a").default_name("classification") == "a"


def test_registry_serves_versions_side_by_side_with_labels(tmp_path):
    import dataclasses

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = dataclasses.replace(make_runtime(tmp_path / "old", "mnist-a", 0.9, 0), version="v1", created=100.0)
    new = dataclasses.replace(make_runtime(tmp_path / "new", "mnist-a", 0.9, 1), version="v2", created=200.0)
    registry = Registry([old, new])
    registry.load_all()
    assert registry.get("classification", "a") is new  # newest
    assert registry.get("classification", "a", "100") is old and registry.get("classification", "a", "v1") is old
    assert [rt.version for rt in registry.served()] == ["v2", "v1"]
    registry.labels = {"mnist-a": {"stable": "100"}}
    assert registry.get("classification", "a") is old and registry.runtimes["mnist-a"] is old
    assert registry.find("mnist-a", "stable") is old
    with pytest.raises(VersionNotFound, match="serving 200, 100; labels stable=100"):
        registry.get("classification", "a", "canary")
    registry.remove(old)
    assert registry.get("classification", "a") is new  # the label names nothing served
    registry.remove(new)
    with pytest.raises(ModelNotFound):
        registry.get("classification", "a")
    assert not registry.ready
