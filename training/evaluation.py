"""What a classifier's run records of its test set: accuracy and loss, the confusion matrix that serving
draws (``evaluation.json``) and its PNG, and its calibration (a temperature fitted on the validation split,
the test set's calibration error before and after it). The trained classifiers and the ensemble both
write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contract import calibration
from training import report
from training.catalog import DIGIT_LABELS, NUM_CLASSES


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """``{"test_accuracy", "test_loss"}`` and the confusion matrix of test-set probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    predicted = probabilities.argmax(axis=1)
    metrics = {
        "test_accuracy": float(np.mean(predicted == labels)),
        "test_loss": float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0)))),
    }
    return metrics, report.confusion_matrix(labels, predicted, NUM_CLASSES)


def fit_calibration(validation: np.ndarray, validation_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> dict:
    """The temperature fitted on the validation split, and the test set's calibration error (ECE) before
    and after it: the ``calibration`` of a run record."""
    temperature = calibration.fit_temperature(validation, validation_labels)
    return {
        "temperature": float(temperature),
        "validation_size": int(len(validation_labels)),
        "ece_before": round(calibration.expected_calibration_error(test, test_labels), 5),
        "ece_after": round(calibration.expected_calibration_error(calibration.calibrate(test, temperature), test_labels), 5),
    }


def write_classifier_evaluation(run_dir: Path, name: str, metrics: dict, matrix: np.ndarray, **extra) -> None:
    """evaluation.json (the confusion matrix serving draws) and the training report's PNG of it."""
    test_size = int(matrix.sum())
    write_json(
        run_dir / "evaluation.json",
        {
            "labels": DIGIT_LABELS,
            "test_size": test_size,
            "test_accuracy": metrics["test_accuracy"],
            "confusion_matrix": matrix.tolist(),  # [true][predicted] counts
            **extra,
        },
    )
    report.plot_confusion(
        matrix,
        DIGIT_LABELS,
        run_dir / "reports" / "confusion_matrix.png",
        f"{name}: test accuracy {metrics['test_accuracy']:.4f} ({test_size} images)",
    )


def write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
