"""mnist_preprocess on uploads as users make them: tiny and off-centre digits on big canvases, either polarity,
JPEG artefacts, uneven lighting, frames, page edges and specks, pictures with no digit at all (all zeros), and
real MNIST digits pasted onto a page, which must come back as they were.

Pictures are drawn here (Pillow, DejaVu fonts); each is compared with the same digit drawn large and clean.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from contract.calibration import BLANK, judge
from contract.images import decode_image, mnist_preprocess

FONTS = Path("/usr/share/fonts/truetype/dejavu")
SANS = FONTS / "DejaVuSans.ttf"
MNIST_DIR = Path(os.environ.get("DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "datasets")) / "mnist"
DIGITS = "0123456789"
CANVAS = 400
MAX_PIXELS = 16_000_000

pytestmark = pytest.mark.skipif(not SANS.exists(), reason=f"font {SANS} not found")


# --- drawing ------------------------------------------------------------------------------


def glyph(char: str, height: int, font: Path = SANS) -> np.ndarray:
    """A digit's ink (float32, 1 = ink) about ``height`` pixels tall, cropped to its box."""
    face = ImageFont.truetype(str(font), max(4, round(height / 0.73)))  # DejaVu digits are 0.73 em tall
    left, top, right, bottom = face.getbbox(char)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), char, fill=255, font=face)
    ink = np.asarray(img, dtype=np.float32) / 255.0
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0), np.flatnonzero(ink.max(axis=0) > 0)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def place(ink: np.ndarray, at: tuple[int, int] | None = None, side: int = CANVAS) -> np.ndarray:
    """An ink mask of ``side`` x ``side`` with ``ink`` at ``at`` (row, column; default centred)."""
    mask = np.zeros((side, side), dtype=np.float32)
    h, w = ink.shape
    y, x = at if at is not None else ((side - h) // 2, (side - w) // 2)
    mask[y : y + h, x : x + w] = ink
    return mask


def picture(levels: np.ndarray) -> Image.Image:
    """Gray levels in [0, 1] as an 8-bit image."""
    return Image.fromarray(np.rint(np.clip(levels, 0.0, 1.0) * 255.0).astype(np.uint8))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return decode_image(buf.getvalue(), MAX_PIXELS)


def dark_on_light(mask: np.ndarray, paper: float | np.ndarray = 1.0, ink: float = 0.0) -> np.ndarray:
    return paper * (1.0 - mask) + ink * mask


def specks(levels: np.ndarray, count: int, level: float, size: int, seed: int) -> np.ndarray:
    """``count`` square specks of ``size`` pixels at ``level``, anywhere."""
    rng = np.random.default_rng(seed)
    out = levels.copy()
    for y, x in rng.integers(0, levels.shape[0] - size, (count, 2)):
        out[y : y + size, x : x + size] = level
    return out


def frame(levels: np.ndarray, margin: int, width: int, level: float) -> np.ndarray:
    """A rectangle outline ``width`` thick, ``margin`` pixels in from the picture's edges."""
    out = levels.copy()
    inner = slice(margin, levels.shape[0] - margin)
    out[margin : margin + width, inner] = out[-margin - width : -margin, inner] = level
    out[inner, margin : margin + width] = out[inner, -margin - width : -margin] = level
    return out


YY, XX = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    m = float(a.sum())
    return float(a.sum(axis=1) @ np.arange(a.shape[0])) / m, float(a.sum(axis=0) @ np.arange(a.shape[1])) / m


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = 1) -> float:
    """Best Pearson correlation over shifts of up to ``max_shift`` pixels (a faint edge row moves the box a pixel)."""
    return max(
        float(np.corrcoef(a.ravel(), np.roll(b, (dy, dx), axis=(0, 1)).ravel())[0, 1])
        for dy in range(-max_shift, max_shift + 1)
        for dx in range(-max_shift, max_shift + 1)
    )


_references: dict[str, np.ndarray] = {}


def reference(char: str) -> np.ndarray:
    """The digit drawn 200 px tall, black on white, centred on 300 x 300: the clean answer."""
    if char not in _references:
        _references[char] = mnist_preprocess(picture(dark_on_light(place(glyph(char, 200), side=300))))
    return _references[char]


def assert_is_digit(out: np.ndarray, char: str, min_correlation: float) -> None:
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0) and out.min() >= 0.0, f"{char}: no digit found"
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14.0) <= 0.6 and abs(cx - 14.0) <= 0.6, (char, cy, cx)
    correlation = aligned_correlation(out, reference(char))
    assert correlation > min_correlation, f"{char}: correlation {correlation:.3f} with the clean digit"


