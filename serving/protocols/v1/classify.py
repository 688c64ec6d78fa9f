"""``/v1/classify``: digits as JSON, as an uploaded picture, or in bulk as ``.npy``. It only translates."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from contract.errors import InvalidInput
from serving.core.kinds import Classifier
from serving.core.request import InferRequest, InferResponse, Tensor, one_of, version_text
from serving.core.trace import Front
from serving.protocols import codec
from serving.transport.http import JSON, MULTIPART_TYPE, NPY_TYPE, body_type, plane, read_json, until_disconnect

from .common import (
    VERSION_HELP,
    ModelQuery,
    VersionQuery,
    image_counts,
    json_body,
    model_headers,
    npy_tensor,
    pixels_json,
    read_upload,
    upload_tensor,
)

router = APIRouter()
MembersQuery = Annotated[bool, Query(description="with model=ensemble: also every member's answer")]


class ClassifyRequest(BaseModel):
    images: Any = Field(
        description="N x 28 x 28 pixels (or one 28 x 28 image). All-integer arrays are read as 0..255; "
        "arrays with any float are read as [0, 1].",
        examples=[[[[0] * 28] * 28]],
    )
    model: str | None = Field(
        default=None,
        description="Classifier name, or 'ensemble' (the mean of the seven); default: the best single classifier by stored test accuracy",
    )
    version: str | int | None = Field(default=None, description=VERSION_HELP)
    members: bool = Field(default=False, description="with model=ensemble: also every member's answer per image")


class MemberPrediction(BaseModel):
    label: int
    probabilities: list[float]


class Prediction(BaseModel):
    label: int = Field(description="the most probable digit (given even when digit is false)")
    probabilities: list[float] = Field(description="the model's own softmax over 0..9")
    confidence: float = Field(description="the calibrated probability of label (temperature fitted on held-out images)")
    digit: bool = Field(description="false when the input is not a digit to read: see reason")
    reason: str | None = Field(
        default=None, description="why digit is false: blank, uniform, not-a-digit or low-confidence; null for a digit"
    )
    detail: str | None = Field(default=None, description="the reason in a sentence; null for a digit")
    members: dict[str, MemberPrediction] | None = Field(
        default=None, description="model=ensemble with members=true: each classifier's own answer, by name"
    )


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


def classification(answer: InferResponse) -> Response:
    rt = answer.model
    verdict = answer.verdict
    assert verdict is not None  # every output is asked for: the data plane judged each image
    predictions = [
        {
            "label": int(p.argmax()),
            "probabilities": p,
            "confidence": round(float(verdict.confidence[i]), 6),
            "digit": bool(verdict.digit[i]),
            "reason": verdict.reason[i] or None,
            "detail": verdict.detail[i] or None,
        }
        for i, p in enumerate(answer.outputs[rt.output_names[0]])
    ]
    if answer.members is not None:
        for i, prediction in enumerate(predictions):
            prediction["members"] = {
                name: {"label": int(probs[i].argmax()), "probabilities": probs[i]} for name, probs in answer.members.items()
            }
    return JSON({"model": rt.public_name, "version": rt.version, "predictions": predictions})


async def answer(request: Request, infer: InferRequest, front: Front | None) -> Response:
    response = classification(await until_disconnect(request, plane(request).infer(infer, front)))
    if front is not None:  # the trace extension's response phase ends with the encoded answer
        front.finish()
    return response


@router.post(
    "/classify", response_model=ClassifyResponse, summary="Classify N 28x28 digit images (JSON)", openapi_extra=json_body(ClassifyRequest)
)
async def classify(request: Request, model: ModelQuery = None, version: VersionQuery = None) -> Response:
    dataplane = plane(request)
    front = dataplane.tracer.front("v1")  # None unless the trace extension is on
    body = await read_json(request, ClassifyRequest, image_counts(dataplane.settings.max_images_per_request))
    infer = InferRequest(
        [pixels_json(body.images)],
        one_of("model", model, body.model),
        version_text(one_of("version", version, body.version)),
        Classifier,
        members=body.members,
        verdict=True,
    )
    return await answer(request, infer, front)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "PNG/JPEG/...; dark-on-light or light-on-dark"},
                        "model": {
                            "type": "string",
                            "description": "Classifier name, or 'ensemble' (or ?model=; not both, unless equal)",
                            "examples": ["lstm"],
                        },
                    },
                    "required": ["image"],
                }
            }
        },
    }
}


@router.post(
    "/classify/image",
    response_model=ClassifyResponse,
    summary="Classify one uploaded image (PNG/JPEG, any size)",
    openapi_extra=UPLOAD_BODY,
)
async def classify_image(
    request: Request,
    model: Annotated[str | None, Query(description="Classifier name, or 'ensemble'")] = None,
    version: VersionQuery = None,
    members: MembersQuery = False,
) -> Response:
    front = plane(request).tracer.front("v1")  # None unless the trace extension is on
    body_type(request, (MULTIPART_TYPE,))
    picture, form = await read_upload(request)
    model_form = form.get("model")
    if model_form is not None and not isinstance(model_form, str):
        raise InvalidInput("the multipart field 'model' must be text, not a file")
    pixels = await upload_tensor(picture, plane(request).settings.max_image_pixels)
    return await answer(
        request, InferRequest([pixels], one_of("model", model, model_form), version, Classifier, members=members, verdict=True), front
    )


@router.post(
    "/classify/batch",
    summary="Bulk classification: body is a .npy array N x 28 x 28 (uint8 0..255 or float32 0..1); answer .npy N x 10",
    description="With model=ensemble&members=true the answer is an .npz archive: `probabilities` (the ensemble's) "
    "and one N x 10 array per member, by name.",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}, "application/x-npz": {}}}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                NPY_TYPE: {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "the output of numpy.save: N x 28 x 28, uint8 0..255 or float32 0..1 "
                        "(application/x-npy is read as this type too)",
                    }
                }
            },
        }
    },
)
async def classify_batch(
    request: Request, model: ModelQuery = None, members: MembersQuery = False, version: VersionQuery = None
) -> Response:
    dataplane = plane(request)
    front = dataplane.tracer.front("v1")  # None unless the trace extension is on
    body = await request.body()
    body_type(request, (NPY_TYPE,), body)
    tensor: Tensor = npy_tensor(body, dataplane.settings.max_body_bytes)
    result = await dataplane.infer(InferRequest([tensor], model, version, Classifier, members=members, bulk=True), front)
    if front is not None:  # the .npy answer is made below; its encoding is not timed
        front.finish()
    rt = result.model
    probs: np.ndarray = result.outputs[rt.output_names[0]]
    if result.members is not None:
        archive = codec.arrays_to_npz({"probabilities": probs, **result.members})
        return Response(archive, media_type="application/x-npz", headers=model_headers(rt))
    return Response(codec.array_to_npy(probs), media_type="application/octet-stream", headers=model_headers(rt))
