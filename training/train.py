"""Fit and evaluate one model and write its run directory.

A run directory (``<out>/<public name>/``) holds everything export needs:

```
run.json            what was trained on what (the ``training`` metadata and more)
metrics.json        test metrics (the ``metrics`` metadata)
history.json        per-epoch training metrics
model.keras         classifiers; VAEs write encoder.keras and decoder.keras
parity_inputs.npy   test images (uint8) that export checks TF vs ONNX on
evaluation.json     what serving plots: classifiers their test-set confusion matrix, VAEs the
                    test-set latent means with their labels (stored with the model at export)
test_probabilities.npy, test_labels.npy   classifiers: what the ensemble is evaluated from
validation_probabilities.npy, validation_labels.npy   classifiers: the held-out training images
                    the temperature was fitted on (the ensemble fits its own on them)
reports/*.png
```

Classifiers train on augmented batches where the profile says so (``training.augment``), hold out a
validation split of the training images (``training.data.load``), and fit a temperature on it
(``contract.calibration.fit_temperature``); ``run.json`` records it with the test set's calibration error
before and after (``calibration``), and export writes it into ``signature.json``.

The ensemble (``training.ensemble``) fits no weights: its run combines the seven classifiers'
calibrated test probabilities (``contract.calibration.combine``), written from their run directories.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from training import data, ensemble
from training.catalog import CLASSIFIERS, ENSEMBLE, FASHION_LABELS, dataset_of
from training.evaluation import classification_metrics, fit_calibration, write_classifier_evaluation, write_json
from training.export import MIN_PARITY_INPUTS
from training.profiles import Profile

PARITY_INPUTS = 512  # test images kept for the export's TF-vs-ONNX check


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides a run, after CLI overrides of the profile."""

    profile: str
    epochs: int
    batch_size: int
    seed: int
    limit: int | None
    test_limit: int | None
    data_dir: str | None
    verbose: int = 1
    augment: bool = False  # classifiers: distort training batches (training.augment)
    validation: float = 0.1  # classifiers: share of the training images held out for calibration
    min_validation: int = 500  # ... at least this many where available
    font_digits: float = 0.0  # classifiers: typeset digits added to the training images, as a share of them (training.fonts)

    @classmethod
    def from_profile(cls, profile: Profile, model: str, **overrides) -> TrainOptions:
        """The profile's settings for ``model``; overrides that are None are ignored."""
        values = {
            "profile": profile.name,
            "epochs": profile.epochs_for(model),
            "batch_size": profile.batch_size_for(model),
            "seed": profile.seed,
            "limit": profile.limit,
            "test_limit": profile.test_limit,
            "data_dir": None,
            "augment": profile.augment,
            "validation": profile.validation,
            "min_validation": profile.min_validation,
            "font_digits": profile.font_digits,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def train(name: str, options: TrainOptions, out: Path) -> dict:
    """Train ``name``, write ``out/<name>/`` and return its run record (run.json)."""
    if name == ENSEMBLE:
        return ensemble.evaluate(options, out)
    import keras

    run_dir = out / name
    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    held_out = options.validation if name in CLASSIFIERS else 0.0  # the VAEs calibrate nothing
    split = data.load(
        dataset_of(name),
        options.data_dir,
        seed=options.seed,
        limit=options.limit,
        test_limit=options.test_limit,
        validation=held_out,
        min_validation=options.min_validation,
    )
    typeset = 0
    if name in CLASSIFIERS and options.font_digits > 0:
        from training import fonts

        typeset = round(len(split.x_train) * options.font_digits)
        x_font, y_font = fonts.font_digits(typeset, options.seed)
        split = replace(
            split,
            x_train=np.concatenate([split.x_train, x_font]),
            y_train=np.concatenate([split.y_train, y_font.astype(split.y_train.dtype)]),
        )
    if len(split.x_test) < MIN_PARITY_INPUTS:
        raise data.DataError(f"{name}: the test set has {len(split.x_test)} images; the export's parity check needs >= {MIN_PARITY_INPUTS}")
    # A fresh Keras state per model: memory of earlier models is released and
    # auto-generated layer names do not depend on what was trained before.
    keras.backend.clear_session()
    keras.utils.set_random_seed(options.seed)

    started = time.perf_counter()
    if name in CLASSIFIERS:
        history, metrics, extra = _train_classifier(name, split, options, run_dir)
    else:
        (history, metrics), extra = _train_vae(name, split, options, run_dir), {}
    seconds = time.perf_counter() - started

    record = {
        "model": name,
        "dataset": dataset_of(name),
        **asdict(options),
        "train_size": int(len(split.x_train)),
        "test_size": int(len(split.x_test)),
        "validation_size": int(len(split.x_val)),
        "font_digits_count": typeset,  # of train_size
        "train_seconds": round(seconds, 1),
        "keras_version": keras.__version__,
        **extra,
    }
    np.save(run_dir / "parity_inputs.npy", split.x_test[:PARITY_INPUTS])
    write_json(run_dir / "history.json", history)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "run.json", record)
    calibrated = f", calibration {json.dumps(extra['calibration'])}" if "calibration" in extra else ""
    print(f"[train] {name}: {json.dumps(metrics)}{calibrated} in {seconds:.0f}s -> {run_dir}", flush=True)
    return record


