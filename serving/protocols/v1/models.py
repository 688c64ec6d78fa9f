"""``/v1/models``: what is served (every version, signatures, metrics, labels, provider) and the version labels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from serving.core.request import version_text
from serving.transport.http import JSON, plane, read_json

from .common import JSON_SLACK, ModelName, VersionQuery

router = APIRouter()


@router.get("/models", summary="Every served model version: signatures, stored metrics, labels, provider; and what each worker serves")
async def models(request: Request) -> Response:
    dataplane = plane(request)
    workers = dataplane.lifecycle.workers() if dataplane.lifecycle is not None else {}
    return JSON({"models": dataplane.engine.describe_models(), "workers": workers})


@router.get("/models/{name}", summary="One model by public name (lstm, vae2) or store name (mnist-lstm): the version requests go to")
async def model_info(request: Request, name: ModelName, version: VersionQuery = None) -> Response:
    dataplane = plane(request)
    engine = dataplane.engine
    rt = dataplane.model(name, version)
    entry = next(e for e in engine.describe_models() if (e["store_name"], e["version"]) == rt.key)
    served = sorted((v.version_number for v in engine.registry.versions_of(rt.store_name)), reverse=True)
    return JSON({**entry, "served_versions": served})


class LabelRequest(BaseModel):
    version: str | int = Field(description="The served version the label names: a version number or store tag")


def _labels(request: Request, name: str) -> Response:
    dataplane = plane(request)
    rt = dataplane.model(name)
    return JSON({"model": rt.store_name, "labels": dataplane.engine.registry.labels.get(rt.store_name, {})})


@router.put(
    "/models/{name}/labels/{label}", summary="Point a version label (stable, canary) at a served version; needs SERVING_MODEL_CONTROL"
)
async def put_label(name: ModelName, label: str, request: Request) -> Response:
    control = plane(request).control(change=True)  # 403 while it is off, whatever the body
    body = await read_json(request, LabelRequest, (JSON_SLACK, JSON_SLACK, "a label request"))
    await control.set_label(name, label, version_text(body.version))
    return _labels(request, name)


@router.delete("/models/{name}/labels/{label}", summary="Remove a version label; needs SERVING_MODEL_CONTROL")
async def delete_label(request: Request, name: ModelName, label: str) -> Response:
    await plane(request).control(change=True).set_label(name, label, None)
    return _labels(request, name)
