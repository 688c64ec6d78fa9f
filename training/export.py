"""Export a run as SavedModel + ONNX + signature.json, check parity, publish.

For each store entry of a run (see ``catalog.store_entries``) this writes
``<run>/export/<store name>/`` with ``model.onnx``, ``saved_model/``,
``signature.json`` (with the run's ``calibration`` temperature for the classifiers and the ensemble)
and ``reports/`` (the ensemble's: no model file, a signature naming its members), then publishes it: ``LAYOUTS`` maps a
layout name to a function ``(Exported) -> str`` (the str says where it went);
the one layout, ``bentoml``, registers a new version in the BentoML model store
that ``BENTOML_HOME`` points at. Triton and TF-Serving repositories are written
from that store afterwards, by ``training.repository``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.artifacts import file_sha256
from training import ensemble
from training.catalog import DIGIT_LABELS, ENSEMBLE, FASHION_LABELS, StoreEntry, store_entries

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-4
MIN_PARITY_INPUTS = 256
SIGNATURE_NAME = "serving_default"
BATCH_AXIS_NAME = "batch"
UNIT_RANGE = [0.0, 1.0]


class ExportError(RuntimeError):
    """An export does not meet the contract (names, dynamic batch, parity, randomness)."""


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of an exported model."""

    name: str
    shape: tuple[int | None, ...]  # None = variable batch axis
    range: list[float] | None  # inclusive [lo, hi], None = unbounded

    def to_json(self) -> dict:
        """The signature.json form: ``-1`` marks the batch axis."""
        shape = [-1 if d is None else int(d) for d in self.shape]
        return {"name": self.name, "dtype": "float32", "shape": shape, "range": self.range}


@dataclass(frozen=True)
class Exported:
    """An exported store entry, ready for a layout."""

    entry: StoreEntry
    directory: Path
    signature: dict
    metadata: dict
    labels: dict[str, str]


def export_run(run_dir: Path) -> list[Exported]:
    """Export every store entry of the run in ``run_dir`` (checks included)."""
    run = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if run["model"] == ENSEMBLE:
        return [_export_ensemble(run_dir, run, metrics)]
    return [_export_entry(entry, run_dir, run, metrics) for entry in store_entries(run["model"])]


