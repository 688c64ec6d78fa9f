from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract import images
from contract.errors import InvalidImage, InvalidInput, PayloadTooLarge
from contract.images import decode_image, latent_grid, mnist_preprocess, sample_latent, tile, to_png

MNIST_DIR = Path(os.environ.get("DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "datasets")) / "mnist"
N_DIGITS = 12
MAX_PIXELS = 16_000_000


def read_idx_images(path: Path, count: int) -> np.ndarray:
    """The first ``count`` images of an IDX3 file (gzip), uint8 count x rows x cols."""
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051
        count = min(count, n)
        return np.frombuffer(f.read(count * rows * cols), dtype=np.uint8).reshape(count, rows, cols)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    path = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"MNIST test images not found at {path}")
    return read_idx_images(path, N_DIGITS)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    r = np.arange(a.shape[0])
    c = np.arange(a.shape[1])
    m = a.sum()
    return float((a.sum(axis=1) * r).sum() / m), float((a.sum(axis=0) * c).sum() / m)


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = 1) -> float:
    """Best Pearson correlation over shifts of up to ``max_shift`` pixels.

    Cropping by an ink threshold may move a faint edge row in or out, which shifts the
    whole digit by a pixel without changing its shape.
    """
    best = -1.0
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = np.roll(b, (dy, dx), axis=(0, 1))
            best = max(best, float(np.corrcoef(a.ravel(), shifted.ravel())[0, 1]))
    return best


def upscale(digit: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)


# Each renders one MNIST digit (uint8 28x28, white on black) the way a user might upload it.
RENDERINGS = {
    "as-is L": lambda d: Image.fromarray(d),
    "224 L light-on-dark": lambda d: upscale(d, (224, 224)),
    "300 RGB dark-on-light": lambda d: upscale(255 - d, (300, 300)).convert("RGB"),
    "JPEG dark-on-light": lambda d: decode_image(encode(upscale(255 - d, (280, 280)).convert("RGB"), "JPEG", quality=80), MAX_PIXELS),
    "RGBA dark ink on transparent": lambda d: _on_transparent(d, (0, 0, 0)),
    "RGBA white ink on transparent": lambda d: _on_transparent(d, (255, 255, 255)),
    "off-centre on a 400x300 grey canvas": lambda d: _on_canvas(d),
    "palette": lambda d: upscale(255 - d, (140, 140)).convert("P"),
    "16-bit PNG": lambda d: decode_image(encode(Image.fromarray(np.asarray(upscale(d, (112, 112))).astype(np.uint16) * 257)), MAX_PIXELS),
}


def _on_transparent(d: np.ndarray, ink: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGBA", (280, 280), (*ink, 0))
    img.putalpha(upscale(d, (280, 280)))
    return decode_image(encode(img), MAX_PIXELS)


def _on_canvas(d: np.ndarray) -> Image.Image:
    # Light paper (not white) with dark ink, digit far from the centre.
    canvas = Image.new("L", (400, 300), 200)
    ink = np.asarray(upscale(d, (150, 150)), dtype=np.float32) / 255.0
    patch = (200 * (1.0 - ink) + 20 * ink).astype(np.uint8)
    canvas.paste(Image.fromarray(patch), (20, 130))
    return canvas


@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_preprocessed_upload_matches_the_mnist_digit(digits, rendering):
    for digit in digits:
        out = mnist_preprocess(RENDERINGS[rendering](digit))
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() == pytest.approx(1.0)
        cy, cx = centre_of_mass(out)
        assert abs(cy - 14.0) <= 0.6 and abs(cx - 14.0) <= 0.6, (cy, cx)
        assert aligned_correlation(out, digit / 255.0) > 0.8


def test_stretched_upload_keeps_its_own_aspect_and_is_centred(digits):
    for digit in digits:
        out = mnist_preprocess(upscale(digit, (200, 300)))  # 1.5 times taller than wide
        rows = np.flatnonzero(out.max(axis=1) > 0)
        cols = np.flatnonzero(out.max(axis=0) > 0)
        assert rows[-1] - rows[0] + 1 == 20 or cols[-1] - cols[0] + 1 == 20  # longest side fills the 20 box
        assert rows[-1] - rows[0] <= 20 and cols[-1] - cols[0] <= 20
        cy, cx = centre_of_mass(out)
        assert abs(cy - 14.0) <= 0.6 and abs(cx - 14.0) <= 0.6


def test_polarity_does_not_matter(digits):
    for digit in digits:
        light_on_dark = mnist_preprocess(upscale(digit, (200, 200)))
        dark_on_light = mnist_preprocess(upscale(255 - digit, (200, 200)))
        np.testing.assert_allclose(light_on_dark, dark_on_light, atol=0.02)


def test_exif_orientation_is_applied(digits):
    digit = digits[0]
    stored = upscale(digit, (200, 200)).transpose(Image.Transpose.ROTATE_90).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = decode_image(encode(stored, "JPEG", quality=90, exif=exif.tobytes()), MAX_PIXELS)
    assert aligned_correlation(mnist_preprocess(img), digit / 255.0) > 0.8


def test_large_photo_takes_the_reduced_path_and_still_matches(digits):
    photo = upscale(255 - digits[1], (3000, 3000)).convert("RGB")  # > WORKING_SIZE: box-reduced first
    out = mnist_preprocess(photo)
    assert aligned_correlation(out, digits[1] / 255.0) > 0.8


def assert_no_digit(out: np.ndarray) -> None:
    """No digit is not an error: the 28 x 28 answer is all zeros, which the data plane's judgement calls blank."""
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert not out.any()


@pytest.mark.parametrize("colour", [0, 255, 128])
def test_blank_image_has_no_digit(colour):
    assert_no_digit(mnist_preprocess(Image.new("L", (64, 64), colour)))


def test_faint_noise_is_not_a_digit():
    rng = np.random.default_rng(0)
    noise = (rng.random((64, 64)) * 20 + 230).astype(np.uint8)  # paper texture, no ink
    assert_no_digit(mnist_preprocess(Image.fromarray(noise)))


def test_fully_transparent_image_has_no_digit():
    assert_no_digit(mnist_preprocess(decode_image(encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0))), MAX_PIXELS)))


