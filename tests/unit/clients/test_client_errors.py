from __future__ import annotations

import pytest

from clients.errors import (
    ClientError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    NotOfferedError,
    ServerError,
    UnavailableError,
    class_for_grpc_code,
    class_for_http_status,
    error_from_grpc,
    error_from_http,
)


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, InvalidRequestError),
        (413, InvalidRequestError),
        (415, InvalidRequestError),
        (422, InvalidRequestError),
        (404, NotFoundError),
        (503, UnavailableError),
        (504, DeadlineExceededError),
        (500, ServerError),
        (501, NotOfferedError),
        (502, ServerError),
        (401, ServerError),
        (405, ServerError),
        (418, ServerError),
    ],
)
def test_http_status_mapping(status: int, cls: type) -> None:
    assert class_for_http_status(status) is cls


@pytest.mark.parametrize(
    "code, cls",
    [
        ("INVALID_ARGUMENT", InvalidRequestError),
        ("RESOURCE_EXHAUSTED", InvalidRequestError),
        ("NOT_FOUND", NotFoundError),
        ("UNAVAILABLE", UnavailableError),
        ("DEADLINE_EXCEEDED", DeadlineExceededError),
        ("INTERNAL", ServerError),
        ("UNIMPLEMENTED", NotOfferedError),
        ("UNKNOWN", ServerError),
        ("PERMISSION_DENIED", ServerError),
    ],
)
def test_grpc_code_mapping(code: str, cls: type) -> None:
    assert class_for_grpc_code(code) is cls


def test_only_unavailable_is_retryable() -> None:
    assert UnavailableError("x").retryable
    for cls in (ClientError, InvalidRequestError, NotFoundError, ServerError, DeadlineExceededError):
        assert not cls("x").retryable, cls


def test_http_error_keeps_message_type_and_status() -> None:
    e = error_from_http(400, {"error": "images must have shape N x 28 x 28, got 1 x 27 x 28", "type": "InvalidInput"})
    assert isinstance(e, InvalidRequestError)
    assert e.message == str(e) == "images must have shape N x 28 x 28, got 1 x 27 x 28"
    assert (e.status, e.code, e.type) == (400, None, "InvalidInput")


def test_http_error_summarises_pydantic_details() -> None:
    body = {
        "error": "Invalid request",
        "detail": [
            {"loc": ["body", "n"], "msg": "Input should be greater than or equal to 1", "type": "x"},
            {"loc": ["body"], "msg": "Field required"},
        ],
    }
    e = error_from_http(422, body)
    assert isinstance(e, InvalidRequestError)
    assert e.message == "Invalid request: n: Input should be greater than or equal to 1; Field required"


def test_http_error_without_json_body() -> None:
    e = error_from_http(502, "<html>Bad Gateway</html>", "Bad Gateway")
    assert isinstance(e, ServerError) and e.message == "<html>Bad Gateway</html>"
    e = error_from_http(503, "", "Service Unavailable")
    assert isinstance(e, UnavailableError) and e.message == "HTTP 503 Service Unavailable"
    e = error_from_http(500, {"unexpected": 1})
    assert e.message == "HTTP 500"


def test_grpc_error_keeps_code_and_details() -> None:
    e = error_from_grpc("NOT_FOUND", "unknown model 'mnist-nope'; available: mnist-lstm")
    assert isinstance(e, NotFoundError)
    assert (e.code, e.status, e.message) == ("NOT_FOUND", None, "unknown model 'mnist-nope'; available: mnist-lstm")
    assert error_from_grpc("INTERNAL", "").message == "gRPC status INTERNAL"


def test_each_server_error_is_one_client_class_over_http_and_grpc() -> None:
    from contract.errors import ERROR_TABLE, MethodNotAllowed, PayloadTooLarge

    for server_class, (status, code) in ERROR_TABLE.items():
        if server_class is MethodNotAllowed:  # HTTP only: a wrong method is the caller's bug, not an input a user can fix
            continue
        assert class_for_http_status(status) is class_for_grpc_code(code), server_class
    # A limit (HTTP 413, gRPC RESOURCE_EXHAUSTED) is an invalid request on both, with the server's message.
    message = "at most 256 latent points per request for model fashion-vae2-decoder, got 1000"
    status, code = ERROR_TABLE[PayloadTooLarge]
    over_http, over_grpc = error_from_http(status, {"error": message, "type": "PayloadTooLarge"}), error_from_grpc(code, message)
    assert type(over_http) is type(over_grpc) is InvalidRequestError
    assert over_http.message == over_grpc.message == message
