from __future__ import annotations

import numpy as np
import pytest

from clients.base import Prediction, chunks, image_batch, latent_batch, read_image, top_k, unit_float
from clients.errors import InvalidRequestError


def test_one_image_becomes_a_batch_of_one() -> None:
    batch = image_batch([[0] * 28] * 28)
    assert batch.shape == (1, 28, 28) and batch.dtype == np.uint8


def test_integer_pixels_stay_integers_and_floats_become_float32() -> None:
    ints = image_batch(np.full((2, 28, 28), 255, dtype=np.int64))
    assert ints.dtype == np.uint8 and ints.max() == 255
    floats = image_batch(np.full((2, 28, 28), 0.5, dtype=np.float64))
    assert floats.dtype == np.float32
    assert image_batch(np.ones((1, 28, 28), dtype=bool)).dtype == np.float32


def test_unit_float_scales_only_integer_pixels() -> None:
    scaled = unit_float(image_batch(np.array([[[0, 51, 255]]])))
    assert scaled.dtype == np.float32 and scaled.ravel().tolist() == pytest.approx([0.0, 0.2, 1.0])
    floats = image_batch(np.array([[[0.0, 0.2, 1.0]]]))
    assert unit_float(floats) is floats


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((28,)), "got shape"),
        (np.zeros((1, 1, 28, 28)), "got shape"),
        (np.zeros((0, 28, 28)), "no images"),
        (np.full((1, 28, 28), 256), "within 0..255"),
        (np.full((1, 28, 28), -1), "within 0..255"),
        (np.full((1, 28, 28), np.nan), "NaN"),
        ([[[0, 1], [0]]], "rectangular"),
        (np.array([[["a"]]]), "numbers"),
    ],
)
def test_bad_images_are_refused_before_sending(images: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        image_batch(images)


def test_latent_points() -> None:
    assert latent_batch([1.4, -1.3]).shape == (1, 2)
    assert latent_batch([[0, 0], [1, 1]]).dtype == np.float32
    for bad in ([], [[[0.0]]], [[np.inf, 0.0]], [["x", 1]]):
        with pytest.raises(InvalidRequestError):
            latent_batch(bad)


def test_chunks_cover_every_row_in_order() -> None:
    assert chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunks(3, 256) == [slice(0, 3)]
    assert chunks(2, 0) == [slice(0, 1), slice(1, 2)]


def test_top_k_orders_by_probability_and_breaks_ties_by_label() -> None:
    probs = np.array([0.1, 0.3, 0.05, 0.3, 0.25])
    assert top_k(probs, 3) == [(1, 0.3), (3, 0.3), (4, 0.25)]
    p = Prediction(label=1, probabilities=probs, model="lstm", version="v")
    assert p.top(1) == [(1, 0.3)]
    with pytest.raises(AttributeError):
        p.label = 2  # type: ignore[misc]


def test_read_image(tmp_path) -> None:
    path = tmp_path / "digit.png"
    path.write_bytes(b"\x89PNG...")
    assert read_image(path) == (b"\x89PNG...", "digit.png")
    assert read_image(str(path)) == (b"\x89PNG...", "digit.png")
    assert read_image(b"raw") == (b"raw", "image")
    with pytest.raises(InvalidRequestError, match="cannot read image file"):
        read_image(tmp_path / "missing.png")