def _history(fit_history) -> dict[str, list[float]]:
    return {key: [float(v) for v in values] for key, values in fit_history.history.items()}


def _train_classifier(name: str, split: data.Split, options: TrainOptions, run_dir: Path):
    from training import classifiers, report

    config = classifiers.CONFIGS[name]
    steps = options.epochs * -(-len(split.x_train) // options.batch_size)
    model = classifiers.compile_classifier(classifiers.build(name, config), config, total_steps=steps)
    if options.augment:
        from training import augment

        batches, steps_per_epoch = augment.training_dataset(split.x_train, split.y_train, options.batch_size, options.epochs, options.seed)
        fit = model.fit(batches, epochs=options.epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=options.verbose)
    else:
        fit = model.fit(
            data.to_float(split.x_train),
            split.y_train,
            batch_size=options.batch_size,
            epochs=options.epochs,
            shuffle=True,
            verbose=options.verbose,
        )
    model.save(run_dir / "model.keras")

    # One pass over the test set gives the metrics and the confusion matrix.
    probabilities = model.predict(data.to_float(split.x_test), batch_size=1024, verbose=0)
    metrics, matrix = classification_metrics(probabilities, split.y_test)
    history = _history(fit)
    np.save(run_dir / "test_probabilities.npy", probabilities.astype(np.float32))
    np.save(run_dir / "test_labels.npy", split.y_test)
    write_classifier_evaluation(run_dir, name, metrics, matrix)
    report.plot_curves(history, run_dir / "reports" / "training_curves.png", f"{name} ({options.profile})", metrics)

    extra = {}
    if len(split.x_val):
        validation = model.predict(data.to_float(split.x_val), batch_size=1024, verbose=0).astype(np.float32)
        np.save(run_dir / "validation_probabilities.npy", validation)
        np.save(run_dir / "validation_labels.npy", split.y_val)
        extra["calibration"] = fit_calibration(validation, split.y_val, probabilities, split.y_test)
    return history, metrics, extra


def _train_vae(name: str, split: data.Split, options: TrainOptions, run_dir: Path):
    from keras import ops

    from training import report, vae

    config = vae.CONFIGS[name]
    model = vae.build(name, config)
    x_train = data.to_float(split.x_train)[..., None]
    x_test = data.to_float(split.x_test)[..., None]
    fit = model.fit(x_train, batch_size=options.batch_size, epochs=options.epochs, shuffle=True, verbose=options.verbose)
    model.encoder.save(run_dir / "encoder.keras")
    model.decoder.save(run_dir / "decoder.keras")

    results = model.evaluate(x_test, batch_size=1024, verbose=0, return_dict=True)
    metrics = {
        "test_reconstruction": float(results["reconstruction_loss"]),
        "test_kl": float(results["kl_loss"]),
        "test_loss": float(results["loss"]),
    }
    history = _history(fit)

    n, scale = 30, 2.0
    mosaic = report.decode_manifold(
        lambda z: ops.convert_to_numpy(model.decoder(z, training=False)),
        config.base_vector(),
        config.manifold_dims,
        n=n,
        scale=scale,
    )
    report.plot_manifold(
        mosaic,
        n,
        scale,
        config.manifold_dims,
        config.base_vector(),
        run_dir / "reports" / "manifold.png",
        f"{name}: decoded latent grid",
    )
    z_mean = ops.convert_to_numpy(model.encoder.predict(x_test, batch_size=1024, verbose=0)[0])
    # What serving draws the label clusters from (no TensorFlow there): the test set's z_mean and labels.
    write_json(
        run_dir / "evaluation.json",
        {
            "labels": FASHION_LABELS,
            "test_size": int(len(split.y_test)),
            "latent_dim": int(z_mean.shape[1]),
            "y": [int(y) for y in split.y_test],
            "z_mean": np.round(z_mean.astype(np.float64), 5).tolist(),
        },
    )
    report.plot_latent_scatter(
        z_mean,
        split.y_test,
        FASHION_LABELS,
        run_dir / "reports" / "latent_clusters.png",
        f"{name}: test-set z_mean by class",
    )
    # Test figures under the history's metric names, for the dashed lines.
    test_lines = {f"test_{k}": results[k] for k in ("loss", "reconstruction_loss", "kl_loss")}
    report.plot_curves(history, run_dir / "reports" / "training_curves.png", f"{name} ({options.profile})", test_lines)
    return history, metrics
