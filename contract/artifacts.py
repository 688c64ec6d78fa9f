"""What training writes and serving reads about a stored model: its file digest, its version number and
its ``signature.json``. Standard library only (the benchmark's Triton peer imports it in its own venv)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from contract.errors import ModelIntegrityError

SIGNATURE_FILE = "signature.json"
MODEL_FILE = "model.onnx"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (training records it; serving checks it before loading)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_file(model_dir: Path, expected_sha256: str | None, tag: str) -> Path:
    """``model_dir/model.onnx``, checked against the sha256 recorded when it was registered (none recorded fails too).

    Raises ModelIntegrityError (OSError for a missing file).
    """
    model_file = model_dir / MODEL_FILE
    actual = file_sha256(model_file)
    if not expected_sha256 or actual != expected_sha256:
        raise ModelIntegrityError(f"{tag}: {MODEL_FILE} sha256 {actual} does not match the stored {expected_sha256!r}")
    return model_file


def version_number(created: float) -> int:
    """A stored version's number (TF Serving's model_spec.version, v2's versions): its registration time in whole seconds."""
    return int(created)


def read_signature(model_dir: Path, store_name: str | None = None) -> dict[str, Any]:
    """``signature.json`` of a stored model, checked to describe a model (and ``store_name``, when given).

    Raises ValueError (or OSError) for a missing, unparsable or foreign signature.
    """
    signature = json.loads((model_dir / SIGNATURE_FILE).read_text())
    if not isinstance(signature, dict) or not signature.get("inputs") or not signature.get("outputs"):
        raise ValueError(f"{model_dir / SIGNATURE_FILE} does not describe a model's inputs and outputs")
    if store_name is not None and signature.get("name") != store_name:
        raise ValueError(f"{model_dir / SIGNATURE_FILE} names {signature.get('name')!r}, not {store_name!r}")
    return signature
