"""MNIST / Fashion-MNIST from a directory of IDX files, or from ``keras.datasets``.

A data directory holds ``mnist/`` and ``fashion-mnist/`` subfolders with the four
standard files each (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped or plain.
A missing or malformed file is an error that names the file; there is no
silent fallback to another source.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.catalog import IMAGE_SIDE, NUM_CLASSES

DATASETS = ("mnist", "fashion-mnist")

# IDX type byte -> numpy dtype (big-endian, as the format stores it).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A dataset file is missing, unreadable or not what its header says, or the data is too small."""


_EMPTY_IMAGES = np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
_EMPTY_LABELS = np.zeros((0,), dtype=np.uint8)


@dataclass(frozen=True)
class Split:
    """Images as uint8 ``[N, 28, 28]`` and labels as uint8 ``[N]``.

    ``x_val``/``y_val``: training-file images held out from training (never the test set), empty unless
    :func:`load` was asked for a validation split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray = field(default_factory=lambda: _EMPTY_IMAGES)
    y_val: np.ndarray = field(default_factory=lambda: _EMPTY_LABELS)


def validation_size(n_train: int, fraction: float, minimum: int, spare: int = 0) -> int:
    """How many training-file images to hold out for ``n_train`` training images and ``spare`` unused ones:
    ``fraction`` of ``n_train``, raised to ``minimum`` where the spare images, or up to a quarter of the
    training images, allow; 0 when ``fraction`` is 0."""
    if fraction <= 0 or n_train <= 0:
        return 0
    size = math.ceil(fraction * n_train)
    return size if size >= minimum else max(size, min(minimum, spare + n_train // 4))


def resolve_data_dir(arg: str | os.PathLike[str] | None) -> Path | None:
    """``--data-dir`` if given, else ``$DATA_DIR``, else None (use keras.datasets)."""
    value = arg if arg not in (None, "") else os.environ.get("DATA_DIR") or None
    return Path(value).expanduser() if value is not None else None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped if its name ends in ``.gz``) and check its header."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises BadGzipFile (an OSError) or EOFError for a cut-off stream.
        raise DataError(f"{path}: cannot read ({e})") from e

    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, type_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad magic number 0x{raw[:4].hex()} (expected 0x0000TTNN: two zero bytes, a type code, the number of dimensions)"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: header declares {ndim} dimensions but the file has only {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_DTYPES[type_code]
    expected = header_len + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: header says shape {list(dims)} ({expected} bytes in all) "
            f"but the file has {len(raw)} bytes" + (" (truncated?)" if len(raw) < expected else "")
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / stem}(.gz): file not found")


def _read_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{images_path}: expected uint8 images of shape [N, {IMAGE_SIDE}, {IMAGE_SIDE}], got {images.dtype} {list(images.shape)}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected uint8 labels of shape [N], got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} is outside 0..{NUM_CLASSES - 1}")
    return images, labels


def _from_keras(dataset: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import keras

    loader = keras.datasets.mnist if dataset == "mnist" else keras.datasets.fashion_mnist
    return loader.load_data()


def load(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    test_limit: int | None = None,
    validation: float = 0.0,
    min_validation: int = 0,
) -> Split:
    """Load a dataset, shuffle its training part with ``seed`` and cut it to ``limit``.

    ``data_dir`` None means ``keras.datasets`` (needs the internet).
    The test part keeps its order; ``test_limit`` takes its first images.

    ``validation`` > 0 holds out :func:`validation_size` training-file images (seeded by the same
    shuffle, disjoint from the training images): from the images ``limit`` leaves unused, so the
    training set keeps its ``limit`` images; where too few are left (no ``limit``), the rest comes off
    the end of the training part, which shrinks by that many.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if data_dir is None:
        (x_train, y_train), (x_test, y_test) = _from_keras(dataset)
    else:
        folder = Path(data_dir) / dataset
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder not found (expected {dataset}/ inside the data directory)")
        x_train, y_train = _read_pair(folder, "train")
        x_test, y_test = _read_pair(folder, "t10k")

    # The MNIST training file is sorted by digit: without a shuffle, batches and
    # any --limit would see a single class.
    shuffled = np.random.default_rng(seed).permutation(len(x_train))
    order, spare = shuffled[:limit], shuffled[len(shuffled[:limit]) :]
    n_val = validation_size(len(order), validation, min_validation, spare=len(spare))
    held_out = spare[:n_val]
    short = n_val - len(held_out)
    if short > 0:  # not enough unused images: the rest comes off the end of the training part
        order, held_out = order[: len(order) - short], np.concatenate([order[len(order) - short :], held_out])
    return Split(
        x_train=x_train[order],
        y_train=y_train[order],
        x_test=x_test[:test_limit],
        y_test=y_test[:test_limit],
        x_val=x_train[held_out],
        y_val=y_train[held_out],
    )


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0
