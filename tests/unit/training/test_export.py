from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contract import calibration
from contract.artifacts import file_sha256
from training import export as export_mod
from training.catalog import ALL_MODELS, CLASSIFIERS, DIGIT_LABELS, ENSEMBLE, FASHION_LABELS, store_entries

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

METADATA_KEYS = {"task", "dataset", "public_name", "metrics", "parity_max_abs_diff", "sha256", "training"}
TRAINING_KEYS = {"epochs", "seed", "train_size", "test_size", "limit", "profile"}
METRIC_KEYS = {
    "classification": {"test_accuracy", "test_loss"},
    "generation": {"test_reconstruction", "test_kl", "test_loss"},
    "encoding": {"test_reconstruction", "test_kl", "test_loss"},
}
# docs/CONTRACTS.md, verbatim.
LSTM_SIGNATURE = {
    "name": "mnist-lstm",
    "public_name": "lstm",
    "task": "classification",
    "signature_name": "serving_default",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
    "labels": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    "latent_dim": None,
    "onnx_opset": 17,
}
CALIBRATION_KEYS = {"temperature", "method", "fitted_on"}


def without_calibration(signature: dict) -> dict:
    """The signature less its calibration (a fitted temperature, different in every run), which it must have."""
    rest = {k: v for k, v in signature.items() if k != "calibration"}
    fitted = signature["calibration"]
    assert set(fitted) == CALIBRATION_KEYS and fitted["method"] == "temperature"
    assert isinstance(fitted["temperature"], float) and 0.05 <= fitted["temperature"] <= 20.0
    return rest


def session(path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- a small model trained and exported in this process -----------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, datasets_dir) -> Path:
    from training.train import TrainOptions, train

    out = tmp_path_factory.mktemp("runs")
    options = TrainOptions(
        profile="test", epochs=1, batch_size=128, seed=0, limit=512, test_limit=300, data_dir=str(datasets_dir), verbose=0
    )
    train("dense-rnn", options, out)
    return out / "dense-rnn"


@pytest.mark.slow
def test_export_of_a_small_trained_model(small_run):
    (exported,) = export_mod.export_run(small_run)
    directory = exported.directory
    assert exported.entry.store_name == "mnist-dense-rnn"
    assert {p.name for p in directory.iterdir()} == {"model.onnx", "saved_model", "signature.json", "reports", "evaluation.json"}
    evaluation = json.loads((directory / "evaluation.json").read_text())
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == evaluation["test_size"] == 300
    assert np.trace(matrix) / 300 == pytest.approx(evaluation["test_accuracy"]) == exported.metadata["metrics"]["test_accuracy"]
    assert without_calibration(exported.signature) == {**LSTM_SIGNATURE, "name": "mnist-dense-rnn", "public_name": "dense-rnn"}
    # The temperature the run fitted on its held-out training images (limit 512 leaves enough unused: 500).
    run = json.loads((small_run / "run.json").read_text())
    assert exported.signature["calibration"]["temperature"] == run["calibration"]["temperature"]
    assert exported.signature["calibration"]["fitted_on"] == "validation split, 500 images" and run["validation_size"] == 500
    assert np.load(small_run / "validation_probabilities.npy").shape == (500, 10)
    assert json.loads((directory / "signature.json").read_text()) == exported.signature

    metadata = exported.metadata
    assert set(metadata) == METADATA_KEYS
    assert json.loads(json.dumps(metadata)) == metadata  # plain JSON types only
    assert 0.0 <= metadata["parity_max_abs_diff"] <= 1e-4
    assert metadata["sha256"] == file_sha256(directory / "model.onnx")
    assert metadata["training"] == {"epochs": 1, "seed": 0, "train_size": 512, "test_size": 300, "limit": 512, "profile": "test"}
    assert set(metadata["metrics"]) == METRIC_KEYS["classification"]

    # The SavedModel answers by name too.
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory / "saved_model"))
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"images"}
    assert set(signature.structured_outputs) == {"probabilities"}


@pytest.mark.slow
def test_export_fails_with_the_parity_figure(small_run, monkeypatch):
    monkeypatch.setattr(export_mod, "parity", lambda *args: 0.0123)
    with pytest.raises(export_mod.ExportError, match=r"mnist-dense-rnn: TF and ONNX Runtime differ by up to 0\.0123"):
        export_mod.export_run(small_run)


def _nulls(value) -> list:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _nulls(v)]
    return [value] if value is None else []


