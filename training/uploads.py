"""The upload benchmark: generated pictures of digits as users upload them, and every stored classifier's score on them.

``make_uploads`` writes a seeded, reproducible set of images (same seed, same fonts, same Pillow:
byte-identical files) plus ``manifest.json``; ``training.upload_scores.evaluate_uploads`` runs every classifier of a BentoML
store on them through the serving path (``contract.images.decode_image`` + ``mnist_preprocess``, the
stored ``model.onnx`` on ONNX Runtime's CPU provider via serving's own ``ModelRuntime``) and reports
each model's accuracy, its calibrated expected calibration error, and the ensemble's.

What the images are: half are digits typeset in fonts, half are real MNIST *test* digits (the
``t10k`` file of the data directory, never seen in training) pasted with their own gray levels;
digits 8-200 px tall on canvases of 16-400 px with varied aspect, anywhere on the canvas (always
wholly inside it), dark on light or light on dark (in RGB sometimes coloured ink on coloured paper),
in mode RGB, RGBA (sometimes on a transparent background) or L, saved as JPEG at quality 30-95
(RGB and L) or PNG; some with gaussian noise, uneven lighting (a linear or radial gradient), a slight
rotation (up to 10 degrees) or blur. Labels are balanced: each source kind cycles through 0-9.
Per image (its own generator, seeded by (seed, index)): heights log-uniform; mode RGB 50 %, L 30 %,
RGBA 20 % (half of them transparent); dark on light 60 %; coloured 40 % of RGB/RGBA; JPEG 60 % of
RGB/L; noise 50 %; lighting 50 %; rotation 40 %; blur 25 %. Byte-identical needs the same font files
and the same Pillow (its bundled libjpeg and zlib); the manifest records the fonts and Pillow's version.

Fonts: only the files of the Debian packages ``fonts-dejavu-core``, ``fonts-liberation``,
``fonts-freefont-ttf`` and ``fonts-urw-base35`` (:data:`BENCHMARK_FONT_GLOBS`), which are kept
apart from any fonts training may render digits with, so the benchmark measures typefaces the
models never saw. Symbol fonts (DejaVuMathTeXGyre, URW's Dingbats D050000L and Standard Symbols)
are left out, and so is any font whose digits render empty or all alike. Install them with
``apt-get install -y --no-install-recommends fonts-dejavu-core fonts-liberation fonts-freefont-ttf
fonts-urw-base35``.

numpy and Pillow only; the scoring lives in ``training.upload_scores``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_ROOT = Path("/usr/share/fonts")
BENCHMARK_PACKAGES = ("fonts-dejavu-core", "fonts-liberation", "fonts-freefont-ttf", "fonts-urw-base35")
# Globs under FONT_ROOT, per package. DejaVu is named file by file: fonts-dejavu-extra (Oblique,
# Condensed, ExtraLight, MathTeXGyre) installs into the same folder and is not a benchmark font.
# URW base35 ships each face three times (OTF, T1, PFB); the OTF files are enough.
BENCHMARK_FONT_GLOBS: dict[str, tuple[str, ...]] = {
    "fonts-dejavu-core": tuple(
        f"truetype/dejavu/DejaVu{face}.ttf" for face in ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")
    ),
    "fonts-liberation": ("truetype/liberation/Liberation*.ttf",),
    "fonts-freefont-ttf": ("truetype/freefont/Free*.ttf",),
    "fonts-urw-base35": ("opentype/urw-base35/*.otf",),
}
# Fonts whose "digits" are symbols (or that have none): never used, whatever the globs match.
SYMBOL_FONTS = ("DejaVuMathTeXGyre", "D050000L", "Dingbats", "StandardSymbols", "Symbol")
APT_COMMAND = "apt-get install -y --no-install-recommends " + " ".join(BENCHMARK_PACKAGES)

DEFAULT_N = 2000
DEFAULT_SEED = 2025
MANIFEST = "manifest.json"
FONT, MNIST = "font", "mnist"
# The documented ranges (the unit test checks every image against them).
MIN_DIGIT_PX, MAX_DIGIT_PX = 8, 200
MIN_CANVAS_PX, MAX_CANVAS_PX = 16, 400
MIN_JPEG_QUALITY, MAX_JPEG_QUALITY = 30, 95
MAX_ROTATION_DEG = 10.0
MODES = ("RGB", "RGBA", "L")
POLARITIES = ("dark-on-light", "light-on-dark")
LIGHTINGS = ("none", "linear", "radial")
# Free pixels at least between the digit's ink and the canvas edge.
MARGIN_PX = 2
# Decoding limit for the benchmark's own images (serving's default SERVING_MAX_IMAGE_PIXELS).
MAX_PIXELS = 16_000_000
_FILE = re.compile(r"^\d{5}\.(png|jpg)$")


class FontsMissing(FileNotFoundError):
    """None of the benchmark's fonts is installed."""


