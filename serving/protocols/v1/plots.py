"""``/v1/plots``: the notebooks' figures as PNG, drawn from what training recorded with each model.

The label clusters come from the test-set latent means stored with a VAE's encoder, the confusion
matrix from the test-set counts stored with a classifier (or the ensemble); nothing is recomputed
and no TensorFlow or matplotlib runs (``serving.core.plots`` draws with Pillow). Each PNG is drawn
once per model version and cached by the engine.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from serving.core.notebook import Notebook
from serving.transport.http import plane

from .common import VersionQuery, csv, png

router = APIRouter()
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


@router.get(
    "/plots/clusters",
    summary="The label clusters of the Fashion-MNIST test set in a 2-D plane of a VAE's latent space (PNG, 720 x 560)",
    response_class=Response,
    responses=PNG,
)
async def clusters(
    request: Request,
    model: Annotated[str | None, Query(description="vae2 or vae4 (default vae2)")] = None,
    dims: Annotated[str | None, Query(description="the two latent dims on x and y, e.g. 2,3 (default 0,1)")] = None,
) -> Response:
    picture = await Notebook(plane(request)).clusters(model, csv(dims, int, "dims"))
    return png(picture.png, picture.model)


@router.get(
    "/plots/confusion",
    summary="A classifier's (or the ensemble's) confusion matrix on the MNIST test split (PNG, 480 x 492)",
    response_class=Response,
    responses=PNG,
)
async def confusion(
    request: Request,
    model: Annotated[str | None, Query(description="classifier name or 'ensemble' (default: the default classifier)")] = None,
    version: VersionQuery = None,
) -> Response:
    picture = await Notebook(plane(request)).confusion(model, version)
    return png(picture.png, picture.model)
