"""Open Inference Protocol (KServe v2 / Triton) over REST: a FastAPI app mounted at ``/v2``; it only translates.

Health, server and model metadata, Triton's model configuration, and ``infer`` with JSON
tensors or the binary tensor data extension as Triton implements it: a request body that
starts with ``Inference-Header-Content-Length`` bytes of JSON followed by the inputs'
raw bytes (``parameters.binary_data_size`` each, in input order), and outputs returned the
same way when ``binary_data_output`` (or an output's ``binary_data``) asks for it.
Triton's extensions: model repository, statistics, system shared memory, trace settings
(``/trace/setting``) and log settings (``/logging``), each decided in the data plane.
Errors are the protocol's ``{"error": message}`` with the service's status table.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

import orjson
from fastapi import Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from contract.errors import InvalidInput, NotFound, Unimplemented, error_message
from serving.core.dataplane import DataPlane
from serving.core.request import BYTES, InferRequest, InferResponse, Output, datatype_of
from serving.core.runtime import ModelRuntime
from serving.transport.http import (
    JSON,
    JSON_OVERSIZE,
    JSON_TYPE,
    NPY_TYPE,
    RETRY_AFTER_S,
    body_type,
    check_json_counts,
    invalid_request,
    plane,
    protocol_app,
    read_json,
    until_disconnect,
)

from . import common as v2

logger = logging.getLogger("serving.v2")

HEADER_LENGTH = "inference-header-content-length"
# The model name in a path, with examples so generated tests (Schemathesis) reach real models too.
ModelName = Annotated[str, Path(description="store name (mnist-lstm) or public name (lstm, vae2)", examples=["mnist-lstm", "lstm", "vae2"])]

api = protocol_app(
    "Open Inference Protocol (KServe v2)",
    "Triton/KServe-compatible inference: JSON tensors and the binary tensor data extension.",
    "2",
    lambda exc: {"error": error_message(exc)},
)
JSON_SLACK = 64


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


# ---------------------------------------------------------------- health and metadata


@api.get("", include_in_schema=False)
@api.get("/", summary="Server metadata: name, version, extensions")
async def server_metadata() -> Response:
    return JSON(v2.server_metadata())


@api.get("/health/live", summary="Liveness: 200 while the process serves HTTP")
async def live() -> Response:
    return JSON({"live": True})


@api.get("/health/ready", summary="Readiness: 200 when every model is loaded and warm, 503 otherwise")
async def ready(request: Request) -> Response:
    if not plane(request).engine.ready:
        return JSON(
            {"ready": False, "error": "not ready: models loading or the server draining"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return JSON({"ready": True})


def _model(request: Request, name: str, version: str | None) -> ModelRuntime:
    return plane(request).model(name, version or None)


# Registered before /models/{name}, which would read "stats" as a model name.
@api.get("/models/stats", summary="Triton's statistics extension: every served model version")
@api.get("/models/{name}/stats", summary="Statistics of every served version of a model")
@api.get("/models/{name}/versions/{version}/stats", summary="Statistics of one version")
async def model_statistics(request: Request, name: str = "", version: str = "") -> Response:
    return JSON({"model_stats": plane(request).statistics(name or None, version or None)})


@api.get("/models/{name}", summary="Model metadata: versions, platform, input and output tensors")
@api.get("/models/{name}/versions/{version}", summary="Model metadata of one version")
async def model_metadata(request: Request, name: ModelName, version: str | None = None) -> Response:
    return JSON(v2.model_metadata(plane(request), _model(request, name, version)))


@api.get("/models/{name}/ready", summary="Model readiness: 200 when ready")
@api.get("/models/{name}/versions/{version}/ready", summary="Readiness of one version")
async def model_ready(request: Request, name: ModelName, version: str | None = None) -> Response:
    rt = _model(request, name, version)
    return JSON({"name": rt.store_name, "ready": True})


@api.get("/models/{name}/config", summary="Triton model configuration (JSON), as perf_analyzer reads it")
@api.get("/models/{name}/versions/{version}/config", summary="Triton model configuration of one version")
async def model_config(request: Request, name: ModelName, version: str | None = None) -> Response:
    return JSON(v2.model_config(plane(request), _model(request, name, version)))


# ---------------------------------------------------------------- model repository (Triton's extension)


class RepositoryRequest(BaseModel):
    parameters: dict[str, Any] | None = None


async def _version_parameter(request: Request) -> str:
    """``parameters.version`` of a load/unload body (our extension: one version); an empty body is fine.
    Parsed here rather than by FastAPI: Triton's clients send JSON without a JSON content type."""
    raw = await request.body()
    if raw.strip():
        body_type(request, (JSON_TYPE,), raw)
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
async def repository_index(request: Request) -> Response:
    return JSON(plane(request).control().repository_index())