def assert_no_digit(out: np.ndarray) -> None:
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert not out.any(), f"found ink {out.sum():.1f} where there is no digit"


# --- tiny, off-centre, either polarity --------------------------------------------------


@pytest.mark.parametrize("height", [8, 10, 12])
@pytest.mark.parametrize("light_on_dark", [False, True], ids=["dark-on-light", "light-on-dark"])
@pytest.mark.parametrize("at", [None, (30, 350), (340, 20)], ids=["centred", "top-right", "bottom-left"])
def test_tiny_digit_on_a_big_canvas(height, light_on_dark, at):
    for char in DIGITS:
        levels = dark_on_light(place(glyph(char, height), at))
        out = mnist_preprocess(picture(1.0 - levels if light_on_dark else levels))
        assert_is_digit(out, char, 0.8)


def test_position_on_the_canvas_does_not_matter():
    for char in DIGITS:
        ink = glyph(char, 60)
        centred = mnist_preprocess(picture(dark_on_light(place(ink))))
        for at in [(5, 5), (10, CANVAS - ink.shape[1] - 10), (CANVAS - ink.shape[0] - 3, 150)]:
            out = mnist_preprocess(picture(dark_on_light(place(ink, at))))
            assert aligned_correlation(out, centred, 0) > 0.995, (char, at)
            np.testing.assert_allclose(out, centred, atol=0.1)


@pytest.mark.parametrize("height", [12, 60, 300])
def test_polarity_does_not_matter(height):
    for char in DIGITS:
        levels = dark_on_light(place(glyph(char, height), (20, 30)), paper=0.85, ink=0.1)
        dark, light = mnist_preprocess(picture(levels)), mnist_preprocess(picture(1.0 - levels))
        np.testing.assert_allclose(dark, light, atol=0.02)
        assert_is_digit(dark, char, 0.85)


@pytest.mark.parametrize("font", ["DejaVuSerif.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansCondensed-Bold.ttf"])
def test_printed_digits_in_other_fonts(font):
    if not (FONTS / font).exists():
        pytest.skip(f"font {font} not found")
    for char in DIGITS:
        want = mnist_preprocess(picture(dark_on_light(place(glyph(char, 200, FONTS / font), side=300))))
        out = mnist_preprocess(picture(dark_on_light(place(glyph(char, 40, FONTS / font), (250, 90)), paper=0.9, ink=0.2)))
        assert aligned_correlation(out, want) > 0.9, char


# --- JPEG, lighting, noise ----------------------------------------------------------------


@pytest.mark.parametrize("height", [12, 40, 150])
@pytest.mark.parametrize("light_on_dark", [False, True], ids=["dark-on-light", "light-on-dark"])
def test_jpeg_quality_30(height, light_on_dark):
    for char in DIGITS:
        levels = dark_on_light(place(glyph(char, height), (100, 60)), paper=0.92, ink=0.15)
        out = mnist_preprocess(jpeg(picture(1.0 - levels if light_on_dark else levels), 30))
        assert_is_digit(out, char, 0.85)


LIGHTING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # The ink at the bright corner is lighter than the paper at the dark one: no global threshold separates them.
    "gradient": lambda mask: (0.25 + 0.7 * (XX + YY) / 2) - 0.3 * mask,
    "gradient, light ink on dark": lambda mask: (0.05 + 0.55 * XX) + 0.35 * mask,
    "vignette": lambda mask: (0.92 - 1.3 * ((XX - 0.5) ** 2 + (YY - 0.5) ** 2)) * (1.0 - 0.6 * mask),
    "soft shadow": lambda mask: (0.45 + 0.45 * np.clip((XX - 0.5) * CANVAS / 60 + 0.5, 0, 1)) * (1.0 - 0.7 * mask),
}


@pytest.mark.parametrize("lighting", list(LIGHTING))
@pytest.mark.parametrize("compress", [False, True], ids=["png", "jpeg-60"])
def test_uneven_lighting(lighting, compress):
    for char in DIGITS:
        img = picture(LIGHTING[lighting](place(glyph(char, 100), (140, 150))))
        assert_is_digit(mnist_preprocess(jpeg(img, 60) if compress else img), char, 0.9)


@pytest.mark.parametrize("lighting", ["gradient", "gradient, light ink on dark", "vignette"])
def test_the_lighting_defeats_a_global_threshold(lighting):
    # The premise of test_uneven_lighting: no single level separates the ink from the paper.
    mask = place(glyph("8", 100), (140, 150))
    levels = LIGHTING[lighting](mask)
    ink, paper = levels[mask > 0.9], levels[mask == 0]
    if lighting.endswith("light ink on dark"):
        assert ink.min() < paper.max()
    else:
        assert ink.max() > paper.min()


