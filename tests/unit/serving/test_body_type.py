"""The one Content-Type rule (serving.transport.http.body_type) as pure logic."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from contract.errors import UnsupportedMediaType
from serving.transport.http import JSON_TYPE, MULTIPART_TYPE, NPY_TYPE, body_type

ALL = (JSON_TYPE, MULTIPART_TYPE, NPY_TYPE)
NPY = b"\x93NUMPY\x01\x00v\x00{'descr': '|u1'"


def request(content_type: str | None, path: str = "/v1/encode") -> Request:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    return Request({"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""})


@pytest.mark.parametrize(
    "content_type,takes,body,expected",
    [
        ("application/json", ALL, NPY, JSON_TYPE),  # declared wins over the bytes
        ("Application/JSON; charset=utf-8", (JSON_TYPE,), b"{}", JSON_TYPE),
        ("application/problem+json", (JSON_TYPE,), b"{}", JSON_TYPE),
        ("application/x-npy", (NPY_TYPE,), b"", NPY_TYPE),
        ("multipart/form-data; boundary=x", ALL, b"--x", MULTIPART_TYPE),
        (None, ALL, NPY, NPY_TYPE),
        (None, ALL, b'{"images": []}', JSON_TYPE),
        ("application/x-www-form-urlencoded", ALL, NPY, NPY_TYPE),
        ("application/x-www-form-urlencoded", (JSON_TYPE,), b"{}", JSON_TYPE),
        ("text/plain", (NPY_TYPE,), b"not npy", NPY_TYPE),  # the route's one binary type; its reader says what is wrong
        ("text/plain", (JSON_TYPE, NPY_TYPE), b"{}", JSON_TYPE),
    ],
)
def test_the_type_that_decides(content_type, takes, body, expected):
    assert body_type(request(content_type), takes, body) == expected


@pytest.mark.parametrize(
    "content_type,takes,words",
    [
        ("image/png", ALL, ["'image/png'", "POST /v1/encode", "send application/json, multipart/form-data or application/octet-stream"]),
        ("application/octet-stream", (JSON_TYPE,), ["'application/octet-stream'", "send application/json"]),
        ("application/json", (NPY_TYPE,), ["send application/octet-stream"]),
        (None, (MULTIPART_TYPE,), ["a body without a Content-Type", "send multipart/form-data"]),
        ("text/plain", (MULTIPART_TYPE,), ["'text/plain'", "send multipart/form-data"]),
    ],
)
def test_anything_else_is_415_naming_what_the_route_takes(content_type, takes, words):
    with pytest.raises(UnsupportedMediaType) as caught:
        body_type(request(content_type), takes, b"{}")
    for word in words:
        assert word in str(caught.value)
