"""Typeset training digits: fonts kept apart from the upload benchmark's, framed as uploads are, seeded."""

from __future__ import annotations

import os

import numpy as np
import pytest

from training import fonts, uploads


@pytest.fixture(scope="module")
def installed() -> list:
    found = fonts.training_fonts()
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the training fonts: {fonts.APT_COMMAND}")
        pytest.skip(f"no training fonts: {fonts.APT_COMMAND}")
    return found


def test_training_fonts_are_never_the_benchmarks(installed):
    assert not set(fonts.TRAINING_PACKAGES) & set(uploads.BENCHMARK_PACKAGES)
    benchmark = {f.path.resolve() for f in uploads.font_candidates()}
    assert not {p.resolve() for p in installed} & benchmark
    assert len(installed) >= 20  # many typefaces, not a couple


def test_font_digits_are_framed_like_uploads_and_seeded(installed):
    x, y = fonts.font_digits(200, seed=3)
    again, same = fonts.font_digits(200, seed=3)
    assert x.dtype == np.uint8 and x.shape == (200, 28, 28) and np.array_equal(x, again) and np.array_equal(y, same)
    assert sorted(np.bincount(y, minlength=10).tolist()) == [20] * 10
    assert not np.array_equal(x, fonts.font_digits(200, seed=4)[0])
    # as MNIST: the ink's box fits 20 x 20 (centred by its mass) and peaks at full white
    assert x.max(axis=(1, 2)).min() == 255
    for image in x:
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        assert rows[-1] - rows[0] < 21 and cols[-1] - cols[0] < 21


def test_the_default_profile_mixes_typeset_digits_in_and_the_test_profile_does_not():
    from training.profiles import PROFILES

    assert PROFILES["default"].font_digits > 0 and PROFILES["test"].font_digits == 0
