"""``/v1/plots``: the notebooks' figures as PNG, drawn from what training recorded with each model.

The label clusters come from the test-set latent means stored with a VAE's encoder, the confusion
matrix from the test-set counts stored with a classifier (or the ensemble); nothing is recomputed
and no TensorFlow or matplotlib runs here (``serving.plots`` draws with Pillow). Each PNG is
drawn once per model version and cached by the engine.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from contract.errors import InvalidInput
from serving.core import plots

from .app import VersionQuery, _csv, _model_headers, current_engine
from .vae import encoder_for

router = APIRouter()
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


@router.get(
    "/plots/clusters",
    summary="The label clusters of the Fashion-MNIST test set in a 2-D plane of a VAE's latent space (PNG, 720 x 560)",
    response_class=Response,
    responses=PNG,
)
async def clusters(
    model: Annotated[str | None, Query(description="vae2 or vae4 (default vae2)")] = None,
    dims: Annotated[str | None, Query(description="the two latent dims on x and y, e.g. 2,3 (default 0,1)")] = None,
) -> Response:
    engine = current_engine()
    encoder = encoder_for(engine, model)
    evaluation = encoder.evaluation()
    latent = int(encoder.signature["latent_dim"])
    picked = _csv(dims, int, "dims") if dims else [0, 1]
    if len(picked) != 2 or picked[0] == picked[1] or not all(0 <= d < latent for d in picked):
        raise InvalidInput(f"dims must be two distinct indices in 0..{latent - 1}, got {dims!r}")
    d0, d1 = picked

    def draw() -> bytes:
        z_mean, y = np.asarray(evaluation["z_mean"], dtype=np.float32), np.asarray(evaluation["y"])
        title = f"{encoder.public_name}: test-set z_mean by class ({len(y)} images)"
        return plots.clusters(z_mean, y, evaluation["labels"], (d0, d1), title)

    png = await engine.plot(encoder, ("clusters", d0, d1), draw)
    return Response(png, media_type="image/png", headers=_model_headers(encoder))


@router.get(
    "/plots/confusion",
    summary="A classifier's (or the ensemble's) confusion matrix on the MNIST test split (PNG, 480 x 492)",
    response_class=Response,
    responses=PNG,
)
async def confusion(
    model: Annotated[str | None, Query(description="classifier name or 'ensemble' (default: the default classifier)")] = None,
    version: VersionQuery = None,
) -> Response:
    engine = current_engine()
    rt = engine.model("classification", model, version)
    evaluation = rt.evaluation()

    def draw() -> bytes:
        title = f"{rt.public_name}: test accuracy {evaluation['test_accuracy']:.4f} ({evaluation['test_size']} images)"
        return plots.confusion(np.asarray(evaluation["confusion_matrix"]), evaluation["labels"], title)

    png = await engine.plot(rt, ("confusion",), draw)
    return Response(png, media_type="image/png", headers=_model_headers(rt))
