"""Open Inference Protocol (KServe v2 / Triton) over REST: a FastAPI app mounted at ``/v2``; it only translates.

Health, server and model metadata, Triton's model configuration, and ``infer`` with JSON
tensors or the binary tensor data extension as Triton implements it: a request body that
starts with ``Inference-Header-Content-Length`` bytes of JSON followed by the inputs'
raw bytes (``parameters.binary_data_size`` each, in input order), and outputs returned the
same way when ``binary_data_output`` (or an output's ``binary_data``) asks for it.
Errors are the protocol's ``{"error": message}`` with the service's status table.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from contract.errors import Forbidden, InvalidInput, ServingError, error_message, http_status
from serving.core.engine import Engine
from serving.core.lifecycle import Lifecycle
from serving.core.runtime import ModelRuntime
from serving.protocols import codec
from serving.protocols.v1.app import JSON, JSON_SLACK, RETRY_AFTER_S, current_engine, invalid_request, until_disconnect

from . import common as v2

logger = logging.getLogger("serving.v2")

HEADER_LENGTH = "inference-header-content-length"
# The model name in a path, with examples so generated tests (Schemathesis) reach real models too.
ModelName = Annotated[str, Path(description="store name (mnist-lstm) or public name (lstm, vae2)", examples=["mnist-lstm", "lstm", "vae2"])]

api = FastAPI(
    title="Open Inference Protocol (KServe v2)",
    description="Triton/KServe-compatible inference: JSON tensors and the binary tensor data extension.",
    version="2",
)


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


def _error(exc: BaseException) -> Response:
    status = http_status(exc)
    if status >= 500 and not isinstance(exc, ServingError):
        logger.error("v2 request failed", exc_info=exc)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return JSON({"error": error_message(exc)}, status_code=status, headers=headers)


@api.exception_handler(ServingError)
async def _serving_error(_: Request, exc: ServingError) -> Response:
    return _error(exc)


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    return _error(invalid_request(exc.errors()))


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSON({"error": f"{exc.detail}: {request.method} {request.url.path[:200]}"}, status_code=exc.status_code)


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> Response:
    logger.exception("unexpected error", exc_info=exc)
    return _error(exc)


# ---------------------------------------------------------------- health and metadata


@api.get("", include_in_schema=False)
@api.get("/", summary="Server metadata: name, version, extensions")
async def server_metadata() -> Response:
    return JSON(v2.server_metadata())


@api.get("/health/live", summary="Liveness: 200 while the process serves HTTP")
async def live() -> Response:
    return JSON({"live": True})


@api.get("/health/ready", summary="Readiness: 200 when every model is loaded and warm, 503 otherwise")
async def ready() -> Response:
    engine = current_engine()
    if not engine.ready:
        return JSON(
            {"ready": False, "error": "not ready: models loading or the server draining"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return JSON({"ready": True})


def _model(name: str, version: str | None) -> tuple[Engine, ModelRuntime]:
    engine = current_engine()
    return engine, v2.find_model(engine, name, version)


@api.get("/models/{name}", summary="Model metadata: versions, platform, input and output tensors")
@api.get("/models/{name}/versions/{version}", summary="Model metadata of one version")
async def model_metadata(name: ModelName, version: str | None = None) -> Response:
    return JSON(v2.model_metadata(*_model(name, version)))


@api.get("/models/{name}/ready", summary="Model readiness: 200 when ready")
@api.get("/models/{name}/versions/{version}/ready", summary="Readiness of one version")
async def model_ready(name: ModelName, version: str | None = None) -> Response:
    rt = _model(name, version)[1]
    return JSON({"name": rt.store_name, "ready": True})


@api.get("/models/{name}/config", summary="Triton model configuration (JSON), as perf_analyzer reads it")
@api.get("/models/{name}/versions/{version}/config", summary="Triton model configuration of one version")
async def model_config(name: ModelName, version: str | None = None) -> Response:
    engine, rt = _model(name, version)
    return JSON(v2.model_config(engine, rt))


# ---------------------------------------------------------------- model repository (Triton's extension)


class RepositoryRequest(BaseModel):
    parameters: dict[str, Any] | None = None


def _lifecycle(engine: Engine) -> Lifecycle:
    if engine.lifecycle is None:
        raise Forbidden("this server has a fixed set of models; there is no model repository control")
    return engine.lifecycle


async def _version_parameter(request: Request) -> str:
    """``parameters.version`` of a load/unload body (our extension: one version); an empty body is fine.
    Parsed here rather than by FastAPI: Triton's clients send JSON without a JSON content type."""
    raw = await request.body()
    try:
        body = RepositoryRequest.model_validate(orjson.loads(raw)) if raw.strip() else RepositoryRequest()
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the request is not valid JSON ({str(e)[:200]})") from None
    except ValidationError as e:
        raise invalid_request(e.errors()) from None
    version = (body.parameters or {}).get("version", "")
    if not isinstance(version, (str, int)) or isinstance(version, bool):
        raise InvalidInput("parameters.version must be a version number or tag")
    return str(version)


