"""The ensemble of the seven classifiers, evaluated at build time: each member's probabilities
calibrated by its temperature and weighted per image by its calibrated confidence
(``contract.calibration.combine``, "confidence-weighted").

No weights are fitted. ``evaluate`` reads what each classifier run recorded (``test_probabilities.npy``,
``test_labels.npy``, the ``validation_*`` arrays and its temperature in ``run.json``), combines the test
probabilities, fits the ensemble's own temperature on the members' combined validation probabilities, and
writes ``<out>/ensemble/`` like any run (``run.json``, ``metrics.json``, ``evaluation.json`` — with the
plain mean's figures beside the combination's —, ``reports/``). Export (``training.export``) turns that
into a store entry without a model file: its :func:`signature` names the members and the combination,
and serving runs each member's own ONNX model (its ``EnsembleRuntime``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from contract import calibration
from training.catalog import CLASSIFIERS, DIGIT_LABELS, ENSEMBLE, StoreEntry, store_entries
from training.data import DataError
from training.evaluation import classification_metrics, fit_calibration, write_classifier_evaluation, write_json

MEMBERS = CLASSIFIERS
COMBINE = "confidence-weighted"


def member_store_names() -> list[str]:
    return [store_entries(name)[0].store_name for name in MEMBERS]


def mean_probabilities(probabilities: list[np.ndarray]) -> np.ndarray:
    """The plain float32 mean over the members (axis 0 of the stack): what the ensemble answered before
    :func:`combined_probabilities`, still measured beside it."""
    return np.mean(np.stack([np.asarray(p, dtype=np.float32) for p in probabilities]), axis=0, dtype=np.float32)


def combined_probabilities(probabilities: list[np.ndarray], temperatures: list[float]) -> np.ndarray:
    """The ensemble's answer before its own temperature: ``contract.calibration.combine``."""
    return calibration.combine(probabilities, temperatures)


@dataclass(frozen=True)
class MemberOutputs:
    """What the member runs recorded: {name: probabilities} of the test set and of the validation split
    (the same images for every member), their labels, temperatures and run records."""

    test: dict[str, np.ndarray]
    test_labels: np.ndarray
    validation: dict[str, np.ndarray]
    validation_labels: np.ndarray
    temperatures: dict[str, float]
    runs: dict[str, dict]


def _same_labels(kind: str, name: str, labels: np.ndarray | None, member_labels: np.ndarray) -> np.ndarray:
    if labels is not None and not np.array_equal(labels, member_labels):
        raise DataError(f"{ENSEMBLE}: {name} was evaluated on other {kind} images than {MEMBERS[0]}; rebuild them together")
    return member_labels


def _member_outputs(out: Path) -> MemberOutputs:
    test, validation, temperatures, runs = {}, {}, {}, {}
    test_labels = validation_labels = None
    for name in MEMBERS:
        run_dir = out / name
        files = [
            run_dir / "test_probabilities.npy",
            run_dir / "test_labels.npy",
            run_dir / "run.json",
            run_dir / "validation_probabilities.npy",
            run_dir / "validation_labels.npy",
        ]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(
                f"{ENSEMBLE}: no test or validation outputs of {name} ({', '.join(missing)}); train the seven "
                f"classifiers ({', '.join(MEMBERS)}) into {out} first"
            )
        runs[name] = json.loads(files[2].read_text())
        if "calibration" not in runs[name]:
            raise DataError(f"{ENSEMBLE}: {files[2]} has no calibration (trained without a validation split); retrain {name}")
        test[name] = np.load(files[0])
        test_labels = _same_labels("test", name, test_labels, np.load(files[1]))
        validation[name] = np.load(files[3])
        validation_labels = _same_labels("validation", name, validation_labels, np.load(files[4]))
        temperatures[name] = float(runs[name]["calibration"]["temperature"])
    assert test_labels is not None and validation_labels is not None
    return MemberOutputs(test, test_labels, validation, validation_labels, temperatures, runs)


def _figures(test: np.ndarray, labels: np.ndarray, fitted: dict) -> dict:
    """Test accuracy, loss and calibration error of one way of combining the members."""
    metrics, _ = classification_metrics(test, labels)
    return {**metrics, "test_ece": fitted["ece_before"], "temperature": fitted["temperature"], "test_ece_calibrated": fitted["ece_after"]}


def evaluate(options, out: Path) -> dict:
    """Write ``out/ensemble/`` from the members' runs and return its run record."""
    started = time.perf_counter()
    members = _member_outputs(out)
    labels = members.test_labels
    temperatures = [members.temperatures[name] for name in MEMBERS]
    combined = combined_probabilities([members.test[name] for name in MEMBERS], temperatures)
    metrics, matrix = classification_metrics(combined, labels)
    fitted = fit_calibration(
        combined_probabilities([members.validation[name] for name in MEMBERS], temperatures), members.validation_labels, combined, labels
    )
    mean = mean_probabilities([members.test[name] for name in MEMBERS])
    mean_fitted = fit_calibration(
        mean_probabilities([members.validation[name] for name in MEMBERS]), members.validation_labels, mean, labels
    )
    accuracy = {name: classification_metrics(p, labels)[0]["test_accuracy"] for name, p in members.test.items()}
    best = max(accuracy, key=accuracy.__getitem__)

    run_dir = out / ENSEMBLE
    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    write_classifier_evaluation(
        run_dir,
        ENSEMBLE,
        metrics,
        matrix,
        member_accuracy=accuracy,
        best_member=best,
        beats_best_member=metrics["test_accuracy"] > accuracy[best],
        combine=COMBINE,
        # Test-set figures of the answer (confidence-weighted) and of the plain mean, each before and after
        # its own temperature (fitted on the validation split).
        combinations={COMBINE: _figures(combined, labels, fitted), "mean": _figures(mean, labels, mean_fitted)},
    )
    first = members.runs[MEMBERS[0]]
    record = {
        "model": ENSEMBLE,
        "dataset": "mnist",
        **asdict(options),
        # What the members were trained on (the ensemble itself fits nothing).
        **{k: first[k] for k in ("profile", "seed", "limit", "test_limit", "data_dir")},
        "train_size": int(first["train_size"]),
        "test_size": int(len(labels)),
        "validation_size": int(len(members.validation_labels)),
        "train_seconds": round(time.perf_counter() - started, 1),
        "members": list(MEMBERS),
        "member_profiles": sorted({r["profile"] for r in members.runs.values()}),
        "member_temperatures": members.temperatures,
        "combine": COMBINE,
        "calibration": fitted,
        "mean": {**classification_metrics(mean, labels)[0], "calibration": mean_fitted},
    }
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "history.json", {})
    write_json(run_dir / "run.json", record)
    print(
        f"[train] {ENSEMBLE}: test accuracy {metrics['test_accuracy']:.4f} {COMBINE} (mean {record['mean']['test_accuracy']:.4f}, "
        f"best member {best} {accuracy[best]:.4f}) on {len(labels)} images, ECE {fitted['ece_before']:.4f} -> "
        f"{fitted['ece_after']:.4f} at T = {fitted['temperature']} -> {run_dir}",
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
        # contract.calibration.combine: each member calibrated by the temperature in its own signature, weighted
        # per image by its calibrated confidence; then the ensemble's own calibration (added by export).
        "combine": COMBINE,
    }