def _entry_dir(run_dir: Path, entry: StoreEntry) -> Path:
    """A fresh ``<run>/export/<store name>/``."""
    out = run_dir / "export" / entry.store_name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _exported(entry: StoreEntry, out: Path, run_dir: Path, run: dict, signature: dict, metadata: dict) -> Exported:
    """Write ``signature.json`` and copy the run's reports and ``evaluation.json`` (what serving draws plots from)."""
    (out / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
    shutil.copytree(run_dir / "reports", out / "reports")
    shutil.copy2(run_dir / "evaluation.json", out / "evaluation.json")
    labels = {"task": entry.task, "dataset": entry.dataset, "public_name": entry.public_name, "profile": str(run["profile"])}
    return Exported(entry, out, signature, metadata, labels)


def _export_ensemble(run_dir: Path, run: dict, metrics: dict) -> Exported:
    """The ensemble's store entry: no model file, a signature naming its members."""
    (entry,) = store_entries(ENSEMBLE)
    out = _entry_dir(run_dir, entry)
    signature = {**ensemble.signature(entry), **calibration_entry(run)}
    # Filled in by register_bentoml with the versions in the store: the members it was measured with.
    metadata = {"kind": "ensemble", **_run_metadata(entry, run, metrics), "members": {name: "" for name in signature["members"]}}
    return _exported(entry, out, run_dir, run, signature, metadata)


def _load_endpoint(entry: StoreEntry, run_dir: Path):
    """(keras model, its inputs, its outputs, parity inputs) for one entry."""
    import keras

    # Importing the model modules registers their custom layers for load_model.
    from training import classifiers, data, vae  # noqa: F401

    images = data.to_float(np.load(run_dir / "parity_inputs.npy"))
    if entry.part == "classifier":
        model = keras.models.load_model(run_dir / "model.keras")
        inputs = [TensorInfo("images", tuple(model.input.shape), UNIT_RANGE)]
        outputs = [TensorInfo("probabilities", tuple(model.output.shape), UNIT_RANGE)]
        return model, inputs, outputs, images

    encoder = vae.deterministic_encoder(keras.models.load_model(run_dir / "encoder.keras"))
    if entry.part == "encoder":
        inputs = [TensorInfo("images", tuple(encoder.input.shape), UNIT_RANGE)]
        outputs = [TensorInfo(name, tuple(encoder.get_layer(name).output.shape), None) for name in ("z_mean", "z_log_var")]
        return encoder, inputs, outputs, images[..., None]

    decoder = keras.models.load_model(run_dir / "decoder.keras")
    # Real decoder inputs: where the encoder puts the test images.
    z = keras.ops.convert_to_numpy(encoder(images[..., None])["z_mean"])
    inputs = [TensorInfo("z", tuple(decoder.input.shape), None)]
    outputs = [TensorInfo("images", tuple(decoder.output.shape), UNIT_RANGE)]
    return decoder, inputs, outputs, z


def _export_entry(entry: StoreEntry, run_dir: Path, run: dict, metrics: dict) -> Exported:
    model, inputs, outputs, parity_inputs = _load_endpoint(entry, run_dir)
    if len(parity_inputs) < MIN_PARITY_INPUTS:
        raise ExportError(f"{entry.store_name}: {len(parity_inputs)} parity inputs; need >= {MIN_PARITY_INPUTS}")
    out = _entry_dir(run_dir, entry)

    import tensorflow as tf

    write_saved_model(model, inputs[0], [o.name for o in outputs], out / "saved_model")
    # Convert and compare what was written, not the in-memory Keras model.
    loaded = tf.saved_model.load(str(out / "saved_model"))
    signature_fn = loaded.signatures[SIGNATURE_NAME]
    write_onnx(signature_fn, inputs[0], out / "model.onnx")
    check_onnx(out / "model.onnx", inputs, outputs)
    diff = parity(signature_fn, out / "model.onnx", inputs[0].name, parity_inputs)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"{entry.store_name}: TF and ONNX Runtime differ by up to {diff:.3g} on {len(parity_inputs)} "
            f"test inputs (allowed {PARITY_TOLERANCE:g})"
        )
    print(f"[export] {entry.store_name}: parity max |TF - ONNX| = {diff:.3g} on {len(parity_inputs)} inputs", flush=True)

    latent = {"classifier": None, "decoder": inputs[0], "encoder": outputs[0]}[entry.part]
    signature = {
        "name": entry.store_name,
        "public_name": entry.public_name,
        "task": entry.task,
        "signature_name": SIGNATURE_NAME,
        "inputs": [t.to_json() for t in inputs],
        "outputs": [t.to_json() for t in outputs],
        "labels": list(DIGIT_LABELS if entry.dataset == "mnist" else FASHION_LABELS),
        "latent_dim": None if latent is None else int(latent.shape[-1]),
        "onnx_opset": ONNX_OPSET,
        **calibration_entry(run),
    }
    return _exported(entry, out, run_dir, run, signature, metadata_for(entry, run, metrics, diff, file_sha256(out / "model.onnx")))


def calibration_entry(run: dict) -> dict:
    """``{"calibration": {...}}`` for a signature: the temperature the run fitted and what it was fitted on
    (``softmax(log p / T)``, contract.calibration); empty for a run without one (VAEs, older runs)."""
    fitted = run.get("calibration")
    if not fitted:
        return {}
    return {
        "calibration": {
            "temperature": float(fitted["temperature"]),
            "method": "temperature",
            "fitted_on": f"validation split, {int(fitted['validation_size'])} images",
        }
    }


def metadata_for(entry: StoreEntry, run: dict, metrics: dict, parity_max_abs_diff: float, onnx_sha256: str) -> dict:
    """The store metadata of docs/CONTRACTS.md; plain JSON values, none of them null."""
    return {**_run_metadata(entry, run, metrics), "parity_max_abs_diff": float(parity_max_abs_diff), "sha256": onnx_sha256}


def _run_metadata(entry: StoreEntry, run: dict, metrics: dict) -> dict:
    """What every store entry's metadata says of its run: task, dataset, public name, test metrics, training."""
    return {
        "task": entry.task,
        "dataset": entry.dataset,
        "public_name": entry.public_name,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "training": {
            **{k: run[k] for k in ("epochs", "seed", "train_size", "test_size", "profile")},
            # BentoML metadata cannot hold None: 0 means "no limit, all training images".
            "limit": run["limit"] or 0,
        },
    }


def write_saved_model(model, spec: TensorInfo, output_names: list[str], path: Path) -> None:
    """SavedModel whose ``serving_default`` maps the named input to named outputs."""
    import keras
    import tensorflow as tf

    def serve(x):
        y = model(x, training=False)
        return dict(y) if isinstance(y, dict) else {output_names[0]: y}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=spec.name)],
    )
    archive.write_out(str(path), verbose=False)


