"""Write stored models as a Triton model repository or as TensorFlow Serving base paths.

Reads the BentoML store at ``$BENTOML_HOME`` (the latest version of every
model, or the tags given) and each model's ``signature.json`` through
``contract.store``; nothing is re-exported or converted. Both engines want
integer versions: a stored version's ``version_number``, the one the gRPC
fronts report, so a client sees the same version from every server.

``triton``::

    OUT/<store name>/config.pbtxt        ``contract.triton``'s configuration: tensors, the served engine's batching, warm-up
    OUT/<store name>/labels.txt          classifiers: class labels (Triton's classification extension)
    OUT/<store name>/<version>/model.onnx

``tfserving``::

    OUT/<store name>/<version>/          the SavedModel (signature ``serving_default``)
    OUT/models.config                    --model_config_file for all of them, mounted at /models
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract import triton
from contract.artifacts import MODEL_FILE, check_model_file
from contract.errors import ModelIntegrityError, ModelNotFound
from contract.store import Stored, list_store, newest
from training.export import ExportError

REPOSITORY_LAYOUTS = ("triton", "tfserving")
TF_SERVING_MOUNT = "/models"  # where models.config expects OUT inside the TF Serving container


class RepositoryError(ExportError):
    """A stored model cannot be written in the requested layout."""


def stored_models(models: Sequence[str] | None = None) -> list[Stored]:
    """The given store tags or names (a name means its latest version), else the latest of every model."""
    try:
        return list_store(models) if models else newest(list_store())
    except ModelNotFound as e:
        raise RepositoryError(str(e)) from e


def _signature(model: Stored) -> dict[str, Any]:
    try:
        return model.signature()
    except (OSError, ValueError) as e:
        raise RepositoryError(
            f"{model.tag}: no usable signature.json in {model.path} ({e}); it was not registered by `python -m training`"
        ) from e


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


def _copy_onnx(model: Stored, target: Path) -> None:
    try:
        model_file = check_model_file(model.path, model.metadata.get("sha256"), model.tag)
    except (ModelIntegrityError, OSError) as e:
        raise RepositoryError(f"{e}; refusing to export it") from e
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_file, target / MODEL_FILE)


def _triton_config(out_dir: Path, name: str, signature: dict[str, Any], max_batch_size: int, max_queue_delay_us: int) -> str:
    try:
        config = triton.model_config(
            name,
            signature,
            versions=_versions_on_disk(out_dir, name, MODEL_FILE),
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
        )
    except triton.TritonConfigError as e:
        raise RepositoryError(str(e)) from e
    return triton.config_pbtxt(
        config, "Written by `python -m training export --layout triton` from the BentoML store; tensors as in signature.json."
    )


def export_repository(
    layout: str,
    out_dir: Path,
    models: Sequence[str] | None = None,
    *,
    max_batch_size: int = triton.MAX_BATCH_SIZE,
    max_queue_delay_us: int = triton.MAX_QUEUE_DELAY_US,
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
    signatures: dict[str, dict[str, Any]] = {}  # by store name: the configuration's tensors (of the last version given)
    for model in picked:
        target = out_dir / model.store_name / str(model.version_number)
        if layout == "triton":
            signatures[model.store_name] = signature = _signature(model)
            _copy_onnx(model, target)
            labels = triton.labels_text(signature)
            if labels is not None:
                (out_dir / model.store_name / triton.LABELS_FILE).write_text(labels)
        else:
            saved_model = model.path / "saved_model"
            if not (saved_model / "saved_model.pb").is_file():
                raise RepositoryError(f"{model.tag}: no SavedModel in {saved_model}")
            _replace_dir(saved_model, target)
        written.append({"name": model.store_name, "tag": model.tag, "version": model.version_number, "path": str(target)})
    if layout == "triton":
        for name, signature in sorted(signatures.items()):
            (out_dir / name / "config.pbtxt").write_text(_triton_config(out_dir, name, signature, max_batch_size, max_queue_delay_us))
    else:
        every = {p.name: _versions_on_disk(out_dir, p.name, "saved_model.pb") for p in out_dir.iterdir() if p.is_dir()}
        (out_dir / "models.config").write_text(tf_serving_config({k: v for k, v in every.items() if v}))
    return written
