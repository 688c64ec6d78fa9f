"""Images in and out: decoding uploads safely, MNIST-style preprocessing, PNG encoding, grids and latent points.

numpy and Pillow only (never TensorFlow): this runs on the HTTP request path.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImage, InvalidInput, PayloadTooLarge

MNIST_SIZE = 28
MNIST_BOX = 20
# Mean centre of mass of the MNIST test digits is (14.00, 14.01) in pixel indices.
MNIST_CENTRE = 14.0
# Below this contrast between ink and background an image counts as blank.
MIN_CONTRAST = 0.15
# After normalising ink to [0, 1]: pixels at or above INK_THRESHOLD define the bounding box;
# pixels below NOISE_FLOOR are zeroed so paper texture and JPEG ringing do not grey the box.
INK_THRESHOLD = 0.3
NOISE_FLOOR = 0.1
# Uploads larger than this (longest side) are box-reduced by an integer factor before the float work.
WORKING_SIZE = 1024
EXIF_ORIENTATION = 0x0112
# Formats uploads may use: one picture each, whose header states its real size. Containers such as
# ICO/ICNS/MPO state one size and decode another (a 20 KB ICO can embed a 13000 x 13000 PNG), and
# the exotic plugins are attack surface for nothing a digit needs.
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open and fully decode an uploaded image.

    Raises InvalidImage for bytes that are not a complete image, and PayloadTooLarge
    when width x height exceeds ``max_pixels`` (checked from the header, before any
    pixel data is decompressed).
    """
    if not data:
        raise InvalidImage("the image file is empty; expected a PNG or JPEG file")
    try:
        img = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(_bomb_message(e, max_pixels)) from e
    except UnidentifiedImageError as e:
        raise InvalidImage(
            f"the file is not an image in an accepted format ({', '.join(UPLOAD_FORMATS)}); expected a PNG or JPEG file"
        ) from e
    except Exception as e:  # format plugins fail with assorted types (OSError, SyntaxError, struct.error, ...)
        raise InvalidImage(f"the image header is corrupt ({e}); expected a valid PNG or JPEG file") from e
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise PayloadTooLarge(f"image is {width} x {height} = {width * height} pixels; at most {max_pixels} pixels are accepted")
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(_bomb_message(e, max_pixels)) from e
    except Exception as e:  # truncation and bad chunks surface as OSError, SyntaxError, zlib.error, ...
        raise InvalidImage(f"the image data is truncated or corrupt ({e}); send the complete file") from e
    return img


def _bomb_message(error: Exception, max_pixels: int) -> str:
    """The image's own pixel count (Pillow's message holds it: "Image size (N pixels) exceeds ...") and the limit."""
    found = re.search(r"size \((\d+) pixels\)", str(error))
    size = f"{int(found.group(1))} pixels" if found else f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
    return f"image declares {size} (a decompression bomb?); at most {max_pixels} pixels are accepted"


def _shrink(img: Image.Image) -> Image.Image:
    """Box-reduce very large uploads first: the digit ends up 20 pixels tall, and float work on 12 MP costs 0.3 s."""
    factor = max(img.size) // WORKING_SIZE
    if factor < 2:
        return img
    if img.mode in ("1", "P", "PA"):  # averaging palette indices or bits would be meaningless
        img = img.convert("RGBA" if _has_alpha(img) else "L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() does not know; the slow path is still correct
        return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def _to_gray(img: Image.Image) -> np.ndarray:
    """Float32 grayscale in [0, 1] (1 = white), alpha composited onto white."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        # 16/32-bit and float images: Pillow's convert("L") clips rather than scales, so scale here.
        arr = np.asarray(img, dtype=np.float32)
        if mode == "F":
            top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
        elif mode.startswith("I;16"):
            top = 65535.0
        else:
            top = 255.0 if arr.size and arr.max() <= 255 else 65535.0
        return np.asarray(np.clip(np.nan_to_num(arr / top), 0.0, 1.0), dtype=np.float32)
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        luma = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
        return np.asarray(luma * alpha + (1.0 - alpha), dtype=np.float32)
    if mode != "L":
        try:
            img = img.convert("L")
        except ValueError:  # modes without a direct path to L (e.g. HSV)
            img = img.convert("RGB").convert("L")
    return np.asarray(img, dtype=np.float32) / 255.0


def _transparent_ink(img: Image.Image) -> np.ndarray | None:
    """For images with alpha: the alpha channel itself as ink, or None without alpha."""
    if _has_alpha(img):
        return np.asarray(img.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
    return None


def _ink(img: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink) with the background level removed."""
    gray = _to_gray(img)
    h, w = gray.shape
    frame = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:frame].ravel(), gray[-frame:].ravel(), gray[:, :frame].ravel(), gray[:, -frame:].ravel()])
    background = float(np.median(border))
    # MNIST is white ink on black: a light background means dark ink, so flip.
    ink = gray if background <= 0.5 else 1.0 - gray
    background = min(background, 1.0 - background)
    peak = float(ink.max())
    if peak - background < MIN_CONTRAST:
        alpha = _transparent_ink(img)
        # Light strokes on a transparent canvas vanish on white; their alpha is the drawing.
        if alpha is not None and float(alpha.max()) - float(np.median(alpha)) >= MIN_CONTRAST:
            return _ink_from_levels(alpha, float(np.median(alpha)))
        raise InvalidImage(
            "no digit found: the image is blank or has too little contrast; expected one digit, dark on light or light on dark"
        )
    return _ink_from_levels(ink, background)