def write_onnx(signature, spec: TensorInfo, path: Path) -> None:
    """Convert a loaded SavedModel signature with tf2onnx at the pinned opset.

    The caller keeps the loaded SavedModel alive: the signature's variables belong to it.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    # tf2onnx names the ONNX input after the TensorSpec and the outputs after the dict keys.
    fn = tf.function(
        lambda x: signature(**{spec.name: x}),
        input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=spec.name)],
    )
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET)
    for value in list(proto.graph.input) + list(proto.graph.output):
        # tf2onnx calls the free axis "unk__123"; a stable name reads better in tools.
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS_NAME
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def check_onnx(path: Path, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> None:
    """Names, a dynamic batch axis (runs at batch 1 and 7), and no random ops."""
    import onnx

    proto = onnx.load(str(path))
    random_ops = sorted({n.op_type for n in proto.graph.node if n.op_type.startswith("Random")})
    if random_ops:
        raise ExportError(f"{path}: graph contains random ops {random_ops}; exported graphs must be deterministic")

    session = _ort_session(path)
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    want_in, want_out = [t.name for t in inputs], [t.name for t in outputs]
    if got_in != want_in or sorted(got_out) != sorted(want_out):
        raise ExportError(f"{path}: ONNX I/O is {got_in} -> {got_out}; expected {want_in} -> {want_out}")
    for value in list(session.get_inputs()) + list(session.get_outputs()):
        if not isinstance(value.shape[0], str):
            raise ExportError(f"{path}: {value.name} has a fixed batch axis {value.shape}")
    spec = inputs[0]
    for batch in (1, 7):
        x = np.random.default_rng(batch).random((batch, *spec.shape[1:]), dtype=np.float32)
        for name, y in zip(got_out, session.run(None, {spec.name: x})):
            want = next(t for t in outputs if t.name == name)
            if y.shape != (batch, *want.shape[1:]):
                raise ExportError(f"{path}: at batch {batch}, {name} has shape {y.shape}")


def parity(signature, onnx_path: Path, input_name: str, x: np.ndarray) -> float:
    """Max |TF SavedModel signature - ONNX Runtime (CPU)| over all outputs on ``x``."""
    import tensorflow as tf

    expected = {k: v.numpy() for k, v in signature(**{input_name: tf.constant(x)}).items()}
    session = _ort_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {input_name: x})))
    return max(float(np.max(np.abs(expected[k] - got[k]))) for k in expected)


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the GPU build warns about missing CUDA on every session
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def register_bentoml(exported: Exported) -> str:
    """Create a new version of the entry in the BentoML store; returns its tag."""
    # No usage analytics from build machines (and no network to send them to).
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    metadata = exported.metadata
    if exported.entry.part == "ensemble":
        # The member versions it was measured with: the newest in the store, registered by this build.
        metadata = {**metadata, "members": {name: bentoml.models.get(name).tag.version for name in metadata["members"]}}
    with bentoml.models.create(exported.entry.store_name, metadata=metadata, labels=exported.labels) as model:
        for item in ("model.onnx", "signature.json", "evaluation.json"):
            if (exported.directory / item).is_file():  # an ensemble has no model.onnx
                shutil.copy2(exported.directory / item, model.path_of(item))
        for folder in ("saved_model", "reports"):
            if (exported.directory / folder).is_dir():
                shutil.copytree(exported.directory / folder, model.path_of(folder))
    return str(model.tag)


LAYOUTS: dict[str, Callable[[Exported], str]] = {"bentoml": register_bentoml}


def export(name: str, runs: Path, layout: str = "bentoml") -> list[dict]:
    """Export the run of ``name`` under ``runs`` and publish it with ``layout``.

    Returns one ``{"store_name", "location", "parity_max_abs_diff"}`` per entry.
    """
    run_dir = runs / name
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no trained run (expected run.json); train it first")
    publish = LAYOUTS[layout]
    published = []
    for exported in export_run(run_dir):
        location = publish(exported)
        print(f"[export] {exported.entry.store_name} -> {layout}: {location}", flush=True)
        published.append(
            {
                "store_name": exported.entry.store_name,
                "location": location,
                "parity_max_abs_diff": exported.metadata.get("parity_max_abs_diff"),  # None: the ensemble
            }
        )
    return published
