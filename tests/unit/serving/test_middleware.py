"""The service's ASGI middleware, driven with hand-made ASGI messages (no server)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest

from serving.transport import http
from serving.transport.middleware import (
    OTHER,
    ConnectionRecycle,
    Drain,
    ErrorShield,
    RequestLimits,
    RouteFallback,
    RouteTemplates,
)


def scope(path: str = "/v1/classify", method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
    }


def run(app: Any, s: dict[str, Any], chunks: list[bytes] = (b"",)) -> list[dict[str, Any]]:
    """Call ``app`` once; the messages it sent."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(s, receive, send))
    return sent


def status_and_body(sent: list[dict[str, Any]]) -> tuple[int, Any, dict[bytes, bytes]]:
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    try:
        decoded: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = body
    return start["status"], decoded, dict(start.get("headers") or ())


async def ok_app(s: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


# ---------------------------------------------------------------- ErrorShield


def test_an_exception_after_a_complete_answer_does_not_reach_the_server():
    # Starlette sends its 500 and then re-raises: uvicorn would close the keep-alive connection.
    async def answered_then_raised(s, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        raise RuntimeError("boom")

    sent = run(ErrorShield(answered_then_raised), scope())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_an_exception_before_any_answer_becomes_the_error_shape():
    async def raises(s, receive, send):
        raise RuntimeError("secret detail")

    status, body, _ = status_and_body(run(ErrorShield(raises), scope()))
    assert status == 500 and body == {"error": "internal error; see the server log", "type": "InternalError"}
    status, body, _ = status_and_body(run(ErrorShield(raises), scope("/v2/models/x/infer")))
    assert status == 500 and body == {"error": "internal error; see the server log"}


def test_an_exception_in_the_middle_of_an_answer_still_closes_the_connection():
    async def half(s, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run(ErrorShield(half), scope())


# ---------------------------------------------------------------- RequestLimits


def test_declared_body_over_the_limit_is_413_before_reading():
    app = RequestLimits(ok_app, max_body_bytes=10, max_header_bytes=1000)
    status, body, headers = status_and_body(run(app, scope(headers=[(b"content-length", b"11")])))
    assert status == 413 and body["type"] == "PayloadTooLarge" and headers[b"connection"] == b"close"


def test_chunked_body_over_the_limit_is_413_with_close():
    app = RequestLimits(ok_app, max_body_bytes=10, max_header_bytes=1000)
    status, body, headers = status_and_body(run(app, scope("/v2/models/m/infer"), [b"123456", b"123456", b"x"]))
    assert status == 413 and set(body) == {"error"} and headers[b"connection"] == b"close"
    status, _, _ = status_and_body(run(app, scope(), [b"12345", b"12345"]))
    assert status == 200


def test_headers_over_the_limit_are_431():
    app = RequestLimits(ok_app, max_body_bytes=10, max_header_bytes=100)
    status, body, _ = status_and_body(run(app, scope(headers=[(b"x-big", b"a" * 200)])))
    assert status == 431 and body["type"] == "HeadersTooLarge"
    assert status_and_body(run(app, scope(headers=[(b"x-small", b"a")])))[0] == 200


# ---------------------------------------------------------------- RouteFallback


async def router_404(s, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 404 if s["path"] != "/readyz" else 405,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET")],
        }
    )
    await send({"type": "http.response.body", "body": b"Not Found"})


def test_plain_text_404_and_405_become_the_error_shape():
    app = RouteFallback(router_404, aliases={})
    status, body, _ = status_and_body(run(app, scope("/nope" + "x" * 5000, "GET")))
    assert status == 404 and body["type"] == "NotFound" and len(body["error"]) < 300
    status, body, headers = status_and_body(run(app, scope("/readyz", "POST")))
    assert status == 405 and body["type"] == "MethodNotAllowed" and headers[b"allow"] == b"GET"


def test_docs_json_is_the_service_document():
    app = RouteFallback(router_404, aliases={}, openapi=lambda: {"openapi": "3.1.0"})
    status, body, _ = status_and_body(run(app, scope("/docs.json", "GET")))
    assert status == 200 and body == {"openapi": "3.1.0"}


# ---------------------------------------------------------------- ConnectionRecycle and the drain


def test_every_answer_closes_its_connection_while_draining():
    drain = Drain()
    app = ConnectionRecycle(ok_app, every=100, drain=drain)
    assert b"connection" not in status_and_body(run(app, scope()))[2]
    drain.draining = True
    assert status_and_body(run(app, scope()))[2][b"connection"] == b"close"
    assert drain.in_flight == 0 and drain.quiet_for() >= 0


def test_the_nth_answer_closes_its_connection():
    app = ConnectionRecycle(ok_app, every=3, drain=Drain())
    closes = [b"connection" in status_and_body(run(app, scope()))[2] for _ in range(6)]
    assert closes == [False, False, True, False, False, True]


# ---------------------------------------------------------------- metrics labels


class FakeRoute:
    def __init__(self, path: str) -> None:
        self.path = path
        self.path_regex = re.compile("^" + re.sub(r"{[^}]+}", "[^/]+", path) + "$")


class FakeApp:
    routes = [FakeRoute("/classify"), FakeRoute("/models/{name}"), FakeRoute("/models/{name}/labels/{label}")]


def test_route_templates_bound_the_label_values():
    templates = RouteTemplates([("/v1", FakeApp())], exact=["/readyz"], cache_size=4)
    assert templates("/v1/models/lstm") == "/v1/models/{name}"
    assert templates("/v1/models/lstm/labels/stable") == "/v1/models/{name}/labels/{label}"
    assert templates("/readyz") == "/readyz"
    values = {templates(f"/x{i}/{'a' * i}") for i in range(100)} | {templates(f"/v1/models/a/b/{i}") for i in range(10)}
    assert values == {OTHER}


# ---------------------------------------------------------------- JSON pre-check


def test_json_counts_refuse_what_no_allowed_request_holds():
    http.check_json_counts(b"[[1,2],[3,4]]", max_values=4, max_arrays=3, rows="2 rows")
    with pytest.raises(Exception, match="arrays"):
        http.check_json_counts(b"[" * 4 + b"]" * 4, max_values=4, max_arrays=3, rows="2 rows")
    with pytest.raises(Exception, match="values"):
        http.check_json_counts(b"[1,2,3,4,5]", max_values=4, max_arrays=3, rows="2 rows")


def test_an_answer_to_a_client_that_left_is_dropped_quietly():
    async def app(s, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    async def closed_transport(message):
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(ErrorShield(app)(scope(), receive, closed_transport))  # no exception reaches the server


def test_every_served_v1_route_has_its_own_template():
    """FastAPI includes routers lazily: the templates must still name every route of every router (issue: encode, reconstruct,
    interpolate and the plots counted as 'other')."""
    from serving.protocols.oip.rest import api as v2_api
    from serving.protocols.v1.app import api

    templates = RouteTemplates([("/v1", api), ("/v2", v2_api)], exact=[])
    for path in (
        "/v1/encode",
        "/v1/reconstruct",
        "/v1/generate/interpolate",
        "/v1/plots/clusters",
        "/v1/plots/confusion",
        "/v1/classify/batch",
    ):
        assert templates(path) == path
    assert templates("/v2/models/lstm/versions/1/infer") == "/v2/models/{name}/versions/{version}/infer"
    assert templates("/v1/nowhere") == OTHER
