"""The ensemble's evaluation (training/ensemble.py) and export, from member runs written here: no TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract import calibration
from training import ensemble
from training import export as export_mod
from training.catalog import CLASSIFIERS, ENSEMBLE
from training.data import DataError
from training.evaluation import fit_calibration
from training.profiles import PROFILES
from training.train import TrainOptions

N_TEST, N_VAL = 300, 200


def _probabilities(rng: np.random.Generator, labels: np.ndarray, skill: float, sharpness: float) -> np.ndarray:
    """Softmax outputs that put ``skill`` of the rows' top on the true label, over-confident by ``sharpness``."""
    logits = rng.normal(size=(len(labels), 10))
    right = rng.random(len(labels)) < skill
    logits[np.arange(len(labels))[right], labels[right]] += 3.0
    e = np.exp(sharpness * logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def member_runs(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    test_labels = rng.integers(0, 10, N_TEST).astype(np.uint8)
    val_labels = rng.integers(0, 10, N_VAL).astype(np.uint8)
    for i, name in enumerate(CLASSIFIERS):
        run_dir = tmp_path / name
        run_dir.mkdir()
        sharpness = 1.0 + i  # the later members more and more over-confident
        test = _probabilities(rng, test_labels, 0.7 + 0.03 * i, sharpness)
        val = _probabilities(rng, val_labels, 0.7 + 0.03 * i, sharpness)
        np.save(run_dir / "test_probabilities.npy", test)
        np.save(run_dir / "test_labels.npy", test_labels)
        np.save(run_dir / "validation_probabilities.npy", val)
        np.save(run_dir / "validation_labels.npy", val_labels)
        run = {
            "model": name,
            "profile": "test",
            "seed": 1,
            "limit": 1000,
            "test_limit": N_TEST,
            "data_dir": None,
            "train_size": 1000,
            "validation_size": N_VAL,
            "calibration": fit_calibration(val, val_labels, test, test_labels),
        }
        (run_dir / "run.json").write_text(json.dumps(run))
    return tmp_path


def _evaluate(out: Path) -> dict:
    return ensemble.evaluate(TrainOptions.from_profile(PROFILES["test"], ENSEMBLE), out)


def test_fit_calibration_records_the_temperature_and_the_test_error_before_and_after():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 2000)
    p = _probabilities(rng, labels, 0.8, 4.0)  # over-confident: the temperature is above 1
    fitted = fit_calibration(p[:1000], labels[:1000], p[1000:], labels[1000:])
    assert set(fitted) == {"temperature", "validation_size", "ece_before", "ece_after"}
    assert fitted["temperature"] > 1.0 and fitted["validation_size"] == 1000
    assert fitted["ece_after"] < fitted["ece_before"]
    assert fitted["ece_before"] == pytest.approx(calibration.expected_calibration_error(p[1000:], labels[1000:]), abs=1e-5)


def test_the_ensemble_answers_with_the_confidence_weighted_combination(member_runs):
    record = _evaluate(member_runs)
    runs = {name: json.loads((member_runs / name / "run.json").read_text()) for name in CLASSIFIERS}
    temperatures = [runs[name]["calibration"]["temperature"] for name in CLASSIFIERS]
    tests = [np.load(member_runs / name / "test_probabilities.npy") for name in CLASSIFIERS]
    labels = np.load(member_runs / "lstm" / "test_labels.npy")
    combined = calibration.combine(tests, temperatures)
    mean = np.mean(tests, axis=0)
    assert not np.array_equal(combined.argmax(1), mean.argmax(1))  # the fixture makes the two differ

    metrics = json.loads((member_runs / ENSEMBLE / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(combined.argmax(1) == labels)))
    evaluation = json.loads((member_runs / ENSEMBLE / "evaluation.json").read_text())
    assert evaluation["combine"] == "confidence-weighted" and np.array(evaluation["confusion_matrix"]).sum() == N_TEST
    figures = evaluation["combinations"]
    assert figures["mean"]["test_accuracy"] == pytest.approx(float(np.mean(mean.argmax(1) == labels)))
    assert figures["mean"]["test_ece"] == pytest.approx(calibration.expected_calibration_error(mean, labels), abs=1e-5)
    assert figures["confidence-weighted"]["test_ece"] == pytest.approx(calibration.expected_calibration_error(combined, labels), abs=1e-5)

    # Its own temperature is fitted on the members' validation probabilities, combined the same way.
    validation = [np.load(member_runs / name / "validation_probabilities.npy") for name in CLASSIFIERS]
    val_labels = np.load(member_runs / "lstm" / "validation_labels.npy")
    want = calibration.fit_temperature(calibration.combine(validation, temperatures), val_labels)
    assert record["calibration"]["temperature"] == want and record["calibration"]["validation_size"] == N_VAL
    assert record["member_temperatures"] == dict(zip(CLASSIFIERS, temperatures))
    assert record["mean"]["test_accuracy"] == figures["mean"]["test_accuracy"]


def test_the_ensemble_signature_names_the_combination_and_its_temperature(member_runs):
    record = _evaluate(member_runs)
    (exported,) = export_mod.export_run(member_runs / ENSEMBLE)
    signature = exported.signature
    assert signature["combine"] == "confidence-weighted"
    assert signature["members"] == [f"mnist-{name}" for name in CLASSIFIERS]
    assert signature["calibration"] == {
        "temperature": record["calibration"]["temperature"],
        "method": "temperature",
        "fitted_on": f"validation split, {N_VAL} images",
    }
    assert json.loads((exported.directory / "signature.json").read_text()) == signature


def test_a_classifier_signature_carries_its_runs_temperature():
    run = {"calibration": {"temperature": 1.37, "validation_size": 1000, "ece_before": 0.02, "ece_after": 0.01}}
    assert export_mod.calibration_entry(run) == {
        "calibration": {"temperature": 1.37, "method": "temperature", "fitted_on": "validation split, 1000 images"}
    }
    assert export_mod.calibration_entry({}) == {}  # a VAE, or a run from before calibration


def test_members_without_a_validation_split_are_refused(member_runs):
    (member_runs / "gated-rnn" / "validation_probabilities.npy").unlink()
    with pytest.raises(DataError, match=r"gated-rnn .*validation_probabilities\.npy"):
        _evaluate(member_runs)


def test_members_held_out_different_images_are_refused(member_runs):
    labels = np.load(member_runs / "dense-rnn" / "validation_labels.npy")
    np.save(member_runs / "dense-rnn" / "validation_labels.npy", (labels + 1) % 10)
    with pytest.raises(DataError, match="dense-rnn was evaluated on other validation images"):
        _evaluate(member_runs)
