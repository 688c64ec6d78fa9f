"""The service's OpenAPI document: valid OpenAPI 3.1, every status the service answers documented."""

from __future__ import annotations

import pytest

from serving.protocols.oip.rest import api as v2_api
from serving.protocols.v1.app import api
from serving.transport import openapi


@pytest.fixture(scope="module")
def document():
    return openapi.document([("/v1", api), ("/v2", v2_api)], api.title, api.description or "", api.version)


def test_declares_3_1_and_validates_against_the_3_1_schema(document):
    jsonschema = pytest.importorskip("jsonschema")
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    assert document["openapi"] == "3.1.0"
    jsonschema.Draft202012Validator(definitions.OPENAPI_31).validate(document)


def test_every_operation_documents_the_errors_and_no_422(document):
    operations = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]
    assert len(operations) > 25
    for path, method, op in operations:
        statuses = set(op["responses"])
        assert "422" not in statuses, (method, path)
        if path.startswith(("/v1/", "/v2")):
            assert {"200", "400", "404", "413", "431", "500", "503", "504"} <= statuses, (method, path, statuses)
            ref = op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/V2Error" if path.startswith("/v2") else "/Error"), (method, path)
    control = document["paths"]["/v1/models/{name}/labels/{label}"]["put"]["responses"]
    assert "403" in control
    assert "application/octet-stream" in document["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["200"]["content"]


def test_lists_the_infrastructure_routes_and_both_apis(document):
    paths = document["paths"]
    for path in ("/livez", "/readyz", "/metrics", "/v1/classify", "/v1/classify/batch", "/v2/models/{name}/infer", "/v2/"):
        assert path in paths, path
    assert "503" in paths["/readyz"]["get"]["responses"]
    refs = {r for r in _refs(document)}
    assert refs <= {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
