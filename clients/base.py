"""The client interface both transports implement, its result type and shared input handling."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    ClientError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnavailableError,
)

__all__ = [
    "Client",
    "Prediction",
    "Classification",
    "Encoding",
    "Reconstruction",
    "Interpolation",
    "ClientError",
    "DeadlineExceededError",
    "InvalidRequestError",
    "NotFoundError",
    "ServerError",
    "UnavailableError",
]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.1
# The server's default row limit per request (SERVING_MAX_IMAGES_PER_REQUEST, SERVING_MAX_GENERATE_N);
# classify and generate split bigger inputs into requests of at most this many rows on both transports.
# sample and manifold are one operation each: their limits are the server's, the same on both transports.
DEFAULT_MAX_BATCH_ROWS = 256

PathOrBytes = str | os.PathLike[str] | bytes
# The VAE methods take arrays (N x 28 x 28) or one picture file (a path or its bytes), as their routes do.
Images = Any


@dataclass(frozen=True, eq=False)
class Prediction:
    """One classified image: the winning label, all class probabilities, and which model answered.

    ``version`` is the answering version's number as text (what ``models()`` lists as ``version_number``),
    on both transports. ``members`` (with ``model="ensemble"`` and ``members=True``): each member's
    probabilities for this image, by public name. ``confidence`` is the label's calibrated probability;
    ``digit`` is False when the server judged the picture not a digit, ``reason`` says why (``blank``,
    ``uniform``, ``not-a-digit``, ``low-confidence``) and ``detail`` in a sentence (HTTP only)."""

    label: int
    probabilities: np.ndarray
    model: str
    version: str
    members: dict[str, np.ndarray] | None = None
    confidence: float | None = None
    digit: bool | None = None
    reason: str | None = None
    detail: str | None = None

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most probable ``(label, probability)`` pairs, most probable first."""
        return top_k(self.probabilities, k)


@dataclass(frozen=True, eq=False)
class Classification:
    """Many classified images at once: N x 10 float32 probabilities, the model and version number that
    answered, and (ensemble with ``members=True``) each member's N x 10 probabilities by public name."""

    probabilities: np.ndarray
    model: str
    version: str
    members: dict[str, np.ndarray] | None = None

    @property
    def labels(self) -> np.ndarray:
        """The winning label of each image."""
        return np.asarray(self.probabilities.argmax(axis=1))


@dataclass(frozen=True, eq=False)
class Encoding:
    """Images in a VAE's latent space: ``z_mean`` and ``z_log_var``, N x latent_dim float32 each;
    ``version`` is the encoder's version number."""

    model: str
    version: str
    z_mean: np.ndarray
    z_log_var: np.ndarray


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Images encoded and decoded from their ``z_mean``: per image the training loss (``loss``, float64 [N]),
    its reconstruction part (binary cross-entropy summed over the pixels) and its KL part, ``z_mean``, and
    the decoded N x 28 x 28 ``images``; ``version`` is the decoder's version number."""

    model: str
    version: str
    loss: np.ndarray
    reconstruction_loss: np.ndarray
    kl: np.ndarray
    z_mean: np.ndarray
    images: np.ndarray


