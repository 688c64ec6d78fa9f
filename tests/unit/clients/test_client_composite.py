"""The server's composite routes as the gRPC client re-does them: the same arithmetic as the server's."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from clients import composite
from clients import grpc as clients_grpc
from contract import vae
from serving.core import notebook


def test_losses_and_constants_are_the_servers() -> None:
    # one copy of the arithmetic (contract.vae) serves the server's routes and the gRPC client
    for name in ("reconstruction_loss", "kl_divergence", "interpolation_path"):
        assert getattr(clients_grpc, name) is getattr(vae, name) is getattr(notebook, name), name
    assert composite.MAX_STEPS is vae.MAX_STEPS is notebook.MAX_STEPS
    x = np.array([[1.0, 0.0]], np.float32)
    p = np.array([[0.5, 0.25]], np.float32)
    np.testing.assert_allclose(vae.reconstruction_loss(x, p), [-(np.log(0.5) + np.log(0.75))])
    assert vae.reconstruction_loss(x, x)[0] == np.float64(-2 * np.log(1 - vae.BCE_EPSILON))  # clipped, not inf
    z = np.zeros((2, 4), np.float32)
    np.testing.assert_array_equal(vae.kl_divergence(z, z), [0.0, 0.0])
    np.testing.assert_allclose(vae.kl_divergence(np.ones((1, 4), np.float32), z[:1]), [2.0])


def test_interpolation_path_includes_both_ends() -> None:
    ends = np.array([[-2.0, 1.5], [2.0, -1.5]], np.float32)
    path = vae.interpolation_path(ends, 5)
    assert path.dtype == np.float32 and path.shape == (5, 2)
    np.testing.assert_array_equal(path[[0, -1]], ends)
    np.testing.assert_allclose(path[2], [0.0, 0.0], atol=1e-7)


def test_reconstruction_png_puts_each_input_left_of_its_reconstruction() -> None:
    inputs, decoded = np.zeros((2, 28, 28), np.float32), np.ones((2, 28, 28), np.float32)
    with Image.open(io.BytesIO(composite.reconstruction_png(inputs, decoded))) as img:
        pixels = np.asarray(img)
    assert pixels.shape == (56, 56)
    assert (pixels[:, :28] == 0).all() and (pixels[:, 28:] == 255).all()