# --- decode_image ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16"])
def test_decode_supports_common_modes(mode):
    img = Image.new(mode, (30, 20))
    out = decode_image(encode(img), MAX_PIXELS)
    assert out.size == (30, 20)


def test_decode_random_bytes_is_invalid_image():
    with pytest.raises(InvalidImage, match="not an image"):
        decode_image(np.random.default_rng(1).bytes(2000), MAX_PIXELS)


def big_png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (grey, 1 bit) with a few rows of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4000)) + chunk(b"IEND", b"")


def ico_embedding(png: bytes) -> bytes:
    """An ICO whose one directory entry says 256 x 256 and points at ``png``."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def test_decode_refuses_containers_that_hide_the_real_size():
    # A 20 KB ICO embedding a 13000 x 13000 PNG decoded 169 MP before the size check could see it.
    bomb = ico_embedding(big_png_header(13_000, 13_000))
    with pytest.raises(InvalidImage, match="accepted format"):
        decode_image(bomb, MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_decode_accepts_plain_formats_besides_png_and_jpeg(fmt):
    assert decode_image(encode(Image.new("L", (30, 20)), fmt), MAX_PIXELS).size == (30, 20)


def test_decode_checks_the_declared_size_of_plain_formats():
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(big_png_header(13_000, 13_000), MAX_PIXELS)


def test_decode_empty_body_is_invalid_image():
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"", MAX_PIXELS)


@pytest.mark.parametrize("keep", [0.5, 0.9, 30])
def test_decode_truncated_png_is_invalid_image(digits, keep):
    data = encode(upscale(digits[0], (200, 200)), optimize=False)
    cut = data[: int(len(data) * keep)] if keep < 1 else data[:keep]
    with pytest.raises(InvalidImage):
        decode_image(cut, MAX_PIXELS)


def test_decode_truncated_jpeg_is_invalid_image(digits):
    data = encode(upscale(digits[0], (200, 200)).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2], MAX_PIXELS)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _bomb_idat(width: int, height: int) -> bytes:
    # Real zero rows, compressed: about 0.1% of their inflated size.
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(height // 1000)]
    return b"".join(parts) + comp.compress(row * (height % 1000)) + comp.flush()


def test_decompression_bomb_is_rejected_from_its_header():
    bomb = _png(30000, 30000, _bomb_idat(30000, 30000))
    assert len(bomb) < 200_000  # small on the wire, 900 megapixels declared
    with pytest.raises(PayloadTooLarge, match="pixels|too large"):
        decode_image(bomb, MAX_PIXELS)


def test_pixel_limit_is_checked_before_any_pixel_is_decoded():
    # No valid pixel data at all: decoding would fail as corrupt, so PayloadTooLarge
    # proves the size was judged from the header alone.
    header_only = _png(5000, 4000, b"")
    with pytest.raises(PayloadTooLarge, match="5000 x 4000"):
        decode_image(header_only, MAX_PIXELS)
    with pytest.raises(InvalidImage):
        decode_image(_png(50, 40, b""), MAX_PIXELS)


def test_pixel_limit_is_inclusive():
    data = encode(Image.new("L", (100, 100)))
    assert decode_image(data, 10_000).size == (100, 100)
    with pytest.raises(PayloadTooLarge):
        decode_image(data, 9_999)


# --- to_png ---------------------------------------------------------------------------


def test_to_png_round_trip():
    rng = np.random.default_rng(2)
    arr = rng.random((28, 35)).astype(np.float32)
    data = to_png(arr)
    assert data.startswith(b"\x89PNG")
    img = decode_image(data, MAX_PIXELS)
    assert img.mode == "L" and img.size == (35, 28)
    np.testing.assert_array_equal(np.asarray(img), np.rint(arr * 255).astype(np.uint8))


def test_to_png_accepts_channel_axis_and_clips():
    arr = np.array([[-0.5, 0.0], [1.0, 7.0]], dtype=np.float32)[..., None]
    img = decode_image(to_png(arr), MAX_PIXELS)
    np.testing.assert_array_equal(np.asarray(img), [[0, 0], [255, 255]])


def test_to_png_rejects_non_images():
    with pytest.raises(ValueError):
        to_png(np.zeros((2, 3, 3)))


# --- tile -----------------------------------------------------------------------------


def _seed_figure(images: np.ndarray, n: int) -> np.ndarray:
    """The seed notebook's loop: row i, column j holds image i * n + j."""
    size = images.shape[1]
    figure = np.zeros((size * n, size * n), dtype=images.dtype)
    for i in range(n):
        for j in range(n):
            figure[i * size : (i + 1) * size, j * size : (j + 1) * size] = images[i * n + j]
    return figure


