"""The service's one OpenAPI document (served at ``/docs.json``): OpenAPI 3.1, every status documented.

BentoML's own ``/docs.json`` declares 3.0.2 around FastAPI's 3.1 schemas (``exclusiveMinimum: 0``,
``contentMediaType``, ``type: "null"``) and keeps FastAPI's 422, which this service never returns.
This document merges the ``/v1`` and ``/v2`` apps' own (3.1) documents, adds the health and metrics
routes, the pages (``/``, ``/docs``, ``/demo``) and itself, and gives every operation the statuses the
service can answer it with (the routes' own and the middleware's, serving/transport/middleware.py),
each error in the shape of its API (``{"error", "type"}`` on /v1, ``{"error"}`` on /v2).
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
# Every operation with a body refuses a declared Content-Type it does not take (docs/CONTRACTS.md);
# every operation refuses a Content-Encoding other than these (serving/transport/compression.py).
ENCODING_ERROR = "A Content-Encoding other than gzip, deflate or identity"
MEDIA_ERROR = "A declared Content-Type the operation does not take, or a Content-Encoding other than gzip, deflate or identity"
# What the middleware answers before any route: every operation but /metrics and /docs.json (answered
# further out) can get these.
LIMIT_ERRORS = {
    "400": "A body that is not what its Content-Encoding says",
    "413": "A body over SERVING_MAX_BODY_BYTES",
    "415": ENCODING_ERROR,
    "431": "Request line and headers over SERVING_MAX_HEADER_BYTES",
}
BUSY = {"503": "This worker holds SERVING_MAX_IN_FLIGHT requests; Retry-After says when to retry"}
HTML = {"text/html": {"schema": {"type": "string"}}}
PAGES = {
    "/": ("The API page: Swagger UI over /docs.json, from files the service ships", {"200": {"description": "OK", "content": HTML}}),
    "/docs": ("The API page (as /)", {"200": {"description": "OK", "content": HTML}}),
    "/demo": (
        "The demo page: draw a digit, move a VAE's latent point",
        {
            "200": {"description": "OK (at /demo/)", "content": HTML},
            "307": {"description": "Redirect to /demo/", "headers": {"Location": {"schema": {"type": "string", "pattern": "/demo/$"}}}},
        },
    ),
}
INFRA_TAG = {"name": "infrastructure", "description": "Liveness, readiness and metrics"}
INFRA = {
    "/livez": "Liveness: 200 while the worker's event loop answers",
    "/healthz": "Liveness (alias of /livez)",
    "/readyz": "Readiness: 200 when every model is loaded and warm; 503 while loading or draining",
    "/metrics": "Prometheus metrics of every worker (request counts and latency per route, model queue and batch metrics)",
}


def document(apps: Sequence[tuple[str, Any]], title: str, description: str, version: str) -> dict[str, Any]:
    """One 3.1 document over FastAPI ``apps`` mounted at their prefixes, plus the infra routes and pages."""
    paths: dict[str, Any] = {}
    tags: list[dict[str, str]] = []
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
        tag = prefix.strip("/") or "api"
        tags.append({"name": tag, "description": f"{doc['info']['title']} ({prefix or '/'})"})
        for path, item in doc.get("paths", {}).items():
            full = prefix + path if path != "/" or prefix == "" else prefix + "/"
            for operation in item.values():
                operation.setdefault("tags", [tag])
                _document_errors(operation, full, error_ref)
                _hoist_defs(operation, schemas)
            paths[full] = item
    for path, summary in INFRA.items():
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        if path == "/readyz":
            responses["503"] = {"description": "Not ready or draining", "content": {"text/plain": {"schema": {"type": "string"}}}}
        if path != "/metrics":  # /metrics is answered before the limits
            _add_errors(responses, LIMIT_ERRORS, "#/components/schemas/Error")
        paths[path] = _get(summary, f"infra_{path.strip('/')}", "infrastructure", responses)
    for path, (summary, page) in PAGES.items():
        responses = copy.deepcopy(page)
        _add_errors(responses, {**LIMIT_ERRORS, **BUSY}, "#/components/schemas/Error")
        paths[path] = _get(summary, f"page_{path.strip('/') or 'index'}", "pages", responses)
    paths["/docs.json"] = _get(
        "This OpenAPI document",
        "page_openapi",
        "pages",
        {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "description": description, "version": version},
        "tags": [*tags, {"name": "pages", "description": "The service's web pages and this document"}, INFRA_TAG],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _get(summary: str, operation_id: str, tag: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": operation_id, "tags": [tag], "responses": responses}}


def _add_errors(responses: dict[str, Any], errors: dict[str, str], error_ref: str) -> None:
    for status, description in errors.items():
        responses.setdefault(status, {"description": description, "content": {"application/json": {"schema": {"$ref": error_ref}}}})


def _document_errors(operation: dict[str, Any], path: str, error_ref: str) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's validation answer; this service answers 400
    errors = dict(COMMON_ERRORS)
    if any(marker in path for marker in CONTROL_MARKERS):
        errors.update(CONTROL_ERRORS)
    # the one content-type rule (serving.transport.http.body_type), and the encodings every route reads
    errors["415"] = MEDIA_ERROR if "requestBody" in operation else ENCODING_ERROR
    _add_errors(responses, errors, error_ref)
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
