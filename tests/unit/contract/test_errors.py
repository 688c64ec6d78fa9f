from __future__ import annotations

import grpc
import pytest

from contract import errors
from contract.errors import (
    ERROR_TABLE,
    InvalidImage,
    InvalidInput,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    ServingError,
    Unimplemented,
    UnsupportedMediaType,
    VersionNotFound,
    error_body,
    grpc_code,
    http_status,
)

EXPECTED = [
    (InvalidInput, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidImage, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelNotFound, 404, grpc.StatusCode.NOT_FOUND),
    (VersionNotFound, 404, grpc.StatusCode.NOT_FOUND),
    (PayloadTooLarge, 413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnsupportedMediaType, 415, grpc.StatusCode.INVALID_ARGUMENT),
    (Unimplemented, 501, grpc.StatusCode.UNIMPLEMENTED),
    (NotReady, 503, grpc.StatusCode.UNAVAILABLE),
    (ServingError, 500, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("cls", "status", "code"), EXPECTED)
def test_each_class_maps_to_http_and_grpc(cls, status, code):
    exc = cls("boom")
    assert http_status(exc) == status
    assert grpc_code(exc) is code


def test_every_table_row_names_a_real_grpc_code_and_agrees_with_http():
    # A row whose HTTP and gRPC halves disagree is exactly the drift the single table prevents.
    http_class_of_grpc = {
        "INVALID_ARGUMENT": 4,
        "NOT_FOUND": 4,
        "RESOURCE_EXHAUSTED": 4,
        "PERMISSION_DENIED": 4,
        "UNIMPLEMENTED": 5,
        "UNAVAILABLE": 5,
        "INTERNAL": 5,
        "DEADLINE_EXCEEDED": 5,
    }
    for cls, (status, name) in ERROR_TABLE.items():
        assert issubclass(cls, ServingError)
        assert isinstance(getattr(grpc.StatusCode, name), grpc.StatusCode)
        assert status // 100 == http_class_of_grpc[name], cls


def test_subclass_without_a_row_inherits_via_mro():
    class BadLatent(InvalidInput):
        pass

    class Surprise(ServingError):
        pass

    assert BadLatent not in ERROR_TABLE
    assert http_status(BadLatent("z")) == 400
    assert grpc_code(BadLatent("z")) is grpc.StatusCode.INVALID_ARGUMENT
    assert http_status(Surprise("x")) == 500


def test_foreign_exceptions_are_internal():
    for exc in (ValueError("secret path /etc/x"), KeyError("k"), RuntimeError()):
        assert http_status(exc) == 500
        assert grpc_code(exc) is grpc.StatusCode.INTERNAL
        assert error_body(exc) == {"error": "internal error; see the server log", "type": "InternalError"}


def test_client_error_body_carries_message_and_class_name():
    exc = InvalidInput("images must have shape N x 28 x 28, got 3 x 28 x 27")
    assert error_body(exc) == {"error": "images must have shape N x 28 x 28, got 3 x 28 x 27", "type": "InvalidInput"}
    assert error_body(ModelNotFound("unknown model 'x'"))["type"] == "ModelNotFound"


def test_internal_error_body_never_leaks_the_message():
    for exc in (ServingError("db password hunter2"), errors.ModelIntegrityError("sha256 of /secret/path"), RuntimeError("x")):
        body = error_body(exc)
        assert body == {"error": errors.INTERNAL_MESSAGE, "type": "InternalError"}


def test_deliberate_server_errors_explain_themselves():
    # Written for the caller: what is unavailable or not offered, and what to do instead.
    assert error_body(NotReady("model mnist-lstm is still loading")) == {"error": "model mnist-lstm is still loading", "type": "NotReady"}
    assert error_body(Unimplemented("Classify is not offered: call Predict"))["error"].startswith("Classify")


def test_empty_message_falls_back_to_something_readable():
    body = error_body(PayloadTooLarge())
    assert body["type"] == "PayloadTooLarge"
    assert body["error"]


def test_raise_from_keeps_the_cause():
    try:
        try:
            int("x")
        except ValueError as e:
            raise InvalidInput("n must be an integer, got 'x'") from e
    except InvalidInput as exc:
        assert isinstance(exc.__cause__, ValueError)
        assert http_status(exc) == 400
