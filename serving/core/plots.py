"""The notebooks' figures drawn as PNG with Pillow (no matplotlib or TensorFlow at serving time).

Pure functions of numpy arrays: the labelled latent manifold, the label clusters of the test
set in a 2-D latent plane, and a classifier's confusion matrix. Sizes are fixed by the inputs
(documented per function) so clients and tests can rely on them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# matplotlib's tab10, the palette the notebook's scatter used for the ten classes.
TAB10 = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
# matplotlib's "Blues" end points, for the confusion matrix cells.
BLUES = ((247, 251, 255), (8, 48, 107))
Color = tuple[int, int, int]
INK, GRID, PAPER = (0, 0, 0), (200, 200, 200), (255, 255, 255)

# Manifold frame: tick labels and the axis name on the left, the same below, the title on top.
MANIFOLD_LEFT, MANIFOLD_RIGHT, MANIFOLD_TOP, MANIFOLD_BOTTOM = 60, 12, 28, 48
CLUSTERS_SIZE = (720, 560)
CLUSTERS_PLOT = (64, 36, 560, 500)  # left, top, right, bottom of the scatter area; the legend is on the right
CONFUSION_CELL = 40
CONFUSION_LEFT, CONFUSION_TOP, CONFUSION_RIGHT, CONFUSION_BOTTOM = 64, 36, 16, 56


@lru_cache(maxsize=4)
def font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font (no system fonts needed in the image)."""
    return ImageFont.load_default(size=size)


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, anchor: str, size: int = 12, fill: Color = INK) -> None:
    draw.text(xy, text, fill=fill, font=font(size), anchor=anchor)


def _vertical_text(img: Image.Image, centre: tuple[float, float], text: str, size: int = 12, fill: Color = INK) -> None:
    """``text`` rotated 90 degrees counter-clockwise, centred at ``centre`` (an axis label on the left)."""
    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    label = Image.new("RGBA", (int(right - left) + 2, int(bottom - top) + 2), (0, 0, 0, 0))
    ImageDraw.Draw(label).text((1 - left, 1 - top), text, font=f, fill=fill)
    label = label.rotate(90, expand=True)
    x, y = int(centre[0] - label.width / 2), int(centre[1] - label.height / 2)
    img.paste(label, (x, y), label)


def manifold_size(n: int, tile: int = 28) -> tuple[int, int]:
    """(width, height) of :func:`manifold`'s PNG for an n x n grid of ``tile``-pixel images."""
    return MANIFOLD_LEFT + n * tile + MANIFOLD_RIGHT, MANIFOLD_TOP + n * tile + MANIFOLD_BOTTOM