def _ink_from_levels(ink: np.ndarray, background: float) -> np.ndarray:
    peak = float(ink.max())
    out = (ink - background) / (peak - background)
    np.clip(out, 0.0, 1.0, out=out)
    out[out < NOISE_FLOOR] = 0.0
    return out.astype(np.float32, copy=False)


def mnist_preprocess(img: Image.Image) -> np.ndarray:
    """An uploaded digit as MNIST sees it: float32 28 x 28 in [0, 1], white on black.

    Follows the MNIST recipe: crop to the ink's bounding box, scale to fit 20 x 20
    keeping the aspect ratio, and paste into 28 x 28 so that the centre of mass sits
    at pixel (14, 14). EXIF orientation is applied; polarity is detected from the
    border (dark-on-light input is inverted); transparency is composited onto white
    (or, when that leaves nothing, the alpha channel is the ink). Raises InvalidImage
    when no digit is found.
    """
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:  # phone photos store pixels sideways plus a tag
        img = ImageOps.exif_transpose(img)
    ink = _ink(_shrink(img))
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if rows.size == 0:  # unreachable after _ink's contrast check, kept as a guard
        raise InvalidImage("no digit found in the image")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = MNIST_BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    # Area averaging when shrinking is the anti-aliasing MNIST used; Lanczos when enlarging a tiny crop.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS
    small = np.asarray(Image.fromarray(crop).resize((new_w, new_h), resample=resample), dtype=np.float32)
    small = np.clip(small, 0.0, 1.0)
    top = float(small.max())
    if top <= 0.0:
        raise InvalidImage("no digit found in the image")
    small /= top

    mass = float(small.sum())
    cy = float((small.sum(axis=1) * np.arange(new_h)).sum()) / mass
    cx = float((small.sum(axis=0) * np.arange(new_w)).sum()) / mass
    top_row = min(max(int(math.floor(MNIST_CENTRE - cy + 0.5)), 0), MNIST_SIZE - new_h)
    left_col = min(max(int(math.floor(MNIST_CENTRE - cx + 0.5)), 0), MNIST_SIZE - new_w)
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    out[top_row : top_row + new_h, left_col : left_col + new_w] = small
    return out


def fashion_preprocess(img: Image.Image) -> np.ndarray:
    """An uploaded picture of a garment as Fashion-MNIST sees it: float32 28 x 28 in [0, 1], light on black.

    Fashion-MNIST images fill their frame, so there is no cropping to ink: the picture is made gray
    (transparency composited onto black), inverted when its border is light (a product photo on white),
    scaled to fit 28 x 28 keeping its aspect ratio and centred on black. A 28 x 28 Fashion-MNIST image
    comes back unchanged.
    """
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    img = _shrink(img)
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        gray = (rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114) * rgba[..., 3]
    else:
        gray = _to_gray(img)
    h, w = gray.shape
    frame = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:frame].ravel(), gray[-frame:].ravel(), gray[:, :frame].ravel(), gray[:, -frame:].ravel()])
    if float(np.median(border)) > 0.5:
        gray = 1.0 - gray
    if (h, w) == (MNIST_SIZE, MNIST_SIZE):
        return np.ascontiguousarray(gray, dtype=np.float32)
    scale = MNIST_SIZE / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS
    small = np.clip(np.asarray(Image.fromarray(gray.astype(np.float32)).resize((new_w, new_h), resample=resample)), 0.0, 1.0)
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    top, left = (MNIST_SIZE - new_h) // 2, (MNIST_SIZE - new_w) // 2
    out[top : top + new_h, left : left + new_w] = small
    return out


