"""``/v1/generate``: decode latent points, sample, draw the latent manifold. It only translates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.core.notebook import Notebook
from serving.core.request import one_of, version_text
from serving.transport.http import plane, read_json, until_disconnect

from .common import (
    JSON_SLACK,
    LATENT_VALUES,
    PNG_OR_JSON,
    VERSION_HELP,
    ModelQuery,
    VersionQuery,
    csv,
    floats_json,
    images_answer,
    json_body,
    png,
)

router = APIRouter()


class GenerateRequest(BaseModel):
    z: Any = Field(description="Latent points: N x latent_dim (or one point)", examples=[[[1.4, -1.3]]])
    model: str | None = Field(default=None, description="Generator name (vae2, vae4); default vae2")
    version: str | int | None = Field(default=None, description=VERSION_HELP)
    format: Literal["png", "array"] = Field(default="png", description="png: one image or a grid; array: JSON pixels")


class SampleRequest(BaseModel):
    n: int = Field(default=16, description="How many images")
    seed: int = Field(default=0, ge=0, description="z = numpy default_rng(seed).standard_normal((n, latent))")
    model: str | None = None
    version: str | int | None = Field(default=None, description=VERSION_HELP)
    format: Literal["png", "array"] = "png"


@router.post(
    "/generate", summary="Decode latent points into 28x28 clothing images", responses=PNG_OR_JSON, openapi_extra=json_body(GenerateRequest)
)
async def generate(request: Request, model: ModelQuery = None, version: VersionQuery = None) -> Response:
    dataplane = plane(request)
    rows = dataplane.settings.max_generate_n
    body = await read_json(request, GenerateRequest, (rows * LATENT_VALUES + JSON_SLACK, rows + JSON_SLACK, f"{rows} latent points"))
    decoded = await until_disconnect(
        request,
        Notebook(dataplane).decode(
            one_of("model", model, body.model), version_text(one_of("version", version, body.version)), floats_json(body.z, "z")
        ),
    )
    return images_answer(decoded.model, decoded.images, body.format)


@router.post(
    "/generate/sample",
    summary="n images from z ~ N(0, I), reproducible by seed",
    responses=PNG_OR_JSON,
    openapi_extra=json_body(SampleRequest),
)
async def sample(request: Request, model: ModelQuery = None, version: VersionQuery = None) -> Response:
    body = await read_json(request, SampleRequest, (JSON_SLACK, JSON_SLACK, "a sample request"))
    work = Notebook(plane(request)).sample(
        one_of("model", model, body.model), version_text(one_of("version", version, body.version)), body.n, body.seed
    )
    decoded = await until_disconnect(request, work)
    return images_answer(decoded.model, decoded.images, body.format)


@router.get(
    "/generate/manifold",
    summary="The seed's latent manifold: n x n decoded grid as one PNG",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def manifold(
    request: Request,
    model: str | None = None,
    n: Annotated[int, Query(description="grid side")] = 30,
    scale: Annotated[float, Query(description="z range [-scale, scale], 0 < scale <= 100")] = 2.0,
    dims: Annotated[str | None, Query(description="the two varied latent dims, e.g. 2,3 (default 0,1)")] = None,
    fixed: Annotated[str | None, Query(description="values of every latent dim (varied ones ignored), e.g. 1,0,0,0")] = None,
    version: VersionQuery = None,
    axes: Annotated[bool, Query(description="frame the grid like the notebook: axis names, tick values, title (+72 x +76 px)")] = False,
) -> Response:
    picture = await Notebook(plane(request)).manifold(model, version, n, scale, csv(dims, int, "dims"), csv(fixed, float, "fixed"), axes)
    return png(picture.png, picture.model, **{"X-Cache": "hit" if picture.cached else "miss"})
