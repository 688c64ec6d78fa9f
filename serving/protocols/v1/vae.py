"""The VAE routes of ``/v1`` beyond decoding: encode, reconstruct, interpolate. They only translate.

Images come as JSON (N x 28 x 28, the pixel rule of ``/v1/classify``), as one uploaded picture
(multipart field ``image``, made Fashion-MNIST-like by :func:`contract.images.fashion_preprocess`)
or as a raw ``.npy`` body; :func:`~serving.transport.http.body_type` says which. What is computed, and every rule,
is the data plane's (:mod:`serving.core.notebook`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from contract import images
from serving.core.notebook import LOSS, Notebook
from serving.core.request import Tensor, one_of
from serving.transport.http import JSON, JSON_TYPE, MULTIPART_TYPE, NPY_TYPE, body_type, parse_json, plane, read_json, until_disconnect

from .common import ModelQuery, floats_json, image_counts, model_headers, npy_tensor, pixels_json, png, read_upload, upload_tensor

router = APIRouter()


class ImagesRequest(BaseModel):
    images: Any = Field(
        description="N x 28 x 28 pixels (or one 28 x 28 image), light garment on black as in Fashion-MNIST. "
        "All-integer arrays are read as 0..255; arrays with any float are read as [0, 1].",
        examples=[[[[0] * 28] * 28]],
    )
    model: str | None = Field(default=None, description="vae2 or vae4 (default vae2); or ?model= (not both, unless equal)")


class ReconstructRequest(ImagesRequest):
    format: Literal["png", "array"] | None = Field(
        default=None, description="png (default): each input beside its reconstruction; array: JSON; or ?format= (not both, unless equal)"
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
    steps: int = Field(default=10, description="points on the path, both ends included")
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
                        "properties": {
                            "image": {"type": "string", "format": "binary", "description": "PNG/JPEG/...; one garment"},
                            "model": {"type": "string", "description": "vae2 or vae4 (default vae2)", "examples": ["vae2"]},
                        },
                        "required": ["image"],
                    }
                },
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary", "description": ".npy N x 28 x 28, uint8 or float32"}
                },
            },
        }
    }


async def read_images(request: Request, body_model: type[ImagesRequest]) -> tuple[Tensor, Any]:
    """The images of any of the three bodies as a tensor, and the JSON body (or None)."""
    settings = plane(request).settings
    body = await request.body()
    kind = body_type(request, (JSON_TYPE, MULTIPART_TYPE, NPY_TYPE), body)
    if kind == JSON_TYPE:
        parsed = parse_json(body, body_model, image_counts(settings.max_images_per_request))
        return pixels_json(parsed.images), parsed
    if kind == MULTIPART_TYPE:
        picture, _ = await read_upload(request)
        return await upload_tensor(picture, settings.max_image_pixels, garment=True), None
    return npy_tensor(body, settings.max_body_bytes), None


@router.post(
    "/encode",
    response_model=EncodeResponse,
    summary="Encode images into the latent space: z_mean and z_log_var per image (JSON, PNG upload or .npy)",
    openapi_extra=images_body(ImagesRequest),
)
async def encode(request: Request, model: ModelQuery = None) -> Response:
    tensor, body = await read_images(request, ImagesRequest)
    encoder, z_mean, z_log_var = await until_disconnect(
        request, Notebook(plane(request)).encode(one_of("model", model, body and body.model), tensor)
    )
    return JSON({"model": encoder.public_name, "version": encoder.version, "z_mean": z_mean, "z_log_var": z_log_var})


@router.post(
    "/reconstruct",
    summary="Encode and decode images: each input beside its reconstruction (PNG) or arrays, with per-image losses",
    description=f"Loss: {LOSS}; `X-Reconstruction-Loss` (PNG) or `reconstruction_loss` (array) per image, and the "
    "KL term of the training loss as `X-KL` / `kl`; the array answer's `loss` is their sum per image, the training "
    "loss. PNG: one row per image, the input left, the reconstruction right (56 x 28N pixels).",
    responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    openapi_extra=images_body(ReconstructRequest),
)
async def reconstruct(
    request: Request,
    model: ModelQuery = None,
    fmt: Annotated[Literal["png", "array"] | None, Query(alias="format", description="png (default) or array")] = None,
) -> Response:
    tensor, body = await read_images(request, ReconstructRequest)
    result = await until_disconnect(request, Notebook(plane(request)).reconstruct(one_of("model", model, body and body.model), tensor))
    if one_of("format", fmt, body and body.format) == "array":
        return JSON(
            {
                "model": result.encoder.public_name,
                "version": result.decoder.version,
                # Per image, the notebook's VAE loss: reconstruction + KL (each below; what it means: the OpenAPI text).
                "loss": result.reconstruction_loss + result.kl,
                "reconstruction_loss": result.reconstruction_loss,
                "kl": result.kl,
                "z_mean": result.z_mean,
                "images": result.images,
            }
        )
    pairs = np.stack([result.inputs, result.images], axis=1).reshape(-1, *result.inputs.shape[1:])
    return png(
        images.to_png(images.tile(pairs, ncols=2)),
        result.decoder,
        **{
            "X-Reconstruction-Loss": ",".join(f"{v:.4f}" for v in result.reconstruction_loss),
            "X-KL": ",".join(f"{v:.4f}" for v in result.kl),
        },
    )


@router.post(
    "/generate/interpolate",
    summary="Decode the straight path between two latent points (or two images' z_mean): PNG strip, GIF or arrays",
    description="`steps` points from start to end, both included: PNG strip 28*steps x 28, GIF of steps 28 x 28 frames.",
    responses={200: {"content": {"image/png": {}, "image/gif": {}, "application/json": {}}}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": InterpolateRequest.model_json_schema()}}}},
)
async def interpolate(request: Request, model: ModelQuery = None) -> Response:
    body = await read_json(request, InterpolateRequest, image_counts(2))
    z = floats_json(body.z, "z") if body.z is not None else None
    pixels = pixels_json(body.images) if body.images is not None else None
    path = await until_disconnect(request, Notebook(plane(request)).interpolate(one_of("model", model, body.model), z, pixels, body.steps))
    if body.format == "array":
        return JSON({"model": path.model.public_name, "version": path.model.version, "z": path.z, "images": path.images})
    if body.format == "gif":
        return Response(await asyncio.to_thread(images.to_gif, path.images), media_type="image/gif", headers=model_headers(path.model))
    return png(images.to_png(images.tile(path.images, ncols=len(path.images))), path.model)
