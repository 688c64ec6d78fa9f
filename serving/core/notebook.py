"""Everything the notebooks show, served: sampling, the latent manifold, reconstruction, interpolation, the
label clusters and the confusion matrix, as operations of the data plane over the models' shared batches.

Each operation resolves its models and checks every parameter through the data plane before any
model runs or anything is allocated; fronts only translate their answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract import images
from contract.errors import InvalidInput, PayloadTooLarge
from contract.vae import MAX_STEPS, interpolation_path, kl_divergence, reconstruction_loss

from . import plots
from .dataplane import DataPlane
from .kinds import Classifier, Decoder, Encoder
from .request import InferRequest, Tensor
from .runtime import ModelRuntime

LOSS = "binary cross-entropy summed over the 784 pixels (the notebook's reconstruction loss), of the image decoded from z_mean"


@dataclass
class Images:
    """Decoded images (N x 28 x 28) and the decoder version that drew them."""

    model: ModelRuntime
    images: np.ndarray
    z: np.ndarray | None = None


@dataclass
class Reconstruction:
    encoder: ModelRuntime
    decoder: ModelRuntime
    inputs: np.ndarray  # N x 28 x 28, as the encoder read them
    images: np.ndarray  # N x 28 x 28, decoded from z_mean
    z_mean: np.ndarray
    reconstruction_loss: np.ndarray
    kl: np.ndarray


@dataclass
class Picture:
    model: ModelRuntime
    png: bytes
    cached: bool = False


def _pixels(decoded: np.ndarray) -> np.ndarray:
    return decoded.reshape(decoded.shape[0], *decoded.shape[1:3])


def latent_dims(rt: ModelRuntime, dims: Sequence[int] | None, what: str = "dims") -> tuple[int, int]:
    """Two distinct latent dimensions of ``rt``'s latent space (default 0, 1)."""
    latent = int(rt.signature["latent_dim"])
    picked = list(dims) if dims is not None else [0, 1]
    if len(picked) != 2 or picked[0] == picked[1] or not all(0 <= d < latent for d in picked):
        raise InvalidInput(f"{what} must be two distinct indices in 0..{latent - 1}, got {','.join(str(d) for d in picked)!r}")
    return picked[0], picked[1]