def to_png(array: np.ndarray) -> bytes:
    """A 2-D (H, W) or (H, W, 1) image with floats in [0, 1] (or uint8) as an 8-bit grayscale PNG."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"to_png needs an H x W or H x W x 1 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.rint(np.clip(np.nan_to_num(arr.astype(np.float32, copy=False)), 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    # compress_level=1: a few percent larger than the default but several times faster to encode.
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def to_gif(frames: np.ndarray, duration_ms: int = 80) -> bytes:
    """N x H x W (or N x H x W x 1) images in [0, 1] as an endlessly looping grayscale animated GIF."""
    arr = np.asarray(frames)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"to_gif needs N x H x W frames with N >= 1, got shape {arr.shape}")
    pixels = np.rint(np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    pictures = [Image.fromarray(np.ascontiguousarray(p)).convert("P") for p in pixels]
    buf = io.BytesIO()
    pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def tile(images: np.ndarray, ncols: int | None = None, pad: int = 0) -> np.ndarray:
    """N x h x w (or N x h x w x 1) images as one 2-D mosaic, row-major, ``pad`` zero pixels between tiles.

    ``ncols`` defaults to ceil(sqrt(N)); missing cells of the last row are zeros.
    """
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"tile needs N x h x w images with N >= 1, got shape {arr.shape}")
    n, h, w = arr.shape
    ncols = math.ceil(math.sqrt(n)) if ncols is None else ncols
    if ncols < 1 or pad < 0:
        raise ValueError(f"tile needs ncols >= 1 and pad >= 0, got ncols={ncols}, pad={pad}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    cells = np.zeros((nrows * ncols, h + pad, w + pad), dtype=arr.dtype)
    cells[:n, :h, :w] = arr
    mosaic: np.ndarray = cells.reshape(nrows, ncols, h + pad, w + pad).transpose(0, 2, 1, 3)
    mosaic = mosaic.reshape(nrows * (h + pad), ncols * (w + pad))
    # Padding separates tiles; none is wanted after the last row and column.
    return mosaic[: mosaic.shape[0] - pad, : mosaic.shape[1] - pad]


def latent_grid(
    n: int,
    scale: float,
    latent_dim: int,
    dims: tuple[int, int] = (0, 1),
    fixed: Sequence[float] | None = None,
) -> np.ndarray:
    """Latent points of an n x n manifold, float32 (n*n, latent_dim), in the seed notebook's order.

    Row i (top to bottom) has z[dims[1]] = linspace(-scale, scale, n)[::-1][i]; column j has
    z[dims[0]] = linspace(-scale, scale, n)[j]; rows are concatenated (row-major), so
    ``tile(decoder(latent_grid(n, ...)), ncols=n)`` is the seed's figure. Other coordinates
    take ``fixed`` (length latent_dim, default zeros).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInput(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(scale, (int, float, np.number)) or not math.isfinite(scale) or scale <= 0:
        raise InvalidInput(f"scale must be a finite number > 0, got {scale!r}")
    if latent_dim < 2:
        raise InvalidInput(f"a manifold needs a latent space of at least 2 dimensions, this model has {latent_dim}")
    try:
        d0, d1 = (int(d) for d in dims)
    except (TypeError, ValueError):
        raise InvalidInput(f"dims must be two integers, got {dims!r}") from None
    if d0 == d1 or not (0 <= d0 < latent_dim and 0 <= d1 < latent_dim):
        raise InvalidInput(f"dims must be two distinct indices in 0..{latent_dim - 1}, got {list(dims)}")
    if fixed is None:
        base = np.zeros(latent_dim, dtype=np.float32)
    else:
        try:
            base = np.asarray(fixed, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInput(f"fixed must be {latent_dim} numbers, got {fixed!r}") from None
        if base.shape != (latent_dim,):
            raise InvalidInput(f"fixed must have {latent_dim} values (one per latent dimension), got {base.size}")
        if not np.isfinite(base).all():
            raise InvalidInput("fixed must contain finite numbers only")
    grid_x = np.linspace(-scale, scale, n)
    grid_y = np.linspace(-scale, scale, n)[::-1]
    z = np.tile(base, (n * n, 1))
    z[:, d0] = np.tile(grid_x, n)
    z[:, d1] = np.repeat(grid_y, n)
    return z


def sample_latent(n: int, latent_dim: int, seed: int) -> np.ndarray:
    """n standard-normal latent points, float32 (n, latent_dim).

    Exactly ``np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)``,
    so a client can reproduce the points of any ``/v1/generate/sample`` answer.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInput(f"n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}")
    if latent_dim < 1:
        raise InvalidInput(f"latent_dim must be >= 1, got {latent_dim}")
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)