def test_metadata_has_the_contract_keys_and_no_nulls():
    run = {"epochs": 20, "seed": 1337, "train_size": 10_000, "test_size": 5_000, "limit": None, "profile": "default"}
    (entry,) = store_entries("lstm")
    metadata = export_mod.metadata_for(entry, run, {"test_accuracy": np.float32(0.98), "test_loss": 0.1}, 1e-6, "ab")
    assert set(metadata) == METADATA_KEYS and set(metadata["training"]) == TRAINING_KEYS
    # BentoML refuses None anywhere in metadata; an unlimited run records limit 0.
    assert metadata["training"]["limit"] == 0 and not _nulls(metadata)
    assert json.loads(json.dumps(metadata)) == metadata
    assert type(metadata["metrics"]["test_accuracy"]) is float


def _tiny_onnx(path: Path, node, input_shape, output_shape) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, output_shape)],
    )
    # IR 9: what tf2onnx writes; onnx 1.23 defaults to an IR version newer than ONNX Runtime reads.
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_check_rejects_random_ops(tmp_path):
    from onnx import helper

    node = helper.make_node("RandomNormalLike", ["images"], ["probabilities"])
    path = _tiny_onnx(tmp_path / "m.onnx", node, ["batch", 10], ["batch", 10])
    spec = export_mod.TensorInfo("images", (None, 10), None)
    out = export_mod.TensorInfo("probabilities", (None, 10), None)
    with pytest.raises(export_mod.ExportError, match=r"random ops \['RandomNormalLike'\]"):
        export_mod.check_onnx(path, [spec], [out])


def test_check_rejects_a_fixed_batch_axis_and_wrong_names(tmp_path):
    from onnx import helper

    node = helper.make_node("Identity", ["images"], ["probabilities"])
    path = _tiny_onnx(tmp_path / "m.onnx", node, [32, 10], [32, 10])
    spec = export_mod.TensorInfo("images", (None, 10), None)
    out = export_mod.TensorInfo("probabilities", (None, 10), None)
    with pytest.raises(export_mod.ExportError, match="fixed batch axis"):
        export_mod.check_onnx(path, [spec], [out])
    with pytest.raises(export_mod.ExportError, match=r"expected \['x'\]"):
        export_mod.check_onnx(path, [export_mod.TensorInfo("x", (None, 10), None)], [out])


# -- the store built once per session by the `test` profile -------------------


