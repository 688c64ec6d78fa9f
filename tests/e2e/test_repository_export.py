"""``python -m training export --layout triton|tfserving`` on the trained store, read back as the engines would.

Every ``config.pbtxt`` must parse into Triton's ``inference.ModelConfig`` and
agree with its ONNX model; every exported SavedModel must load and answer its
``serving_default`` signature on real inputs with the names and shapes of
``signature.json``; versions are the integers the gRPC front reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format

from tests.e2e.conftest import REPO

pytestmark = pytest.mark.slow

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is a dev dependency")
MODELS = [
    "mnist-lstm",
    "mnist-stacked-lstm",
    "mnist-simple-rnn-cell",
    "mnist-lstm-cell",
    "mnist-dense-rnn",
    "mnist-gated-rnn",
    "mnist-custom-lstm",
    "fashion-vae2-decoder",
    "fashion-vae2-encoder",
    "fashion-vae4-decoder",
    "fashion-vae4-encoder",
]


def store_versions(home: Path) -> dict[str, int]:
    """``{name: int(creation_time)}`` of the latest version of every stored model, read from the store itself."""
    versions = {}
    for folder in sorted((home / "models").iterdir()):
        latest = (folder / "latest").read_text().strip()
        created = yaml.safe_load((folder / latest / "model.yaml").read_text())["creation_time"]
        created = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        versions[folder.name] = int(created.timestamp())
    return versions


@pytest.fixture(scope="module")
def exported(trained_store, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("repository")
    env = {**os.environ, "BENTOML_HOME": str(trained_store.home), "BENTOML_DO_NOT_TRACK": "True"}
    for layout in ("triton", "tfserving"):
        run = subprocess.run(
            [sys.executable, "-m", "training", "export", "--model", "all", "--layout", layout, "--out", str(out / layout)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    return {"triton": out / "triton", "tfserving": out / "tfserving", "home": Path(trained_store.home)}


def signature_of(home: Path, name: str) -> dict:
    folder = home / "models" / name
    return json.loads((folder / (folder / "latest").read_text().strip() / "signature.json").read_text())


def real_input(spec: dict, n: int = 5) -> np.ndarray:
    from training.data import load

    shape = [n, *spec["shape"][1:]]
    if spec["name"] == "images":
        split = load(
            "fashion-mnist" if len(shape) == 4 else "mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets")
        )
        return (split.x_test[:n].astype(np.float32) / 255.0).reshape(shape)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)  # latent points z


def test_triton_repository(exported) -> None:
    import onnxruntime as ort

    root, versions = exported["triton"], store_versions(exported["home"])
    assert set(MODELS) <= {p.name for p in root.iterdir()}
    for name in MODELS:
        text = (root / name / "config.pbtxt").read_text()
        config = text_format.Parse(text, model_config_pb2.ModelConfig())  # a malformed config fails here
        signature = signature_of(exported["home"], name)
        assert config.name == name and config.backend == "onnxruntime"
        assert config.max_batch_size >= 8 and config.HasField("dynamic_batching")  # the engine's delay: 0, a batch never waits
        assert list(config.version_policy.specific.versions) == [versions[name]]
        model_file = root / name / str(versions[name]) / "model.onnx"
        assert model_file.is_file()

        session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        onnx_io = {v.name: v.shape[1:] for v in [*session.get_inputs(), *session.get_outputs()]}
        for tensors, specs in ((config.input, signature["inputs"]), (config.output, signature["outputs"])):
            assert [t.name for t in tensors] == [s["name"] for s in specs]
            for tensor, spec in zip(tensors, specs):
                assert spec["dtype"] == "float32" and tensor.data_type == model_config_pb2.TYPE_FP32
                assert list(tensor.dims) == spec["shape"][1:] == list(onnx_io[tensor.name])
        if signature["task"] == "classification":
            assert (root / name / "labels.txt").read_text().split("\n")[:10] == signature["labels"]


def test_tfserving_base_paths(exported) -> None:
    import tensorflow as tf
    from tensorflow_serving.config import model_server_config_pb2

    root, versions = exported["tfserving"], store_versions(exported["home"])
    config = text_format.Parse((root / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    served = {c.name: list(c.model_version_policy.specific.versions) for c in config.model_config_list.config}
    assert {name: served.get(name) for name in MODELS} == {name: [versions[name]] for name in MODELS}
    assert all(c.base_path == f"/models/{c.name}" and c.model_platform == "tensorflow" for c in config.model_config_list.config)
    for name in MODELS:
        signature = signature_of(exported["home"], name)
        loaded = tf.saved_model.load(str(root / name / str(versions[name])))
        serve = loaded.signatures["serving_default"]
        spec = signature["inputs"][0]
        x = real_input(spec)
        outputs = {k: v.numpy() for k, v in serve(**{spec["name"]: tf.constant(x)}).items()}
        assert sorted(outputs) == sorted(o["name"] for o in signature["outputs"]), name
        for out in signature["outputs"]:
            assert outputs[out["name"]].shape == (len(x), *out["shape"][1:]), (name, out["name"])
            assert np.all(np.isfinite(outputs[out["name"]]))
            if out["range"]:
                lo, hi = out["range"]
                assert outputs[out["name"]].min() >= lo - 1e-6 and outputs[out["name"]].max() <= hi + 1e-6
        if signature["task"] == "classification":
            np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-4)