@dataclass(frozen=True)
class BenchmarkFont:
    path: Path
    package: str

    @property
    def name(self) -> str:
        return self.path.name


# ---------------------------------------------------------------- fonts


def _is_symbol_font(path: Path) -> bool:
    return any(path.name.startswith(prefix) for prefix in SYMBOL_FONTS)


def font_candidates(root: Path = FONT_ROOT) -> list[BenchmarkFont]:
    """Every file the globs match under ``root`` that is not a symbol font, sorted by file name."""
    found: dict[str, BenchmarkFont] = {}
    for package, patterns in BENCHMARK_FONT_GLOBS.items():
        for pattern in patterns:
            for path in sorted(Path(root).glob(pattern)):
                if path.is_file() and not _is_symbol_font(path):
                    found.setdefault(path.name, BenchmarkFont(path, package))
    return [found[name] for name in sorted(found)]


@lru_cache(maxsize=256)
def _font_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    # From the file's bytes: given a path it cannot open, Pillow looks for a font of that file name in
    # the system's font folders instead. BASIC layout: the same glyphs whether or not Pillow has libraqm.
    return ImageFont.truetype(io.BytesIO(_font_bytes(path)), size, layout_engine=ImageFont.Layout.BASIC)


def _render(path: Path, digit: int, size: int) -> np.ndarray:
    """The digit typeset at ``size`` as float32 ink in [0, 1], cropped to its ink (empty array: no ink)."""
    font = _load_font(path, size)
    left, top, right, bottom = font.getbbox(str(digit))
    w, h = max(1, right - left) + 4, max(1, bottom - top) + 4
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), str(digit), fill=255, font=font)
    return _crop(np.asarray(img, dtype=np.float32) / 255.0)


