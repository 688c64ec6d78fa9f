"""Write stored models as a Triton model repository or as TensorFlow Serving base paths.

Reads the BentoML store at ``$BENTOML_HOME`` (the latest version of every
model, or the tags given) and each model's ``signature.json``; nothing is
re-exported or converted. Both engines want integer versions: a model's
version is ``int(creation_time.timestamp())``, the ``version_number`` the
gRPC front reports, so a client sees the same version from every server.

``triton``::

    OUT/<store name>/config.pbtxt        names, dtypes, dims, max_batch_size, dynamic_batching, warm-up
    OUT/<store name>/labels.txt          classifiers: class labels (Triton's classification extension)
    OUT/<store name>/<version>/model.onnx

``tfserving``::

    OUT/<store name>/<version>/          the SavedModel (signature ``serving_default``)
    OUT/models.config                    --model_config_file for all of them, mounted at /models
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.artifacts import file_sha256
from training.export import ExportError

REPOSITORY_LAYOUTS = ("triton", "tfserving")
TRITON_DTYPES = {
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
MAX_BATCH_SIZE = 64  # the serving default (SERVING_MAX_BATCH_SIZE)
QUEUE_DELAY_US = 1000  # how long Triton's dynamic batcher may hold a request to fill a batch
WARMUP_BATCH_SIZES = (1, 8)  # as serving/runtime.py warms up
TF_SERVING_MOUNT = "/models"  # where models.config expects OUT inside the TF Serving container


class RepositoryError(ExportError):
    """A stored model cannot be written in the requested layout."""


@dataclass(frozen=True)
class StoredModel:
    """One model version of the store, with what the layouts need."""

    name: str
    tag: str
    version: int
    path: Path
    signature: dict[str, Any]
    metadata: dict[str, Any]


def stored_models(models: Sequence[str] | None = None) -> list[StoredModel]:
    """The given store tags or names (a name means its latest version), else the latest of every model."""
    import bentoml

    if models:
        try:
            picked = [bentoml.models.get(m) for m in models]
        except bentoml.exceptions.NotFound as e:
            raise RepositoryError(f"{e}; `bentoml models list` shows what the store at $BENTOML_HOME holds") from e
    else:
        latest: dict[str, Any] = {}
        for model in bentoml.models.list():
            if model.tag.name not in latest or model.creation_time > latest[model.tag.name].creation_time:
                latest[model.tag.name] = model
        picked = [latest[name] for name in sorted(latest)]
    result = []
    for model in picked:
        path = Path(model.path)
        signature_file = path / "signature.json"
        if not signature_file.is_file():
            raise RepositoryError(f"{model.tag}: no signature.json in {path}; it was not registered by `python -m training`")
        result.append(
            StoredModel(
                name=model.tag.name,
                tag=str(model.tag),
                version=int(model.creation_time.timestamp()),
                path=path,
                signature=json.loads(signature_file.read_text()),
                metadata=dict(model.info.metadata),
            )
        )
    return result


def _dims(spec: dict[str, Any], model: str) -> list[int]:
    shape = spec["shape"]
    if not shape or shape[0] != -1 or any(d < 1 for d in shape[1:]):
        raise RepositoryError(f"{model}: {spec['name']} has shape {shape}; expected a variable batch axis 0 and fixed other axes")
    return [int(d) for d in shape[1:]]


def _dtype(spec: dict[str, Any], model: str) -> str:
    try:
        return TRITON_DTYPES[spec["dtype"]]
    except KeyError:
        raise RepositoryError(f"{model}: {spec['name']} has dtype {spec['dtype']!r}, which Triton has no type for") from None


def _tensor(spec: dict[str, Any], model: str, labels: bool = False) -> str:
    lines = [
        "  {",
        f'    name: "{spec["name"]}"',
        f"    data_type: {_dtype(spec, model)}",
        f"    dims: [ {', '.join(str(d) for d in _dims(spec, model))} ]",
    ]
    if labels:
        lines.append('    label_filename: "labels.txt"')
    return "\n".join(lines + ["  }"])


def triton_config(
    name: str,
    signature: dict[str, Any],
    versions: Sequence[int],
    max_batch_size: int = MAX_BATCH_SIZE,
    queue_delay_us: int = QUEUE_DELAY_US,
) -> str:
    """``config.pbtxt`` (protobuf text of Triton's ``inference.ModelConfig``) for an ONNX model."""
    if max_batch_size < 1:
        raise RepositoryError(f"{name}: max_batch_size must be >= 1, got {max_batch_size}")
    is_classifier = signature.get("task") == "classification" and len(signature["outputs"]) == 1
    inputs = ",\n".join(_tensor(s, name) for s in signature["inputs"])
    outputs = ",\n".join(_tensor(s, name, labels=is_classifier) for s in signature["outputs"])
    warmups = []
    for batch in (b for b in WARMUP_BATCH_SIZES if b <= max_batch_size):
        tensors = "\n".join(
            f'    inputs {{ key: "{s["name"]}" value: {{ data_type: {_dtype(s, name)} '
            f"dims: [ {', '.join(str(d) for d in _dims(s, name))} ] zero_data: true }} }}"
            for s in signature["inputs"]
        )
        warmups.append(f'  {{\n    name: "zeros_batch_{batch}"\n    batch_size: {batch}\n{tensors}\n  }}')
    return "\n".join(
        [
            "# Written by `python -m training export --layout triton` from the BentoML store; tensors as in signature.json.",
            f'name: "{name}"',
            'platform: "onnxruntime_onnx"',
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size}",
            f"version_policy: {{ specific: {{ versions: [ {', '.join(str(v) for v in sorted(versions))} ] }} }}",
            f"input [\n{inputs}\n]",
            f"output [\n{outputs}\n]",
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}",
            "model_warmup [\n" + ",\n".join(warmups) + "\n]",
            "",
        ]
    )