@dataclass(frozen=True, eq=False)
class Interpolation:
    """The decoded straight path between two latent points: ``z`` (steps x latent_dim) and ``images``
    (steps x 28 x 28), both ends included; ``version`` is the decoder's version number."""

    model: str
    version: str
    z: np.ndarray
    images: np.ndarray


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most probable ``(label, probability)`` pairs of one probability row, most probable first."""
    probs = np.asarray(probabilities, dtype=np.float64).ravel()
    # Stable sort on the negated values keeps the lower label first on ties, like argmax.
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    return [(int(i), float(probs[i])) for i in order]


class Client(abc.ABC):
    """A connection to the inference service; use it as a context manager or call :meth:`close`.

    Every method raises a :class:`ClientError` subclass on failure: :class:`InvalidRequestError`,
    :class:`NotFoundError`, :class:`UnavailableError` (after retries) or :class:`ServerError`.
    """

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @abc.abstractmethod
    def classify(self, images: Any, model: str | None = None, members: bool = False) -> list[Prediction]:
        """Classify N x 28 x 28 images (or one 28 x 28); floats in [0, 1] or integers 0..255.

        ``members=True`` (with ``model="ensemble"``) adds each member's answer to every prediction."""

    @abc.abstractmethod
    def classify_image(self, image: PathOrBytes, model: str | None = None, members: bool = False) -> Prediction:
        """Classify one image file (PNG/JPEG, any size), given as a path or its bytes."""

    @abc.abstractmethod
    def classify_batch(self, images: Any, model: str | None = None, members: bool = False) -> Classification:
        """Classify many images sent as binary arrays (``POST /v1/classify/batch``): N x 10 probabilities with
        the model and version that answered (and, with ``members=True``, each member's)."""

    def classify_bulk(self, images: Any, model: str | None = None) -> np.ndarray:
        """Class probabilities (N x 10 float32) for many images, sent as binary arrays."""
        return self.classify_batch(images, model).probabilities

    @abc.abstractmethod
    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        """Decode latent points (N x latent_dim, or one point) into N x 28 x 28 float32 images."""

    @abc.abstractmethod
    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        """Decode ``n`` standard-normal latent points drawn with ``seed``; N x 28 x 28 float32.

        One request: ``n`` over the decoder's row limit is the server's InvalidRequestError."""

    @abc.abstractmethod
    def manifold(
        self,
        model: str | None = None,
        n: int = 30,
        scale: float = 2.0,
        dims: Sequence[int] = (0, 1),
        fixed: Sequence[float] | None = None,
        axes: bool = False,
    ) -> bytes:
        """PNG of an n x n grid decoded over [-scale, scale] along latent ``dims``, others at ``fixed``;
        ``axes=True`` frames it like the notebook's figure (HTTP only).

        ``n`` over the decoder's ``max_manifold_n`` (40 by default) is an InvalidRequestError."""

    # -- the VAE beyond decoding: each takes N x 28 x 28 arrays or one picture file (a path or its bytes),
    # a garment made Fashion-MNIST-like (light on black, fitted to 28 x 28) as the server does.

    @abc.abstractmethod
    def encode(self, images: Images, model: str | None = None) -> Encoding:
        """The encoder's ``z_mean`` and ``z_log_var`` of each image (``POST /v1/encode``)."""

    @abc.abstractmethod
    def reconstruct(self, images: Images, model: str | None = None) -> Reconstruction:
        """Each image encoded, decoded from its ``z_mean``, with its losses (``POST /v1/reconstruct``, array)."""

    @abc.abstractmethod
    def reconstruct_png(self, images: Images, model: str | None = None) -> bytes:
        """One PNG, a row per image: the input left, its reconstruction right (56 x 28N pixels)."""

    @abc.abstractmethod
    def interpolate(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> Interpolation:
        """The decoded straight path from ``z[0]`` to ``z[1]`` (two latent points), or between the ``z_mean``
        of two 28 x 28 ``images``, in ``steps`` points, both ends included (``POST /v1/generate/interpolate``)."""

    @abc.abstractmethod
    def interpolate_png(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        """The path of :meth:`interpolate` as one PNG strip, left to right (28*steps x 28)."""

    @abc.abstractmethod
    def interpolate_gif(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        """The path of :meth:`interpolate` as an endlessly looping GIF of 28 x 28 frames."""

    # -- the notebooks' figures, drawn from what training recorded (HTTP only) ---------------

    @abc.abstractmethod
    def plot_clusters(self, model: str | None = None, dims: Sequence[int] = (0, 1)) -> bytes:
        """PNG: the Fashion-MNIST test set's ``z_mean`` in the plane of two latent ``dims``, by class."""

    @abc.abstractmethod
    def plot_confusion(self, model: str | None = None) -> bytes:
        """PNG: a classifier's (or the ensemble's) confusion matrix on the MNIST test split."""

    @abc.abstractmethod
    def models(self) -> list[dict[str, Any]]:
        """What the server serves (classifiers, decoders and encoders): name, store_name, version_number,
        task, signature, default, and metrics and provider where the transport reports them. Model
        arguments elsewhere take a ``name`` or a ``store_name`` from this list; None means the server's
        default for the task."""

    @abc.abstractmethod
    def health(self) -> dict[str, bool]:
        """``{"live": bool, "ready": bool}``; never raises for an unreachable server."""


def is_picture(images: Any) -> bool:
    """Whether an ``images`` argument is one picture file (a path or its bytes) rather than an array."""
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview))


def points(values: Any, what: str) -> np.ndarray:
    """Numbers as float32, finite, in the shape given (the server checks the shape)."""
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"{what} must be numbers: {e}") from e
    if not np.isfinite(arr).all():
        raise InvalidRequestError(f"{what} contains NaN or infinite values")
    return arr


def image_batch(images: Any) -> np.ndarray:
    """Images as an N x H x W array: float32, or integers (meaning 0..255) kept as uint8."""
    try:
        arr = np.asarray(images)
    except ValueError as e:  # ragged nested lists
        raise InvalidRequestError(f"images must be a rectangular N x H x W array: {e}") from e
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise InvalidRequestError(f"images must be one H x W image or N x H x W images, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidRequestError("no images given")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InvalidRequestError(f"integer pixels must be within 0..255, got {arr.min()}..{arr.max()}; or send floats in [0, 1]")
        return arr.astype(np.uint8, copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise InvalidRequestError("images contain NaN or infinite values")
        return arr
    raise InvalidRequestError(f"images must be numbers, got dtype {arr.dtype}")


def unit_float(batch: np.ndarray) -> np.ndarray:
    """A batch from :func:`image_batch` as float32 in [0, 1] (uint8 pixels divided by 255)."""
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / np.float32(255.0)
    return batch


def latent_batch(z: Any) -> np.ndarray:
    """Latent points as float32 N x latent_dim (one point becomes N = 1)."""
    try:
        arr = np.asarray(z, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"z must be numbers, N x latent_dim: {e}") from e
    if arr.ndim == 1:
        arr = arr[np.newaxis]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidRequestError(f"z must be one latent point or N x latent_dim points, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidRequestError("z contains NaN or infinite values")
    return arr


def chunks(n: int, size: int) -> list[slice]:
    """Slices covering ``range(n)`` in order, each at most ``size`` long."""
    size = max(1, size)
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def read_image(image: PathOrBytes) -> tuple[bytes, str]:
    """An image argument as ``(bytes, filename)``; raises InvalidRequestError for unreadable paths."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "image"
    path = Path(image)
    try:
        return path.read_bytes(), path.name
    except OSError as e:
        raise InvalidRequestError(f"cannot read image file {str(path)!r}: {e.strerror or e}") from e
