"""The server's composite routes re-done from model calls, for a transport that only offers model calls (gRPC).

``GET /v1/generate/manifold``, ``POST /v1/reconstruct`` and ``POST /v1/generate/interpolate`` each run
several models and some arithmetic on the server (``serving.core.notebook``). Over gRPC the client calls
the same models itself; this module holds what it adds: each route's parameter checks, in the route's
order with its messages (so a mistake fails alike on both transports), and the route's arithmetic, so
the answers agree with HTTP's to float rounding. Pure functions: no I/O, no server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from contract.vae import MAX_STEPS

from .errors import InvalidRequestError

# The server's manifold rule 0 < scale <= 100 (the model config reports n's limit, not this one).
MAX_MANIFOLD_SCALE = 100.0


def query_list(texts: Sequence[str], kind: type, what: str) -> list[Any]:
    """A list parameter as the HTTP route reads it: the HTTP client's comma-joined text, parsed part by part."""
    raw = ",".join(texts)
    try:
        return [kind(part) for part in raw.split(",")]
    except ValueError:
        raise InvalidRequestError(f"{what} must be comma-separated {kind.__name__}s, got {raw[:100]!r}") from None


def manifold_grid(
    n: int,
    scale: float,
    latent_dim: int,
    dims: Sequence[int],
    fixed: Sequence[float] | None,
    max_n: int | None,
    model: str,
) -> np.ndarray:
    """The n*n latent points of a manifold, checked as the server checks ``GET /v1/generate/manifold`` (the
    same order, classes and messages): n within 1..``max_n`` (the decoder's ``max_manifold_n``; None: not
    reported), scale, the latent space, dims, fixed. ``model`` is the public name the messages use."""
    from contract.images import latent_grid

    if n < 1:
        raise InvalidRequestError(f"n must be at least 1, got {n}")
    if max_n is not None and n > max_n:
        raise InvalidRequestError(f"n must be at most {max_n}, got {n}")
    if not math.isfinite(scale) or not 0 < scale <= MAX_MANIFOLD_SCALE:
        raise InvalidRequestError(f"scale must be a number in (0, {MAX_MANIFOLD_SCALE:g}], got {scale:g}")
    if latent_dim < 2:
        raise InvalidRequestError(f"a manifold needs a latent space of at least 2 dimensions; {model} has {latent_dim}")
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < latent_dim for d in dims):
        raise InvalidRequestError(f"dims must be two distinct indices in 0..{latent_dim - 1}, got {','.join(str(d) for d in dims)!r}")
    if fixed is not None and (len(fixed) != latent_dim or not all(math.isfinite(v) for v in fixed)):
        raise InvalidRequestError(f"fixed must be {latent_dim} finite numbers (one per latent dim of {model}), got {len(fixed)}")
    return latent_grid(n, scale, latent_dim, (dims[0], dims[1]), fixed)


def check_interpolation(z: np.ndarray | None, images: np.ndarray | None, steps: int) -> None:
    """What ``POST /v1/generate/interpolate`` checks before any model runs, in its order and words
    (the model's own rules, such as the latent size, follow on the model call)."""
    if (z is None) == (images is None):
        raise InvalidRequestError("send exactly one of z (two latent points) or images (two images)")
    if not 2 <= steps <= MAX_STEPS:
        raise InvalidRequestError(f"steps must be within 2..{MAX_STEPS}, got {steps}")
    if z is not None and (z.ndim != 2 or z.shape[0] != 2):
        raise InvalidRequestError(f"z must be two latent points [start, end], got shape {list(z.shape)}")
    if images is not None and (images.ndim != 3 or images.shape[0] != 2):
        raise InvalidRequestError(f"images must be two 28 x 28 images [start, end], got shape {list(images.shape)}")


def reconstruction_png(inputs: np.ndarray, images: np.ndarray) -> bytes:
    """The reconstruct route's PNG: one row per image, the input left and its reconstruction right."""
    from contract.images import tile, to_png

    pairs = np.stack([inputs, images], axis=1).reshape(-1, *inputs.shape[1:])
    return to_png(tile(pairs, ncols=2))
