"""The public HTTP API (``/v1``): a FastAPI app mounted on the BentoML service; it only translates.

Routes parse and validate their bodies (JSON, multipart, raw ``.npy``) against the model's
``signature.json`` before anything is queued, await the worker's engine, and encode the answer.
Single requests go through the engine's per-model batcher (shared with gRPC); a client that
disconnects while its request is queued takes it out of the queue. Every error has one shape:
``{"error": message, "type": class}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, Literal, TypeVar

import bentoml
import numpy as np
import orjson
from fastapi import FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from contract import images
from contract.errors import (
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    error_body,
    http_status,
)
from serving.core.engine import Engine
from serving.core.lifecycle import Lifecycle
from serving.core.runtime import EnsembleRuntime, ModelRuntime
from serving.protocols import codec

logger = logging.getLogger("serving.http")

T = TypeVar("T")
PNG_OR_JSON: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}, "application/json": {}}}}
RETRY_AFTER_S = "1"

api = FastAPI(
    title="Digits & clothes inference API",
    description="Digit classification (RNNs on MNIST) and clothing generation (Fashion-MNIST VAE) on ONNX Runtime.",
    version="1.0",
)


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
    version: str | None = Field(
        default=None,
        description="Version number, store tag or label (stable, canary); default: the stable label if set, else the newest served",
    )
    members: bool = Field(default=False, description="with model=ensemble: also every member's answer per image")


class MemberPrediction(BaseModel):
    label: int
    probabilities: list[float]


class Prediction(BaseModel):
    label: int
    probabilities: list[float]
    members: dict[str, MemberPrediction] | None = Field(
        default=None, description="model=ensemble with members=true: each classifier's own answer, by name"
    )


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


class GenerateRequest(BaseModel):
    z: Any = Field(description="Latent points: N x latent_dim (or one point)", examples=[[[1.4, -1.3]]])
    model: str | None = Field(default=None, description="Generator name (vae2, vae4); default vae2")
    version: str | None = Field(
        default=None,
        description="Version number, store tag or label (stable, canary); default: the stable label if set, else the newest served",
    )
    format: Literal["png", "array"] = Field(default="png", description="png: one image or a grid; array: JSON pixels")


class SampleRequest(BaseModel):
    n: int = Field(default=16, ge=1, description="How many images")
    seed: int = Field(default=0, ge=0, description="z = numpy default_rng(seed).standard_normal((n, latent))")
    model: str | None = None
    version: str | None = Field(
        default=None,
        description="Version number, store tag or label (stable, canary); default: the stable label if set, else the newest served",
    )
    format: Literal["png", "array"] = "png"


class ImagesResponse(BaseModel):
    model: str
    version: str
    images: list[list[list[float]]]


def current_engine() -> Engine:
    svc = bentoml.get_current_service()
    if svc is None:
        raise NotReady("service is starting")
    return svc.engine  # type: ignore[no-any-return]


class JSON(Response):
    """orjson-encoded JSON (numpy-aware, several times faster than the stdlib for probability lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


@api.exception_handler(ServingError)
async def _serving_error(_: Request, exc: ServingError) -> Response:
    status = http_status(exc)
    if status >= 500 and not isinstance(exc, (NotReady, Overloaded)):
        logger.error("request failed", exc_info=exc)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return JSON(error_body(exc), status_code=status, headers=headers)


def invalid_request(errors: Any) -> InvalidInput:
    """pydantic's error list (FastAPI's query/form validation or our JSON bodies) as one InvalidInput."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    return InvalidInput(f"invalid request: {problems}")


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return await _serving_error(request, invalid_request(exc.errors()))


def http_exception_error(exc: HTTPException, method: str, path: str) -> ServingError:
    """Starlette's and FastAPI's own HTTPExceptions (405, multipart and body parsing) as our errors."""
    detail = exc.detail if isinstance(exc.detail, str) else "the request is not acceptable"
    if exc.status_code == 404:
        return NotFound(f"no route {method} {path[:200]}; see /docs.json")
    if exc.status_code == 405:
        return MethodNotAllowed(f"{path[:200]} does not take {method}; see /docs.json")
    if exc.status_code == 413:
        return PayloadTooLarge(detail)
    if 400 <= exc.status_code < 500:
        return InvalidInput(f"the request could not be read: {detail}")
    return ServingError(detail)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> Response:
    return await _serving_error(request, http_exception_error(exc, request.method, request.url.path))


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> Response:
    logger.exception("unexpected error", exc_info=exc)
    return JSON(error_body(exc), status_code=500)


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, cancelling it (and so taking it out of its batcher's queue) if the client goes away."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise NotReady("the client disconnected")
    return task.result()


M = TypeVar("M", bound=BaseModel)
# The model name in a path, with examples so generated tests (Schemathesis) reach real models too.
ModelName = Annotated[str, Path(description="public name (lstm, vae2) or store name (mnist-lstm)", examples=["lstm", "mnist-lstm", "vae2"])]
VersionQuery = Annotated[
    str | None,
    Query(description="Version number, store tag or label (stable, canary); default: the stable label if set, else the newest served"),
]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses its JSON itself (see :func:`parse_json`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


# Per row: values and JSON arrays a request may need (an image is 28 x 28 = 784 values in 29 arrays;
# a latent point is one array of latent_dim <= LATENT_VALUES values); the slack covers the other fields.
IMAGE_VALUES, IMAGE_ARRAYS, LATENT_VALUES, JSON_SLACK = 28 * 28, 29, 1024, 64


async def parse_json(request: Request, model: type[M], counts: tuple[int, int, str] | None = None) -> M:
    """The body as ``model``: orjson (3-4x the stdlib's speed on pixel arrays), then pydantic for the fields.
    ``counts``: (most values, most arrays, what that allows) checked before parsing."""
    body = await request.body()
    if counts is not None:
        codec.check_json_counts(body, *counts)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses NaN/Infinity, which the stdlib reads: parse again so validation can say
        # "non-finite value at index ...", rather than "not JSON", about such a body.
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise InvalidInput(f"the body is not valid JSON ({str(e)[:200]}); send a JSON object") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request(e.errors()) from None


@api.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify N 28x28 digit images (JSON)",
    openapi_extra=json_body(ClassifyRequest),
)
async def classify(request: Request) -> Response:
    engine = current_engine()
    rows = engine.settings.max_images_per_request
    body = await parse_json(
        request, ClassifyRequest, (rows * IMAGE_VALUES + JSON_SLACK, rows * IMAGE_ARRAYS + JSON_SLACK, f"{rows} images")
    )
    rt = engine.model("classification", body.model, body.version)
    pixels = codec.pixels_from_json(body.images)
    if pixels.ndim == 2:
        pixels = pixels[None]
    codec.check_rows(pixels, engine.settings.max_images_per_request, "images")
    batch = codec.validate_array(pixels, rt.input_spec, "images")
    return await _classify_rows(request, engine, rt, batch, body.members)


async def _classify_rows(request: Request, engine: Engine, rt: ModelRuntime, batch: np.ndarray, members: bool) -> Response:
    if not members:
        (probs,) = await until_disconnect(request, engine.infer(rt, batch))
        return _classification(rt, probs)
    probs, answers = await until_disconnect(request, engine.infer_members(_ensemble(rt), batch))
    return _classification(rt, probs, answers)


def _ensemble(rt: ModelRuntime) -> EnsembleRuntime:
    if not isinstance(rt, EnsembleRuntime):
        raise InvalidInput(f"members=true asks for each member's answer; it needs model=ensemble, not {rt.public_name!r}")
    return rt


@api.post("/classify/image", response_model=ClassifyResponse, summary="Classify one uploaded image (PNG/JPEG, any size)")
async def classify_image(
    request: Request,
    image: Annotated[UploadFile, File(description="PNG/JPEG/...; dark-on-light or light-on-dark")],
    model: Annotated[str | None, Query(description="Classifier name, or 'ensemble'")] = None,
    model_form: Annotated[str | None, Form(alias="model")] = None,
    version: VersionQuery = None,
    members: Annotated[bool, Query(description="with model=ensemble: also every member's answer")] = False,
) -> Response:
    engine = current_engine()
    rt = engine.model("classification", model or model_form, version)
    data = await image.read()
    pixels = await asyncio.to_thread(_preprocess_upload, data, engine.settings.max_image_pixels)
    return await _classify_rows(request, engine, rt, pixels[None], members)


def _preprocess_upload(data: bytes, max_pixels: int) -> np.ndarray:
    return images.mnist_preprocess(images.decode_image(data, max_pixels))


@api.post(
    "/classify/batch",
    summary="Bulk classification: body is a .npy array N x 28 x 28 (uint8 0..255 or float32 0..1); answer .npy N x 10",
    description="With model=ensemble&members=true the answer is an .npz archive: `probabilities` (the ensemble's) "
    "and one N x 10 array per member, by name.",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}, "application/x-npz": {}}}},
)
async def classify_batch(
    request: Request,
    model: Annotated[str | None, Query()] = None,
    members: Annotated[bool, Query(description="with model=ensemble: .npz with every member's answer too")] = False,
    version: VersionQuery = None,
) -> Response:
    engine = current_engine()
    rt = engine.model("classification", model, version)
    body = await request.body()
    arr = codec.npy_to_array(body, engine.settings.max_body_bytes)
    if arr.ndim == 2:
        arr = arr[None]
    codec.check_rows(arr, engine.settings.max_bulk_images, "images")
    batch = codec.validate_array(codec.normalize_pixels(arr), rt.input_spec, "images")
    if members:
        probs, answers = await engine.infer_direct_members(_ensemble(rt), batch)
        archive = codec.arrays_to_npz({"probabilities": probs, **answers})
        return Response(archive, media_type="application/x-npz", headers=_model_headers(rt))
    probs = await engine.infer_direct(rt, batch)
    return Response(codec.array_to_npy(probs), media_type="application/octet-stream", headers=_model_headers(rt))


@api.post(
    "/generate",
    summary="Decode latent points into 28x28 clothing images",
    responses=PNG_OR_JSON,
    openapi_extra=json_body(GenerateRequest),
)
async def generate(request: Request) -> Response:
    engine = current_engine()
    rows = engine.settings.max_generate_n
    body = await parse_json(request, GenerateRequest, (rows * LATENT_VALUES + JSON_SLACK, rows + JSON_SLACK, f"{rows} latent points"))
    rt = engine.model("generation", body.model, body.version)
    z = codec.floats_from_json(body.z, "z")
    if z.ndim == 1:
        z = z[None]
    codec.check_rows(z, engine.settings.max_generate_n, "z")
    z = codec.validate_array(z, rt.input_spec, "z")
    (decoded,) = await until_disconnect(request, engine.infer(rt, z))
    return _images_response(rt, decoded, body.format)


@api.post(
    "/generate/sample",
    summary="n images from z ~ N(0, I), reproducible by seed",
    responses=PNG_OR_JSON,
    openapi_extra=json_body(SampleRequest),
)
async def sample(request: Request) -> Response:
    body = await parse_json(request, SampleRequest, (JSON_SLACK, JSON_SLACK, "a sample request"))
    engine = current_engine()
    rt = engine.model("generation", body.model, body.version)
    if body.n > engine.settings.max_generate_n:
        raise PayloadTooLarge(f"n must be at most {engine.settings.max_generate_n}, got {body.n}")
    z = images.sample_latent(body.n, rt.signature["latent_dim"], body.seed)
    (decoded,) = await until_disconnect(request, engine.infer(rt, z))
    return _images_response(rt, decoded, body.format)


@api.get(
    "/generate/manifold",
    summary="The seed's latent manifold: n x n decoded grid as one PNG",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def manifold(
    model: str | None = None,
    n: Annotated[int, Query(ge=1, description="grid side")] = 30,
    scale: Annotated[float, Query(gt=0, le=100, description="z range [-scale, scale]")] = 2.0,
    dims: Annotated[str | None, Query(description="the two varied latent dims, e.g. 2,3 (default 0,1)")] = None,
    fixed: Annotated[str | None, Query(description="values of every latent dim (varied ones ignored), e.g. 1,0,0,0")] = None,
    version: VersionQuery = None,
    axes: Annotated[bool, Query(description="frame the grid like the notebook: axis names, tick values, title (+72 x +76 px)")] = False,
) -> Response:
    engine = current_engine()
    rt = engine.model("generation", model, version)
    if n > engine.settings.max_manifold_n:
        raise PayloadTooLarge(f"n must be at most {engine.settings.max_manifold_n}, got {n}")
    png, hit = await engine.manifold(
        rt,
        n,
        float(scale),
        tuple(_csv(dims, int, "dims")) if dims else (0, 1),
        tuple(_csv(fixed, float, "fixed")) if fixed else None,
        axes,
    )
    return Response(png, media_type="image/png", headers={**_model_headers(rt), "X-Cache": "hit" if hit else "miss"})


@api.get("/models", summary="Every served model version: signatures, stored metrics, labels, provider; and what each worker serves")
async def models() -> Response:
    engine = current_engine()
    workers = engine.lifecycle.workers() if engine.lifecycle is not None else {}
    return JSON({"models": engine.describe_models(), "workers": workers})


@api.get("/models/{name}", summary="One model by public name (lstm, vae2) or store name (mnist-lstm): the version requests go to")
async def model_info(name: ModelName, version: VersionQuery = None) -> Response:
    engine = current_engine()
    # The registry's lookup: store name, else public name (vae2: the decoder), then version, tag or label.
    rt = engine.registry.find(name, version)
    entry = next(e for e in engine.describe_models() if (e["store_name"], e["version"]) == rt.key)
    served = sorted((v.version_number for v in engine.registry.versions_of(rt.store_name)), reverse=True)
    return JSON({**entry, "served_versions": served})


class LabelRequest(BaseModel):
    version: str = Field(description="The served version the label names: a version number or store tag")


@api.put("/models/{name}/labels/{label}", summary="Point a version label (stable, canary) at a served version; needs SERVING_MODEL_CONTROL")
async def put_label(name: ModelName, label: str, request: Request) -> Response:
    body = await parse_json(request, LabelRequest, (JSON_SLACK, JSON_SLACK, "a label request"))
    lifecycle = _lifecycle()
    await lifecycle.set_label(name, label, body.version)
    rt = current_engine().registry.find(name)
    return JSON({"model": rt.store_name, "labels": current_engine().registry.labels.get(rt.store_name, {})})


@api.delete("/models/{name}/labels/{label}", summary="Remove a version label; needs SERVING_MODEL_CONTROL")
async def delete_label(name: ModelName, label: str) -> Response:
    await _lifecycle().set_label(name, label, None)
    rt = current_engine().registry.find(name)
    return JSON({"model": rt.store_name, "labels": current_engine().registry.labels.get(rt.store_name, {})})


def _lifecycle() -> Lifecycle:
    lifecycle = current_engine().lifecycle
    if lifecycle is None:
        raise Forbidden("this server has a fixed set of models; there is no model control")
    return lifecycle


def _csv(raw: str, kind: type, what: str) -> list[Any]:
    try:
        return [kind(part) for part in raw.split(",")]
    except ValueError as e:
        raise InvalidInput(f"{what} must be comma-separated {kind.__name__}s, got {raw[:100]!r}") from e


def _model_headers(rt: ModelRuntime) -> dict[str, str]:
    return {"X-Model": rt.public_name, "X-Model-Version": rt.version}


def _classification(rt: ModelRuntime, probs: np.ndarray, members: dict[str, np.ndarray] | None = None) -> Response:
    predictions = [{"label": int(p.argmax()), "probabilities": p} for p in probs]
    if members is not None:
        for i, prediction in enumerate(predictions):
            prediction["members"] = {
                name: {"label": int(answer[i].argmax()), "probabilities": answer[i]} for name, answer in members.items()
            }
    return JSON({"model": rt.public_name, "version": rt.version, "predictions": predictions})


def _images_response(rt: ModelRuntime, decoded: np.ndarray, fmt: str) -> Response:
    pixels = decoded.reshape(decoded.shape[0], *decoded.shape[1:3])
    if fmt == "array":
        return JSON({"model": rt.public_name, "version": rt.version, "images": pixels})
    picture = pixels[0] if len(pixels) == 1 else images.tile(pixels)
    return Response(images.to_png(picture), media_type="image/png", headers=_model_headers(rt))
