"""What the ``/v1`` routes share: their wire decoding into tensors, query parameters, answer headers.

``/v1`` bodies carry pixels as JSON (all integers: UINT8 0..255; any float: FP32 in [0, 1]), as a
raw ``.npy`` (its own dtype) or as an uploaded picture (preprocessed to FP32 28 x 28), and latent
points as JSON numbers (FP32). These functions only say what was sent; the data plane decides.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from contract import images
from contract.errors import InvalidInput
from serving.core.request import Tensor
from serving.core.runtime import ModelRuntime
from serving.protocols import codec
from serving.transport.http import JSON, JSON_OVERSIZE

# The model name in a path, with examples so generated tests (Schemathesis) reach real models too.
ModelName = Annotated[str, Path(description="public name (lstm, vae2) or store name (mnist-lstm)", examples=["lstm", "mnist-lstm", "vae2"])]
VERSION_HELP = (
    "Version number (as /v1/models lists it), store tag or label (stable, canary); default: the stable label if set, else the newest served"
)
VersionQuery = Annotated[str | None, Query(description=VERSION_HELP)]
ModelQuery = Annotated[str | None, Query(description="model name; a body may name it instead (not both, unless equal)")]
PNG_OR_JSON: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}, "application/json": {}}}}

# Per row: values and JSON arrays a request may need (an image is 28 x 28 = 784 values in 29 arrays;
# a latent point is one array of latent_dim <= LATENT_VALUES values); the slack covers the other fields.
IMAGE_VALUES, IMAGE_ARRAYS, LATENT_VALUES, JSON_SLACK = 28 * 28, 29, 1024, 64


def image_counts(rows: int) -> tuple[int, int, str]:
    """What a JSON body of images may hold before it is parsed (see JSON_OVERSIZE)."""
    n = rows * JSON_OVERSIZE
    return n * IMAGE_VALUES + JSON_SLACK, n * IMAGE_ARRAYS + JSON_SLACK, f"{rows} images (with room to spare)"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses its JSON itself (see :func:`parse_json`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def pixels_json(obj: Any, what: str = "images") -> Tensor:
    """JSON pixels: all integers are UINT8 (0..255), any float makes them FP32 (in [0, 1])."""
    arr = codec.numbers_from_json(obj, what, np.int64, np.float32)
    return Tensor.of(arr, datatype="UINT8" if arr.dtype.kind in "iu" else "FP32")


def floats_json(obj: Any, what: str) -> Tensor:
    """JSON numbers (latent points) as FP32."""
    return Tensor.of(codec.numbers_from_json(obj, what, np.float32, np.float32))


def npy_tensor(body: bytes, max_bytes: int) -> Tensor:
    """A raw ``.npy`` body as a tensor of its own dtype (uint8 pixels, float32 pixels or points; others are refused)."""
    return Tensor.of(codec.npy_to_array(body, max_bytes))


async def read_upload(request: Request) -> tuple[bytes, FormData]:
    """A multipart body's picture (the file in the field ``image``) and the whole form."""
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException as e:
        raise InvalidInput(f"the multipart body cannot be read ({e.detail}); send one file in the field 'image'") from None
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("the multipart body needs a file in the field 'image'")
    return await upload.read(), form


async def upload_tensor(data: bytes, max_pixels: int, garment: bool = False) -> Tensor:
    """An uploaded picture, MNIST-style (or Fashion-MNIST-style for ``garment``), as one FP32 row."""

    def preprocess() -> np.ndarray:
        picture = images.decode_image(data, max_pixels)
        return images.fashion_preprocess(picture) if garment else images.mnist_preprocess(picture)

    return Tensor.of((await asyncio.to_thread(preprocess))[None])


def csv(raw: str | None, kind: type, what: str) -> list[Any] | None:
    if raw is None:
        return None
    try:
        return [kind(part) for part in raw.split(",")]
    except ValueError as e:
        raise InvalidInput(f"{what} must be comma-separated {kind.__name__}s, got {raw[:100]!r}") from e


def model_headers(rt: ModelRuntime) -> dict[str, str]:
    return {"X-Model": rt.public_name, "X-Model-Version": rt.version}


def png(picture: bytes, rt: ModelRuntime, **headers: str) -> Response:
    return Response(picture, media_type="image/png", headers={**model_headers(rt), **headers})


def images_answer(rt: ModelRuntime, pixels: np.ndarray, fmt: str) -> Response:
    """Decoded images as one PNG (one image, or a grid) or as JSON arrays."""
    if fmt == "array":
        return JSON({"model": rt.public_name, "version": rt.version, "images": pixels})
    return png(images.to_png(pixels[0] if len(pixels) == 1 else images.tile(pixels)), rt)
