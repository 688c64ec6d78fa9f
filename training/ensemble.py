"""The ensemble of the seven classifiers: the mean of their probabilities, evaluated at build time.

Nothing is fitted. ``evaluate`` reads the test-set probabilities each classifier run recorded
(``test_probabilities.npy``, ``test_labels.npy``), averages them, and writes ``<out>/ensemble/``
like any run (``run.json``, ``metrics.json``, ``evaluation.json``, ``reports/``). Export
(``training.export``) turns that into a store entry without a model file: its :func:`signature`
names the members, and serving runs each member's own ONNX model (its ``EnsembleRuntime``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from training.catalog import CLASSIFIERS, DIGIT_LABELS, ENSEMBLE, StoreEntry, store_entries
from training.data import DataError
from training.evaluation import classification_metrics, write_classifier_evaluation, write_json

MEMBERS = CLASSIFIERS


def member_store_names() -> list[str]:
    return [store_entries(name)[0].store_name for name in MEMBERS]


def mean_probabilities(probabilities: list[np.ndarray]) -> np.ndarray:
    """The ensemble's answer: float32 mean over the members (axis 0 of the stack)."""
    return np.mean(np.stack([np.asarray(p, dtype=np.float32) for p in probabilities]), axis=0, dtype=np.float32)


def _member_outputs(out: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, dict]]:
    probabilities, labels, runs = {}, None, {}
    for name in MEMBERS:
        run_dir = out / name
        files = [run_dir / "test_probabilities.npy", run_dir / "test_labels.npy", run_dir / "run.json"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(
                f"{ENSEMBLE}: no test outputs of {name} ({', '.join(missing)}); train the seven classifiers "
                f"({', '.join(MEMBERS)}) into {out} first"
            )
        probabilities[name] = np.load(files[0])
        member_labels = np.load(files[1])
        if labels is None:
            labels = member_labels
        elif not np.array_equal(labels, member_labels):
            raise DataError(f"{ENSEMBLE}: {name} was evaluated on other test images than {MEMBERS[0]}; rebuild them together")
        runs[name] = json.loads(files[2].read_text())
    assert labels is not None
    return probabilities, labels, runs


def evaluate(options, out: Path) -> dict:
    """Write ``out/ensemble/`` from the members' runs and return its run record."""
    started = time.perf_counter()
    probabilities, labels, runs = _member_outputs(out)
    mean = mean_probabilities(list(probabilities.values()))
    metrics, matrix = classification_metrics(mean, labels)
    members = {name: classification_metrics(p, labels)[0]["test_accuracy"] for name, p in probabilities.items()}
    best = max(members, key=members.__getitem__)

    run_dir = out / ENSEMBLE
    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    write_classifier_evaluation(
        run_dir,
        ENSEMBLE,
        metrics,
        matrix,
        member_accuracy=members,
        best_member=best,
        beats_best_member=metrics["test_accuracy"] > members[best],
    )
    first = runs[MEMBERS[0]]
    record = {
        "model": ENSEMBLE,
        "dataset": "mnist",
        **asdict(options),
        # What the members were trained on (the ensemble itself fits nothing).
        **{k: first[k] for k in ("profile", "seed", "limit", "test_limit", "data_dir")},
        "train_size": int(first["train_size"]),
        "test_size": int(len(labels)),
        "train_seconds": round(time.perf_counter() - started, 1),
        "members": list(MEMBERS),
        "member_profiles": sorted({r["profile"] for r in runs.values()}),
    }
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "history.json", {})
    write_json(run_dir / "run.json", record)
    print(
        f"[train] {ENSEMBLE}: test accuracy {metrics['test_accuracy']:.4f} (best member {best} "
        f"{members[best]:.4f}) on {len(labels)} images -> {run_dir}",
        flush=True,
    )
    return record


def signature(entry: StoreEntry) -> dict:
    """signature.json of the ensemble: the classifiers' input and output, and its members."""
    return {
        "name": entry.store_name,
        "public_name": entry.public_name,
        "task": entry.task,
        "signature_name": "serving_default",
        "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
        "labels": list(DIGIT_LABELS),
        "latent_dim": None,
        "members": member_store_names(),
        "combine": "mean of the members' probabilities",
    }
