"""Scoring the upload benchmark (``training.uploads``): every stored classifier, the ensemble and the plain
mean, through the serving path (``contract.images.decode_image`` + ``mnist_preprocess``, the stored
``model.onnx`` on ONNX Runtime's CPU provider via serving's own ``ModelRuntime``): accuracy, accuracy by
source kind, and the calibrated expected calibration error.

numpy only at import time; bentoml and onnxruntime are imported by :func:`evaluate_uploads`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.uploads import FONT, MANIFEST, MAX_PIXELS, MNIST

BATCH = 256


def read_manifest(uploads: Path) -> dict[str, Any]:
    path = Path(uploads) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no upload benchmark here; write one with `python -m training uploads make --out {uploads}`")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def preprocess(uploads: Path, images: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Every upload through the serving path: (N, 28, 28) float32 inputs and a mask of those refused."""
    from contract.errors import ServingError
    from contract.images import decode_image, mnist_preprocess

    x = np.zeros((len(images), 28, 28), dtype=np.float32)
    refused = np.zeros(len(images), dtype=bool)
    for i, entry in enumerate(images):
        try:
            x[i] = mnist_preprocess(decode_image((Path(uploads) / entry["file"]).read_bytes(), MAX_PIXELS))
        except ServingError:  # what the service answers 4xx for: counted as a wrong answer
            refused[i] = True
    return x, refused


def _scores(probabilities: np.ndarray, labels: np.ndarray, kinds: np.ndarray, calibrated: np.ndarray) -> dict[str, Any]:
    from contract.calibration import expected_calibration_error

    correct = probabilities.argmax(axis=1) == labels
    return {
        "accuracy": round(float(correct.mean()), 4),
        "ece": round(expected_calibration_error(calibrated, labels), 4),
        "ece_uncalibrated": round(expected_calibration_error(probabilities, labels), 4),
        "n": int(len(labels)),
        "by_source": {
            kind: {"accuracy": round(float(correct[kinds == kind].mean()), 4), "n": int((kinds == kind).sum())}
            for kind in (FONT, MNIST)
            if (kinds == kind).any()
        },
    }


def _test_accuracy(metadata: dict[str, Any], path: Path) -> float | None:
    """MNIST test accuracy as training recorded it: the store metadata, else evaluation.json's confusion matrix."""
    value = (metadata.get("metrics") or {}).get("test_accuracy")
    if value is not None:
        return float(value)
    try:
        matrix = np.asarray(json.loads((path / "evaluation.json").read_text())["confusion_matrix"])
        return float(np.trace(matrix) / matrix.sum())
    except (OSError, KeyError, ValueError):
        return None


def _temperature(signature: dict[str, Any]) -> float:
    """A model's calibration temperature from its signature.json (1.0 when training fitted none)."""
    return float((signature.get("calibration") or {}).get("temperature", 1.0))


