"""The service's one OpenAPI document (served at ``/docs.json``): OpenAPI 3.1, every status documented.

BentoML's own ``/docs.json`` declares 3.0.2 around FastAPI's 3.1 schemas (``exclusiveMinimum: 0``,
``contentMediaType``, ``type: "null"``) and keeps FastAPI's 422, which this service never returns.
This document merges the ``/v1`` and ``/v2`` apps' own (3.1) documents, adds BentoML's health and
metrics routes, and gives every operation the statuses the service can answer it with, each error
in the shape of its API (``{"error", "type"}`` on /v1, ``{"error"}`` on /v2).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

OPENAPI_VERSION = "3.1.0"

V1_ERROR = {
    "type": "object",
    "required": ["error", "type"],
    "properties": {"error": {"type": "string"}, "type": {"type": "string"}},
}
V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

# Every operation: a malformed request, an unknown model or version, a body or headers over the
# limits, a fault, not ready / draining / queue full, and BentoML's time-to-first-byte bound.
COMMON_ERRORS = {
    "400": "Invalid request (shape, dtype, range, field, JSON)",
    "404": "Unknown model or version",
    "413": "Body, image, row count or latent grid over a configured limit",
    "431": "Request line and headers over SERVING_MAX_HEADER_BYTES",
    "500": "Internal error (details only in the server log)",
    "503": "Not ready, draining, or the model's queue is full; Retry-After says when to retry",
    "504": "No response within SERVING_REQUEST_TIMEOUT_S",
}
CONTROL_ERRORS = {"403": "The model control API is off (SERVING_MODEL_CONTROL)"}
CONTROL_MARKERS = ("/labels/", "/repository/")
# Every operation with a body refuses a declared Content-Type it does not take (docs/CONTRACTS.md).
MEDIA_ERRORS = {"415": "A declared Content-Type the operation does not take"}
INFRA = {
    "/livez": "Liveness: 200 while the worker's event loop answers",
    "/healthz": "Liveness (alias of /livez)",
    "/readyz": "Readiness: 200 when every model is loaded and warm; 503 while loading or draining",
    "/metrics": "Prometheus metrics of every worker (request counts and latency per route, model queue and batch metrics)",
}


def document(apps: Sequence[tuple[str, Any]], title: str, description: str, version: str) -> dict[str, Any]:
    """One 3.1 document over FastAPI ``apps`` mounted at their prefixes, plus BentoML's infra routes."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": V1_ERROR,
        "V2Error": V2_ERROR,
    }
    for prefix, app in apps:
        doc = copy.deepcopy(app.openapi())
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            if name not in ("HTTPValidationError", "ValidationError"):
                schemas[name] = schema
        error_ref = "#/components/schemas/V2Error" if prefix == "/v2" else "#/components/schemas/Error"
        for path, item in doc.get("paths", {}).items():
            full = prefix + path if path != "/" or prefix == "" else prefix + "/"
            for operation in item.values():
                _document_errors(operation, full, error_ref)
                _hoist_defs(operation, schemas)
            paths[full] = item
    for path, summary in INFRA.items():
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        if path == "/readyz":
            responses["503"] = {"description": "Not ready or draining", "content": {"text/plain": {"schema": {"type": "string"}}}}
        paths[path] = {
            "get": {"summary": summary, "operationId": f"infra_{path.strip('/')}", "tags": ["infrastructure"], "responses": responses}
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _document_errors(operation: dict[str, Any], path: str, error_ref: str) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's validation answer; this service answers 400
    errors = dict(COMMON_ERRORS)
    if any(marker in path for marker in CONTROL_MARKERS):
        errors.update(CONTROL_ERRORS)
    if "requestBody" in operation:  # the one content-type rule: serving.transport.http.body_type
        errors.update(MEDIA_ERRORS)
    for status, description in errors.items():
        responses.setdefault(status, {"description": description, "content": {"application/json": {"schema": {"$ref": error_ref}}}})
    ok = responses.get("200")
    if ok is not None and path.endswith("/infer"):
        # the binary tensor data extension answers a JSON header followed by raw output bytes
        ok.setdefault("content", {}).setdefault("application/octet-stream", {"schema": {"type": "string", "format": "binary"}})


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> Any:
    """Move pydantic's local ``$defs`` (in bodies documented with ``model_json_schema()``) into
    ``components.schemas``: a ``#/$defs/X`` reference resolves against the document's root."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            schemas.setdefault(name, _hoist_defs(schema, schemas))
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                node[key] = "#/components/schemas/" + value[len("#/$defs/") :]
            else:
                _hoist_defs(value, schemas)
    elif isinstance(node, list):
        for item in node:
            _hoist_defs(item, schemas)
    return node