@pytest.fixture(scope="module")
def store(trained_store) -> dict[str, dict]:
    """{store name: {"tag", "path", "metadata", "labels"}} read by a separate process.

    BentoML fixes its home the first time it is used in a process, so reading
    the temporary store from here could see another store.
    """
    code = (
        "import json, bentoml\n"
        "print(json.dumps({m.tag.name: {'tag': str(m.tag), 'path': m.path, 'metadata': m.info.metadata,"
        " 'labels': m.info.labels} for m in bentoml.models.list()}))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(trained_store.home), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


EXPECTED_ENTRIES = [entry for name in ALL_MODELS for entry in store_entries(name)]
ONNX_ENTRIES = [entry for entry in EXPECTED_ENTRIES if entry.part != "ensemble"]


@pytest.mark.slow
def test_build_registers_every_model(store, trained_store):
    assert sorted(store) == sorted(e.store_name for e in EXPECTED_ENTRIES)
    summary = json.loads((trained_store.runs / "build.json").read_text())
    assert summary["profile"] == "test" and set(summary["models"]) == set(ALL_MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ONNX_ENTRIES, ids=lambda e: e.store_name)
def test_stored_model_follows_the_contract(store, entry):
    model = store[entry.store_name]
    path, metadata = Path(model["path"]), model["metadata"]

    assert set(metadata) == METADATA_KEYS
    assert metadata["task"] == entry.task and metadata["dataset"] == entry.dataset
    assert metadata["public_name"] == entry.public_name
    assert set(metadata["metrics"]) == METRIC_KEYS[entry.task]
    assert all(isinstance(v, float) for v in metadata["metrics"].values())
    assert 0.0 <= metadata["parity_max_abs_diff"] <= 1e-4
    assert metadata["sha256"] == file_sha256(path / "model.onnx")
    assert set(metadata["training"]) == TRAINING_KEYS and metadata["training"]["profile"] == "test"
    assert model["labels"]["public_name"] == entry.public_name

    assert (path / "saved_model" / "saved_model.pb").is_file()
    reports = {p.name for p in (path / "reports").glob("*.png")}
    want = (
        {"confusion_matrix.png", "training_curves.png"}
        if entry.task == "classification"
        else {"manifold.png", "latent_clusters.png", "training_curves.png"}
    )
    assert want <= reports
    # What serving draws its plots from.
    evaluation = json.loads((path / "evaluation.json").read_text())
    if entry.task == "classification":
        assert np.array(evaluation["confusion_matrix"]).sum() == metadata["training"]["test_size"]
    else:
        z_mean = np.array(evaluation["z_mean"])
        assert z_mean.shape == (metadata["training"]["test_size"], evaluation["latent_dim"])
        assert len(evaluation["y"]) == len(z_mean) and evaluation["labels"] == FASHION_LABELS

    signature = json.loads((path / "signature.json").read_text())
    assert signature["name"] == entry.store_name and signature["task"] == entry.task
    assert signature["onnx_opset"] == 17 and signature["signature_name"] == "serving_default"
    assert signature["labels"] == (DIGIT_LABELS if entry.dataset == "mnist" else FASHION_LABELS)
    if entry.task == "classification":
        signature = without_calibration(signature)
    else:
        assert "calibration" not in signature
    if entry.public_name == "lstm":
        assert signature == LSTM_SIGNATURE

    proto = onnx.load(str(path / "model.onnx"))
    assert {(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {("", 17)}
    assert not [n.op_type for n in proto.graph.node if n.op_type.startswith("Random")]

    sess = session(path / "model.onnx")
    assert [i.name for i in sess.get_inputs()] == [t["name"] for t in signature["inputs"]]
    assert sorted(o.name for o in sess.get_outputs()) == sorted(t["name"] for t in signature["outputs"])
    spec = signature["inputs"][0]
    for batch in (1, 7):
        x = np.random.default_rng(batch).random((batch, *spec["shape"][1:]), dtype=np.float32)
        outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {spec["name"]: x})))
        again = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {spec["name"]: x})))
        for out in signature["outputs"]:
            assert outputs[out["name"]].shape == (batch, *out["shape"][1:])
            np.testing.assert_array_equal(outputs[out["name"]], again[out["name"]])  # deterministic
            if out["range"] is not None:
                lo, hi = out["range"]
                assert lo <= outputs[out["name"]].min() and outputs[out["name"]].max() <= hi


@pytest.mark.slow
def test_stored_ensemble_combines_its_calibrated_members(store, trained_store):
    model = store["mnist-ensemble"]
    path, metadata = Path(model["path"]), model["metadata"]
    assert not (path / "model.onnx").exists()
    assert metadata["kind"] == "ensemble" and metadata["public_name"] == ENSEMBLE and metadata["task"] == "classification"
    assert set(metadata["metrics"]) == METRIC_KEYS["classification"]
    # Measured with the member versions this build registered.
    members = [f"mnist-{name}" for name in CLASSIFIERS]
    assert metadata["members"] == {name: store[name]["tag"].partition(":")[2] for name in members}
    signature = json.loads((path / "signature.json").read_text())
    assert signature["members"] == members and signature["combine"] == "confidence-weighted"
    assert (signature["inputs"], signature["outputs"]) == (LSTM_SIGNATURE["inputs"], LSTM_SIGNATURE["outputs"])
    without_calibration(signature)

    # Its accuracy is that of the members' test probabilities combined with their temperatures, recomputed
    # from their runs; the plain mean is measured beside it.
    runs = trained_store.runs
    labels = np.load(runs / "lstm" / "test_labels.npy")
    temperatures = [json.loads((runs / name / "run.json").read_text())["calibration"]["temperature"] for name in CLASSIFIERS]
    tests = [np.load(runs / name / "test_probabilities.npy") for name in CLASSIFIERS]
    combined = calibration.combine(tests, temperatures)
    assert metadata["metrics"]["test_accuracy"] == pytest.approx(float(np.mean(combined.argmax(1) == labels)))
    evaluation = json.loads((path / "evaluation.json").read_text())
    mean = np.mean(tests, axis=0)
    assert evaluation["combinations"]["mean"]["test_accuracy"] == pytest.approx(float(np.mean(mean.argmax(1) == labels)))
    ensemble_run = json.loads((runs / ENSEMBLE / "run.json").read_text())
    assert signature["calibration"]["temperature"] == ensemble_run["calibration"]["temperature"]
    assert np.array(evaluation["confusion_matrix"]).sum() == len(labels) == metadata["training"]["test_size"]
    assert evaluation["beats_best_member"] == (metadata["metrics"]["test_accuracy"] > max(evaluation["member_accuracy"].values()))
