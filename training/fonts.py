"""Typeset digits for training: printed and screen digits are a large share of real uploads, and MNIST has
none. :func:`font_digits` renders 0-9 in the training fonts and frames each glyph as an upload is framed
(``contract.images.mnist_preprocess``, the serving path), so the models see printed digits exactly as
the service will hand them over; the augmentation (``training.augment``) then shifts, tilts, thickens and
blurs them like the MNIST images around them.

The training fonts come from Debian packages that the upload benchmark never uses
(:data:`TRAINING_PACKAGES`; the benchmark's are ``training.uploads.BENCHMARK_PACKAGES``), so the
benchmark keeps measuring typefaces the models did not see. Install them with
``apt-get install -y --no-install-recommends`` and the package names; without any, a profile that asks
for font digits fails and says so.

numpy and Pillow only.
"""

from __future__ import annotations

import glob
import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts")
# Debian packages and the font files each installs (globs under FONT_ROOT).
TRAINING_FONT_GLOBS: dict[str, tuple[str, ...]] = {
    "fonts-cantarell": ("opentype/cantarell/*.otf",),
    "fonts-comic-neue": ("opentype/comic-neue/*.otf",),
    "fonts-lato": ("truetype/lato/*.ttf",),
    "fonts-open-sans": ("truetype/open-sans/*.ttf",),
    "fonts-roboto-unhinted": ("truetype/roboto/unhinted/*.ttf",),
    "fonts-crosextra-carlito": ("truetype/crosextra/Carlito-*.ttf",),
    "fonts-crosextra-caladea": ("truetype/crosextra/Caladea-*.ttf",),
    "fonts-hack": ("truetype/hack/*.ttf",),
    "fonts-inconsolata": ("truetype/inconsolata/*.otf",),
    "fonts-noto-mono": ("truetype/noto/NotoMono-*.ttf", "truetype/noto/NotoSansMono-*.ttf"),
}
TRAINING_PACKAGES = tuple(TRAINING_FONT_GLOBS)
APT_COMMAND = "apt-get install -y --no-install-recommends " + " ".join(TRAINING_PACKAGES)
RENDER_PX = 96  # glyph size the digits are typeset at before framing


class FontsMissing(FileNotFoundError):
    """No training font is installed."""


def training_fonts(root: Path = FONT_ROOT) -> list[Path]:
    """The installed training font files whose digits render (sorted, so runs agree)."""
    found = sorted({Path(p) for globs in TRAINING_FONT_GLOBS.values() for g in globs for p in glob.glob(str(root / g))})
    return [p for p in found if _glyphs(str(p)) is not None]


@cache
def _glyphs(path: str) -> np.ndarray | None:
    """The ten digits of one font, framed as uploads are: uint8 (10, 28, 28); None when they do not render
    (empty, or all alike: a symbol font)."""
    from contract.images import mnist_preprocess

    try:
        font = ImageFont.truetype(io.BytesIO(Path(path).read_bytes()), RENDER_PX)
    except OSError:
        return None
    out = np.zeros((10, 28, 28), np.uint8)
    for digit in range(10):
        canvas = Image.new("L", (RENDER_PX * 2, RENDER_PX * 2), 0)
        ImageDraw.Draw(canvas).text((RENDER_PX, RENDER_PX), str(digit), fill=255, font=font, anchor="mm")
        if canvas.getbbox() is None:
            return None
        out[digit] = np.rint(mnist_preprocess(canvas) * 255.0).astype(np.uint8)
    if out.reshape(10, -1).max(axis=1).min() == 0 or len({g.tobytes() for g in out}) < 10:
        return None
    return out


def font_digits(n: int, seed: int, root: Path = FONT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """``n`` typeset digits, uint8 (n, 28, 28) white on black, and their labels (int64): labels cycle
    through 0-9, fonts are drawn with a seeded generator."""
    fonts = training_fonts(root)
    if not fonts:
        raise FontsMissing(f"no training fonts under {root}; install them: {APT_COMMAND}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 10
    picks = rng.integers(0, len(fonts), n)
    glyphs = [_glyphs(str(f)) for f in fonts]
    images = np.stack([glyphs[f][d] for f, d in zip(picks, labels)]) if n else np.zeros((0, 28, 28), np.uint8)  # type: ignore[index]
    order = rng.permutation(n)
    return images[order], labels[order]