@api.post("/repository/index", summary="Every stored model version and its state here: READY, LOADING or UNAVAILABLE (why)")
async def repository_index() -> Response:
    return JSON(_lifecycle(current_engine()).repository_index())


@api.post(
    "/repository/models/{name}/load",
    summary="Serve a model (parameters.version: one version) now, on every worker; needs SERVING_MODEL_CONTROL",
)
async def repository_load(name: ModelName, request: Request) -> Response:
    await _lifecycle(current_engine()).load(name, await _version_parameter(request))
    return JSON({})


@api.post(
    "/repository/models/{name}/unload",
    summary="Stop serving a model (parameters.version: one version), on every worker; needs SERVING_MODEL_CONTROL",
)
async def repository_unload(name: ModelName, request: Request) -> Response:
    await _lifecycle(current_engine()).unload(name, await _version_parameter(request))
    return JSON({})


# ---------------------------------------------------------------- infer

_INFER_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferenceRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": "binary tensor data extension: JSON header + raw tensors"}
            },
        },
    }
}


@api.post("/models/{name}/infer", summary="Inference (JSON tensors or binary tensor data)", openapi_extra=_INFER_DOC)
@api.post("/models/{name}/versions/{version}/infer", summary="Inference on one version", openapi_extra=_INFER_DOC)
async def infer(request: Request, name: ModelName, version: str | None = None) -> Response:
    engine, rt = _model(name, version)
    body = await request.body()
    header, binary = _split_body(body, request.headers.get(HEADER_LENGTH))
    limit = v2.row_limit(engine, rt)
    per_row = math.prod(rt.row_shape)
    codec.check_json_counts(
        header, limit * per_row + JSON_SLACK, limit * (1 + rt.row_shape[0]) + JSON_SLACK, f"{limit} rows of {rt.store_name}"
    )
    try:
        req = InferenceRequest.model_validate(orjson.loads(header))
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the inference request is not valid JSON ({str(e)[:200]})") from None
    except ValidationError as e:
        raise invalid_request(e.errors()) from None
    if len(req.inputs) != 1:
        raise InvalidInput(f"model {rt.store_name} takes one input {rt.input_spec['name']!r}, got {len(req.inputs)}")
    (tensor,) = req.inputs
    dtype, shape = v2.check_input_header(engine, rt, tensor.name, tensor.datatype, tensor.shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size must be a non-negative integer")
        if size != len(binary):
            raise InvalidInput(f"input {tensor.name!r} declares binary_data_size {size}, but {len(binary)} bytes follow the JSON header")
        arr = v2.array_from_bytes(tensor.name, dtype, shape, binary)
    else:
        if binary:
            raise InvalidInput(f"{len(binary)} bytes follow the JSON header, but no input declares binary_data_size")
        arr = v2.array_from_json(tensor.name, dtype, shape, tensor.data)
    rows = v2.to_rows(rt, tensor.name, arr)
    outputs = v2.check_outputs(rt, [_requested(o) for o in req.outputs] if req.outputs else None)
    arrays = await until_disconnect(request, v2.infer(engine, rt, rows))
    return _response(rt, req, outputs, arrays)


def _split_body(body: bytes, declared: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request, by the ``Inference-Header-Content-Length`` header."""
    if declared is None:
        return body, b""
    if not declared.strip().isdigit():
        raise InvalidInput(f"Inference-Header-Content-Length must be a byte count, got {declared[:40]!r}")
    length = int(declared)
    if length > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {length}, but the body has only {len(body)} bytes")
    return body[:length], body[length:]


def _requested(out: RequestOutput) -> v2.Output:
    params = out.parameters or {}
    classes = params.get("classification", 0)
    binary = params.get("binary_data")
    if not isinstance(classes, int) or isinstance(classes, bool):
        raise InvalidInput(f"output {out.name!r}: classification must be an integer count of classes")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInput(f"output {out.name!r}: binary_data must be true or false")
    return v2.Output(out.name, classes, binary)


def _response(rt: ModelRuntime, req: InferenceRequest, outputs: list[v2.Output], arrays: dict[str, Any]) -> Response:
    default_binary = bool((req.parameters or {}).get("binary_data_output", False))
    entries, tails = [], []
    for out in outputs:
        datatype, arr = v2.output_array(rt, out, arrays)
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(arr.shape)}
        if default_binary if out.binary is None else out.binary:
            raw = v2.raw_bytes(datatype, arr)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
        else:
            entry["data"] = [b.decode() for b in arr.ravel()] if datatype == v2.BYTES else arr.ravel()
        entries.append(entry)
    body: dict[str, Any] = {"model_name": rt.store_name, "model_version": str(rt.version_number), "outputs": entries}
    if req.id is not None:
        body["id"] = req.id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tails:
        return Response(header, media_type="application/json")
    return Response(
        b"".join([header, *tails]),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
