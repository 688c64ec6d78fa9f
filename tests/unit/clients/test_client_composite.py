"""The server's composite routes as the gRPC client re-does them: the same arithmetic as the server's."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from clients import composite
from serving.core import notebook


def test_losses_and_constants_are_the_servers() -> None:
    rng = np.random.default_rng(0)
    x, p = rng.random((3, 28, 28), dtype=np.float32), rng.random((3, 28, 28), dtype=np.float32)
    z_mean, z_log_var = rng.standard_normal((3, 4), dtype=np.float32), rng.standard_normal((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(composite.reconstruction_loss(x, p), notebook.reconstruction_loss(x, p))
    np.testing.assert_array_equal(composite.kl_divergence(z_mean, z_log_var), notebook.kl_divergence(z_mean, z_log_var))
    assert (composite.MAX_STEPS, composite.BCE_EPSILON) == (notebook.MAX_STEPS, notebook.BCE_EPSILON)


def test_interpolation_path_includes_both_ends() -> None:
    ends = np.array([[-2.0, 1.5], [2.0, -1.5]], np.float32)
    path = composite.interpolation_path(ends, 5)
    assert path.dtype == np.float32 and path.shape == (5, 2)
    np.testing.assert_array_equal(path[[0, -1]], ends)
    np.testing.assert_allclose(path[2], [0.0, 0.0], atol=1e-7)


def test_reconstruction_png_puts_each_input_left_of_its_reconstruction() -> None:
    inputs, decoded = np.zeros((2, 28, 28), np.float32), np.ones((2, 28, 28), np.float32)
    with Image.open(io.BytesIO(composite.reconstruction_png(inputs, decoded))) as img:
        pixels = np.asarray(img)
    assert pixels.shape == (56, 56)
    assert (pixels[:, :28] == 0).all() and (pixels[:, 28:] == 255).all()
