"""/docs.json tells the whole truth about the real server: Schemathesis over every operation.

The reliability suite's Schemathesis probe (loadtests/reliability/schemathesis_probe.py), bounded to a
few examples per operation, against the session's server: every answer's status, content type,
headers and body must be the ones the document gives for that operation, and none a 5xx the server
counted. The document must also list what a user meets first: the pages and the health routes, every
binary route with its request body, and 415 wherever a body is read.
"""

from __future__ import annotations

import httpx
import pytest

from loadtests.reliability.schemathesis_probe import schemathesis_probe
from loadtests.reliability.target import Plan, Target
from loadtests.server import Service

pytestmark = pytest.mark.slow

EXAMPLES = 30  # per operation: about 2000 requests in some 25 s on 2 cores (60 per operation: make reliability)


@pytest.fixture(scope="module")
def document(server) -> dict:
    response = httpx.get(f"{server.http_url}/docs.json", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def test_the_document_lists_pages_health_and_binary_bodies(document):
    paths = document["paths"]
    for path in ("/", "/docs", "/demo", "/docs.json", "/healthz", "/livez", "/readyz", "/metrics"):
        assert "get" in paths.get(path, {}), path
    for path in ("/", "/docs", "/demo"):
        assert "text/html" in paths[path]["get"]["responses"]["200"]["content"], path
    binary = {
        "/v1/classify/batch": {"application/octet-stream"},
        "/v1/classify/image": {"multipart/form-data"},
        "/v1/encode": {"application/json", "multipart/form-data", "application/octet-stream"},
        "/v1/reconstruct": {"application/json", "multipart/form-data", "application/octet-stream"},
        "/v2/models/{name}/infer": {"application/json", "application/octet-stream"},
    }
    for path, types in binary.items():
        body = paths[path]["post"].get("requestBody")
        assert body is not None and body["required"], path
        assert types <= set(body["content"]), (path, sorted(body["content"]))
        for media, content in body["content"].items():
            if media != "application/json":  # a file Swagger UI can pick and send
                schema = content["schema"]
                fields = schema["properties"].values() if media == "multipart/form-data" else [schema]
                assert any(f.get("format") == "binary" for f in fields), (path, media, schema)
    operations = [(path, method, op) for path, item in paths.items() for method, op in item.items()]
    for path, method, op in operations:
        if "requestBody" in op:
            assert "415" in op["responses"], (method, path)


def test_schemathesis_status_content_type_and_schema_conformance(server, document, tmp_path):
    service = Service(server.process, server.http_url, server.grpc_target, server.log_path, launched=0.0)
    target = Target(service, settings={}, images=server.test_images)
    schemathesis_probe(target, Plan(examples=EXAMPLES, min_requests=500, fault_s=0.0, soak_minutes=0.0), tmp_path)
    log = (tmp_path / "schemathesis.log").read_text() if (tmp_path / "schemathesis.log").exists() else ""
    failures = log[log.find("FAILURES") :] if "FAILURES" in log else log[-6000:]
    assert [row.probe for row in target.rows if not row.ok] == [], "\n".join(f"{r.probe}: {r.got}" for r in target.rows) + "\n" + failures
    tested = int(log.split("Tested:")[1].split()[0]) if "Tested:" in log else 0
    # every operation but the document itself (Schemathesis leaves out the schema's own URL; the fixture fetched it)
    assert tested == sum(len(item) for item in document["paths"].values()) - 1, log[-3000:]
