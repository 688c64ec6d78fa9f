"""Training-batch augmentation (training/augment.py) and which profiles use it."""

from __future__ import annotations

import numpy as np
import pytest

from training import augment, data
from training.augment import AugmentConfig
from training.catalog import CLASSIFIERS
from training.profiles import PROFILES
from training.train import TrainOptions

tf = pytest.importorskip("tensorflow")

NOTHING = AugmentConfig(probability=1.0, shift=0.0, rotation=0.0, scale=(1.0, 1.0), shear=0.0, dilate=0.0, erode=0.0, blur=0.0, noise=0.0)


@pytest.fixture(scope="module")
def digits(datasets_dir) -> tuple[np.ndarray, np.ndarray]:
    split = data.load("mnist", datasets_dir, seed=3, limit=256)
    return split.x_train, split.y_train


def _seed(a: int, b: int):
    return tf.constant([a, b], tf.int64)


@pytest.mark.parametrize("as_float", [False, True], ids=["uint8", "float32"])
def test_keeps_shape_dtype_and_range(digits, as_float):
    x = digits[0][:64]
    out = augment.augment_batch(data.to_float(x) if as_float else x, _seed(1, 2), AugmentConfig(probability=1.0)).numpy()
    assert out.shape == (64, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Distorted, and still a digit: ink near the centre, not blown away or everywhere.
    assert np.abs(out - data.to_float(x)).mean(axis=(1, 2)).min() > 0.0
    ink = (out >= 0.5).mean(axis=(1, 2))
    assert ink.min() > 0.01 and ink.max() < 0.5


def test_is_deterministic_under_a_seed(digits):
    x = digits[0][:32]
    a = augment.augment_batch(x, _seed(7, 0)).numpy()
    np.testing.assert_array_equal(a, augment.augment_batch(x, _seed(7, 0)).numpy())
    assert not np.array_equal(a, augment.augment_batch(x, _seed(7, 1)).numpy())


def test_distorts_only_the_chosen_share(digits):
    x = digits[0]
    clean = data.to_float(x)
    np.testing.assert_array_equal(augment.augment_batch(x, _seed(1, 1), AugmentConfig(probability=0.0)).numpy(), clean)
    out = augment.augment_batch(x, _seed(1, 1), AugmentConfig(probability=0.5)).numpy()
    unchanged = np.all(out == clean, axis=(1, 2)).mean()
    assert 0.35 < unchanged < 0.65


def test_no_distortion_is_the_identity(digits):
    # The affine map is centred on the image: zero ranges resample every pixel onto itself.
    x = digits[0][:16]
    np.testing.assert_allclose(augment.augment_batch(x, _seed(0, 0), NOTHING).numpy(), data.to_float(x), atol=1e-5)


def test_a_larger_scale_enlarges_the_digit(digits):
    x = digits[0][:64]
    bigger = augment.augment_batch(x, _seed(0, 0), AugmentConfig(**{**NOTHING.__dict__, "scale": (1.15, 1.15)})).numpy()
    smaller = augment.augment_batch(x, _seed(0, 0), AugmentConfig(**{**NOTHING.__dict__, "scale": (0.85, 0.85)})).numpy()
    ink = (data.to_float(x) > 0.5).sum()
    assert (smaller > 0.5).sum() < ink < (bigger > 0.5).sum()


def test_thicker_and_thinner_strokes(digits):
    x = digits[0][:64]
    thicker = augment.augment_batch(x, _seed(0, 0), AugmentConfig(**{**NOTHING.__dict__, "dilate": 1.0})).numpy()
    thinner = augment.augment_batch(x, _seed(0, 0), AugmentConfig(**{**NOTHING.__dict__, "erode": 1.0})).numpy()
    ink = data.to_float(x).sum()
    assert thinner.sum() < ink < thicker.sum()


def test_training_dataset_streams_every_epoch_with_matching_labels(digits):
    x, y = digits
    dataset, steps = augment.training_dataset(x, y, batch_size=100, epochs=2, seed=5, config=AugmentConfig(probability=0.0))
    batches = list(dataset)
    assert steps == 3 and len(batches) == 6
    assert [len(b[1]) for b in batches] == [100, 100, 56] * 2
    # Undistorted batches are shuffled images with their own labels; each epoch is reshuffled.
    lookup = {data.to_float(image).tobytes(): label for image, label in zip(x, y)}
    for images, labels in batches:
        assert [lookup[image.tobytes()] for image in images.numpy()] == labels.numpy().tolist()
    assert not np.array_equal(batches[0][1].numpy(), batches[3][1].numpy())


def test_training_dataset_is_the_same_for_the_same_seed(digits):
    x, y = digits

    def first_two(seed):
        dataset, _ = augment.training_dataset(x, y, batch_size=64, epochs=1, seed=seed)
        return [b[0].numpy() for b in dataset.take(2)]

    a = first_two(11)
    for got, want in zip(first_two(11), a):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(first_two(12)[0], a[0])


def test_the_default_profile_augments_and_the_test_profile_does_not():
    assert PROFILES["default"].augment is True
    assert PROFILES["test"].augment is False and PROFILES["quick"].augment is False
    for profile in PROFILES.values():
        for name in CLASSIFIERS:
            assert TrainOptions.from_profile(profile, name).augment is profile.augment