def _ensemble_rows(
    name: str,
    stored: Any,
    signature: dict[str, Any],
    members: list[str],
    missing: list[str],
    answers: dict[str, np.ndarray],
    temperatures: dict[str, float],
    labels: np.ndarray,
    kinds: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """The ensemble (``contract.calibration.combine`` of its members, then its own temperature) and the
    plain mean of the same members, with the MNIST test accuracy training recorded for each."""
    from contract.calibration import calibrate, combine

    if not members:
        return {}
    member_probs = [answers[m] for m in members]
    combined = combine(member_probs, [temperatures[m] for m in members])
    plain = np.mean(np.stack(member_probs), axis=0)
    evaluation: dict[str, Any] = {}
    if stored is not None:
        try:
            evaluation = json.loads((stored.path / "evaluation.json").read_text())
        except (OSError, ValueError):
            evaluation = {}
    # evaluation.json's "combinations" holds the test figures of the combination and of the plain mean; an
    # older ensemble (signature "combine": "mean of the members' probabilities") was the plain mean itself.
    combinations = evaluation.get("combinations") or {}
    method = str(signature.get("combine", ""))
    test_accuracy = _test_accuracy(stored.metadata, stored.path) if stored is not None else None
    old_mean = not combinations and method.lower().startswith("mean")
    combined_test = (combinations.get(method) or {}).get("test_accuracy", None if old_mean else test_accuracy)
    plain_test = (combinations.get("mean") or {}).get("test_accuracy", test_accuracy if old_mean else None)
    ensemble_t = _temperature(signature)
    mean_t = float((combinations.get("mean") or {}).get("temperature", 1.0))
    extra = {"members": members, **({"missing_members": missing} if missing else {})}
    return {
        name: {
            "combine": "confidence-weighted",  # what is computed here, whatever an older stored ensemble did
            "temperature": ensemble_t,
            "mnist_test_accuracy": combined_test,
            **_scores(combined, labels, kinds, calibrate(combined, ensemble_t)),
            **extra,
        },
        f"{name} (plain mean)": {
            "combine": "mean",
            "temperature": mean_t,
            "mnist_test_accuracy": plain_test,
            **_scores(plain, labels, kinds, calibrate(plain, mean_t)),
            **extra,
        },
    }


def evaluate_uploads(uploads: Path, home: Path | None = None, batch: int = BATCH) -> dict[str, Any]:
    """Every stored classifier (newest version of each), the ensemble and the plain mean, scored on the uploads.

    ``home`` is the BentoML store (BENTOML_HOME); it must be set before bentoml is first imported in
    this process, which the CLI does.
    """
    from contract.calibration import calibrate
    from contract.store import list_store, newest

    manifest = read_manifest(uploads)  # first: a missing benchmark says how to make one, whatever the store
    if home is not None:
        if "bentoml" in sys.modules and os.environ.get("BENTOML_HOME") != str(home):
            raise ValueError(f"bentoml is already imported with another store than {home}; evaluate in a fresh process")
        os.environ["BENTOML_HOME"] = str(home)
    images = manifest["images"]
    labels = np.array([e["label"] for e in images], dtype=np.int64)
    kinds = np.array([e["kind"] for e in images])
    started = time.perf_counter()
    x, refused = preprocess(uploads, images)
    preprocess_seconds = time.perf_counter() - started

    from serving.core.runtime import ModelRuntime

    stored = newest(list_store())
    classifiers, ensembles = [], []
    for s in stored:
        signature = s.signature()
        if signature.get("task") != "classification":
            continue
        (ensembles if s.metadata.get("kind") == "ensemble" else classifiers).append((s, signature))
    if not classifiers:
        where = home or os.environ.get("BENTOML_HOME") or "~/bentoml"
        raise FileNotFoundError(f"no classifier in the model store at {where}; build one with `make models`")

    uniform = np.full(10, 0.1, dtype=np.float32)
    rows: dict[str, dict[str, Any]] = {}
    answers: dict[str, np.ndarray] = {}
    temperatures: dict[str, float] = {}
    for s, signature in classifiers:
        rt = ModelRuntime(s.store_name, s.version, s.path, s.metadata, signature, ["CPUExecutionProvider"], created=s.created)
        rt.load()
        shape = rt.row_shape
        p = np.concatenate([rt.predict(x[b : b + batch].reshape(-1, *shape)) for b in range(0, len(x), batch)]).astype(np.float32)
        rt.unload()
        p[refused] = uniform
        t = _temperature(signature)
        answers[s.store_name], temperatures[s.store_name] = p, t
        rows[rt.public_name] = {
            "store_name": s.store_name,
            "version": s.version,
            "temperature": t,
            "mnist_test_accuracy": _test_accuracy(s.metadata, s.path),
            **_scores(p, labels, kinds, calibrate(p, t)),
        }

    stored_ensemble = ensembles[0] if ensembles else None
    if stored_ensemble is not None:
        ensemble, ensemble_signature = stored_ensemble
        members = [m for m in ensemble_signature.get("members", []) if m in answers]
        missing = sorted(set(ensemble_signature.get("members", [])) - set(members))
        name = str(ensemble_signature.get("public_name") or ensemble.store_name)
        rows.update(_ensemble_rows(name, ensemble, ensemble_signature, members, missing, answers, temperatures, labels, kinds))
    elif answers:  # no stored ensemble: the combination of every stored classifier
        rows.update(_ensemble_rows("ensemble", None, {}, sorted(answers), [], answers, temperatures, labels, kinds))
    return {
        "uploads": str(uploads),
        "seed": manifest.get("seed"),
        "n": len(images),
        "refused": int(refused.sum()),
        "preprocess_seconds": round(preprocess_seconds, 1),
        "models": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a fixed-width table (percentages; ECE after each model's temperature)."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}%"

    header = ("model", "uploads", "font", "mnist", "MNIST test", "ECE", "T")
    lines = [header]
    for name, r in result["models"].items():
        by = r["by_source"]
        lines.append(
            (
                name,
                pct(r["accuracy"]),
                pct(by.get(FONT, {}).get("accuracy")),
                pct(by.get(MNIST, {}).get("accuracy")),
                pct(r["mnist_test_accuracy"]),
                f"{r['ece']:.4f}",
                "—" if r["temperature"] is None else f"{r['temperature']:g}",
            )
        )
    widths = [max(len(row[c]) for row in lines) for c in range(len(header))]
    text = ["  ".join(cell.ljust(widths[c]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(row)) for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    title = (
        f"upload benchmark {result['uploads']}: {result['n']} images (seed {result['seed']}), "
        f"{result['refused']} refused by preprocessing (counted wrong)"
    )
    return "\n".join([title, *text])