@pytest.mark.parametrize("light_on_dark", [False, True], ids=["dark-on-light", "light-on-dark"])
@pytest.mark.parametrize("size", [1, 2])
def test_specks_are_ignored(light_on_dark, size):
    for char in DIGITS:
        mask = place(glyph(char, 60), (200, 120))
        clean = mnist_preprocess(picture(1.0 - mask if light_on_dark else dark_on_light(mask)))
        speckled = specks(mask, 300, 1.0, size, seed=ord(char))
        out = mnist_preprocess(picture(1.0 - speckled if light_on_dark else speckled))
        assert_is_digit(out, char, 0.9)
        assert aligned_correlation(out, clean, 0) > 0.95, char


def test_a_tiny_digit_among_specks():
    for char in DIGITS:
        mask = specks(place(glyph(char, 12), (150, 260)), 200, 1.0, 1, seed=ord(char))
        assert_is_digit(mnist_preprocess(picture(dark_on_light(mask))), char, 0.8)


def test_noisy_paper():
    rng = np.random.default_rng(4)
    for char in DIGITS:
        levels = dark_on_light(place(glyph(char, 80), (60, 200)), paper=0.8, ink=0.2) + rng.normal(0.0, 0.06, (CANVAS, CANVAS))
        assert_is_digit(mnist_preprocess(picture(levels)), char, 0.9)


# --- frames, page edges, parts of a digit -------------------------------------------------

SURROUNDINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "frame around the digit": lambda mask: frame(dark_on_light(mask), 70, 5, 0.1),
    "thick frame at the edge": lambda mask: frame(dark_on_light(mask), 2, 16, 0.1),
    "frame at the edge, light on dark": lambda mask: 1.0 - frame(dark_on_light(mask), 2, 16, 0.1),
    "page on a dark table": lambda mask: np.where((XX > 0.15) & (XX < 0.85) & (YY > 0.1) & (YY < 0.95), 0.9, 0.2) - 0.75 * mask,
    "dark table along two sides": lambda mask: np.where((XX < 0.3) | (YY > 0.75), 0.15, dark_on_light(mask)),
}


@pytest.mark.parametrize("surroundings", list(SURROUNDINGS))
def test_frames_and_page_edges_are_not_the_digit(surroundings):
    for char in DIGITS:
        mask = place(glyph(char, 90), (150, 160))
        out = mnist_preprocess(picture(SURROUNDINGS[surroundings](mask)))
        assert_is_digit(out, char, 0.9)
        assert aligned_correlation(out, mnist_preprocess(picture(dark_on_light(mask))), 0) > 0.97, char


def strokes(lines: list[list[tuple[int, int]]], dot: tuple[int, int, int] | None = None) -> Image.Image:
    """Pen strokes (10 px) on a white 400 x 400 page, and a dot (x, y, radius)."""
    img = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(img)
    for line in lines:
        draw.line(line, fill=0, width=10)
    if dot is not None:
        x, y, r = dot
        draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return img


SPLIT_DIGITS = {
    "5 with its top bar apart": [
        [(150, 100), (250, 100)],
        [(150, 120), (150, 190), (200, 180), (240, 210), (245, 250), (220, 290), (180, 300), (140, 280)],
    ],
    "4 in two strokes": [[(200, 100), (130, 230), (260, 230)], [(230, 150), (230, 310)]],
    "7 in two strokes": [[(130, 100), (260, 100)], [(250, 115), (170, 310)]],
}


@pytest.mark.parametrize("digit", list(SPLIT_DIGITS))
def test_a_digit_in_several_strokes_is_kept_whole_and_far_dots_are_not(digit):
    lines = SPLIT_DIGITS[digit]
    whole = mnist_preprocess(strokes(lines))
    # Both strokes are in the 20 x 20 box: the first one (a bar) at its top, the other reaching its bottom.
    rows = np.flatnonzero(whole.max(axis=1) > 0.3)
    assert rows[-1] - rows[0] + 1 >= 19
    first_alone = mnist_preprocess(strokes(lines[:1]))
    assert aligned_correlation(whole, first_alone, 0) < 0.5
    for dot in [(40, 370, 6), (370, 30, 4), (30, 30, 8)]:
        np.testing.assert_allclose(mnist_preprocess(strokes(lines, dot)), whole, atol=1e-6)


# --- no digit: all zeros ------------------------------------------------------------------

