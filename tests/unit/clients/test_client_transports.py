"""Retry and error mapping of both transports, with fake responses and a fake clock (no server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from clients.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from clients.grpc import GRPCClient
from clients.http import HTTPClient

CLASSIFIED = {"model": "lstm", "version": "v1", "predictions": [{"label": 3, "probabilities": [0.0] * 3 + [1.0] + [0.0] * 6}]}


class Script:
    """An httpx handler that plays back responses (or raises transport errors) in order."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


def http_client(script: Script, sleeps: list[float], retries: int = 3) -> HTTPClient:
    return HTTPClient("http://test", retries=retries, backoff=0.1, transport=httpx.MockTransport(script), sleep=sleeps.append)


def unavailable() -> httpx.Response:
    return httpx.Response(503, json={"error": "model mnist-lstm is still loading", "type": "NotReady"})


def test_http_retries_503_then_succeeds() -> None:
    sleeps: list[float] = []
    script = Script(unavailable(), unavailable(), httpx.Response(200, json=CLASSIFIED))
    with http_client(script, sleeps) as client:
        [p] = client.classify(np.zeros((28, 28), np.uint8))
    assert (p.label, p.model, p.version) == (3, "lstm", "v1")
    assert len(script.requests) == 3
    assert sleeps == pytest.approx([0.1, 0.2])


def test_http_gives_up_on_503_after_the_retries() -> None:
    sleeps: list[float] = []
    script = Script(unavailable())
    with http_client(script, sleeps, retries=2) as client, pytest.raises(UnavailableError) as info:
        client.models()
    assert len(script.requests) == 3
    assert sleeps == pytest.approx([0.1, 0.2])
    assert info.value.status == 503 and info.value.message == "model mnist-lstm is still loading"


def test_http_retries_connection_errors() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("closed"), httpx.Response(200, json=CLASSIFIED))
    with http_client(script, sleeps) as client:
        assert client.classify(np.zeros((1, 28, 28), np.float32))[0].label == 3
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_http_connection_refused_ends_in_unavailable() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"))
    with http_client(script, sleeps, retries=3) as client, pytest.raises(UnavailableError):
        client.sample(4, 0)
    assert len(script.requests) == 4 and len(sleeps) == 3


@pytest.mark.parametrize(
    "response, cls",
    [
        (httpx.Response(400, json={"error": "images must have shape N x 28 x 28", "type": "InvalidInput"}), InvalidRequestError),
        (httpx.Response(413, json={"error": "at most 256 images rows per request", "type": "PayloadTooLarge"}), InvalidRequestError),
        (httpx.Response(415, json={"error": "wrong content type"}), InvalidRequestError),
        (httpx.Response(422, json={"error": "bad", "detail": [{"loc": ["body", "z"], "msg": "Field required"}]}), InvalidRequestError),
        (httpx.Response(404, json={"error": "unknown model 'nope'", "type": "ModelNotFound"}), NotFoundError),
        (httpx.Response(500, json={"error": "internal error; see the server log", "type": "InternalError"}), ServerError),
        (httpx.Response(504, json={"error": "deadline", "type": "DeadlineExceeded"}), DeadlineExceededError),
    ],
)
def test_http_errors_are_mapped_and_never_retried(response: httpx.Response, cls: type) -> None:
    sleeps: list[float] = []
    script = Script(response)
    with http_client(script, sleeps) as client, pytest.raises(cls) as info:
        client.generate([[0.0, 0.0]])
    assert type(info.value) is cls
    assert len(script.requests) == 1 and sleeps == []
    assert info.value.status == response.status_code
    assert info.value.message.startswith(response.json()["error"])


def test_http_read_timeout_is_a_deadline_and_not_retried() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ReadTimeout("slow"))
    with http_client(script, sleeps) as client, pytest.raises(DeadlineExceededError):
        client.classify_bulk(np.zeros((2, 28, 28), np.uint8))
    assert len(script.requests) == 1 and sleeps == []