def test_tile_matches_the_seed_loop():
    rng = np.random.default_rng(3)
    images = rng.random((16, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(tile(images, ncols=4), _seed_figure(images, 4))
    np.testing.assert_array_equal(tile(images[..., None]), _seed_figure(images, 4))  # default ncols = 4


def test_tile_partial_last_row_and_padding():
    images = np.arange(1, 6, dtype=np.uint8)[:, None, None] * np.ones((5, 2, 3), dtype=np.uint8)
    out = tile(images, ncols=3, pad=1)
    assert out.shape == (2 * 2 + 1, 3 * 3 + 2)
    assert out.dtype == np.uint8
    assert (out[0:2, 0:3] == 1).all() and (out[0:2, 4:7] == 2).all() and (out[0:2, 8:11] == 3).all()
    assert (out[3:5, 0:3] == 4).all() and (out[3:5, 4:7] == 5).all()
    assert (out[3:5, 8:11] == 0).all()  # empty cell
    assert (out[2, :] == 0).all() and (out[:, 3] == 0).all()  # separators


def test_tile_default_columns_is_ceil_sqrt():
    assert tile(np.ones((5, 2, 2))).shape == (2 * 2, 3 * 2)
    assert tile(np.ones((1, 2, 2))).shape == (2, 2)


def test_tile_rejects_bad_input():
    with pytest.raises(ValueError):
        tile(np.zeros((0, 2, 2)))
    with pytest.raises(ValueError):
        tile(np.zeros((2, 2)))


# --- latent_grid / sample_latent ------------------------------------------------------


def _seed_latents(n: int, scale: float) -> np.ndarray:
    grid_x = np.linspace(-scale, scale, n)
    grid_y = np.linspace(-scale, scale, n)[::-1]
    points = []
    for yi in grid_y:
        for xi in grid_x:
            points.append([xi, yi])
    return np.array(points, dtype=np.float32)


@pytest.mark.parametrize(("n", "scale"), [(1, 2.0), (2, 1.0), (5, 2.0), (30, 2.0)])
def test_latent_grid_matches_the_seed_loop_order(n, scale):
    z = latent_grid(n, scale, 2)
    assert z.dtype == np.float32 and z.shape == (n * n, 2)
    np.testing.assert_array_equal(z, _seed_latents(n, scale))


def test_latent_grid_with_tile_reproduces_the_seed_manifold():
    n = 4

    def fake_decoder(z: np.ndarray) -> np.ndarray:  # an image that encodes its latent point
        return np.broadcast_to((z[:, 0] * 10 + z[:, 1])[:, None, None, None], (len(z), 3, 3, 1)).copy()

    seed_images = fake_decoder(_seed_latents(n, 2.0))[..., 0]
    np.testing.assert_array_equal(tile(fake_decoder(latent_grid(n, 2.0, 2)), ncols=n), _seed_figure(seed_images, n))
    # top-left is (x=-2, y=+2), bottom-right is (x=+2, y=-2), as in the seed's plot
    z = latent_grid(n, 2.0, 2).reshape(n, n, 2)
    assert tuple(z[0, 0]) == (-2.0, 2.0) and tuple(z[-1, -1]) == (2.0, -2.0)


def test_latent_grid_other_dims_and_fixed():
    fixed = [0.5, -1.0, 0.25, 3.0]
    z = latent_grid(3, 1.0, 4, dims=(2, 0), fixed=fixed)
    seed = _seed_latents(3, 1.0)
    np.testing.assert_array_equal(z[:, 2], seed[:, 0])
    np.testing.assert_array_equal(z[:, 0], seed[:, 1])
    assert (z[:, 1] == -1.0).all() and (z[:, 3] == 3.0).all()
    assert (latent_grid(3, 1.0, 4)[:, 2:] == 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"scale": 0.0},
        {"scale": float("nan")},
        {"dims": (1, 1)},
        {"dims": (0, 4)},
        {"dims": (-1, 0)},
        {"fixed": [0.0, 0.0]},
        {"fixed": [0.0, float("inf"), 0.0, 0.0]},
    ],
)
def test_latent_grid_rejects_bad_arguments(kwargs):
    args = {"n": 3, "scale": 1.0, "latent_dim": 4, **kwargs}
    with pytest.raises(InvalidInput):
        latent_grid(**args)


