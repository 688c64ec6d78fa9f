"""The VAE routes of ``/v1`` beyond decoding: encode, reconstruct, interpolate. They only translate.

Images come as JSON (N x 28 x 28, the pixel rule of ``/v1/classify``), as one uploaded picture
(multipart field ``image``, made Fashion-MNIST-like by :func:`contract.images.fashion_preprocess`)
or as a raw ``.npy`` body; the route picks by ``Content-Type``. Encoders and decoders run through
the engine's batchers like every other request.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from contract import images
from contract.errors import InvalidInput, ModelNotFound, UnsupportedMediaType
from serving.core.engine import Engine
from serving.core.runtime import ModelRuntime
from serving.protocols import codec

from .app import JSON, _model_headers, current_engine, parse_json, until_disconnect

router = APIRouter()

MAX_STEPS = 100
# Keras' binary cross-entropy clips predictions to [eps, 1 - eps]; the notebook's loss sums it over the pixels.
BCE_EPSILON = 1e-7
LOSS = "binary cross-entropy summed over the 784 pixels (the notebook's reconstruction loss), of the image decoded from z_mean"


class ImagesRequest(BaseModel):
    images: Any = Field(
        description="N x 28 x 28 pixels (or one 28 x 28 image), light garment on black as in Fashion-MNIST. "
        "All-integer arrays are read as 0..255; arrays with any float are read as [0, 1].",
        examples=[[[[0] * 28] * 28]],
    )
    model: str | None = Field(default=None, description="vae2 or vae4 (default vae2); overrides ?model=")


class ReconstructRequest(ImagesRequest):
    format: Literal["png", "array"] | None = Field(
        default=None, description="png (default): each input beside its reconstruction; array: JSON; overrides ?format="
    )


class EncodeResponse(BaseModel):
    model: str
    version: str
    z_mean: list[list[float]]
    z_log_var: list[list[float]]


class InterpolateRequest(BaseModel):
    model: str | None = Field(default=None, description="vae2 or vae4 (default vae2)")
    z: Any = Field(
        default=None, description="two latent points [start, end], each of the model's latent size", examples=[[[-1.5, 1.0], [1.5, -1.0]]]
    )
    images: Any = Field(default=None, description="instead of z: two 28 x 28 images; the path runs between their z_mean")
    steps: int = Field(default=10, ge=2, le=MAX_STEPS, description="points on the path, both ends included")
    format: Literal["png", "gif", "array"] = Field(
        default="png", description="png: one strip, left to right; gif: an endlessly looping animation; array: JSON"
    )


def images_body(json_model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody``: the three ways to send images."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_model.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"image": {"type": "string", "format": "binary"}, "model": {"type": "string"}},
                        "required": ["image"],
                    }
                },
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary", "description": ".npy N x 28 x 28, uint8 or float32"}
                },
            },
        }
    }


def _fashion_upload(data: bytes, max_pixels: int) -> np.ndarray:
    return images.fashion_preprocess(images.decode_image(data, max_pixels))


async def read_images(request: Request, engine: Engine, body_model: type[ImagesRequest]) -> tuple[np.ndarray, Any]:
    """Pixels N x 28 x 28 float32 in [0, 1] from any of the three bodies, and the JSON body (or None)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = None
    if content_type == "application/json":
        body = await parse_json(request, body_model)
        pixels = codec.pixels_from_json(body.images)
    elif content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8)
        except HTTPException as e:
            raise InvalidInput(f"the multipart body cannot be read ({e.detail}); send one file in the field 'image'") from None
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the multipart body needs a file in the field 'image'")
        data = await upload.read()
        pixels = (await asyncio.to_thread(_fashion_upload, data, engine.settings.max_image_pixels))[None]
    elif content_type in ("application/octet-stream", "application/x-npy"):
        pixels = codec.normalize_pixels(codec.npy_to_array(await request.body(), engine.settings.max_body_bytes))
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or 'none'!r} is not accepted; send application/json, multipart/form-data "
            "(a file in 'image') or application/octet-stream (.npy)"
        )
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    codec.check_rows(pixels, engine.settings.max_images_per_request, "images")
    return pixels, body


def encoder_for(engine: Engine, name: str | None) -> ModelRuntime:
    """The encoder of a VAE by public name (default vae2); a model without an encoder is a 400."""
    name = name or engine.registry.default_name("generation")
    try:
        return engine.model("encoding", name)
    except ModelNotFound:
        other = [rt for rt in engine.registry.runtimes.values() if name in (rt.public_name, rt.store_name)]
        if other:
            raise InvalidInput(
                f"model {name[:100]!r} ({other[0].task}) has no encoder; models with one: "
                f"{', '.join(engine.registry.names('encoding')) or 'none'}"
            ) from None
        raise


def rows_for(rt: ModelRuntime, pixels: np.ndarray) -> np.ndarray:
    """N x 28 x 28 pixels as the encoder's N x 28 x 28 x 1 rows (shape errors name the 3-D shape clients send)."""
    spec = rt.input_spec
    flat = codec.validate_array(pixels, {**spec, "shape": spec["shape"][:-1]}, "images")
    return flat[..., None]