def test_http_health_never_raises_or_retries() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"))
    with http_client(script, sleeps) as client:
        assert client.health() == {"live": False, "ready": False}
    assert len(script.requests) == 2 and sleeps == []

    script = Script(httpx.Response(200, text="ok"), unavailable())
    with http_client(script, sleeps) as client:
        assert client.health() == {"live": True, "ready": False}
    assert [r.url.path for r in script.requests] == ["/livez", "/readyz"]


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed unary call raises: an RpcError that is also a Call with a code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class FakeMethod:
    """Stands in for a stub's unary method: fails with the given codes in order, then answers."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.timeouts: list[float] = []

    def __call__(self, request: Any, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.codes:
            code = self.codes.pop(0)
            raise FakeRpcError(code, f"details of {code.name}")
        return "response"


@pytest.fixture
def grpc_client() -> Any:
    sleeps: list[float] = []
    # Creating a channel does not connect, so no server is needed here.
    client = GRPCClient("127.0.0.1:1", timeout=2.5, retries=3, backoff=0.1, sleep=sleeps.append)
    client.sleeps = sleeps
    yield client
    client.close()


def test_grpc_retries_unavailable_then_succeeds(grpc_client: Any) -> None:
    method = FakeMethod(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert grpc_client._call(method, object()) == "response"
    assert method.timeouts == [2.5, 2.5, 2.5]
    assert grpc_client.sleeps == pytest.approx([0.1, 0.2])


def test_grpc_gives_up_after_the_retries(grpc_client: Any) -> None:
    method = FakeMethod(*[grpc.StatusCode.UNAVAILABLE] * 10)
    with pytest.raises(UnavailableError) as info:
        grpc_client._call(method, object())
    assert len(method.timeouts) == 4
    assert (info.value.code, info.value.message) == ("UNAVAILABLE", "details of UNAVAILABLE")


@pytest.mark.parametrize(
    "code, cls",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, InvalidRequestError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, ServerError),
        (grpc.StatusCode.UNIMPLEMENTED, ServerError),
    ],
)
def test_grpc_errors_are_mapped_and_never_retried(grpc_client: Any, code: grpc.StatusCode, cls: type) -> None:
    method = FakeMethod(code)
    with pytest.raises(cls) as info:
        grpc_client._call(method, object())
    assert type(info.value) is cls and info.value.code == code.name
    assert len(method.timeouts) == 1 and grpc_client.sleeps == []


CATALOG = [
    {"name": "lstm", "store_name": "mnist-lstm", "task": "classification", "default": False},
    {"name": "gated-rnn", "store_name": "mnist-gated-rnn", "task": "classification", "default": True},
    {"name": "vae2", "store_name": "fashion-vae2-decoder", "task": "generation", "default": True},
]


def test_grpc_model_names_and_defaults_come_from_the_servers_catalog(grpc_client: Any, monkeypatch: Any) -> None:
    listings = []

    def models() -> list[dict[str, Any]]:
        listings.append(1)
        grpc_client._catalog = [dict(e) for e in CATALOG]
        return grpc_client._catalog

    monkeypatch.setattr(grpc_client, "models", models)
    assert grpc_client._entry("lstm", "classification")["store_name"] == "mnist-lstm"
    assert grpc_client._entry("mnist-lstm", "classification")["name"] == "lstm"
    assert grpc_client._entry(None, "classification")["name"] == "gated-rnn"  # the server's default
    assert grpc_client._entry(None, "generation")["store_name"] == "fashion-vae2-decoder"
    assert len(listings) == 1  # listed once, then cached
    # An unknown name looks again (a model may have been published since), then goes to the server as it is.
    assert grpc_client._entry("vae2", "classification") == {"name": "vae2", "store_name": "vae2", "task": "classification"}
    assert len(listings) == 2
    grpc_client._catalog = [e for e in CATALOG if e["task"] == "classification"]
    monkeypatch.setattr(grpc_client, "models", lambda: grpc_client._catalog)
    with pytest.raises(NotFoundError, match="no default generation model"):
        grpc_client._entry(None, "generation")