_rng = np.random.default_rng(7)
NOTHING: dict[str, np.ndarray] = {
    "blank white": np.ones((CANVAS, CANVAS)),
    "blank black": np.zeros((CANVAS, CANVAS)),
    "uniform gray": np.full((CANVAS, CANVAS), 0.5),
    "small gray": np.full((20, 30), 0.3),
    "gaussian noise 0.03": 0.5 + _rng.normal(0.0, 0.03, (CANVAS, CANVAS)),
    "uniform noise 0.1 wide": 0.8 + 0.1 * _rng.random((CANVAS, CANVAS)),
    "faint noise on black": 0.08 * _rng.random((CANVAS, CANVAS)),
    "a gradient": 0.2 + 0.7 * XX,
    "a vignette": 0.92 - 1.3 * ((XX - 0.5) ** 2 + (YY - 0.5) ** 2),
    "a frame": frame(np.ones((CANVAS, CANVAS)), 60, 5, 0.0),
    "a frame at the edge": frame(np.ones((CANVAS, CANVAS)), 2, 16, 0.1),
    "only specks": specks(np.ones((CANVAS, CANVAS)), 300, 0.0, 1, seed=1),
    "a faint smudge": dark_on_light(place(glyph("3", 100)), paper=0.7, ink=0.62),
}


@pytest.mark.parametrize("nothing", list(NOTHING))
@pytest.mark.parametrize("compress", [False, True], ids=["png", "jpeg-30"])
def test_no_digit_gives_zeros(nothing, compress):
    img = picture(NOTHING[nothing])
    assert_no_digit(mnist_preprocess(jpeg(img, 30) if compress else img))


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (1, 500), (500, 2)])
def test_degenerate_sizes_give_zeros(size):
    assert_no_digit(mnist_preprocess(Image.new("L", size, 128)))
    assert_no_digit(mnist_preprocess(Image.new("RGBA", size, (0, 0, 0, 0))))


def test_the_zeros_are_judged_blank():
    out = mnist_preprocess(picture(NOTHING["gaussian noise 0.03"]))
    verdict = judge(out[None], np.full((1, 10), 0.1, dtype=np.float32))
    assert not verdict.digit[0] and verdict.reason[0] == BLANK


def test_a_truncated_file_still_raises():
    from contract.errors import InvalidImage

    buf = io.BytesIO()
    picture(dark_on_light(place(glyph("3", 100)))).save(buf, format="PNG")
    with pytest.raises(InvalidImage):
        decode_image(buf.getvalue()[:200], MAX_PIXELS)


# --- odd modes and transparency -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "LA", "P", "F", "I", "I;16", "RGB", "HSV", "CMYK"])
def test_odd_modes(mode):
    levels = dark_on_light(place(glyph("4", 120), (50, 200)))
    img = picture(levels)
    if mode == "F":
        img = Image.fromarray(levels.astype(np.float32), "F")
    elif mode == "I;16":
        img = Image.fromarray((levels * 65535).astype(np.uint16))
    elif mode == "HSV":
        img = img.convert("RGB").convert("HSV")
    else:
        img = img.convert(mode)
    assert_is_digit(mnist_preprocess(img), "4", 0.9)


def test_light_strokes_on_a_transparent_canvas_use_the_alpha():
    for char in "1479":
        alpha = picture(place(glyph(char, 30), (250, 40)))
        rgba = Image.merge("RGBA", [Image.new("L", alpha.size, 255)] * 3 + [alpha])  # white ink, transparent page
        assert_is_digit(mnist_preprocess(rgba), char, 0.85)
        dark = Image.merge("RGBA", [Image.new("L", alpha.size, 0)] * 3 + [alpha])  # black ink, transparent page
        assert_is_digit(mnist_preprocess(dark), char, 0.85)


# --- real MNIST digits pasted onto a page -------------------------------------------------


@pytest.fixture(scope="module")
def mnist_digits() -> np.ndarray:
    from training.data import read_idx

    path = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"MNIST test images not found at {path}")
    return read_idx(path)[:150]


def test_mnist_digits_pasted_on_a_page_come_back(mnist_digits):
    """Each test digit at 3x, dark on a 600 x 600 white page, anywhere: the 28 x 28 that comes back is the digit."""
    rng = np.random.default_rng(11)
    diffs = []
    for digit in mnist_digits:
        page = Image.new("L", (600, 600), 255)
        y, x = rng.integers(0, 600 - 84, 2)
        page.paste(Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BICUBIC), (int(x), int(y)))
        out = mnist_preprocess(page)
        want = digit / 255.0
        diffs.append(float(np.abs(out - want).mean()))
        assert diffs[-1] < 0.12
        (cy, cx), (wy, wx) = centre_of_mass(out), centre_of_mass(want)
        assert abs(cy - wy) <= 1.0 and abs(cx - wx) <= 1.0, ((cy, cx), (wy, wx))
        assert aligned_correlation(out, want) > 0.85
    assert np.mean(diffs) < 0.04, np.mean(diffs)