class Notebook:
    """The notebooks' operations over one data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.engine = plane.engine

    async def decode(self, model: str | None, version: str | None, z: Tensor) -> Images:
        answer = await self.plane.infer(InferRequest([z], model, version, Decoder))
        return Images(answer.model, _pixels(next(iter(answer.outputs.values()))))

    async def sample(self, model: str | None, version: str | None, n: int, seed: int) -> Images:
        """``n`` images from ``z = default_rng(seed).standard_normal((n, latent), dtype=np.float32)``
        (``n`` checked against the row limit first)."""
        rt = self.plane.model(model, version, Decoder)
        latent = int(rt.signature["latent_dim"])
        z = Tensor(None, "FP32", (n, latent), lambda: images.sample_latent(n, latent, seed))
        return await self.decode(rt.store_name, rt.version, z)

    async def manifold(
        self,
        model: str | None,
        version: str | None,
        n: int,
        scale: float,
        dims: Sequence[int] | None,
        fixed: Sequence[float] | None,
        axes: bool,
    ) -> Picture:
        """The notebook's n x n latent manifold as one PNG, every parameter checked before anything is decoded."""
        rt = self.plane.model(model, version, Decoder)
        limit = self.plane.settings.max_manifold_n
        if n < 1:
            raise InvalidInput(f"n must be at least 1, got {n}")
        if n > limit:
            raise PayloadTooLarge(f"n must be at most {limit}, got {n}")
        if not math.isfinite(scale) or not 0 < scale <= 100:
            raise InvalidInput(f"scale must be a number in (0, 100], got {scale:g}")
        latent = int(rt.signature["latent_dim"])
        if latent < 2:
            raise InvalidInput(f"a manifold needs a latent space of at least 2 dimensions; {rt.public_name} has {latent}")
        varied = latent_dims(rt, dims)
        if fixed is not None:
            if len(fixed) != latent or not all(math.isfinite(v) for v in fixed):
                raise InvalidInput(f"fixed must be {latent} finite numbers (one per latent dim of {rt.public_name}), got {len(fixed)}")
            fixed = tuple(float(v) for v in fixed)
        png, hit = await self.engine.manifold(rt, n, float(scale), varied, fixed, axes)
        return Picture(rt, png, hit)

    async def encode(self, model: str | None, tensor: Tensor) -> tuple[ModelRuntime, np.ndarray, np.ndarray]:
        """(encoder, z_mean, z_log_var) of images."""
        answer = await self.plane.infer(InferRequest([tensor], model, None, Encoder))
        z_mean, z_log_var = (answer.outputs[name] for name in answer.model.output_names)
        return answer.model, z_mean, z_log_var

    async def reconstruct(self, model: str | None, tensor: Tensor) -> Reconstruction:
        """Encode, then decode each image's z_mean; with the per-image losses of the training objective."""
        request = InferRequest([tensor], model, None, Encoder)
        encoder, rows, wanted = self.plane.prepare(request)
        decoder = self.plane.partner(encoder, Decoder)
        encoded = await self.plane.run(request, encoder, rows, wanted)
        z_mean, z_log_var = (encoded.outputs[name] for name in encoder.output_names)
        (decoded,) = await self.engine.infer(decoder, z_mean)
        inputs, out = _pixels(rows), _pixels(decoded)
        return Reconstruction(encoder, decoder, inputs, out, z_mean, reconstruction_loss(inputs, out), kl_divergence(z_mean, z_log_var))

    async def interpolate(self, model: str | None, z: Tensor | None, pixels: Tensor | None, steps: int) -> Images:
        """The decoded straight path between two latent points, or between two images' z_mean, both ends included."""
        if (z is None) == (pixels is None):
            raise InvalidInput("send exactly one of z (two latent points) or images (two images)")
        if not 2 <= steps <= MAX_STEPS:
            raise InvalidInput(f"steps must be within 2..{MAX_STEPS}, got {steps}")
        if z is not None:
            if len(z.shape) != 2 or z.shape[0] != 2:
                raise InvalidInput(f"z must be two latent points [start, end], got shape {list(z.shape)}")
            request = InferRequest([z], model, None, Decoder)
            decoder, ends, _ = self.plane.prepare(request)
        else:
            assert pixels is not None
            if len(pixels.shape) != 3 or pixels.shape[0] != 2:
                raise InvalidInput(f"images must be two 28 x 28 images [start, end], got shape {list(pixels.shape)}")
            request = InferRequest([pixels], model, None, Encoder)
            encoder, rows, wanted = self.plane.prepare(request)
            decoder = self.plane.partner(encoder, Decoder)
            ends = (await self.plane.run(request, encoder, rows, wanted)).outputs[encoder.output_names[0]]
        path = interpolation_path(ends, steps)
        (decoded,) = await self.engine.infer(decoder, path)
        return Images(decoder, _pixels(decoded), path)

    async def clusters(self, model: str | None, dims: Sequence[int] | None) -> Picture:
        """The label clusters of the Fashion-MNIST test set in a plane of two latent dims (from training's record)."""
        encoder = self.plane.model(model, None, Encoder)
        d0, d1 = latent_dims(encoder, dims)
        evaluation = encoder.evaluation()

        def draw() -> bytes:
            z_mean, y = np.asarray(evaluation["z_mean"], dtype=np.float32), np.asarray(evaluation["y"])
            title = f"{encoder.public_name}: test-set z_mean by class ({len(y)} images)"
            return plots.clusters(z_mean, y, evaluation["labels"], (d0, d1), title)

        return Picture(encoder, await self.engine.plot(encoder, ("clusters", d0, d1), draw))

    async def confusion(self, model: str | None, version: str | None) -> Picture:
        """A classifier's (or the ensemble's) confusion matrix on the MNIST test split (from training's record)."""
        rt = self.plane.model(model, version, Classifier)
        evaluation = rt.evaluation()

        def draw() -> bytes:
            title = f"{rt.public_name}: test accuracy {evaluation['test_accuracy']:.4f} ({evaluation['test_size']} images)"
            return plots.confusion(np.asarray(evaluation["confusion_matrix"]), evaluation["labels"], title)

        return Picture(rt, await self.engine.plot(rt, ("confusion",), draw))
