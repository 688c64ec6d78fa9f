"""The one Content-Type rule (docs/CONTRACTS.md, "Content types"), on every route that takes a body.

A Content-Type naming a type the route takes decides; none, curl's default
(``application/x-www-form-urlencoded``) or ``text/plain`` lets the body's bytes decide (``.npy``
magic, else JSON); any other type is 415 naming what the route takes.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from tests.e2e.test_http import assert_client_error

DIGIT = [[0] * 28] * 28
JSON_BODIES = {
    "/v1/classify": b'{"model": "lstm", "images": [%s]}' % str(DIGIT).encode(),
    "/v1/generate": b'{"model": "vae2", "z": [[0.5, -0.5]]}',
    "/v1/generate/sample": b'{"model": "vae2", "n": 2, "seed": 1}',
    "/v1/generate/interpolate": b'{"model": "vae2", "z": [[0, 0], [1, 1]], "steps": 3}',
    "/v1/encode": b'{"images": [%s]}' % str(DIGIT).encode(),
    "/v1/reconstruct": b'{"images": [%s], "format": "array"}' % str(DIGIT).encode(),
    "/v2/models/mnist-lstm/infer": b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 28, 28], "data": %s}]}'
    % str(DIGIT).encode(),
}
NPY_ROUTES = ["/v1/classify/batch", "/v1/encode", "/v1/reconstruct"]
UNSAID = [None, "application/x-www-form-urlencoded", "text/plain; charset=utf-8"]


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


def npy(images: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, images, allow_pickle=False)
    return out.getvalue()


def post(http: httpx.Client, path: str, body: bytes, content_type: str | None) -> httpx.Response:
    # httpx sends no Content-Type for raw content unless told: None is "not said".
    return http.post(path, content=body, headers={"content-type": content_type} if content_type else {})


@pytest.mark.parametrize("path", sorted(JSON_BODIES))
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "application/vnd.api+json", *UNSAID])
def test_json_is_read_when_declared_or_not_said(http, path, content_type):
    response = post(http, path, JSON_BODIES[path], content_type)
    assert response.status_code == 200, (content_type, response.text)


@pytest.mark.parametrize("path", NPY_ROUTES)
@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-npy", *UNSAID])
def test_npy_is_read_when_declared_or_not_said(http, path, content_type):
    response = post(http, path, npy(np.zeros((2, 28, 28), np.uint8)), content_type)
    assert response.status_code == 200, (content_type, response.text)


@pytest.mark.parametrize("path", [*sorted(JSON_BODIES), "/v1/classify/batch", "/v1/classify/image"])
def test_a_type_the_route_does_not_take_is_415_naming_what_it_takes(http, path):
    response = post(http, path, JSON_BODIES.get(path, b"\x89PNG\r\n"), "image/png")
    assert_client_error(response, 415, "image/png", "is not accepted by", path)
    takes = response.json()["error"].split("; send ")[1]
    if path == "/v1/classify/batch":
        assert takes == "application/octet-stream"
    elif path == "/v1/classify/image":
        assert takes == "multipart/form-data"
    elif path in NPY_ROUTES:
        assert takes == "application/json, multipart/form-data or application/octet-stream"
    elif path.startswith("/v2"):
        assert takes == "application/json or application/octet-stream"
    else:
        assert takes == "application/json"


def test_a_declared_type_decides_even_when_the_bytes_say_otherwise(http):
    body = npy(np.zeros((1, 28, 28), np.uint8))
    assert_client_error(post(http, "/v1/classify/batch", JSON_BODIES["/v1/classify"], "application/json"), 415, "application/json")
    assert_client_error(post(http, "/v1/encode", body, "application/json"), 400, "not valid JSON")
    assert_client_error(post(http, "/v1/classify", body, "application/octet-stream"), 415, "send application/json")


def test_a_multipart_body_must_say_so(http, server):
    png = server.test_images[0]
    from contract import images

    picture = images.to_png(png)
    assert http.post("/v1/classify/image", files={"image": ("d.png", picture)}).status_code == 200
    for content_type in UNSAID:
        assert_client_error(post(http, "/v1/classify/image", picture, content_type), 415, "send multipart/form-data")
    assert_client_error(http.post("/v1/classify/image", files={"picture": ("d.png", picture)}), 400, "field 'image'")
    both = http.post("/v1/classify/image?model=lstm", files={"image": ("d.png", picture)}, data={"model": "gru"})
    assert_client_error(both, 400, "model")


def test_the_control_api_refuses_before_it_reads_the_body(http):
    """While SERVING_MODEL_CONTROL is off, a junk body is 403 like a good one, not 400."""
    for method, path in (("PUT", "/v1/models/lstm/labels/stable"), ("POST", "/v2/repository/models/mnist-lstm/load")):
        response = http.request(method, path, content=b"{junk", headers={"content-type": "application/json"})
        assert_client_error(response, 403, "SERVING_MODEL_CONTROL")
