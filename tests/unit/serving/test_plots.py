"""The notebooks' figures drawn with Pillow: sizes, where the data lands, and the tick arithmetic."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.core import plots


def png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("n", [1, 5, 30])
def test_manifold_frames_the_grid_without_touching_it(n):
    mosaic = np.random.default_rng(n).random((n * 28, n * 28)).astype(np.float32)
    img = png(plots.manifold(mosaic, n, 2.0, (2, 3), [1.0, 0.0, 0.0, 0.0], "vae4: decoded latent grid"))
    assert img.size == plots.manifold_size(n) == (n * 28 + 72, n * 28 + 76)
    assert img.mode == "L"
    inner = np.asarray(img)[plots.MANIFOLD_TOP : plots.MANIFOLD_TOP + n * 28, plots.MANIFOLD_LEFT : plots.MANIFOLD_LEFT + n * 28]
    np.testing.assert_array_equal(inner, np.rint(mosaic * 255).astype(np.uint8))
    frame = np.asarray(img)[: plots.MANIFOLD_TOP - 2]
    assert frame.min() < 100 and frame.max() == 255  # a title in black on white


def test_nice_ticks_are_round_and_cover_the_range():
    assert plots.nice_ticks(-2.3, 2.3) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert plots.nice_ticks(0.12, 0.83) == [0.2, 0.4, 0.6, 0.8]
    assert plots.nice_ticks(-0.01, 0.01, 3) == [-0.01, 0.0, 0.01]
    assert plots.nice_ticks(1.0, 1.0) == [1.0]


def test_clusters_draw_each_class_in_its_colour():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)
    z = np.stack([y + rng.normal(0, 0.1, len(y)), -y + rng.normal(0, 0.1, len(y)), rng.normal(size=len(y))], axis=1)
    img = png(plots.clusters(z.astype(np.float32), y, [f"class {k}" for k in range(10)], (0, 1), "test"))
    assert img.size == plots.CLUSTERS_SIZE and img.mode == "RGB"
    colours = {tuple(c) for c in np.asarray(img).reshape(-1, 3)}
    assert set(plots.TAB10) <= colours
    # Class 0 sits at the top left of the plane (x small, y large), class 9 at the bottom right.
    left, top, right, bottom = plots.CLUSTERS_PLOT
    pixels = np.asarray(img)
    where0 = np.argwhere((pixels[top:bottom, left:right] == plots.TAB10[0]).all(-1)).mean(0)
    where9 = np.argwhere((pixels[top:bottom, left:right] == plots.TAB10[9]).all(-1)).mean(0)
    assert where0[0] < where9[0] and where0[1] < where9[1]


def test_confusion_shades_cells_by_count():
    matrix = np.diag(np.arange(1, 11) * 10)
    matrix[3, 5] = 7
    img = png(plots.confusion(matrix, [str(d) for d in range(10)], "lstm: test accuracy 0.9"))
    assert img.size == plots.confusion_size(10) == (480, 492)
    pixels = np.asarray(img)
    cell = plots.CONFUSION_CELL

    def corner(i, j):  # a cell's top-left pixel, away from its number
        return tuple(int(v) for v in pixels[plots.CONFUSION_TOP + i * cell + 2, plots.CONFUSION_LEFT + j * cell + 2])

    assert corner(9, 9) == plots.BLUES[1]  # the largest count is the darkest
    assert corner(0, 1) == plots.BLUES[0]  # zero is white-ish
    assert sum(corner(3, 5)) > sum(corner(9, 9)) and sum(corner(3, 5)) < sum(corner(0, 1))