def manifold(mosaic: np.ndarray, n: int, scale: float, dims: Sequence[int], base: Sequence[float], title: str) -> bytes:
    """The decoded n x n grid framed like the notebook's figure: x = z[dims[0]], y = z[dims[1]], tick values
    at tile centres (rounded to 0.1, every tile while there is room for the labels), fixed dims in the title.

    Grayscale PNG of :func:`manifold_size` pixels.
    """
    tile = mosaic.shape[0] // n
    width, height = manifold_size(n, tile)
    img = Image.new("RGB", (width, height), PAPER)
    pixels = np.rint(np.clip(mosaic, 0.0, 1.0) * 255.0).astype(np.uint8)
    img.paste(Image.fromarray(pixels, mode="L").convert("RGB"), (MANIFOLD_LEFT, MANIFOLD_TOP))
    draw = ImageDraw.Draw(img)
    right, bottom = MANIFOLD_LEFT + n * tile, MANIFOLD_TOP + n * tile
    draw.rectangle((MANIFOLD_LEFT - 1, MANIFOLD_TOP - 1, right, bottom), outline=INK)
    values = np.round(np.linspace(-scale, scale, n), 1) + 0.0  # + 0.0: no "-0" label
    # Every tile when labels fit (the seed's 15-inch figure), else every k-th: about 36 px apart.
    step = max(1, math.ceil(36 / tile))
    for i in range(0, n, step):
        centre = i * tile + tile // 2
        x, y = MANIFOLD_LEFT + centre, MANIFOLD_TOP + centre
        draw.line((x, bottom, x, bottom + 4), fill=INK)
        _text(draw, (x, bottom + 6), f"{values[i]:g}", "mt", 11)
        draw.line((MANIFOLD_LEFT - 5, y, MANIFOLD_LEFT - 1, y), fill=INK)
        _text(draw, (MANIFOLD_LEFT - 7, y), f"{values[::-1][i]:g}", "rm", 11)
    _text(draw, ((MANIFOLD_LEFT + right) / 2, height - 4), f"z[{dims[0]}]", "md", 13)
    _vertical_text(img, (14, (MANIFOLD_TOP + bottom) / 2), f"z[{dims[1]}]", 13)
    fixed = [f"z[{i}]={v:g}" for i, v in enumerate(base) if i not in dims]
    _text(draw, ((MANIFOLD_LEFT + right) / 2, 6), title + (f" ({', '.join(fixed)})" if fixed else ""), "mt", 13)
    return to_png(img.convert("L"))


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def clusters(z_mean: np.ndarray, y: np.ndarray, names: Sequence[str], dims: Sequence[int], title: str) -> bytes:
    """The notebook's label clusters: test-set z_mean in the plane (z[dims[0]], z[dims[1]]), one tab10
    colour per class, a legend of class names. RGB PNG of CLUSTERS_SIZE (720 x 560)."""
    img = Image.new("RGB", CLUSTERS_SIZE, PAPER)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = CLUSTERS_PLOT
    xs, ys = z_mean[:, dims[0]].astype(np.float64), z_mean[:, dims[1]].astype(np.float64)
    x0, x1 = _padded(xs)
    y0, y1 = _padded(ys)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - top)

    for tick in nice_ticks(x0, x1):
        draw.line((px(tick), top, px(tick), bottom), fill=GRID)
        draw.line((px(tick), bottom, px(tick), bottom + 4), fill=INK)
        _text(draw, (px(tick), bottom + 6), f"{tick:g}", "mt", 11)
    for tick in nice_ticks(y0, y1):
        draw.line((left, py(tick), right, py(tick)), fill=GRID)
        draw.line((left - 4, py(tick), left, py(tick)), fill=INK)
        _text(draw, (left - 6, py(tick)), f"{tick:g}", "rm", 11)
    draw.rectangle((left, top, right, bottom), outline=INK)
    order = np.random.default_rng(0).permutation(len(y))  # no class drawn entirely on top of another
    for i in order:
        cx, cy = px(xs[i]), py(ys[i])
        draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=TAB10[int(y[i]) % 10])
    for k, name in enumerate(names):
        ly = top + 8 + k * 20
        draw.rectangle((right + 16, ly, right + 28, ly + 12), fill=TAB10[k % 10])
        _text(draw, (right + 34, ly + 6), name, "lm", 12)
    _text(draw, ((left + right) / 2, CLUSTERS_SIZE[1] - 4), f"z[{dims[0]}]", "md", 13)
    _vertical_text(img, (14, (top + bottom) / 2), f"z[{dims[1]}]", 13)
    _text(draw, ((left + right) / 2, 8), title, "mt", 13)
    return to_png(img)


def _padded(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def confusion_size(classes: int) -> tuple[int, int]:
    """(width, height) of :func:`confusion`'s PNG for ``classes`` classes (480 x 492 for 10)."""
    side = classes * CONFUSION_CELL
    return CONFUSION_LEFT + side + CONFUSION_RIGHT, CONFUSION_TOP + side + CONFUSION_BOTTOM


def confusion(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """Counts [true, predicted] as a heat map (white to dark blue), each count in its cell, true on the
    y axis, predicted on the x axis. RGB PNG of :func:`confusion_size` pixels."""
    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    width, height = confusion_size(k)
    img = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(img)
    top_count = max(int(matrix.max()), 1)
    for (i, j), count in np.ndenumerate(matrix):
        t = count / top_count
        colour = tuple(round(a + (b - a) * t) for a, b in zip(*BLUES))
        x, y = CONFUSION_LEFT + j * CONFUSION_CELL, CONFUSION_TOP + i * CONFUSION_CELL
        draw.rectangle((x, y, x + CONFUSION_CELL - 1, y + CONFUSION_CELL - 1), fill=colour)
        if count:
            _text(draw, (x + CONFUSION_CELL / 2, y + CONFUSION_CELL / 2), str(count), "mm", 11, PAPER if t > 0.5 else INK)
    side = k * CONFUSION_CELL
    draw.rectangle((CONFUSION_LEFT - 1, CONFUSION_TOP - 1, CONFUSION_LEFT + side, CONFUSION_TOP + side), outline=INK)
    for idx, label in enumerate(labels):
        centre = idx * CONFUSION_CELL + CONFUSION_CELL / 2
        _text(draw, (CONFUSION_LEFT + centre, CONFUSION_TOP + side + 4), label, "mt", 12)
        _text(draw, (CONFUSION_LEFT - 6, CONFUSION_TOP + centre), label, "rm", 12)
    _text(draw, (CONFUSION_LEFT + side / 2, height - 4), "predicted", "md", 13)
    _vertical_text(img, (14, CONFUSION_TOP + side / 2), "true", 13)
    _text(draw, (width / 2, 8), title, "mt", 13)
    return to_png(img)