def tf_serving_config(versions: dict[str, list[int]], mount: str = TF_SERVING_MOUNT) -> str:
    """``models.config`` (text of ``tensorflow.serving.ModelServerConfig``) serving ``{name: [versions]}``."""
    entries = []
    for name in sorted(versions):
        pinned = " ".join(f"versions: {v}" for v in sorted(versions[name]))
        entries.append(
            "  config {\n"
            f'    name: "{name}"\n'
            f'    base_path: "{mount}/{name}"\n'
            '    model_platform: "tensorflow"\n'
            f"    model_version_policy {{ specific {{ {pinned} }} }}\n"
            "  }"
        )
    return (
        "# Written by `python -m training export --layout tfserving`: tensorflow_model_server "
        f"--model_config_file={mount}/models.config with this folder mounted at {mount}.\n"
        "model_config_list {\n" + "\n".join(entries) + "\n}\n"
    )


def _versions_on_disk(out_dir: Path, name: str, marker: str) -> list[int]:
    """Integer version folders of ``name`` under ``out_dir`` holding ``marker`` (this export's and earlier ones)."""
    folder = out_dir / name
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / marker).is_file())


def _replace_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)


def _check_integrity(model: StoredModel) -> None:
    expected = model.metadata.get("sha256")
    if expected and file_sha256(model.path / "model.onnx") != expected:
        raise RepositoryError(f"{model.tag}: model.onnx does not match its stored sha256; refusing to export it")


def export_repository(
    layout: str,
    out_dir: Path,
    models: Sequence[str] | None = None,
    *,
    max_batch_size: int = MAX_BATCH_SIZE,
    queue_delay_us: int = QUEUE_DELAY_US,
) -> list[dict[str, Any]]:
    """Write the stored models (see :func:`stored_models`) under ``out_dir`` in ``layout``.

    Returns one ``{"name", "tag", "version", "path"}`` per model version written.
    Re-exporting replaces those versions and keeps any others already there.
    """
    if layout not in REPOSITORY_LAYOUTS:
        raise RepositoryError(f"unknown layout {layout!r}; expected one of {', '.join(REPOSITORY_LAYOUTS)}")
    picked = stored_models(models)
    for model in [m for m in picked if m.metadata.get("kind") == "ensemble"]:
        # No model file of its own: the service averages its members; neither engine gets it.
        print(f"[export] {model.tag}: skipped (an ensemble of stored models, served by this service only)", flush=True)
        picked.remove(model)
    if not picked:
        raise RepositoryError("the model store is empty: nothing to export (`python -m training build` fills it)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in picked:
        target = out_dir / model.name / str(model.version)
        if layout == "triton":
            _check_integrity(model)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(model.path / "model.onnx", target / "model.onnx")
            if model.signature.get("labels") and model.signature.get("task") == "classification":
                (out_dir / model.name / "labels.txt").write_text("\n".join(model.signature["labels"]) + "\n")
        else:
            saved_model = model.path / "saved_model"
            if not (saved_model / "saved_model.pb").is_file():
                raise RepositoryError(f"{model.tag}: no SavedModel in {saved_model}")
            _replace_dir(saved_model, target)
        written.append({"name": model.name, "tag": model.tag, "version": model.version, "path": str(target)})
    names = sorted({m.name for m in picked})
    if layout == "triton":
        for name in names:
            signature = next(m.signature for m in picked if m.name == name)
            (out_dir / name / "config.pbtxt").write_text(
                triton_config(
                    name,
                    signature,
                    _versions_on_disk(out_dir, name, "model.onnx"),
                    max_batch_size=max_batch_size,
                    queue_delay_us=queue_delay_us,
                )
            )
    else:
        every = {p.name: _versions_on_disk(out_dir, p.name, "saved_model.pb") for p in out_dir.iterdir() if p.is_dir()}
        (out_dir / "models.config").write_text(tf_serving_config({k: v for k, v in every.items() if v}))
    return written