_REPOSITORY_DOC = {"requestBody": {"required": False, "content": {"application/json": {"schema": RepositoryRequest.model_json_schema()}}}}


@api.post(
    "/repository/models/{name}/load",
    summary="Serve a model (parameters.version: one version) now, on every worker; needs SERVING_MODEL_CONTROL",
    openapi_extra=_REPOSITORY_DOC,
)
async def repository_load(name: ModelName, request: Request) -> Response:
    control = plane(request).control(change=True)  # 403 while it is off, whatever the body
    await control.load(name, await _version_parameter(request))
    return JSON({})


@api.post(
    "/repository/models/{name}/unload",
    summary="Stop serving a model (parameters.version: one version), on every worker; needs SERVING_MODEL_CONTROL",
    openapi_extra=_REPOSITORY_DOC,
)
async def repository_unload(name: ModelName, request: Request) -> Response:
    control = plane(request).control(change=True)  # 403 while it is off, whatever the body
    await control.unload(name, await _version_parameter(request))
    return JSON({})


# ---------------------------------------------------------------- shared memory (Triton's extension)


class RegisterRegion(BaseModel):
    key: str = Field(description="the POSIX shared memory object, as shm_open names it (/input0)")
    offset: int = Field(default=0, ge=0, description="where the region starts in the object")
    byte_size: int = Field(ge=0, description="the region's size in bytes")


@api.get("/systemsharedmemory/status", summary="Every registered system shared memory region")
@api.get("/systemsharedmemory/region/{region}/status", summary="One registered region")
async def shm_status(request: Request, region: str = "") -> Response:
    return JSON(v2.regions_status(plane(request), region or None))


@api.post(
    "/systemsharedmemory/region/{region}/register",
    summary="Register a region of a POSIX shared memory object (key, offset, byte_size) under a name",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": RegisterRegion.model_json_schema()}}}},
)
async def shm_register(request: Request, region: str) -> Response:
    body = await read_json(request, RegisterRegion, (JSON_SLACK, JSON_SLACK, "a region"))
    plane(request).shared_memory.register(region, body.key, body.offset, body.byte_size)
    return JSON({})


@api.post("/systemsharedmemory/unregister", summary="Unregister every system shared memory region")
@api.post("/systemsharedmemory/region/{region}/unregister", summary="Unregister one region (an unknown one is no error)")
async def shm_unregister(request: Request, region: str = "") -> Response:
    plane(request).shared_memory.unregister(region or None)
    return JSON({})


# CUDA shared memory: none can be registered on this CPU server, so none is ever listed or unregistered.
@api.get("/cudasharedmemory/status", include_in_schema=False)
@api.get("/cudasharedmemory/region/{region}/status", include_in_schema=False)
async def cuda_shm_status(region: str = "") -> Response:
    if region:
        raise NotFound(f"no CUDA shared memory region {region[:100]!r} is registered (this server offers system shared memory only)")
    return JSON([])


@api.post("/cudasharedmemory/unregister", include_in_schema=False)
@api.post("/cudasharedmemory/region/{region}/unregister", include_in_schema=False)
async def cuda_shm_unregister(region: str = "") -> Response:
    return JSON({})


@api.post("/cudasharedmemory/region/{region}/register", include_in_schema=False)
async def cuda_shm_register(region: str) -> Response:
    raise Unimplemented("CUDA shared memory is not offered by this server (it serves on CPU); use system shared memory")


# ---------------------------------------------------------------- trace and logging (Triton's extensions)


async def _settings_body(request: Request) -> Any:
    """A settings POST's JSON object (an empty body changes nothing). Parsed here rather than by FastAPI:
    Triton's clients send JSON without a JSON content type."""
    raw = await request.body()
    if not raw.strip():
        return {}
    body_type(request, (JSON_TYPE,), raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the settings are not valid JSON ({str(e)[:200]}); send a JSON object") from None


_SETTINGS_DOC = {"requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}}
_TRACE_SUMMARY = (
    "trace_level, trace_rate, trace_count and log_frequency; the OpenTelemetry collector's url and the others are fixed at start-up"
)


@api.get("/trace/setting", summary="Triton's trace extension: the server's trace settings")
@api.get("/models/{name}/trace/setting", summary="The trace settings a model's requests follow")
async def trace_settings(request: Request, name: str = "") -> Response:
    dataplane = plane(request)
    return JSON(dataplane.tracer.current(dataplane.model(name).store_name if name else None))


@api.post("/trace/setting", summary=f"Change the server's trace settings ({_TRACE_SUMMARY})", openapi_extra=_SETTINGS_DOC)
@api.post(
    "/models/{name}/trace/setting",
    summary="Change one model's trace settings (null: follow the server's again)",
    openapi_extra=_SETTINGS_DOC,
)
async def update_trace_settings(request: Request, name: str = "") -> Response:
    dataplane = plane(request)
    model = dataplane.model(name).store_name if name else None
    return JSON(dataplane.tracer.update(await _settings_body(request), model))


@api.get("/logging", summary="Triton's logging extension: the log settings")
async def log_settings(request: Request) -> Response:
    return JSON(plane(request).logs.current())


@api.post(
    "/logging",
    summary="Change the log settings (log_info, log_warning, log_error, log_verbose_level, log_format)",
    openapi_extra=_SETTINGS_DOC,
)
async def update_log_settings(request: Request) -> Response:
    dataplane = plane(request)
    return JSON(dataplane.logs.update(await _settings_body(request)))


# ---------------------------------------------------------------- infer

_INFER_DOC = {
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "binary tensor data: the length of the body's JSON header; the inputs' raw bytes follow it",
            "schema": {"type": "integer", "minimum": 0},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferenceRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": "binary tensor data extension: JSON header + raw tensors"}
            },
        },
    },
}