def reconstruction_loss(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per image: binary cross-entropy of prediction ``p`` against pixels ``x``, summed over the pixels."""
    x = x.reshape(len(x), -1).astype(np.float64)
    p = np.clip(p.reshape(len(p), -1).astype(np.float64), BCE_EPSILON, 1.0 - BCE_EPSILON)
    return np.asarray(-(x * np.log(p) + (1.0 - x) * np.log(1.0 - p)).sum(axis=1))


def kl_divergence(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """Per image: KL(N(z_mean, exp(z_log_var)) || N(0, I)), summed over the latent dims (the training loss's KL)."""
    m, v = z_mean.astype(np.float64), z_log_var.astype(np.float64)
    return np.asarray(-0.5 * (1.0 + v - m**2 - np.exp(v)).sum(axis=1))


@router.post(
    "/encode",
    response_model=EncodeResponse,
    summary="Encode images into the latent space: z_mean and z_log_var per image (JSON, PNG upload or .npy)",
    openapi_extra=images_body(ImagesRequest),
)
async def encode(request: Request, model: Annotated[str | None, Query(description="vae2 or vae4")] = None) -> Response:
    engine = current_engine()
    pixels, body = await read_images(request, engine, ImagesRequest)
    encoder = encoder_for(engine, (body.model if body else None) or model)
    z_mean, z_log_var = await until_disconnect(request, engine.infer(encoder, rows_for(encoder, pixels)))
    return JSON({"model": encoder.public_name, "version": encoder.version, "z_mean": z_mean, "z_log_var": z_log_var})


@router.post(
    "/reconstruct",
    summary="Encode and decode images: each input beside its reconstruction (PNG) or arrays, with per-image losses",
    description=f"Loss: {LOSS}; `X-Reconstruction-Loss` (PNG) or `reconstruction_loss` (array) per image, and the "
    "KL term of the training loss as `X-KL` / `kl`. PNG: one row per image, the input left, the reconstruction right "
    "(56 x 28N pixels).",
    responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    openapi_extra=images_body(ReconstructRequest),
)
async def reconstruct(
    request: Request,
    model: Annotated[str | None, Query(description="vae2 or vae4")] = None,
    fmt: Annotated[Literal["png", "array"], Query(alias="format", description="png or array")] = "png",
) -> Response:
    engine = current_engine()
    pixels, body = await read_images(request, engine, ReconstructRequest)
    encoder = encoder_for(engine, (body.model if body else None) or model)
    decoder = engine.model("generation", encoder.public_name)

    async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z_mean, z_log_var = await engine.infer(encoder, rows_for(encoder, pixels))
        (decoded,) = await engine.infer(decoder, z_mean)
        return z_mean, z_log_var, decoded.reshape(pixels.shape)

    z_mean, z_log_var, decoded = await until_disconnect(request, run())
    loss, kl = reconstruction_loss(pixels, decoded), kl_divergence(z_mean, z_log_var)
    if ((body.format if body else None) or fmt) == "array":
        return JSON(
            {
                "model": encoder.public_name,
                "version": decoder.version,
                "loss": LOSS,
                "reconstruction_loss": loss,
                "kl": kl,
                "z_mean": z_mean,
                "images": decoded,
            }
        )
    pairs = np.stack([pixels, decoded], axis=1).reshape(-1, *pixels.shape[1:])
    headers = {
        **_model_headers(decoder),
        "X-Reconstruction-Loss": ",".join(f"{v:.4f}" for v in loss),
        "X-KL": ",".join(f"{v:.4f}" for v in kl),
    }
    return Response(images.to_png(images.tile(pairs, ncols=2)), media_type="image/png", headers=headers)


@router.post(
    "/generate/interpolate",
    summary="Decode the straight path between two latent points (or two images' z_mean): PNG strip, GIF or arrays",
    description="`steps` points from start to end, both included: PNG strip 28*steps x 28, GIF of steps 28 x 28 frames.",
    responses={200: {"content": {"image/png": {}, "image/gif": {}, "application/json": {}}}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": InterpolateRequest.model_json_schema()}}}},
)
async def interpolate(request: Request) -> Response:
    body = await parse_json(request, InterpolateRequest)
    engine = current_engine()
    if (body.z is None) == (body.images is None):
        raise InvalidInput("send exactly one of z (two latent points) or images (two images)")
    encoder = None
    if body.z is not None:
        decoder = engine.model("generation", body.model)
        ends = codec.floats_from_json(body.z, "z")
        if ends.ndim != 2 or ends.shape[0] != 2:
            raise InvalidInput(f"z must be two latent points [start, end], got shape {list(ends.shape)}")
        ends = codec.validate_array(ends, decoder.input_spec, "z")
    else:
        encoder = encoder_for(engine, body.model)
        decoder = engine.model("generation", encoder.public_name)
        pixels = codec.pixels_from_json(body.images)
        if pixels.ndim != 3 or pixels.shape[0] != 2:
            raise InvalidInput(f"images must be two 28 x 28 images [start, end], got shape {list(pixels.shape)}")
        ends = rows_for(encoder, pixels)

    async def run() -> tuple[np.ndarray, np.ndarray]:
        start_end = ends if encoder is None else (await engine.infer(encoder, ends))[0]
        t = np.linspace(0.0, 1.0, body.steps, dtype=np.float32)[:, None]
        path = np.ascontiguousarray((1.0 - t) * start_end[0] + t * start_end[1], dtype=np.float32)
        return path, (await engine.infer(decoder, path))[0]

    path, decoded = await until_disconnect(request, run())
    frames = decoded.reshape(decoded.shape[0], *decoded.shape[1:3])
    if body.format == "array":
        return JSON({"model": decoder.public_name, "version": decoder.version, "z": path, "images": frames})
    if body.format == "gif":
        return Response(await asyncio.to_thread(images.to_gif, frames), media_type="image/gif", headers=_model_headers(decoder))
    return Response(images.to_png(images.tile(frames, ncols=body.steps)), media_type="image/png", headers=_model_headers(decoder))
