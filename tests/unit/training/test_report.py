from __future__ import annotations

import numpy as np

from training import report


def test_manifold_latents_follow_the_seed_layout():
    z = report.manifold_latents([1.0, 0.0, 0.0, 0.0], (2, 3), n=30, scale=2.0)
    assert z.shape == (900, 4) and z.dtype == np.float32
    assert np.all(z[:, 0] == 1.0) and np.all(z[:, 1] == 0.0)
    # Row-major display order: top-left is (x=-2, y=+2), bottom-right (x=+2, y=-2).
    assert z[0, 2:].tolist() == [-2.0, 2.0]
    assert z[29, 2:].tolist() == [2.0, 2.0]
    assert z[-1, 2:].tolist() == [2.0, -2.0]


def test_decode_manifold_decodes_the_grid_in_one_call():
    calls = []

    def decode(z):
        calls.append(z.shape)
        return np.repeat(z[:, 0], 28 * 28).reshape(-1, 28, 28, 1)

    mosaic = report.decode_manifold(decode, [0.0, 0.0], (0, 1), n=30, scale=2.0)
    assert calls == [(900, 2)]
    assert mosaic.shape == (840, 840)
    assert mosaic[0, 0] == -2.0 and mosaic[0, -1] == 2.0  # z[0] runs left to right


def test_tile_places_images_row_major():
    images = np.arange(4, dtype=np.float32).repeat(4).reshape(4, 2, 2)
    assert report.tile(images, 2).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_confusion_matrix_counts_true_by_predicted():
    matrix = report.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_plots_write_pngs(tmp_path):
    labels = [str(i) for i in range(3)]
    paths = [
        report.plot_confusion(np.eye(3, dtype=int) * 5, labels, tmp_path / "cm.png", "cm"),
        report.plot_curves({"loss": [1.0, 0.5], "accuracy": [0.5, 0.9]}, tmp_path / "curves.png", "c", {"test_accuracy": 0.8}),
        report.plot_latent_scatter(
            np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3, labels, tmp_path / "clusters.png", "z"
        ),
        report.plot_manifold(np.zeros((56, 56)), 2, 2.0, (0, 1), [0.0, 0.0], tmp_path / "manifold.png", "m"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