@api.post("/models/{name}/infer", summary="Inference (JSON tensors or binary tensor data)", openapi_extra=_INFER_DOC)
@api.post("/models/{name}/versions/{version}/infer", summary="Inference on one version", openapi_extra=_INFER_DOC)
async def infer(request: Request, name: ModelName, version: str | None = None) -> Response:
    dataplane = plane(request)
    front = dataplane.tracer.front("v2-rest")  # None unless the trace extension is on
    rt = _model(request, name, version)
    body = await request.body()
    body_type(request, (JSON_TYPE, NPY_TYPE), body)  # the binary extension is told by its header, not the type
    header, binary = _split_body(body, request.headers.get(HEADER_LENGTH))
    limit = dataplane.row_limit(rt) * JSON_OVERSIZE
    per_row = math.prod(rt.row_shape)
    check_json_counts(header, limit * per_row + JSON_SLACK, limit * (1 + rt.row_shape[0]) + JSON_SLACK, f"{limit} rows of {rt.store_name}")
    try:
        req = InferenceRequest.model_validate(orjson.loads(header))
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the inference request is not valid JSON ({str(e)[:200]})") from None
    except ValidationError as e:
        raise invalid_request(e.errors()) from None
    tensors, offset = [], 0
    for tensor in req.inputs:
        shared = v2.shm_input(dataplane, tensor.name, tensor.datatype, tensor.shape, tensor.parameters or {})
        if shared is not None:
            tensors.append(shared)
            continue
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            tensors.append(v2.json_tensor(tensor.name, tensor.datatype, tensor.shape, tensor.data))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise InvalidInput(f"input {tensor.name!r} declares binary_data_size {size}, but only {len(binary) - offset} bytes follow")
        tensors.append(v2.raw_tensor(tensor.name, tensor.datatype, tensor.shape, memoryview(binary)[offset : offset + size]))
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes follow the JSON header that no input's binary_data_size declares")
    outputs = [_requested(o) for o in req.outputs] if req.outputs else None
    infer_request = InferRequest(tensors, rt.store_name, rt.version, outputs=outputs, id=req.id)
    answer = await until_disconnect(request, dataplane.infer(infer_request, front))
    if front is None:
        return _response(dataplane, answer, req)
    try:
        response = _response(dataplane, answer, req)
    except Exception as e:
        front.finish(e)
        raise
    front.finish()
    return response


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


def _requested(out: RequestOutput) -> Output:
    params = out.parameters or {}
    classes = params.get("classification", 0)
    binary = params.get("binary_data")
    if not isinstance(classes, int) or isinstance(classes, bool):
        raise InvalidInput(f"output {out.name!r}: classification must be an integer count of classes")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInput(f"output {out.name!r}: binary_data must be true or false")
    return Output(out.name, classes, binary)


def _response(dataplane: DataPlane, answer: InferResponse, req: InferenceRequest) -> Response:
    rt: ModelRuntime = answer.model
    default_binary = bool((req.parameters or {}).get("binary_data_output", False))
    shared = {o.name: target for o in req.outputs or () if (target := v2.shm_output(o.parameters or {}, o.name))}
    entries, tails = [], []
    for out in answer.requested:
        arr = answer.outputs[out.name]
        entry: dict[str, Any] = {"name": out.name, "shape": list(arr.shape)}
        if out.name in shared:  # no data and no parameters: Triton's clients read "parameters" as binary data
            entry["datatype"], _ = v2.write_shm_output(dataplane, shared[out.name], out.name, arr)
        elif default_binary if out.binary is None else out.binary:
            entry["datatype"], raw = v2.raw_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
        else:
            entry["datatype"] = datatype_of(arr.dtype)
            entry["data"] = [b.decode() for b in arr.ravel()] if entry["datatype"] == BYTES else arr.ravel()
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