def test_latent_grid_needs_two_latent_dims():
    with pytest.raises(InvalidInput, match="at least 2"):
        latent_grid(3, 1.0, 1)


def test_sample_latent_is_the_documented_generator():
    z = sample_latent(7, 4, seed=123)
    assert z.dtype == np.float32 and z.shape == (7, 4)
    np.testing.assert_array_equal(z, np.random.default_rng(123).standard_normal((7, 4), dtype=np.float32))
    np.testing.assert_array_equal(z, sample_latent(7, 4, seed=123))
    assert not np.array_equal(z, sample_latent(7, 4, seed=124))


@pytest.mark.parametrize(("n", "seed"), [(0, 1), (-3, 1), (2, -1), (True, 1), (2, 1.5)])
def test_sample_latent_rejects_bad_arguments(n, seed):
    with pytest.raises(InvalidInput):
        sample_latent(n, 2, seed)


# ------------------------------------------------------------------ Fashion-MNIST uploads, GIFs


def test_fashion_preprocess_keeps_a_fashion_mnist_image_as_it_is():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    pixels[:2], pixels[-2:], pixels[:, :2], pixels[:, -2:] = 0, 0, 0, 0  # black border, as in the dataset
    out = images.fashion_preprocess(Image.fromarray(pixels))
    assert out.dtype == np.float32 and out.shape == (28, 28)
    np.testing.assert_allclose(out, pixels / 255.0, atol=1e-6)


def test_fashion_preprocess_inverts_a_product_photo_and_fits_it():
    photo = np.full((300, 150), 255, np.uint8)  # a dark garment on white, twice as tall as wide
    photo[30:270, 30:120] = 40
    out = images.fashion_preprocess(Image.fromarray(photo).convert("RGB"))
    assert out.shape == (28, 28)
    assert out[0, 0] == 0.0 and out[14, 14] > 0.7  # light garment on black
    cols = np.flatnonzero(out.max(axis=0) > 0.1)
    # The photo becomes 28 x 14 (its aspect kept), centred: the garment, 90 of its 150 px wide, is ~9 columns.
    assert 8 <= len(cols) <= 10 and abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1


def test_to_gif_loops_every_frame_exactly():
    from PIL import ImageSequence

    frames = np.linspace(0, 1, 4 * 28 * 28, dtype=np.float32).reshape(4, 28, 28)
    gif = Image.open(io.BytesIO(images.to_gif(frames, duration_ms=50)))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["loop"] == 0
    for frame, want in zip(ImageSequence.Iterator(gif), frames):
        np.testing.assert_array_equal(np.asarray(frame.convert("L")), np.rint(want * 255).astype(np.uint8))
    with pytest.raises(ValueError):
        images.to_gif(np.zeros((0, 28, 28)))


def test_a_decompression_bomb_is_refused_with_its_real_pixel_count():
    # Over twice Pillow's MAX_IMAGE_PIXELS, Pillow itself refuses at open: the message still names the image's size.
    with pytest.raises(PayloadTooLarge, match=r"image declares 400000000 pixels .*at most \d+ pixels"):
        decode_image(big_png_header(20_000, 20_000), MAX_PIXELS)