def _crop(ink: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    rows = np.flatnonzero((ink > threshold).any(axis=1))
    cols = np.flatnonzero((ink > threshold).any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float32)


def font_is_usable(path: Path) -> bool:
    """Whether '0'-'9' all render with ink and no two alike (a glyph-less font draws one box for all)."""
    try:
        glyphs = [_render(path, d, 48) for d in range(10)]
    except OSError:  # not a font FreeType can open
        return False
    if any(g.size == 0 or float(g.max()) < 0.5 for g in glyphs):
        return False
    shapes = {(g.shape, g.tobytes()) for g in glyphs}
    return len(shapes) == 10


@lru_cache(maxsize=4)
def _benchmark_fonts(root: str) -> tuple[BenchmarkFont, ...]:
    return tuple(f for f in font_candidates(Path(root)) if font_is_usable(f.path))


def benchmark_fonts(root: Path = FONT_ROOT) -> list[BenchmarkFont]:
    """The usable benchmark fonts under ``root``; FontsMissing (naming the packages) when there are none."""
    fonts = list(_benchmark_fonts(str(root)))
    if not fonts:
        raise FontsMissing(
            f"no benchmark fonts under {root}: the upload benchmark typesets digits in the Debian packages "
            f"{', '.join(BENCHMARK_PACKAGES)}; install them with `{APT_COMMAND}`"
        )
    return fonts


@lru_cache(maxsize=4096)
def _height_per_point(path: Path, digit: int) -> float:
    """Ink height of the digit per unit of font size (measured at 100)."""
    glyph = _render(path, digit, 100)
    return max(glyph.shape[0], 1) / 100.0


def _font_digit(path: Path, digit: int, height: int) -> np.ndarray:
    """The digit typeset so that its ink is ``height`` pixels tall (rendered at the nearest size, then
    adjusted by a resize of at most a few percent)."""
    size = max(4, round(height / _height_per_point(path, digit)))
    glyph = _render(path, digit, size)
    if glyph.shape[0] != height:
        glyph = _resize(glyph, height)
    return glyph


# ---------------------------------------------------------------- images


def _resize(ink: np.ndarray, height: int) -> np.ndarray:
    """Ink scaled to ``height`` rows keeping its aspect ratio (area averaging down, bicubic up)."""
    h, w = ink.shape
    width = max(1, round(w * height / h))
    resample = Image.Resampling.BOX if height < h else Image.Resampling.BICUBIC
    out = np.asarray(Image.fromarray(ink.astype(np.float32)).resize((width, height), resample=resample), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    img = Image.fromarray(np.pad(ink, 2).astype(np.float32))
    out = np.clip(np.asarray(img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0.0)), 0.0, 1.0)
    out[out < 0.01] = 0.0
    return _crop(out)


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray(np.rint(mask * 255.0).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img, dtype=np.float32) / 255.0


def _colour(rng: np.random.Generator, luma: float, coloured: bool) -> np.ndarray:
    """An RGB colour in [0, 1] of the given luma (Rec. 601): gray, or a random hue lightened or darkened to it."""
    if not coloured:
        return np.full(3, luma)
    u = rng.uniform(0.0, 1.0, 3)
    lu = float(u @ (0.299, 0.587, 0.114))
    if lu < luma:
        t = (luma - lu) / max(1.0 - lu, 1e-6)
        return u + (1.0 - u) * t
    return u * (luma / max(lu, 1e-6))


def _lighting(rng: np.random.Generator, kind: str, strength: float, height: int, width: int) -> np.ndarray:
    """A multiplicative illumination field (1 = full light) over the canvas."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "linear":
        angle = rng.uniform(0.0, 2 * math.pi)
        g = x * math.cos(angle) + y * math.sin(angle)
    else:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        g = np.hypot(y - cy, x - cx)
    span = float(g.max() - g.min())
    g = (g - g.min()) / span if span > 0 else np.zeros_like(g)
    return 1.0 - strength * g


@dataclass(frozen=True)
class _Source:
    kind: str
    label: int
    ink: np.ndarray  # float32 ink in [0, 1] at its final size, cropped
    name: str
    package: str | None


def _digit_height(rng: np.random.Generator) -> int:
    # Log-uniform: as many 8-16 px digits as 100-200 px ones, the small ones being the hard ones.
    return int(np.clip(round(math.exp(rng.uniform(math.log(MIN_DIGIT_PX), math.log(MAX_DIGIT_PX)))), MIN_DIGIT_PX, MAX_DIGIT_PX))


def _image(rng: np.random.Generator, source: _Source, size_px: int) -> tuple[Image.Image, dict[str, Any]]:
    """One upload: the source's ink placed, coloured, lit, noised and in its mode; and what was done."""
    ink = source.ink
    rotation = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)) if rng.random() < 0.4 else 0.0
    if rotation:
        ink = _rotate(ink, rotation)
    blur = float(rng.uniform(0.3, 1.0) * max(size_px, 14) / 28.0) if rng.random() < 0.25 else 0.0
    margin = MARGIN_PX + math.ceil(2 * blur)
    dh, dw = ink.shape
    fill = rng.uniform(0.15, 0.9)
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1 / 0.6)))
    ch = int(np.clip(round(dh / fill), max(dh + 2 * margin, MIN_CANVAS_PX), MAX_CANVAS_PX))
    cw = int(np.clip(round(ch * aspect), max(dw + 2 * margin, MIN_CANVAS_PX), MAX_CANVAS_PX))
    top = int(rng.integers(margin, ch - dh - margin + 1))
    left = int(rng.integers(margin, cw - dw - margin + 1))
    mask = np.zeros((ch, cw), dtype=np.float32)
    mask[top : top + dh, left : left + dw] = ink
    if blur:
        mask = _blur(mask, blur)

    mode = MODES[int(rng.choice(3, p=(0.5, 0.2, 0.3)))]
    polarity = POLARITIES[0] if rng.random() < 0.6 else POLARITIES[1]
    coloured = mode != "L" and rng.random() < 0.4
    transparent = mode == "RGBA" and rng.random() < 0.5
    if polarity == "dark-on-light":
        paper_luma, ink_luma = rng.uniform(0.67, 1.0), rng.uniform(0.0, 0.35)
    else:
        paper_luma, ink_luma = rng.uniform(0.0, 0.3), rng.uniform(0.67, 1.0)
    paper, ink_rgb = _colour(rng, paper_luma, coloured), _colour(rng, ink_luma, coloured)
    lighting = "none" if transparent else LIGHTINGS[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    strength = float(rng.uniform(0.15, 0.5)) if lighting != "none" else 0.0
    noise = float(rng.uniform(2.0, 18.0)) if rng.random() < 0.5 else 0.0

    m = mask[..., None].astype(np.float64)
    if transparent:  # drawing apps export the ink colour everywhere, the drawing in alpha
        rgb = np.broadcast_to(ink_rgb, (ch, cw, 3)).copy()
    else:
        rgb = paper + (ink_rgb - paper) * m
    if lighting != "none":
        rgb = rgb * _lighting(rng, lighting, strength, ch, cw)[..., None]
    pixels = rgb * 255.0
    if mode == "L":
        pixels = pixels @ np.array([0.299, 0.587, 0.114])
    if noise:
        pixels = pixels + rng.normal(0.0, noise, pixels.shape)
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = np.rint(mask * 255.0).astype(np.uint8) if transparent else np.full((ch, cw), 255, np.uint8)
        pixels = np.dstack([pixels, alpha])
    img = Image.fromarray(np.ascontiguousarray(pixels))  # (H, W) is L, (H, W, 3) RGB, (H, W, 4) RGBA
    assert img.mode == mode
    quality = int(rng.integers(MIN_JPEG_QUALITY, MAX_JPEG_QUALITY + 1)) if mode != "RGBA" and rng.random() < 0.6 else None
    record = {
        "label": source.label,
        "kind": source.kind,
        "source": source.name,
        "package": source.package,
        "size_px": size_px,
        "canvas": [cw, ch],
        "digit_box": [left, top, dw, dh],
        "polarity": polarity,
        "coloured": coloured,
        "mode": mode,
        "transparent": transparent,
        "format": "JPEG" if quality is not None else "PNG",
        "jpeg_quality": quality,
        "noise": round(noise, 3),
        "lighting": lighting,
        "lighting_strength": round(strength, 3),
        "rotation": round(rotation, 3),
        "blur": round(blur, 3),
    }
    return img, record


def _encode(img: Image.Image, quality: int | None) -> bytes:
    buf = io.BytesIO()
    if quality is None:
        img.save(buf, format="PNG", compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _mnist_test(data_dir: str | os.PathLike[str] | None) -> tuple[np.ndarray, np.ndarray]:
    from training import data

    split = data.load("mnist", data.resolve_data_dir(data_dir))
    return split.x_test, split.y_test


def make_uploads(
    out: Path,
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    data_dir: str | os.PathLike[str] | None = None,
    font_root: Path = FONT_ROOT,
) -> dict[str, Any]:
    """Write ``n`` uploads and ``manifest.json`` into ``out``; returns the manifest.

    Even indices are typeset digits, odd ones MNIST test digits; each kind cycles through the labels
    0-9, the fonts in a seeded order, and each label's test digits in a seeded order. Image ``i`` draws
    its looks from its own generator (seed, i). Older ``NNNNN.png|jpg`` files in ``out`` are removed.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    fonts = benchmark_fonts(font_root)
    x_test, y_test = _mnist_test(data_dir)
    order = np.random.default_rng(seed)
    font_order = order.permutation(len(fonts))
    by_label = [order.permutation(np.flatnonzero(y_test == d)) for d in range(10)]
    if any(len(idx) == 0 for idx in by_label):
        raise ValueError("the MNIST test set lacks some digit; the benchmark needs all ten")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if _FILE.match(old.name):
            old.unlink()
    started = time.perf_counter()
    images = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        j = i // 2
        label = j % 10
        size_px = _digit_height(rng)
        if i % 2 == 0:
            font = fonts[int(font_order[j % len(fonts)])]
            source = _Source(FONT, label, _font_digit(font.path, label, size_px), font.name, font.package)
        else:
            candidates = by_label[label]
            index = int(candidates[(j // 10) % len(candidates)])
            digit = _crop(x_test[index].astype(np.float32) / 255.0)
            source = _Source(MNIST, label, _resize(digit, size_px), f"mnist:{index}", None)
        img, record = _image(rng, source, size_px)
        name = f"{i:05d}.{'jpg' if record['format'] == 'JPEG' else 'png'}"
        (out / name).write_bytes(_encode(img, record["jpeg_quality"]))
        images.append({"file": name, **record})
    import PIL

    manifest = {
        "benchmark": "uploads",
        "seed": seed,
        "n": n,
        "mnist_test_images": int(len(y_test)),
        "fonts": [{"file": f.name, "package": f.package} for f in fonts],
        "pillow": PIL.__version__,
        "images": images,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["seconds"] = round(time.perf_counter() - started, 1)  # reported, not written: the file stays reproducible
    return manifest


# ---------------------------------------------------------------- evaluation
